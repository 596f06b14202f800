#!/usr/bin/env bash
# The end-to-end demo on the embedded defaults: builds otakey and runs a
# fleet of 20 devices through claim, rotation and a switch to cloud B.
# Usage: scripts/demo.sh [devices]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j"$(nproc)" --target otakey-demo-inproc >/dev/null
./build/release/otakey-demo-inproc "${1:-20}"
