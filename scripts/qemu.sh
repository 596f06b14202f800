#!/usr/bin/env bash
# Cross-builds the device core for Cortex-M4 (arm-none-eabi-gcc -Os) with
# mbedTLS from Debian's source package, and runs its tests on an emulated
# MPS2 AN386 board (qemu-system-arm, semihosting): codec, key store with its
# power-cut sweep, and the protocol flows and whole-protocol power-cut sweep
# against an agent core (on mbedTLS too, memory registry), version 2
# (certificate sets) included, and the firmware image footprint.sh measures.
# Usage: scripts/qemu.sh [--build-only]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm dpkg-dev
mkdir -p build/mps2
# mbedTLS for the target: Debian's source package, unpacked in the build tree.
src=$(ls -d build/mps2/mbedtls/*/library 2>/dev/null | head -n1 || true)
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
  rm -rf build/mps2/mbedtls && mkdir -p build/mps2/mbedtls
  (cd build/mps2/mbedtls && apt-get source -qq --download-only mbedtls >/dev/null 2>&1 &&
     tar xzf mbedtls_*.orig.tar.gz)
  src=$(ls -d build/mps2/mbedtls/*/library | head -n1)
fi
cmake -S port/mps2 -B build/mps2 -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/arm-none-eabi.cmake" \
  -DMBEDTLS_SRC="$PWD/$(dirname "$src")" >/dev/null
# (newlib's linker notes about unimplemented syscalls are expected: semihosting only)
if ! cmake --build build/mps2 -j"$(nproc)" > build/mps2/build.log 2>&1; then
  grep -v "is not implemented and will always fail" build/mps2/build.log >&2
  exit 1
fi
[ "${1:-}" = --build-only ] && exit 0
fail=0
for t in test_wire test_keystore test_agent test_flow test_powercut test_v2 firmware; do
  echo "== $t on qemu-system-arm -M mps2-an386 (Cortex-M4)"
  if ! timeout 600 qemu-system-arm -M mps2-an386 -nographic -semihosting -kernel "build/mps2/$t.elf"; then
    fail=1
  fi
done
exit $fail
