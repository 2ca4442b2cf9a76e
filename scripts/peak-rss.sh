#!/usr/bin/env bash
# Peak memory of one full `okta-pendo-sync sync` against the local test servers, run in a
# separate process, for each user count given (default: 10000 100000).
#
#   scripts/peak-rss.sh [USERS...]
#
# Prints, per count: users, wall seconds, CPU seconds of the sync, and its peak RSS. The local
# Okta advertises a rate limit of 1,000,000 requests a minute, so pacing (which follows the
# org's real budget) does not stretch the run: this measures the program, not the budget.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet --bin okta-pendo-sync -p okta-pendo-sync
cargo build --release --quiet --bin fake-saas -p okta-pendo-testkit
bin=target/release/okta-pendo-sync
fake=target/release/fake-saas
[ -x /usr/bin/time ] || { echo "needs GNU time (apt-get install time)" >&2; exit 1; }

work=$(mktemp -d)
trap 'kill "$fake_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
printf 'okta-test-token\n' >"$work/okta.token"
printf 'pendo-test-key\n' >"$work/pendo.key"

printf '%10s %10s %10s %14s\n' users wall_s cpu_s peak_rss_kib
for users in "${@:-10000 100000}"; do
  for n in $users; do
    "$fake" --users "$n" --missing-every 100 --rate-limit 1000000 --exit-after-secs 900 >"$work/urls.json" 2>"$work/fake.log" &
    fake_pid=$!
    for _ in $(seq 100); do [ -s "$work/urls.json" ] && break; sleep 0.1; done
    okta=$(sed -E 's/.*"okta":"([^"]+)".*/\1/' "$work/urls.json")
    pendo=$(sed -E 's/.*"pendo":"([^"]+)".*/\1/' "$work/urls.json")
    rm -f "$work/state.db"*
    cat >"$work/config.toml" <<TOML
[okta]
org_url = "$okta"
api_token_file = "$work/okta.token"
[pendo]
base_url = "$pendo"
integration_key_file = "$work/pendo.key"
[mapping]
department = "profile.department"
title = "profile.title"
cost_center = "profile.costCenter"
okta_status = "status"
employee_number = { path = "profile.employeeNumber", type = "number" }
last_login = { path = "lastLogin", type = "date" }
[state]
path = "$work/state.db"
[log]
level = "warn"
TOML
    /usr/bin/time -f '%e %U %S %M' -o "$work/time" "$bin" -c "$work/config.toml" sync
    read -r wall user sys rss <"$work/time"
    printf '%10s %10s %10.2f %14s\n' "$n" "$wall" "$(echo "$user + $sys" | bc)" "$rss"
    "$bin" -c "$work/config.toml" history --limit 1 | tail -n 1
    kill "$fake_pid"; wait "$fake_pid" 2>/dev/null || true
    rm -f "$work/urls.json"
  done
done
