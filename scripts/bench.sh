#!/usr/bin/env bash
# The benchmark: okta-pendo-sync against local Okta and Pendo servers (fake-saas, a separate
# process serving pre-rendered ~1 KB users with the real headers), scenario by scenario, and the
# floor (okta-floor: fetch every Okta page and discard it) for comparison. The users have
# realistic logins (first.last@company.com, in an order unrelated to the Okta ids: the order a
# state database meets real visitor IDs in); BENCH_LOGINS=sequential gives the old
# user{i}@example.com, which arrive in key order.
#
#   scripts/bench.sh            # all scenarios: a b c d
#   scripts/bench.sh a d        # some of them
#
#   a  1,000,000 users, full sync, no added latency, empty state; then
#   a2 the second full sync (`sync --full`) on the state (a) left
#   b  100,000 users, 100 ms per Okta page, 300 ms per Pendo batch
#   c  100,000 users, a budget of 600 Okta requests a minute, 50% share
#   d  1,000,000 users, incremental run with 1% changed
#   e  20,000 users, 100 ms per Okta page, a budget of 600 requests a minute, 50% share
#      (the run needs a third of its share)
#   f  20,000 users, 100 ms per Okta page, no budget (the unpaced run e is compared with)
#
# Prints a markdown table: wall and CPU seconds and peak RSS of the sync (GNU time), the Okta
# requests and Pendo calls the servers counted, 429s, and the state database's size after the
# run in bytes per user of the scenario.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --quiet --bin okta-pendo-sync
cargo build --release --locked --quiet -p okta-pendo-testkit --bin fake-saas --bin okta-floor
bin=target/release/okta-pendo-sync
fake=target/release/fake-saas
floor=target/release/okta-floor
work=$(mktemp -d)
fake_pid=
trap '[ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null; rm -rf "$work"' EXIT
printf 'okta-test-token' >"$work/t"
printf 'pendo-test-key' >"$work/k"

# start_fake ARGS...: starts fake-saas, sets $okta and $pendo.
logins=()
[ "${BENCH_LOGINS:-realistic}" = sequential ] && logins=(--sequential-logins)
start_fake() {
  rm -f "$work/urls.json"
  "$fake" --exit-after-secs 1200 "${logins[@]}" "$@" >"$work/urls.json" 2>"$work/fake.log" &
  fake_pid=$!
  for _ in $(seq 300); do [ -s "$work/urls.json" ] && break; sleep 0.1; done
  okta=$(sed -E 's/.*"okta":"([^"]+)".*/\1/' "$work/urls.json")
  pendo=$(sed -E 's/.*"pendo":"([^"]+)".*/\1/' "$work/urls.json")
}
stop_fake() { kill "$fake_pid"; wait "$fake_pid" 2>/dev/null || true; fake_pid=; }
counter() { sed -E "s/.*\"$1\":([0-9]+).*/\1/" "$work/fake.log"; }

config() { # config SHARE [incremental]: "incremental" leaves lastLogin out of the mapping,
  # since a mapped lastLogin (which Okta's lastUpdated does not follow) makes every run full.
  local last_login='last_login = { path = "lastLogin", type = "date" }'
  [ "${2:-}" = incremental ] && last_login=
  cat >"$work/config.toml" <<TOML
[okta]
org_url = "$okta"
api_token_file = "$work/t"
rate_limit_share = $1
[pendo]
base_url = "$pendo"
integration_key_file = "$work/k"
[mapping]
department = "profile.department"
title = "profile.title"
cost_center = "profile.costCenter"
okta_status = "status"
employee_number = { path = "profile.employeeNumber", type = "number" }
$last_login
[state]
path = "$work/state.db"
[log]
level = "warn"
TOML
}

# The state database's bytes (with its write-ahead log, if left) per user.
state_bytes() { # state_bytes USERS
  local bytes
  bytes=$( (cat "$work/state.db" "$work/state.db-wal" 2>/dev/null || true) | wc -c)
  printf '%.1f' "$(echo "$bytes / $1" | bc -l)"
}

row() { # row NAME USERS [--full]
  local name=$1 users=$2; shift 2
  /usr/bin/time -f '%e %U %S %M' -o "$work/time" "$bin" -c "$work/config.toml" sync "$@" >/dev/null
  read -r wall user sys rss <"$work/time"
  stop_fake
  printf '| %s | %s | %.2f | %.1f | %s | %s | %s | %s |\n' "$name" "$wall" "$(echo "$user + $sys" | bc)" \
    "$(echo "$rss / 1024" | bc -l)" "$(counter okta_requests)" "$(counter pendo_posts)" "$(counter okta_429s)" \
    "$(state_bytes "$users")"
}

echo "| scenario | wall s | cpu s | peak RSS MiB | Okta requests | Pendo calls | 429s | state bytes/user |"
echo "|---|---|---|---|---|---|---|---|"
for s in "${@:-a b c d}"; do
  for scenario in $s; do
    rm -f "$work/state.db"*
    case $scenario in
      a)
        start_fake --users 1000000 --rate-limit 1000000
        /usr/bin/time -f '%e %U %S %M' -o "$work/time" "$floor" --org "$okta" >"$work/floor.json"
        read -r wall user sys rss <"$work/time"
        printf '| floor: fetch 1,000,000 users and discard | %s | %.2f | %.1f | %s | 0 | 0 | - |\n' "$wall" \
          "$(echo "$user + $sys" | bc)" "$(echo "$rss / 1024" | bc -l)" \
          "$(sed -E 's/.*"pages":([0-9]+).*/\1/' "$work/floor.json")"
        stop_fake
        start_fake --users 1000000 --rate-limit 1000000
        config 0.5
        row "a: 1,000,000 users, full, empty state" 1000000
        start_fake --users 1000000 --rate-limit 1000000
        config 0.5
        row "a2: 1,000,000 users, second full (sync --full)" 1000000 --full
        ;;
      b)
        start_fake --users 100000 --rate-limit 1000000 --page-delay-ms 100 --batch-delay-ms 300
        config 0.5
        row "b: 100,000 users, 100 ms a page, 300 ms a batch" 100000
        ;;
      c)
        start_fake --users 100000 --rate-limit 600 --enforce-budget
        config 0.5
        row "c: 100,000 users, 600 requests/min, share 0.5" 100000
        ;;
      d)
        start_fake --users 1000000 --rate-limit 1000000 --okta-addr 127.0.0.1:18711 --pendo-addr 127.0.0.1:18712
        config 0.5 incremental
        "$bin" -c "$work/config.toml" sync >/dev/null
        stop_fake
        start_fake --users 1000000 --rate-limit 1000000 --okta-addr 127.0.0.1:18711 --pendo-addr 127.0.0.1:18712 --touch-every 100
        row "d: 1,000,000 users, incremental, 1% changed" 1000000
        ;;
      e)
        start_fake --users 20000 --rate-limit 600 --enforce-budget --page-delay-ms 100
        config 0.5
        row "e: 20,000 users, 100 ms a page, 600 requests/min, share 0.5" 20000
        ;;
      f)
        start_fake --users 20000 --rate-limit 1000000 --page-delay-ms 100
        config 0.5
        row "f: 20,000 users, 100 ms a page, unpaced" 20000
        ;;
      *) echo "unknown scenario $scenario" >&2; exit 2 ;;
    esac
  done
done
