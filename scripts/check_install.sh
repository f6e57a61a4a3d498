#!/usr/bin/env bash
# Checks that an installed Blixt can be used from outside its tree:
# installs into a temporary prefix, then builds and runs examples/consumer
# once through find_package(Blixt) and once through pkg-config.
#   scripts/check_install.sh          configure + build in a temporary dir
#   scripts/check_install.sh build    reuse an existing build dir (fast)
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
export OMP_WAIT_POLICY=PASSIVE
jobs=$(nproc 2>/dev/null || echo 2)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/blixt-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

if [ -n "${1:-}" ]; then
  build=$(cd "$1" && pwd)
  cmake -S "$src" -B "$build" >/dev/null   # picks up new install rules
else
  build=$tmp/build
  cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DBLIXT_BUILD_TESTS=OFF \
    -DBLIXT_BUILD_BENCH=OFF -DBLIXT_BUILD_EXAMPLES=OFF >/dev/null
fi
# Only what gets installed needs to be built.
targets="blixt blixt_static"
if cmake --build "$build" --target help | grep 'blixt-cli' >/dev/null; then targets="$targets blixt-cli"; fi
cmake --build "$build" -j"$jobs" --target $targets
cmake --install "$build" --prefix "$prefix" >/dev/null
echo "== installed into $prefix:"
(cd "$prefix" && find . -type f -o -type l | sort | grep -v '^./include/blixt/' | sed 's/^/   /')

echo "== consumer via find_package(Blixt)"
cmake -S "$src/examples/consumer" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$tmp/consumer" >/dev/null
"$tmp/consumer/consumer"

echo "== consumer via pkg-config"
pcdir=$(dirname "$(find "$prefix" -name blixt.pc | head -n1)")
flags=$(PKG_CONFIG_PATH=$pcdir pkg-config --cflags --libs blixt)
echo "   pkg-config --cflags --libs blixt: $flags"
# shellcheck disable=SC2086  # the flags are meant to split
cc -std=c11 -o "$tmp/consumer-pc" "$src/examples/consumer/main.c" $flags
LD_LIBRARY_PATH="$pcdir/..${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$tmp/consumer-pc"

echo "check_install: OK"
