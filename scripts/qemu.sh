#!/usr/bin/env bash
# Cross-builds the device core for Cortex-M4 (arm-none-eabi-gcc -Os) with
# mbedTLS from Debian's source package, and runs its tests on an emulated
# MPS2 AN386 board (qemu-system-arm, semihosting), the programs side by side
# (one per core, the longest first): codec, crypto known answers (the vector
# files built into the image), key store with its power-cut sweep, the
# protocol flows and a power-cut subset of the whole protocol against an
# agent core (on mbedTLS too, memory registry), version 2 (certificate sets)
# included, the agent's admission control, and the firmware image
# footprint.sh measures. test_flow and test_v2 measure the device core's
# stack around each call of otakey/device.h (port/mps2/stackmeter.c); the
# figures end the output and are kept in DIR/stack.txt.
# Usage: scripts/qemu.sh [--build-only] [--build-dir DIR] [--only "PROGRAM..."]
#   DIR defaults to build/mps2 under the source tree (ctest passes one under
#   its own build directory); mbedTLS's source is taken from DIR/mbedtls, else
#   from build/mps2/mbedtls, else fetched into DIR/mbedtls.
set -euo pipefail
cd "$(dirname "$0")/.."
build_only=0 B=build/mps2
programs="test_powercut test_crypto test_v2 test_flow test_psa test_agent test_keystore test_ratelimit firmware test_wire"
while [ $# -gt 0 ]; do
  case $1 in
    --build-only) build_only=1 ;;
    --build-dir) B=$2; shift ;;
    --only) programs=$2; shift ;;
    *) echo "usage: scripts/qemu.sh [--build-only] [--build-dir DIR] [--only \"PROGRAM...\"]" >&2; exit 2 ;;
  esac
  shift
done
bash scripts/deps.sh gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm dpkg-dev
mkdir -p "$B"
B=$(cd "$B" && pwd)
# mbedTLS for the target: Debian's source package, unpacked in a build tree.
src=$(ls -d "$B"/mbedtls/*/library build/mps2/mbedtls/*/library 2>/dev/null | head -n1 || true)
if [ -z "$src" ]; then
  if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
    # Source entries that mirror the machine's binary ones (same archives,
    # mirrors, suites and keys: a proxy or local mirror serves both).
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -f "$f" ] || continue
      awk 'BEGIN { RS = ""; ORS = "\n\n" }
           match($0, /Types:[^\n]*/) {
             t = substr($0, RSTART, RLENGTH)
             if (t ~ /[ :]deb( |$)/) { sub(/Types:[^\n]*/, "Types: deb-src"); print }
           }' "$f"
    done > /etc/apt/sources.list.d/otakey-src.sources
    sed -n 's/^deb\([ \t]\)/deb-src\1/p' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
      2>/dev/null > /etc/apt/sources.list.d/otakey-src.list || true
    [ -s /etc/apt/sources.list.d/otakey-src.list ] || rm -f /etc/apt/sources.list.d/otakey-src.list
    if [ ! -s /etc/apt/sources.list.d/otakey-src.sources ] && [ ! -f /etc/apt/sources.list.d/otakey-src.list ]; then
      rm -f /etc/apt/sources.list.d/otakey-src.sources
      echo "qemu.sh: no binary apt source to mirror as a source entry; add a deb-src entry" >&2
      exit 1
    fi
    [ -s /etc/apt/sources.list.d/otakey-src.sources ] || rm -f /etc/apt/sources.list.d/otakey-src.sources
    apt-get update -qq
  fi
  rm -rf "$B"/mbedtls && mkdir -p "$B"/mbedtls
  (cd "$B"/mbedtls && apt-get source -qq --download-only mbedtls >/dev/null 2>&1 &&
     tar xzf mbedtls_*.orig.tar.gz)
  src=$(ls -d "$B"/mbedtls/*/library | head -n1)
fi
mbsrc=$(cd "$(dirname "$src")" && pwd)
start=$(date +%s)
cmake -S port/mps2 -B "$B" -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/arm-none-eabi.cmake" \
  -DMBEDTLS_SRC="$mbsrc" >/dev/null
# (newlib's linker notes about unimplemented syscalls are expected: semihosting only)
if ! cmake --build "$B" -j"$(nproc)" > "$B"/build.log 2>&1; then
  grep -v "is not implemented and will always fail" "$B"/build.log >&2
  exit 1
fi
built=$(date +%s)
echo "qemu.sh: cross build in $B: $((built - start)) s"
[ $build_only = 1 ] && exit 0

# One program on the board; its output to DIR/PROGRAM.log, status and seconds to DIR/PROGRAM.rc.
run() {
  local t=$1 s rc=0
  s=$(date +%s)
  timeout 600 qemu-system-arm -M mps2-an386 -nographic -semihosting -kernel "$B/$t.elf" \
    > "$B/$t.log" 2>&1 || rc=$?
  echo "$rc $(( $(date +%s) - s ))" > "$B/$t.rc"
}
jobs=$(nproc)
for t in $programs; do
  rm -f "$B/$t.rc"
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  run "$t" &
done
wait
fail=0
for t in $programs; do
  read -r rc secs < "$B/$t.rc" || { rc=1 secs=?; }
  echo "== $t on qemu-system-arm -M mps2-an386 (Cortex-M4): exit $rc, $secs s"
  cat "$B/$t.log"
  [ "$rc" = 0 ] || fail=1
done
# The device core's measured stack (stackmeter.c), for footprint.sh and the docs.
: > "$B/stack.txt"
for t in test_flow test_v2 test_psa; do
  [ -f "$B/$t.log" ] || continue
  sed -n "s/^device stack peak: /$t: /p; s/^device heap peak: /$t heap: /p" "$B/$t.log" >> "$B/stack.txt"
done
echo "== device core stack, measured on the board"
cat "$B/stack.txt"
times > "$B/times.txt" # (the shell's, then its children's: user and system)
cpu=$(awk 'NR == 2 { split($1, u, "[ms]"); split($2, s, "[ms]"); printf "%d", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$B/times.txt")
echo "qemu.sh: $(echo "$programs" | wc -w) programs on $jobs cores in $(( $(date +%s) - built )) s" \
  "(with the build: $(( $(date +%s) - start )) s; $cpu s of CPU in all)"
exit $fail
