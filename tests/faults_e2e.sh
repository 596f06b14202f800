#!/usr/bin/env bash
# Network faults between devices and agent, end to end: for loss and
# duplication of 5 % and of 20 % (each with a random delay of 0..200 ms,
# which reorders), a fleet claims, rotates and switches cloud through the
# simulator's seeded fault layer, over the real brokers and agent daemon.
# Each run passes when every device is READY on the same version and cloud
# as the registry says, logs in to that cloud with its committed set, the
# cloud holds exactly one client per device, every set was issued once
# and the audit log verifies.
# Usage: tests/faults_e2e.sh BUILD_DIR [--long] [--seed N]
#   short: 100 devices per run; --long: 1,000 devices per run.
#   --seed N: seed of the first run (default: from the clock); run i uses N+i.
#   FAULTS_N=n overrides the short form's fleet size; KEEP=1 keeps the scratch dirs.
set -euo pipefail
umask 077 # keys, PK, configs with passwords, registries: the owner's alone
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "${1:?usage: faults_e2e.sh BUILD_DIR [--long] [--seed N]}" && pwd)
shift
n=${FAULTS_N:-100}; timeout=150; seed=$(( $(date +%s) % 1000000 ))
while [ $# -gt 0 ]; do
  case "$1" in
    --long) n=1000; timeout=1800 ;;
    --seed) seed=${2:?--seed needs a value}; shift ;;
    *) echo "faults_e2e.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
  shift
done
[[ "$seed" =~ ^[0-9]+$ ]] || { echo "faults_e2e.sh: --seed must be a number" >&2; exit 2; }
. "$root/tests/fleet_lab.sh"
base=$(mktemp -d /tmp/otakey-faults.XXXXXX)
w=
trap '[ -n "$w" ] && lab_teardown "$w"; [ -n "${KEEP:-}" ] || rm -rf "$base"' EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

passes=0; fails=0; i=0
for p in 0.05 0.20; do
  i=$((i + 1)); s=$((seed + i)); w=$base/run$i
  echo "== run $i: $n devices, loss $p, duplication $p, delay 0..200 ms, seed $s"
  lab_setup "$w" 1000
  agent_start "$w"
  rc=0
  fleet "$w" "$n" --loss "$p" --dup "$p" --delay-ms 200 --seed "$s" --retry-ms 500 \
    --timeout "$timeout" --rotate-cmd "$(rotate_cmd "$w")" --switch-cmd "$(switch_cmd "$w" 2)" \
    > "$w/fleet.out" 2>&1 || rc=$?
  grep -E '^\| ota-key|^faults:|^check:' "$w/fleet.out" | sed 's/^/  /'
  why=
  [ "$rc" -eq 0 ] || why="otakey-fleet exit $rc"
  [ -n "$why" ] || check_registry "$w" "$n" 3 2 || why="devices and registry"
  [ -n "$why" ] || check_audit "$w" "$n" 3 || why="audit log"
  [ -n "$why" ] || check_clouds "$w" "$n" 2 || why="cloud clients"
  if [ -z "$why" ]; then
    passes=$((passes + 1))
    echo "run $i (loss $p, dup $p, seed $s): passed: $n devices READY on v3 cloud 2 as registered, $n cloud logins, one client each, audit verifies"
  else
    fails=$((fails + 1))
    echo "run $i (loss $p, dup $p, seed $s): FAILED ($why); see $w (KEEP=1 keeps it)"
    tail -n 5 "$w/fleet.out" "$w/agent.log" 2>/dev/null | sed 's/^/  /'
  fi
  lab_teardown "$w"; w=
done
echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
