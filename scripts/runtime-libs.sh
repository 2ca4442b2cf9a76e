#!/bin/sh
# Copies the C libraries a binary links (as `ldd` lists them, the dynamic loader included) into
# DEST, at the paths the loader looks them up by: what the container image adds to a base that
# has no C library (distroless's static image). Used by the Dockerfile and by
# scripts/container-smoke.sh, so that both images get the same files.
#
#   scripts/runtime-libs.sh BINARY DEST
set -eu
bin=$1
dest=$2
for lib in $(ldd "$bin" | grep -oE '/[^ ]+'); do
  mkdir -p "$dest$(dirname "$lib")"
  cp -L "$lib" "$dest$lib"
done
