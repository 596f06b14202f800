#!/usr/bin/env bash
# Runs the libFuzzer targets of tests/fuzz and prints a markdown table of
# their figures (total execs and execs/s from libFuzzer's final stats).
#
# Usage: scripts/fuzz.sh [--runs N] [SECONDS] [TARGET...]
#   SECONDS   time per target (default 60)
#   --runs N  also stop a target after N executions (whichever comes first)
#   TARGET    fuzz_wire fuzz_keyset fuzz_keystore fuzz_device fuzz_agent
#             fuzz_config fuzz_dynsec fuzz_policy fuzz_api fuzz_crl fuzz_mqtt
#             (default: all, one after another)
#
# Installs clang and its libFuzzer runtime if missing, builds build/fuzz
# (clang, ASan + UBSan, every library instrumented) and fuzzes a copy of
# tests/fuzz/corpus in a temporary directory: nothing is written into the
# repository. Exits 1 on any crash, leak, timeout or out-of-memory, naming
# the reproducer and keeping the temporary directory; 2 on a usage error.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

all=(fuzz_wire fuzz_keyset fuzz_keystore fuzz_device fuzz_agent fuzz_config fuzz_dynsec fuzz_policy fuzz_api fuzz_crl fuzz_mqtt)
seconds=60
runs=
targets=()
while [ $# -gt 0 ]; do
  case $1 in
    --runs) [ $# -ge 2 ] && [[ $2 =~ ^[1-9][0-9]*$ ]] || { echo "fuzz.sh: --runs needs a count" >&2; exit 2; }
            runs=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) if [[ $1 =~ ^[1-9][0-9]*$ ]] && [ ${#targets[@]} -eq 0 ]; then
         seconds=$1
       elif [[ " ${all[*]} " == *" $1 "* ]]; then
         targets+=("$1")
       else
         echo "fuzz.sh: unknown target or argument '$1' (targets: ${all[*]})" >&2; exit 2
       fi
       shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

# Debian 12 ships libFuzzer in the compiler-rt package, which clang only recommends.
bash scripts/deps.sh clang libclang-rt-dev

build=build/fuzz
CC=clang cmake -S . -B "$build" -DOTK_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j2 --target "${targets[@]}" >"$build/fuzz-build.log" 2>&1 || {
  tail -n 40 "$build/fuzz-build.log" >&2; echo "fuzz.sh: build failed" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/otakey-fuzz.XXXXXX")
rows=()
failed=0
for t in "${targets[@]}"; do
  mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
  cp "$root/tests/fuzz/corpus/$t/"* "$work/$t/corpus/"
  log=$work/$t/log
  echo "== $t: ${seconds} s${runs:+ or $runs execs}" >&2
  start=$(date +%s.%N)
  rc=0
  # Run from the work directory: libFuzzer writes crash files and the
  # inputs it finds relative to it, never into the source tree.
  (cd "$work/$t" && "$root/$build/tests/fuzz/$t" -max_total_time="$seconds" ${runs:+-runs=$runs} \
      -print_final_stats=1 -timeout=25 -rss_limit_mb=2048 -artifact_prefix="$work/$t/artifacts/" \
      corpus) >"$log" 2>&1 || rc=$?
  secs=$(echo "$(date +%s.%N) - $start" | bc)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  crashes=$(find "$work/$t/artifacts" -type f | wc -l)
  # Coverage reached (edges, features): how deep the inputs got, from the last progress line.
  cov=$(sed -n 's/^#[0-9].* cov: \([0-9]*\) ft: \([0-9]*\) .*/\1 \/ \2/p' "$log" | tail -n 1)
  if [ -z "$execs" ]; then # no final stats (killed): the last progress line
    execs=$(grep -o '^#[0-9]*' "$log" | tail -n 1 | tr -d '#')
    rate='?'
  fi
  if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    failed=1
    [ "$crashes" -gt 0 ] || crashes=1
    echo "fuzz.sh: $t FAILED (exit $rc); sanitizer report and reproducer:" >&2
    grep -E '^==[0-9]+==|ERROR|SUMMARY|Test unit written to|timeout|out-of-memory' "$log" | head -n 20 >&2 || true
    for f in "$work/$t/artifacts"/*; do
      [ -e "$f" ] && echo "reproduce: $root/$build/tests/fuzz/$t $f" >&2
    done
    echo "full log: $log" >&2
  fi
  rows+=("| $t | $(printf '%.0f' "$secs") | ${execs:-0} | ${rate:-?} | $crashes | ${cov:-?} |")
done

echo
echo "libFuzzer, clang $(clang -dumpversion), ASan + UBSan, $(nproc) cores ($(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n 1)), one target at a time"
echo
echo "| target | seconds | total execs | execs/s | crashes | edges / features |"
echo "|---|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
if [ "$failed" -ne 0 ]; then
  echo "fuzz.sh: failures above; inputs and logs kept in $work" >&2
  exit 1
fi
rm -rf "$work"
