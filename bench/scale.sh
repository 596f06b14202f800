#!/usr/bin/env bash
# The registry and the certificate clouds at fleet scale (docs/benchmarks.md,
# "A million devices"): bench_scale over the given fleet sizes, one table.
# Usage: bench/scale.sh [SIZES [SAMPLE [BUILD_DIR]]]
#        (default 10000,100000,1000000, a sample of 1000 devices, build/release,
#        built if missing; the three sizes take about 7 minutes of one core)
set -euo pipefail
umask 077
cd "$(dirname "$0")/.."
sizes=${1:-10000,100000,1000000}
sample=${2:-1000}
build=${3:-build/release}
if [ ! -x "$build/bench_scale" ]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build" -j"$(nproc)" --target bench_scale >/dev/null
fi
exec "$build/bench_scale" "$sizes" --sample "$sample"
