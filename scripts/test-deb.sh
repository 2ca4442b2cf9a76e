#!/usr/bin/env bash
# Tests the Debian package on this machine, as root: builds it (scripts/build-deb.sh), installs
# it with dpkg, checks every installed file's path, mode and owner, the conffile, that the unit
# is systemd/okta-pendo-sync.service as it is and passes `systemd-analyze verify`, that the
# service is neither enabled nor started, that the binary runs from /usr/bin and that
# `check --offline` treats the installed example config as the README says; then installs it
# again (the upgrade path of the maintainer scripts), removes it (config and credentials stay)
# and purges it (nothing stays). The maintainer scripts must succeed whether or not systemd runs.
#
#   scripts/test-deb.sh
#
# Refuses to run where okta-pendo-sync is installed or configured already: it purges it.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "test-deb: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "run it as root (it installs and purges the package)"
if dpkg-query --show okta-pendo-sync >/dev/null 2>&1 || [ -e /etc/okta-pendo-sync ]; then
  fail "okta-pendo-sync is installed or /etc/okta-pendo-sync exists: this test would purge it"
fi
if ! command -v systemd-analyze >/dev/null; then
  apt-get update -qq && apt-get install -y -qq systemd >/dev/null
fi

deb=$(scripts/build-deb.sh | tail -n 1)
[ -f "$deb" ] || fail "no package built: $deb"
echo "== built $deb"
trap 'dpkg --purge okta-pendo-sync >/dev/null 2>&1 || true' EXIT

if [ -d /run/systemd/system ]; then
  echo "== systemd is running here: the maintainer scripts take their systemd branch"
else
  echo "== no systemd running here: the maintainer scripts must succeed without it"
fi
dpkg -i "$deb" || fail "dpkg -i"

echo "== installed files (mode, owner, path)"
installed=$(dpkg-query --listfiles okta-pendo-sync | while read -r path; do
  [ -d "$path" ] || echo "$path"
done | sort)
while read -r path; do stat -c '%A %a %U:%G %n' "$path"; done <<<"$installed"
stat -c '%A %a %U:%G %n' /etc/okta-pendo-sync/credentials

expected="/etc/okta-pendo-sync/config.toml
/usr/bin/okta-pendo-sync
/usr/lib/systemd/system/okta-pendo-sync.service
/usr/share/doc/okta-pendo-sync/README.md
/usr/share/doc/okta-pendo-sync/commands.txt
/usr/share/doc/okta-pendo-sync/copyright
/usr/share/doc/okta-pendo-sync/examples/config.toml"
[ "$installed" = "$expected" ] || fail "the package's files are not the expected ones:
$installed"

want() { # path, then what `stat -c '%a %U:%G %F'` must say
  local got
  got=$(stat -c '%a %U:%G %F' "$1" 2>/dev/null) || fail "$1 is missing"
  [ "$got" = "$2" ] || fail "$1 is '$got', not '$2'"
}
want /usr/bin/okta-pendo-sync "755 root:root regular file"
want /usr/lib/systemd/system/okta-pendo-sync.service "644 root:root regular file"
want /etc/okta-pendo-sync "755 root:root directory"
want /etc/okta-pendo-sync/config.toml "644 root:root regular file"
want /etc/okta-pendo-sync/credentials "700 root:root directory"
for doc in README.md commands.txt copyright examples/config.toml; do
  want "/usr/share/doc/okta-pendo-sync/$doc" "644 root:root regular file"
done

echo "== conffiles"
conffiles=$(dpkg-query --showformat='${Conffiles}\n' --show okta-pendo-sync)
echo "$conffiles"
grep -q '^ /etc/okta-pendo-sync/config.toml [0-9a-f]\{32\}$' <<<"$conffiles" \
  || fail "config.toml is not a conffile"
grep -qx /etc/okta-pendo-sync/config.toml /var/lib/dpkg/info/okta-pendo-sync.conffiles \
  || fail "config.toml is not in okta-pendo-sync.conffiles"
cmp -s config/okta-pendo-sync.toml /etc/okta-pendo-sync/config.toml \
  || fail "the installed config is not config/okta-pendo-sync.toml"

echo "== the unit"
cmp -s systemd/okta-pendo-sync.service /usr/lib/systemd/system/okta-pendo-sync.service \
  || fail "the installed unit is not systemd/okta-pendo-sync.service"
