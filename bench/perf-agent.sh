#!/usr/bin/env bash
# Samples the agent of a bench/run that is starting or running, with perf:
# waits for the newest run directory's agent (its pids file), then records
# it on FLEET_CPUS' core (default 1, the simulator's: the server core keeps
# only the sampling interrupts) until the agent exits. Wall-clock sample
# times, so bench/perf-phases.sh can cut the record at the phase boundaries.
# Usage: bench/perf-agent.sh OUT.data [HZ]   (HZ default 4999)
#   e.g. bench/perf-agent.sh /tmp/a.data & KEEP=1 PIN=1 CLOUDS=x509 SCHEMES=ota bench/run 1000 /tmp/out
set -euo pipefail
out=$1
hz=${2:-4999}
[[ "$hz" =~ ^[1-9][0-9]*$ ]] || { echo "perf-agent: HZ must be a positive number" >&2; exit 2; }
command -v perf > /dev/null || { echo "perf-agent: perf is not installed (apt-get install linux-perf)" >&2; exit 1; }
while :; do
  f=$(ls -t /tmp/otakey-bench.*/*/pids 2> /dev/null | head -1 || true)
  [ -n "$f" ] && grep -q '^agent ' "$f" && break
  sleep 0.2
done
pid=$(awk '/^agent / {print $2; exit}' "$f")
echo "perf-agent: agent $pid of $(dirname "$f")" >&2
exec taskset -c "${FLEET_CPUS:-1}" perf record -k CLOCK_REALTIME -F "$hz" -p "$pid" -o "$out" 2> "$out.err"
