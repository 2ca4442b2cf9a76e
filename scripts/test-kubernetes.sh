#!/usr/bin/env bash
# Tests deploy/kubernetes/: validates every manifest against the Kubernetes schemas, strictly
# (unknown fields are errors), with kubernetes-validate from PyPI, pinned; checks with
# scripts/check-kubernetes.py that their paths, ports and security context agree with the
# ConfigMap's config; and runs `okta-pendo-sync check --offline` on that config, with the
# server.listen the Deployment sets in the environment (the pod's IP replaced by 127.0.0.1) and
# dummy secret files in place of the Secret's, laid out as the kubelet mounts them. Each check
# is also shown to fail on a broken copy.
#
#   scripts/test-kubernetes.sh
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "test-kubernetes: FAIL: $*" >&2; exit 1; }
KUBERNETES_VALIDATE_VERSION=1.37.0
KUBERNETES_VERSION=1.37.0
if [ "$(kubernetes-validate --version 2>/dev/null)" != "$KUBERNETES_VALIDATE_VERSION" ]; then
  python3 -m pip install --quiet --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi
manifests=deploy/kubernetes
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== kubernetes-validate $KUBERNETES_VALIDATE_VERSION --strict, Kubernetes $KUBERNETES_VERSION"
kubernetes-validate --strict --kubernetes-version "$KUBERNETES_VERSION" "$manifests"/*.yaml \
  || fail "a manifest does not validate"
# Strict means strict: an unknown field in the pod's security context is rejected.
sed 's/^\( *\)readOnlyRootFilesystem: true$/&\n\1readOnlyRootFileSystem: true/' \
  "$manifests/deployment.yaml" >"$work/misspelt.yaml"
! grep -q readOnlyRootFileSystem "$manifests/deployment.yaml" && grep -q readOnlyRootFileSystem "$work/misspelt.yaml" \
  || fail "could not make the misspelt copy"
if kubernetes-validate --strict --quiet --kubernetes-version "$KUBERNETES_VERSION" "$work/misspelt.yaml" >/dev/null 2>&1; then
  fail "kubernetes-validate accepted an unknown field"
fi

echo "== the manifests agree with the config"
python3 scripts/check-kubernetes.py "$manifests" "$work/config.toml" | tee "$work/checked" \
  || fail "the manifests and the config disagree"
listen=$(tail -n 1 "$work/checked")
# ... and a copy that does not is caught: a probe on another port, state off the claim.
broken() { # name, file, sed expression
  mkdir -p "$work/$1" && cp "$manifests"/*.yaml "$work/$1/"
  sed -i "$3" "$work/$1/$2"
  ! cmp -s "$manifests/$2" "$work/$1/$2" || fail "could not break $2 for $1"
  if python3 scripts/check-kubernetes.py "$work/$1" "$work/$1.toml" >/dev/null 2>&1; then
    fail "check-kubernetes.py missed $1"
  fi
}
broken other-port deployment.yaml 's/containerPort: 9184/containerPort: 9185/'
broken state-off-claim config.yaml 's|path = "/var/lib/okta-pendo-sync/state.db"|path = "/var/lib/other/state.db"|'
broken secret-elsewhere config.yaml 's|/run/secrets/okta-pendo-sync/pendo-key|/run/secrets/pendo-key|'
broken two-replicas deployment.yaml 's/replicas: 1/replicas: 2/'
broken writable-root cronjob.yaml 's/readOnlyRootFilesystem: true/readOnlyRootFilesystem: false/'

echo "== okta-pendo-sync check --offline of the ConfigMap's config"
cargo build --locked --quiet --bin okta-pendo-sync
# A copy in the work folder, which the pod's user can reach wherever the checkout lies.
install -m 0755 "${CARGO_TARGET_DIR:-target}/debug/okta-pendo-sync" "$work/okta-pendo-sync"
bin=$work/okta-pendo-sync
# The files laid out as the kubelet mounts a ConfigMap or a Secret: links through ..data into
# a timestamped folder (swapped at once on an update), the Secret's files root's and the pod's
# fsGroup's, mode 0440. The check runs as the pod's user and group (65532) when this script runs
# as root, as in CI.
kubelet_volume() { # folder, then name=source pairs
  local folder=$1 name
  shift
  mkdir -p "$folder/..2026_01_01_00_00_00.1"
  ln -s ..2026_01_01_00_00_00.1 "$folder/..data"
  for pair in "$@"; do
    name=${pair%%=*}
    cp "${pair#*=}" "$folder/..2026_01_01_00_00_00.1/$name"
    ln -s "..data/$name" "$folder/$name"
  done
}
printf 'dummy-okta-token\n' >"$work/okta-token"
printf 'dummy-pendo-key\n' >"$work/pendo-key"
kubelet_volume "$work/secrets" okta-token="$work/okta-token" pendo-key="$work/pendo-key"
chmod 0440 "$work"/secrets/..2026_*/*
chmod 0755 "$work"
as_pod=()
if [ "$(id -u)" = 0 ]; then
  chgrp 65532 "$work"/secrets/..2026_*/*
  as_pod=(setpriv --reuid 65532 --regid 65532 --clear-groups)
fi
kubelet_volume "$work/config" config.toml="$work/config.toml"
offline() { # server.listen, then what check --offline prints and its exit code
  set +e
  OKTA_PENDO_SYNC__OKTA__API_TOKEN_FILE="$work/secrets/okta-token" \
    OKTA_PENDO_SYNC__PENDO__INTEGRATION_KEY_FILE="$work/secrets/pendo-key" \
    OKTA_PENDO_SYNC__SERVER__LISTEN="$1" \
    "${as_pod[@]}" "$bin" --config "$work/config/config.toml" check --offline 2>&1
  echo "exit $?"
  set -e
}
out=$(offline "${listen/\$(POD_IP)/127.0.0.1}")
echo "$out"
[ "$(tail -n 1 <<<"$out")" = "exit 0" ] || fail "check --offline refused the ConfigMap's config"
! grep -q dummy <<<"$out" || fail "check --offline printed a secret"
# The Secret's files, read through the pod's group, draw no warning about their mode.
if [ ${#as_pod[@]} -gt 0 ] && grep -q 'may be read by users other than its owner' <<<"$out"; then
  fail "a warning about the Secret's mode 0440"
fi
# The environment variable does set server.listen: a bad value there is refused, by its key.
out=$(offline "${listen/\$(POD_IP)/not-an-address}")
[ "$(tail -n 1 <<<"$out")" = "exit 78" ] && grep -q 'server.listen' <<<"$out" \
  || fail "OKTA_PENDO_SYNC__SERVER__LISTEN did not reach server.listen: $out"
echo "test-kubernetes: ok"
