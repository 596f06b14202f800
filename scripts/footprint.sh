#!/usr/bin/env bash
# Footprint on Cortex-M4 (arm-none-eabi-gcc -Os, Thumb-2): .text, .rodata,
# .data and .bss of the device core (with the codec and key schedule), of
# its mbedTLS crypto port (mbedTLS from Debian's source package, configured
# by port/mps2/mbedtls_config_m4.h), and the largest stack frames of the
# core (-fstack-usage). Sizes are of objects, before link-time GC, then of
# what a firmware image links of them (port/mps2/firmware.c, --gc-sections:
# the shared codec's agent-side functions drop out); the target is on the
# latter: the device core's .text <= 8 KiB.
# Usage: scripts/footprint.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/qemu.sh --build-only
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mbsrc=$(dirname "$(ls -d build/mps2/mbedtls/*/library | head -n1)")
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
row "mbedTLS subset (P-256, SHA-256, HKDF, AES-CCM)" build/mps2/libmbedcrypto_m4.a
row "**with crypto**" "$out"/core-*.o "$out"/port-crypto_mbedtls.o build/mps2/libmbedcrypto_m4.a
echo
echo "Linked into a firmware image (port/mps2/firmware.c, -Os, --gc-sections; bytes):"
echo
echo "| part | .text | .rodata | .data | .bss |"
echo "|---|---|---|---|---|"
awk -f scripts/mapsum.awk build/mps2/firmware.map > "$out/linked"
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