verify=$(systemd-analyze verify /usr/lib/systemd/system/okta-pendo-sync.service 2>&1) \
  || fail "systemd-analyze verify: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify warns: $verify"
echo "systemd-analyze verify: ok"
# Installed neither enabled nor started: no symlink in any .wants folder.
wants=$(find /etc/systemd/system -name okta-pendo-sync.service 2>/dev/null)
[ -z "$wants" ] || fail "the service was enabled: $wants"
if [ -d /run/systemd/system ]; then
  ! systemctl is-active --quiet okta-pendo-sync || fail "the service was started"
fi
echo "not enabled, not started: ok"

echo "== the binary"
/usr/bin/okta-pendo-sync --help | grep -q '^Usage: okta-pendo-sync' || fail "okta-pendo-sync --help"
grep -q '^\$ okta-pendo-sync sync --help$' /usr/share/doc/okta-pendo-sync/commands.txt \
  || fail "commands.txt lacks the help of sync"
# As installed, the example config reads its secrets where systemd's LoadCredential puts them,
# which exist only inside the service: outside it, check --offline names both and exits 78.
set +e
out=$(/usr/bin/okta-pendo-sync check --offline 2>&1)
code=$?
set -e
echo "$out"
[ "$code" = 78 ] || fail "check --offline of the example config exited $code, not 78"
grep -q 'okta.api_token_file: cannot read /run/credentials/okta-pendo-sync.service/okta-token' <<<"$out" \
  || fail "check --offline does not name the missing Okta token"
grep -q 'pendo.integration_key_file: cannot read /run/credentials/okta-pendo-sync.service/pendo-key' <<<"$out" \
  || fail "check --offline does not name the missing Pendo key"
# With the credentials in their folder, and read from there as the README shows, it passes.
printf 'dummy-okta-token\n' >/etc/okta-pendo-sync/credentials/okta-token
printf 'dummy-pendo-key\n' >/etc/okta-pendo-sync/credentials/pendo-key
chmod 0600 /etc/okta-pendo-sync/credentials/okta-token /etc/okta-pendo-sync/credentials/pendo-key
out=$(OKTA_PENDO_SYNC__OKTA__API_TOKEN_FILE=/etc/okta-pendo-sync/credentials/okta-token \
  OKTA_PENDO_SYNC__PENDO__INTEGRATION_KEY_FILE=/etc/okta-pendo-sync/credentials/pendo-key \
  /usr/bin/okta-pendo-sync check --offline 2>&1) || fail "check --offline with the credentials: $out"
echo "$out"
! grep -q dummy <<<"$out" || fail "check --offline printed a secret"

echo "== installed again (the upgrade path)"
dpkg -i "$deb" || fail "dpkg -i again"
[ -f /etc/okta-pendo-sync/credentials/okta-token ] || fail "a reinstall lost the credentials"
want /etc/okta-pendo-sync/credentials "700 root:root directory"

echo "== removed: the config and the credentials stay"
install -d -m 0700 /var/lib/private/okta-pendo-sync
: >/var/lib/private/okta-pendo-sync/state.db
ln -s private/okta-pendo-sync /var/lib/okta-pendo-sync
dpkg --remove okta-pendo-sync || fail "dpkg --remove"
[ ! -e /usr/bin/okta-pendo-sync ] || fail "remove left the binary"
[ ! -e /usr/lib/systemd/system/okta-pendo-sync.service ] || fail "remove left the unit"
[ -f /etc/okta-pendo-sync/config.toml ] || fail "remove took the config"
[ -f /etc/okta-pendo-sync/credentials/pendo-key ] || fail "remove took the credentials"
[ -f /var/lib/okta-pendo-sync/state.db ] || fail "remove took the state"

echo "== purged: nothing stays"
dpkg --purge okta-pendo-sync || fail "dpkg --purge"
for path in /etc/okta-pendo-sync /var/lib/okta-pendo-sync /var/lib/private/okta-pendo-sync \
  /usr/share/doc/okta-pendo-sync /var/lib/dpkg/info/okta-pendo-sync.conffiles; do
  [ ! -e "$path" ] && [ ! -L "$path" ] || fail "purge left $path"
done
! dpkg-query --show okta-pendo-sync >/dev/null 2>&1 || fail "the package is still known to dpkg"
trap - EXIT
echo "test-deb: ok"
