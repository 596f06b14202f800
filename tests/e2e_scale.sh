#!/usr/bin/env bash
# Scale-out end to end: real TLS brokers, one PostgreSQL, two otakey-agent
# processes sharing the device topics through an MQTT 5 shared subscription,
# N otakey-device processes (default 50). Every device claims; a rotation
# campaign starts; one agent is killed with SIGKILL in the middle of it and
# the other finishes. Checked: every device on version 2, each version
# issued once (one claim and one update per device in the audit log and the
# registry), each device asked once, no failure, the audit chain verifies,
# and both agents did part of the work.
# Usage: tests/e2e_scale.sh BUILD_DIR [N]
set -euo pipefail
umask 077 # keys, PK, configs with passwords, registries: the owner's alone
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "${1:?usage: e2e_scale.sh BUILD_DIR [N]}" && pwd)
n=${2:-50}
work=$(mktemp -d /tmp/otakey-scale.XXXXXX)
. "$root/scripts/scale.sh"
trap scale_cleanup EXIT
SCALE_LOG_LEVEL=debug # per-message lines show which agent handled what
fails=0; passes=0
check() { # check DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@"; then passes=$((passes + 1)); echo "ok: $what"; else fails=$((fails + 1)); echo "FAILED: $what"; fi
}

scale_setup
scale_start_agent 1
scale_start_agent 2
# The shared subscription spreads the claims over the agents in its group
# only: both must have subscribed before the first device starts.
for i in 1 2; do
  wait_for 60 grep -q 'subscribed to' "$work/agent-$i.log" ||
    { echo "agent $i did not subscribe to the device topics"; tail -5 "$work/agent-$i.log"; exit 1; }
done
t0=$(date +%s.%N)
scale_devices "$n"
check "all $n devices claim" wait_all claim '"state":"ready","version":1' "$n"
c1=$(grep -c 'claim answered with key set' "$work/agent-1.log" || true)
c2=$(grep -c 'claim answered with key set' "$work/agent-2.log" || true)
echo "claims handled: agent 1 $c1, agent 2 $c2"
check "the shared subscription spread the claims over both agents" test "$c1" -gt 0 -a "$c2" -gt 0

# A rotation campaign lasting a few seconds; agent 1 dies in the middle.
rate=$(( n / 4 > 4 ? n / 4 : 4 ))
"$bin/otakey" campaign start --db "$OTK_PG_URL" --rotate --all --rate "$rate" >/dev/null
deadline=$((SECONDS + 30))
while [ "$(campaign_field 1 started)" -lt $(( n / 3 > 1 ? n / 3 : 1 )) ] && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
started_at_kill=$(campaign_field 1 started)
done_at_kill=$(campaign_field 1 done)
scale_kill_agent 1
echo "agent 1 killed with $started_at_kill of $n devices started, $done_at_kill done"
check "the kill happened mid-campaign" test "$done_at_kill" -lt "$n"
check "every device rotates to version 2 with one agent left" \
  wait_all rotation '"state":"ready","version":2,"cloud":1' "$n"

# (the engine counts outcomes about once a second: polled until it has)
check "the campaign is done: $n done, 0 failed" wait_for 60 bash -c \
  "'$bin/otakey' campaign status --db '$OTK_PG_URL' 1 --json | grep -q '\"state\":\"done\",\"total\":$n,\"started\":$n,\"done\":$n,\"failed\":0'"
check "the registry has every device on version 2, nothing pending" test \
  "$(psql_value 'SELECT count(*) FROM devices WHERE c_version = 2 AND issued = 2 AND p_version IS NULL')" -eq "$n"
check "each device got exactly one claim and one update issued" test \
  "$(psql_value 'SELECT count(*) FROM audit WHERE kind = 1')/$(psql_value 'SELECT count(*) FROM audit WHERE kind = 4')" = "$n/$n"
check "no version was issued twice" test \
  "$(psql_value 'SELECT count(*) FROM (SELECT device, version FROM audit WHERE kind IN (1, 4) GROUP BY 1, 2 HAVING count(*) > 1) x')" -eq 0
check "each device was asked once by the campaign" test \
  "$(psql_value 'SELECT count(*) FROM audit WHERE kind = 11')" -eq "$n"
check "each device committed twice (claim, rotation)" test \
  "$(psql_value 'SELECT count(*) FROM audit WHERE kind = 5')" -eq $((2 * n))
check "no update was aborted" test "$(psql_value 'SELECT count(*) FROM audit WHERE kind = 6')" -eq 0
# A device that resent a message an agent had already handled (its answer was
# slow, or went down with the killed agent) gets a refusal it ignores: a
# resent CLAIM after the commit is ALREADY_CLAIMED, a resent UPDATE_REQ or
# CONFIRM is ROLLBACK or STALE. Nothing else may be refused.
echo "refusals of resent messages: $(psql_value 'SELECT count(*) FROM audit WHERE kind IN (3, 7)')"
check "any refusal is of a resent message (ALREADY_CLAIMED, ROLLBACK, STALE)" test \
  "$(psql_value 'SELECT count(*) FROM audit WHERE (kind = 3 AND code <> -18) OR (kind = 7 AND code NOT IN (-7, -23))')" -eq 0
check "the audit chain verifies" "$bin/otakey" audit verify --db "$OTK_PG_URL"

echo "agent 2 memory: $(grep VmRSS /proc/${agents[2]}/status | tr -s ' ')"
kill -TERM "${agents[2]}"; set +e; wait "${agents[2]}"; rc=$?; set -e
check "the surviving agent shuts down cleanly" test "$rc" -eq 0
u1=$(grep -c ' committed$' "$work/agent-1.log" || true)
u2=$(grep -c ' committed$' "$work/agent-2.log" || true)
echo "confirms handled: agent 1 $u1 (before its death), agent 2 $u2"
echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
