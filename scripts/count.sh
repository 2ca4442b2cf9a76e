#!/usr/bin/env bash
# Counts what a sync does, where CPU time is too noisy to compare (a shared virtual machine):
# against the local servers (fake-saas), the same six mapped fields as scripts/bench.sh.
#
#   scripts/count.sh instructions [USERS]  # a first full sync under callgrind (needs valgrind):
#                                          # the instructions it executes (default 50,000 users)
#   scripts/count.sh syscalls [USERS]      # a first full sync under strace -c (needs strace):
#                                          # the state file's reads and writes (default 200,000)
#   scripts/count.sh latency [PAGES]       # pages served 100 ms after their request, under
#                                          # strace -tt: the median from a request to its page's
#                                          # headers, and from those headers to the next request
#                                          # (default 100 pages)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: scripts/count.sh instructions|syscalls|latency [N]}
cargo build --release --locked --quiet --bin okta-pendo-sync
cargo build --release --locked --quiet -p okta-pendo-testkit --bin fake-saas
bin=$PWD/target/release/okta-pendo-sync
fake=$PWD/target/release/fake-saas
work=$(mktemp -d)
fake_pid=
trap '[ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null; rm -rf "$work"' EXIT
printf 'okta-test-token' >"$work/t"
printf 'pendo-test-key' >"$work/k"

start_fake() { # start_fake ARGS...: starts fake-saas, writes the config for it
  "$fake" --exit-after-secs 1200 "$@" >"$work/urls.json" 2>"$work/fake.log" &
  fake_pid=$!
  for _ in $(seq 300); do [ -s "$work/urls.json" ] && break; sleep 0.1; done
  cat >"$work/config.toml" <<TOML
[okta]
org_url = "$(sed -E 's/.*"okta":"([^"]+)".*/\1/' "$work/urls.json")"
api_token_file = "$work/t"
[pendo]
base_url = "$(sed -E 's/.*"pendo":"([^"]+)".*/\1/' "$work/urls.json")"
integration_key_file = "$work/k"
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
}

case $mode in
  instructions)
    start_fake --users "${2:-50000}" --rate-limit 1000000
    valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" \
      "$bin" -c "$work/config.toml" sync >/dev/null 2>"$work/valgrind.log"
    sed -nE 's/.*Collected : ([0-9]+).*/instructions: \1/p' "$work/valgrind.log"
    ;;
  syscalls)
    start_fake --users "${2:-200000}" --rate-limit 1000000
    strace -c -f -o "$work/strace.txt" "$bin" -c "$work/config.toml" sync >/dev/null
    awk '$NF == "pread64" || $NF == "pwrite64" { print $NF ": " $4 " calls" }' "$work/strace.txt"
    ;;
  latency)
    start_fake --users "$((${2:-100} * 200))" --rate-limit 1000000 --page-delay-ms 100
    strace -f -tt -e trace=writev,recvfrom,read -o "$work/strace.txt" \
      "$bin" -c "$work/config.toml" sync >/dev/null
    # A request: a writev of "GET /api/v1/users" on a socket; its page: the first read of
    # "HTTP/1.1 200" on that socket after it.
    awk '
      function secs(t,  p) { split(t, p, ":"); return p[1] * 3600 + p[2] * 60 + p[3] }
      function median(a, n,  i, j, t) {
        for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j > 0 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
      }
      /writev\([0-9]+, \[\{iov_base="GET \/api\/v1\/users/ {
        match($0, /writev\([0-9]+/); fd = substr($0, RSTART + 7, RLENGTH - 7)
        asked[fd] = secs($2)
        if (headers != "") { turn[++nt] = (secs($2) - headers) * 1000; headers = "" }
      }
      /(recvfrom|read)\([0-9]+, "HTTP\/1.1 200/ {
        match($0, /(recvfrom|read)\([0-9]+/); s = substr($0, RSTART, RLENGTH); sub(/.*\(/, "", s)
        if (s in asked) { wait[++nw] = (secs($2) - asked[s]) * 1000; delete asked[s]; headers = secs($2) }
      }
      END {
        printf "request to headers: median %.2f ms over %d pages\n", median(wait, nw), nw
        printf "headers to the next request: median %.2f ms over %d pages\n", median(turn, nt), nt
      }' "$work/strace.txt"
    ;;
  *) echo "unknown mode $mode" >&2; exit 2 ;;
esac
