#!/usr/bin/env bash
# Cross-builds the device core for Cortex-M4 (arm-none-eabi-gcc -Os) and runs
# its codec and key-store tests, power-cut sweep included, on an emulated
# MPS2 AN386 board (qemu-system-arm, semihosting).
# Usage: scripts/qemu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
cmake -S port/mps2 -B build/mps2 -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/arm-none-eabi.cmake" >/dev/null
# (newlib's linker notes about unimplemented syscalls are expected: semihosting only)
if ! cmake --build build/mps2 -j"$(nproc)" > build/mps2/build.log 2>&1; then
  grep -v "is not implemented and will always fail" build/mps2/build.log >&2
  exit 1
fi
fail=0
for t in test_wire test_keystore; do
  echo "== $t on qemu-system-arm -M mps2-an386 (Cortex-M4)"
  if ! timeout 600 qemu-system-arm -M mps2-an386 -nographic -semihosting -kernel "build/mps2/$t.elf"; then
    fail=1
  fi
done
exit $fail
