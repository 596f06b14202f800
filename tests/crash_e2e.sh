#!/usr/bin/env bash
# Crashes during a campaign, end to end: a fleet (otakey-fleet, real brokers,
# real agent daemon over SQLite) claims, then a rotation campaign of every
# device runs while the agent is killed with SIGKILL K times at seeded
# random moments and restarted each time, and the agent broker is stopped
# and started again once (every device connection drops: the simulated
# devices reconnect, subscribe again and resume). At the end: every device
# committed the new version, as the registry says; each (device, version)
# was issued once in the audit log; the cloud holds exactly one client per
# device, named after its committed set, and that set logs in; the audit
# log verifies. Prints each crash point: seconds into the campaign and how
# many devices had committed then.
# Usage: tests/crash_e2e.sh BUILD_DIR [--long] [--seed N]
#   short: 100 devices, 3 kills; --long: 1,000 devices, 20 kills.
#   CRASH_N=n overrides the short form's fleet size; KEEP=1 keeps the scratch dir.
set -euo pipefail
umask 077 # keys, PK, configs with passwords, registries: the owner's alone
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "${1:?usage: crash_e2e.sh BUILD_DIR [--long] [--seed N]}" && pwd)
shift
n=${CRASH_N:-100}; kills=3; rate=10; timeout=300; seed=$(( $(date +%s) % 1000000 ))
while [ $# -gt 0 ]; do
  case "$1" in
    --long) n=1000; kills=20; rate=35; timeout=1800 ;;
    --seed) seed=${2:?--seed needs a value}; shift ;;
    *) echo "crash_e2e.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
  shift
done
[[ "$seed" =~ ^[0-9]+$ ]] || { echo "crash_e2e.sh: --seed must be a number" >&2; exit 2; }
. "$root/tests/fleet_lab.sh"
w=$(mktemp -d /tmp/otakey-crash.XXXXXX)
fleet_pid=
trap '[ -n "$fleet_pid" ] && kill "$fleet_pid" 2>/dev/null; lab_teardown "$w"' EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

now() { date +%s.%N; }
# committed: devices that committed the rotation so far (the simulator's
# progress file: PHASE DONE N SECONDS).
committed() {
  local ph d
  read -r ph d _ < "$w/progress" 2>/dev/null || { echo 0; return; }
  [ "$ph" = rotate ] && echo "$d" || echo 0
}

echo "== $n devices, rotation at $rate devices/s, $kills agent kills + 1 broker restart, seed $seed"
lab_setup "$w" 1000
agent_start "$w"
fleet "$w" "$n" --retry-ms 500 --timeout "$timeout" --progress "$w/progress" \
  --rotate-cmd "$(rotate_cmd "$w" "$rate") && date +%s.%N > $w/campaign.t0" \
  > "$w/fleet.out" 2>&1 &
fleet_pid=$!

# The campaign starts once every device has claimed.
while [ ! -f "$w/campaign.t0" ]; do
  kill -0 "$fleet_pid" 2>/dev/null || break
  sleep 0.05
done
[ -f "$w/campaign.t0" ] || { cat "$w/fleet.out"; echo "0 passed, 1 failed (the claim did not finish)"; exit 1; }
t0=$(cat "$w/campaign.t0")
RANDOM=$seed
broker_at=$(( (kills + 1) / 2 ))
for k in $(seq "$kills"); do
  # 0.3 .. 1.5 s after the previous event: within the campaign.
  sleep "$(printf '%d.%03d' $(( (300 + RANDOM % 1200) / 1000 )) $(( (300 + RANDOM % 1200) % 1000 )))"
  kill -9 "$agent_pid"; wait "$agent_pid" 2>/dev/null || true
  printf 'crash %d: agent SIGKILL at %.2f s into the campaign, %d of %d devices committed\n' \
    "$k" "$(echo "$(now) - $t0" | bc)" "$(committed)" "$n"
  agent_start "$w"
  if [ "$k" -eq "$broker_at" ]; then
    sleep 0.$(( 100 + RANDOM % 800 ))
    printf 'broker: agent broker restarted at %.2f s into the campaign, %d of %d devices committed\n' \
      "$(echo "$(now) - $t0" | bc)" "$(committed)" "$n"
    broker_restart "$w"
  fi
done
rc=0; wait "$fleet_pid" || rc=$?; fleet_pid=
grep -E '^\| ota-key|^faults:|^check:' "$w/fleet.out" | sed 's/^/  /'
why=
[ "$rc" -eq 0 ] || why="otakey-fleet exit $rc"
[ -n "$why" ] || check_registry "$w" "$n" 2 1 || why="devices and registry"
[ -n "$why" ] || check_audit "$w" "$n" 2 || why="audit log"
[ -n "$why" ] || check_clouds "$w" "$n" 1 || why="cloud clients"
# The campaign itself, as the registry keeps it, ended with every device done
# (the engine counts outcomes about once a second once all are started).
campaign_done() {
  local deadline=$((SECONDS + 60))
  while [ $SECONDS -lt $deadline ]; do
    "$bin/otakey" campaign status --db "$w/registry.db" 1 --json |
      grep -q "\"state\":\"done\",\"total\":$n,\"started\":$n,\"done\":$n,\"failed\":0" && return 0
    sleep 0.1
  done
  return 1
}
[ -n "$why" ] || campaign_done || why="campaign status"
if [ -z "$why" ]; then
  echo "crash run (seed $seed): passed: $n devices READY on v2 as registered, one issue per device and version, one cloud client each, audit verifies"
  echo "1 passed, 0 failed"
else
  echo "crash run (seed $seed): FAILED ($why); see $w (KEEP=1 keeps it)"
  tail -n 5 "$w/fleet.out" "$w/agent.log" | sed 's/^/  /'
  echo "0 passed, 1 failed"
  exit 1
fi
