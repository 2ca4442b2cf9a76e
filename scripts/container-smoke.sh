#!/usr/bin/env bash
# Proves the container image works on a machine with no Docker engine and no image registry:
# podman with vfs storage; in place of gcr.io/distroless/static-debian12:nonroot, an equivalent
# base assembled from this machine's files (the CA certificates, a passwd and group with
# distroless's nonroot user 65532, an empty /tmp; no C library, no shell); the binary built on
# the host, and the C libraries it links (scripts/runtime-libs.sh, as the Dockerfile adds them). Then, inside the container, against the local test
# servers (fake-saas) on the host: `sync` with the state on a named volume (so the image's state
# folder must be writable by its user), the daemon with `health` run inside it, and `history`.
# Needs root, a Debian-like host (glibc) and its package mirror for podman.
#
#   scripts/container-smoke.sh
#
# Prints the image size, the sync's exit code, health's answers and the run record.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${WORK:-$(mktemp -d)}
mkdir -p "$work"
podman=(podman --storage-driver vfs --cgroup-manager cgroupfs)
base=localhost/okta-pendo-sync-base:distroless-static-like
image=localhost/okta-pendo-sync:smoke
volume=okta-pendo-sync-smoke-state

need() { command -v "$1" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }
need podman podman
need runc runc
[ -s /etc/ssl/certs/ca-certificates.crt ] || { apt-get update -qq && apt-get install -y -qq ca-certificates >/dev/null; }

echo "== build the binaries on the host"
cargo build --release --locked --quiet --bin okta-pendo-sync
cargo build --release --locked --quiet -p okta-pendo-testkit --bin fake-saas
bin=target/release/okta-pendo-sync
ls -l "$bin" | awk '{print "binary: " $5 " bytes"}'

echo "== a distroless-like base, from this machine's files"
rootfs="$work/rootfs"
rm -rf "$rootfs" && mkdir -p "$rootfs"/{etc/ssl/certs,tmp,home/nonroot,usr/local/bin}
chmod 1777 "$rootfs/tmp"
chown 65532:65532 "$rootfs/home/nonroot"
cp -L /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
  >"$rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$rootfs/etc/group"
"${podman[@]}" rmi -f "$base" >/dev/null 2>&1 || true
tar -C "$rootfs" -c . | "${podman[@]}" import - "$base" >/dev/null
"${podman[@]}" image ls --format 'base: {{.Repository}}:{{.Tag}} {{.Size}}' "$base"

echo "== the image (Dockerfile, target prebuilt)"
ctx="$work/context"
rm -rf "$ctx" && mkdir -p "$ctx/config"
mkdir -m 0700 "$ctx/state"
cp Dockerfile "$ctx/"
cp config/okta-pendo-sync.toml "$ctx/config/"
cp "$bin" "$ctx/"
scripts/runtime-libs.sh "$bin" "$ctx/runtime-libs"
"${podman[@]}" build --quiet --format docker --isolation chroot --target prebuilt \
  --build-arg RUNTIME_BASE="$base" -t "$image" "$ctx" >/dev/null
"${podman[@]}" image ls --format 'image: {{.Repository}}:{{.Tag}} {{.Size}}' "$image"
"${podman[@]}" image inspect --format 'user: {{.Config.User}}; health check: {{.Config.Healthcheck.Test}}' "$image"
if "${podman[@]}" run --rm --runtime runc --entrypoint /bin/sh "$image" -c true >/dev/null 2>&1; then
  echo "FAIL: the image has a shell" >&2
  exit 1
fi
echo "no shell: ok"

echo "== local Okta and Pendo on the host"
target/release/fake-saas --users 5000 --missing-every 50 --exit-after-secs 600 >"$work/urls.json" 2>"$work/fake.log" &
fake=$!
cleanup() {
  kill "$fake" 2>/dev/null || true
  "${podman[@]}" rm -f okta-pendo-sync-smoke >/dev/null 2>&1 || true
  "${podman[@]}" volume rm -f "$volume" >/dev/null 2>&1 || true
}
trap cleanup EXIT
for _ in $(seq 100); do [ -s "$work/urls.json" ] && break; sleep 0.1; done
okta=$(sed -E 's/.*"okta":"([^"]+)".*/\1/' "$work/urls.json")
pendo=$(sed -E 's/.*"pendo":"([^"]+)".*/\1/' "$work/urls.json")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

mkdir -p "$work/secrets"
printf 'okta-test-token' >"$work/secrets/okta-token"
printf 'pendo-test-key' >"$work/secrets/pendo-key"
chmod 0644 "$work/secrets/"*
cat >"$work/config.toml" <<TOML
[okta]
org_url = "$okta"
api_token_file = "/run/secrets/okta-token"
[pendo]
base_url = "$pendo"
integration_key_file = "/run/secrets/pendo-key"
[mapping]
department = "profile.department"
title = "profile.title"
last_login = { path = "lastLogin", type = "date" }
[schedule]
cron = "0 0 6 1 1 *"
[server]
listen = "127.0.0.1:$port"
TOML
chmod 0644 "$work/config.toml"

"${podman[@]}" volume rm -f "$volume" >/dev/null 2>&1 || true
# Without systemd, podman logs that it cannot time the image's HEALTHCHECK (harmless): the
# check is run by hand below.
opts=(--runtime runc --network host --ulimit nofile=1024:1024 --ulimit nproc=1024:1024
  -v "$work/config.toml:/etc/okta-pendo-sync/config.toml:ro"
  -v "$work/secrets:/run/secrets:ro"
  -v "$volume:/var/lib/okta-pendo-sync")
run=("${podman[@]}" run --rm "${opts[@]}" "$image")
echo "== okta-pendo-sync sync, inside the container (the state on a named volume)"
set +e
"${run[@]}" sync
code=$?
set -e
echo "exit code: $code"

echo "== the daemon, and okta-pendo-sync health inside its container"
"${podman[@]}" run -d --name okta-pendo-sync-smoke "${opts[@]}" "$image" >/dev/null
healthy=1
for _ in $(seq 50); do
  if "${podman[@]}" exec okta-pendo-sync-smoke /usr/local/bin/okta-pendo-sync health; then
    healthy=0
    break
  fi
  sleep 0.2
done
# The image's own HEALTHCHECK command (podman runs it in the container and records the result).
if [ "$healthy" -eq 0 ] && ! "${podman[@]}" healthcheck run okta-pendo-sync-smoke; then
  healthy=1
fi
"${podman[@]}" inspect --format 'health status: {{.State.Health.Status}}' okta-pendo-sync-smoke
"${podman[@]}" stop -t 15 okta-pendo-sync-smoke >/dev/null
set +e
"${run[@]}" health
stopped=$?
set -e
echo "health once the daemon stopped: exit code $stopped"

echo "== its run record"
"${run[@]}" history --json --limit 1
[ "$healthy" -eq 0 ] || { echo "FAIL: health never answered 0" >&2; exit 1; }
[ "$stopped" -eq 1 ] || { echo "FAIL: health answered $stopped with no daemon" >&2; exit 1; }
exit "$code"
