#!/usr/bin/env bash
# Footprint of the device core on Cortex-M4 (-Os, Thumb-2): code and static
# RAM per file and in total, and the largest stack frames (-fstack-usage).
# Crypto is excluded (it is the port's: mbedTLS, PSA or a secure element).
# Usage: scripts/footprint.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh gcc-arm-none-eabi libnewlib-arm-none-eabi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
flags="-mcpu=cortex-m4 -mthumb -Os -std=c99 -Wall -Wextra -Werror -ffunction-sections -fdata-sections -fstack-usage -Iinclude"
for f in src/device/device.c src/device/keystore.c src/common/wire.c src/common/proto.c src/common/util.c; do
  arm-none-eabi-gcc $flags -c "$f" -o "$out/$(basename "$f" .c).o"
done
echo "Device core + codec + key schedule, arm-none-eabi-gcc $(arm-none-eabi-gcc -dumpversion) -Os, Cortex-M4:"
echo
echo "| file | .text | .data | .bss |"
echo "|---|---|---|---|"
arm-none-eabi-size -t "$out"/*.o | awk 'NR > 1 { n = $6; sub(".*/", "", n); if (n == "(TOTALS)") n = "**total**"; printf "| %s | %d | %d | %d |\n", n, $1, $2, $3 }'
echo
echo "Largest stack frames (bytes; a call chain adds its frames):"
cat "$out"/*.su | awk -F'\t' '{ print $2 "\t" $1 }' | sort -n -r | head -8 | sed 's/^/  /'
