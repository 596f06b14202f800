#!/usr/bin/env bash
# Builds otakey and runs its test suite (ctest). Usage: scripts/test.sh [build-type]
# build-type: Debug (default), Release or Sanitize (ASan + UBSan).
set -euo pipefail
cd "$(dirname "$0")/.."
type=${1:-Debug}
bash scripts/deps.sh
dir=build/${type,,}
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="$type" >/dev/null
cmake --build "$dir" -j"$(nproc)"
ctest --test-dir "$dir" --output-on-failure -j"$(nproc)"
