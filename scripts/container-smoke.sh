#!/usr/bin/env bash
# Proves the container image works on a machine with no Docker engine and no image registry:
# podman with vfs storage, a Debian base made with debootstrap and imported, the binary built on
# the host, then `okta-pendo-sync sync` inside the container against the local test servers
# (fake-saas) on the host. Needs root and Debian's package mirror.
#
#   scripts/container-smoke.sh
#
# Prints the image size, the sync's exit code and its run record.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${WORK:-$(mktemp -d)}
mkdir -p "$work"
podman=(podman --storage-driver vfs --cgroup-manager cgroupfs)

need() { command -v "$1" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }
need podman podman
need debootstrap debootstrap
need runc runc

echo "== build the binaries on the host"
cargo build --release --locked --quiet --bin okta-pendo-sync
cargo build --release --locked --quiet -p okta-pendo-testkit --bin fake-saas

echo "== a Debian base image, made with debootstrap"
if ! "${podman[@]}" image exists localhost/okta-pendo-sync-base:bookworm; then
  debootstrap --variant=minbase --include=ca-certificates,curl bookworm "$work/rootfs" >"$work/debootstrap.log" 2>&1
  tar -C "$work/rootfs" -c . | "${podman[@]}" import - localhost/okta-pendo-sync-base:bookworm >/dev/null
fi

echo "== the image (Dockerfile, target prebuilt)"
ctx="$work/context"
rm -rf "$ctx" && mkdir -p "$ctx/config"
cp Dockerfile "$ctx/"
cp config/okta-pendo-sync.toml "$ctx/config/"
cp target/release/okta-pendo-sync "$ctx/"
"${podman[@]}" build --quiet --format docker --isolation chroot --target prebuilt \
  --build-arg RUNTIME_BASE=localhost/okta-pendo-sync-base:bookworm \
  -t localhost/okta-pendo-sync:smoke "$ctx" >/dev/null
"${podman[@]}" image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' localhost/okta-pendo-sync:smoke

echo "== local Okta and Pendo on the host"
target/release/fake-saas --users 5000 --missing-every 50 --exit-after-secs 600 >"$work/urls.json" 2>"$work/fake.log" &
fake=$!
trap 'kill $fake 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s "$work/urls.json" ] && break; sleep 0.1; done
okta=$(sed -E 's/.*"okta":"([^"]+)".*/\1/' "$work/urls.json")
pendo=$(sed -E 's/.*"pendo":"([^"]+)".*/\1/' "$work/urls.json")

mkdir -p "$work/secrets" "$work/state"
printf 'okta-test-token' >"$work/secrets/okta-token"
printf 'pendo-test-key' >"$work/secrets/pendo-key"
chmod 0644 "$work/secrets/"*
chown 10001 "$work/state"
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
TOML

run=("${podman[@]}" run --rm --runtime runc --network host --ulimit nofile=1024:1024 --ulimit nproc=1024:1024
  -v "$work/config.toml:/etc/okta-pendo-sync/config.toml:ro"
  -v "$work/secrets:/run/secrets:ro"
  -v "$work/state:/var/lib/okta-pendo-sync"
  localhost/okta-pendo-sync:smoke)
echo "== okta-pendo-sync sync, inside the container"
set +e
"${run[@]}" sync
code=$?
set -e
echo "exit code: $code"
echo "== its run record"
"${run[@]}" history --json --limit 1
exit "$code"
