#!/usr/bin/env bash
# Builds the Debian package into target/debian/: the release binary, the --help text of every
# command (generated here from the binary, for the package's docs), then cargo-deb, pinned, with
# the [package.metadata.deb] table of Cargo.toml.
#
#   scripts/build-deb.sh          # prints the path of the .deb on its last line
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
  cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked --quiet
fi

cargo build --release --locked --quiet --bin okta-pendo-sync
bin=${CARGO_TARGET_DIR:-target}/release/okta-pendo-sync

# The usage of the program and of each command, as `--help` prints it, in one text file.
mkdir -p target/deb-doc
{
  echo "okta-pendo-sync $("$bin" --version | cut -d' ' -f2): the --help of every command"
  echo
  echo "\$ okta-pendo-sync --help"
  COLUMNS=100 "$bin" --help
  commands=$("$bin" --help | awk '/^Commands:/ {on = 1; next} on && /^$/ {on = 0} on && /^  [a-z]/ {print $1}')
  [ -n "$commands" ] || { echo "build-deb.sh: no commands found in --help" >&2; exit 1; }
  for command in $commands; do
    [ "$command" = help ] && continue
    echo
    echo "\$ okta-pendo-sync $command --help"
    COLUMNS=100 "$bin" "$command" --help
  done
} >target/deb-doc/commands.txt

cargo deb --no-build --locked --output target/debian/ 2>&1 | tail -n 1
