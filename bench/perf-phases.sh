#!/usr/bin/env bash
# The agent's CPU per device in each phase of a bench/run, by library and by
# function, from a record of bench/perf-agent.sh: samples are cut at the
# phase boundaries bench/snap.sh wrote (the run's snaps file, kept with
# KEEP=1) and counted as 1/HZ s each.
# Usage: bench/perf-phases.sh PERF.data SNAPS DEVICES HZ [TOP]
#   SNAPS: /tmp/otakey-bench.*/nDEVICES/snaps; TOP functions per phase (default 20)
set -euo pipefail
[ $# -ge 4 ] || { echo "usage: bench/perf-phases.sh PERF.data SNAPS DEVICES HZ [TOP]" >&2; exit 2; }
data=$1 snaps=$2 n=$3 hz=$4 top=${5:-20}
[ -r "$data" ] && [ -r "$snaps" ] || { echo "perf-phases: cannot read $data or $snaps" >&2; exit 1; }
[[ "$n" =~ ^[1-9][0-9]*$ && "$hz" =~ ^[1-9][0-9]*$ && "$top" =~ ^[0-9]+$ ]] ||
  { echo "perf-phases: DEVICES, HZ and TOP must be numbers" >&2; exit 2; }
perf script -i "$data" -F time,ip,sym,dso 2> /dev/null | awk -v snaps="$snaps" -v n="$n" -v hz="$hz" -v top="$top" '
BEGIN { while ((getline l < snaps) > 0) { split(l, a, " "); if (a[1] == "T") { k++; tag[k] = a[2]; t[k] = a[3] / 1e6 } } }
{ tm = $1; sub(":", "", tm); tm += 0
  ph = 0; for (i = 1; i < k; i++) if (tm >= t[i] && tm < t[i + 1]) ph = i
  if (!ph) next
  dso = $NF; gsub(/[()]/, "", dso); sub(/.*\//, "", dso)
  sym = $3; for (j = 4; j < NF; j++) sym = sym " " $j
  lib[ph, dso]++; fn[ph, dso ":" sym]++; tot[ph]++ }
END {
  us = 1e6 / hz / n
  for (i = 1; i < k; i++) {
    printf "== %s: %.1f us of agent CPU per device (%d samples)\n", tag[i], tot[i] * us, tot[i]
    cmd = "sort -rn | head -12"
    for (x in lib) { split(x, b, SUBSEP); if (b[1] == i) printf "  %8.1f  %s\n", lib[x] * us, b[2] | cmd }
    close(cmd)
    cmd = "sort -rn | head -" top
    for (x in fn) { split(x, b, SUBSEP); if (b[1] == i) printf "      %8.1f  %s\n", fn[x] * us, b[2] | cmd }
    close(cmd)
  }
}'
