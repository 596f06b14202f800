#!/usr/bin/env bash
# The SQLite registry's settings, each measured: the agent core's CPU per
# rotation (UPDATE_REQ + CONFIRM, thread CPU time, bench_agent) with the
# registry in memory and in SQLite under each setting, the runs interleaved
# so that whatever else the machine does falls on all of them alike; one
# transaction per 64 devices' messages, as the daemon's group commit.
# Prints min/median/max per setting and the median's ratio to memory and to
# the default settings.
# Usage: bench/sqlite.sh [BUILD_DIR] [DEVICES] [RUNS]   (default build/release 1000 5)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/release}; n=${2:-1000}; runs=${3:-5}
[ -x "$build/bench_agent" ] || { echo "bench/sqlite.sh: no $build/bench_agent (build it first)" >&2; exit 2; }
db=$(mktemp -u /tmp/otakey-sqlite-bench.XXXXXX.db)
trap 'rm -f "$db" "$db-wal" "$db-shm"' EXIT
names=("memory" "SQLite, default (WAL, synchronous NORMAL, secure_delete ON)" "cache_size 16 MiB"
       "mmap_size 256 MiB" "secure_delete FAST" "secure_delete OFF" "temp_store MEMORY"
       "cache 16 MiB + mmap 256 MiB")
pragmas=("" "" "PRAGMA cache_size=-16384" "PRAGMA mmap_size=268435456" "PRAGMA secure_delete=FAST"
         "PRAGMA secure_delete=OFF" "PRAGMA temp_store=MEMORY"
         "PRAGMA cache_size=-16384; PRAGMA mmap_size=268435456")
declare -A res
for r in $(seq "$runs"); do
  for i in "${!names[@]}"; do
    args=("$n")
    if [ "$i" -gt 0 ]; then
      args+=(--sqlite "$db" --batch 64)
      [ -z "${pragmas[$i]}" ] || args+=(--pragma "${pragmas[$i]}")
    fi
    us=$("$build/bench_agent" "${args[@]}" | sed -n 's/^| rotation | [0-9]* | [0-9.]* s | \([0-9.]*\) µs.*/\1/p')
    res[$i]="${res[$i]:-} $us"
  done
done
stats() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { printf "%.1f %.1f %.1f\n", v[1], v[int((NR + 1) / 2)], v[NR] }'; }
read -r _ mem _ < <(echo "${res[0]}" | stats)
read -r _ def _ < <(echo "${res[1]}" | stats)
echo "agent core CPU per rotation, $n devices, $runs interleaved runs ($(nproc) cores; $(uptime | sed 's/.*load average: /load /'))"
echo
echo "| registry | min µs | median µs | max µs | median / memory | median / SQLite default |"
echo "|---|---:|---:|---:|---:|---:|"
for i in "${!names[@]}"; do
  read -r lo med hi < <(echo "${res[$i]}" | stats)
  printf '| %s | %s | %s | %s | %.2f | %.2f |\n' "${names[$i]}" "$lo" "$med" "$hi" \
    "$(echo "$med / $mem" | bc -l)" "$(echo "$med / $def" | bc -l)"
done
