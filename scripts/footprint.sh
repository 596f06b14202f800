#!/usr/bin/env bash
# Footprint on Cortex-M4 (arm-none-eabi-gcc -Os, Thumb-2): .text, .rodata,
# .data and .bss of the device core (with the codec and key schedule), of
# its mbedTLS crypto port (mbedTLS from Debian's source package, configured
# by port/mps2/mbedtls_config_m4.h), and the largest stack frames of the
# core (-fstack-usage). Sizes are of objects, before link-time GC, then of
# what a firmware image links of them (port/mps2/firmware.c, --gc-sections:
# the shared codec's agent-side functions drop out); the target is on the
# latter: the device core's .text <= 8 KiB. Last, the device core's stack
# as measured on the emulated board: test_flow and test_v2 run under
# qemu-system-arm with the stack painted around each call of otakey/device.h
# (port/mps2/stackmeter.c), core only and with the mbedTLS crypto backend.
# Usage: scripts/footprint.sh [--build-dir DIR]   (the board's build tree; build/mps2)
set -euo pipefail
cd "$(dirname "$0")/.."
B=build/mps2
[ "${1:-}" = --build-dir ] && B=$2
mkdir -p "$B"
if ! bash scripts/qemu.sh --build-dir "$B" --only "test_flow test_v2 test_psa" > "$B/stack-run.log" 2>&1; then
  cat "$B/stack-run.log" >&2
  exit 1
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mbsrc=$(sed -n 's/^MBEDTLS_SRC:PATH=//p' "$B/CMakeCache.txt")
flags="-mcpu=cortex-m4 -mthumb -Os -std=c99 -Wall -Wextra -Werror -ffunction-sections -fdata-sections -fstack-usage -Iinclude"
for f in src/device/device.c src/device/keystore.c src/common/wire.c src/common/proto.c src/common/util.c; do
  arm-none-eabi-gcc $flags -c "$f" -o "$out/core-$(basename "$f" .c).o"
done
arm-none-eabi-gcc $flags -I"$mbsrc/include" -Iport/mps2 -DMBEDTLS_CONFIG_FILE='"mbedtls_config_m4.h"' \
  -c src/common/crypto_mbedtls.c -o "$out/port-crypto_mbedtls.o"

# Sums the sections of the given objects/archives: text rodata data bss.
sections() {
  arm-none-eabi-size -A "$@" 2>/dev/null | awk '
    /^\.text/ { t += $2 } /^\.rodata/ { r += $2 } /^\.data/ { d += $2 } /^\.bss/ { b += $2 }
    END { printf "%d %d %d %d\n", t, r, d, b }'
}
row() { # row LABEL files...
  local l=$1; shift
  read -r t r d b < <(sections "$@")
  printf '| %s | %d | %d | %d | %d |\n' "$l" "$t" "$r" "$d" "$b"
}
echo "Cortex-M4, arm-none-eabi-gcc $(arm-none-eabi-gcc -dumpversion) -Os (bytes):"
echo
echo "| part | .text | .rodata | .data | .bss |"
echo "|---|---|---|---|---|"
row "device core (device.c, keystore.c)" "$out"/core-device.o "$out"/core-keystore.o
row "codec + key schedule + util (src/common)" "$out"/core-wire.o "$out"/core-proto.o "$out"/core-util.o
row "**device core total**" "$out"/core-*.o
row "crypto port over mbedTLS (crypto_mbedtls.c)" "$out"/port-crypto_mbedtls.o
row "mbedTLS subset (P-256, SHA-256, HKDF, AES-CCM)" "$B"/libmbedcrypto_m4.a
row "**with crypto**" "$out"/core-*.o "$out"/port-crypto_mbedtls.o "$B"/libmbedcrypto_m4.a
echo
echo "Linked into a firmware image (port/mps2/firmware.c, -Os, --gc-sections; bytes):"
echo
echo "| part | .text | .rodata | .data | .bss |"
echo "|---|---|---|---|---|"
awk -f scripts/mapsum.awk "$B"/firmware.map > "$out/linked"
for f in device keystore wire proto util; do
  awk -v f="$f.c.obj" '$1 == f { printf "| %s | %d | %d | %d | %d |\n", f, $2, $3, $4, $5 }' "$out/linked"
done | sed 's/\.obj//'
read -r lt lr ld lb < <(awk '$1 ~ /^(device|keystore|wire|proto|util)\.c\.obj$/ { t += $2; r += $3; d += $4; b += $5 }
  END { print t, r, d, b }' "$out/linked")
printf '| **device core, linked** | %d | %d | %d | %d |\n' "$lt" "$lr" "$ld" "$lb"
echo
if [ "$lt" -le 8192 ]; then
  echo "Target: device core .text <= 8192 bytes linked: met ($lt)."
else
  echo "Target: device core .text <= 8192 bytes linked: NOT met ($lt)."
fi
echo
echo "Largest stack frames of the device core (bytes; a call chain adds its frames):"
cat "$out"/core-*.su | awk -F'\t' '{ print $2 "\t" $1 }' | sort -n -r | head -10 | sed 's/^/  /'
echo
echo "Measured on the board (qemu-system-arm, Cortex-M4; the stack painted around each call of"
echo "otakey/device.h, port/mps2/stackmeter.c; bytes below the caller's stack pointer):"
echo
echo "| program | core only | with its crypto backend | deepest entry point |"
echo "|---|---|---|---|"
peak=0
frame=0
while read -r prog core meter total deep; do
  frame=$meter
  case $prog in
    test_flow) what="test_flow (claim, rotation, switch, refusals; password sets)" ;;
    test_v2) what="test_v2 (certificate sets beside password sets)" ;;
    test_psa) what="test_psa (certificate sets, keys and AKs in PSA: mbedTLS's PSA layer)" ;;
    *) what=$prog ;;
  esac
  printf '| %s | %d | %d | `%s` |\n' "$what" "$core" "$total" "$deep"
  [ "$core" -gt "$peak" ] && peak=$core
done < <(grep -v ' heap: ' "$B/stack.txt" |
         sed -E 's/^([a-z_0-9]+): ([0-9]+) bytes core only .*<= ([0-9]+) the meter.*, ([0-9]+) bytes with crypto \(deepest: ([a-z_]+)\).*/\1 \2 \3 \4 \5/')
echo
echo "Core only includes the flash port's callbacks and up to $frame bytes of the meter's own frame"
echo "at a crypto call (an upper bound); with crypto adds the crypto port and mbedTLS (test_flow,"
echo "test_v2: the raw-key mbedTLS port; test_psa: the PSA port)."
if [ "$peak" -le 2048 ]; then
  echo "Target: measured device core stack <= 2048 bytes: met ($peak)."
else
  echo "Target: measured device core stack <= 2048 bytes: NOT met ($peak)."
fi
echo
echo "Heap during the device's calls (calloc/malloc/free wrapped; peaks of bytes in use and blocks):"
echo
echo "| program | core only | crypto backend (test_psa: PSA, the others: mbedTLS) |"
echo "|---|---|---|"
sed -nE 's/^([a-z_0-9]+) heap: ([0-9]+) bytes in ([0-9]+) blocks core only, ([0-9]+) bytes in ([0-9]+) blocks in the crypto backend$/| \1 | \2 B (\3 blocks) | \4 B (\5 blocks) |/p' "$B/stack.txt"
