#!/usr/bin/env bash
# End to end over real brokers, agent daemon and device processes:
#  - two devices started with the same id: the second claim is refused and
#    appears in the audit log as a clone (ALREADY_CLAIMED);
#  - the agent is killed with SIGKILL in the middle of a rotation of every
#    device and restarted: every device ends on one consistent version;
#  - a revoked device is refused by the agent;
#  - editing a row of the audit log by hand makes 'otakey audit verify' fail.
# The agent reaches its broker through the broker's Unix socket here
# (broker_socket); the other end-to-end tests use TLS on loopback.
# Usage: tests/e2e_agent.sh BUILD_DIR
set -euo pipefail
umask 077 # keys, PK, configs with passwords, registries: the owner's alone
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "${1:?usage: e2e_agent.sh BUILD_DIR}" && pwd)
work=$(mktemp -d /tmp/otakey-e2e.XXXXXX)
. "$root/scripts/fleet.sh"
trap fleet_cleanup EXIT
fails=0; passes=0
check() { # check DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@"; then passes=$((passes + 1)); echo "ok: $what"; else fails=$((fails + 1)); echo "FAILED: $what"; fi
}

n=6
POLL_MS=500 # revocation is seen at the next poll
FLEET_LINK=unix
fleet_setup
start_agent
t0=$(date +%s.%N)
for i in $(seq 1 $n); do start_device "$(device_id "$i")"; done
check "all $n devices claim" wait_all claim '"state":"ready","version":1' $n
check "the agent is connected through the broker's Unix socket" \
  grep -q "connected to unix:$LAB_SERVER_SOCKET," "$work/agent.log"

# A device restarted keeps its key set (its key partition is its only state).
# (its old status file goes first: what the new process writes is read; a
# device that lost its set would claim again, be refused, and never be ready)
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
rm -f "$work/dev/$(device_id $n).json"
start_device "$(device_id $n)"
check "a restarted device resumes on its key set without claiming again" \
  wait_for 30 grep -q '"state":"ready","version":1,"cloud":1' "$work/dev/$(device_id $n).json"
check "the registry lists the product with its devices" \
  bash -c "'$bin/otakey' product list --db '$work/registry.db' | grep -q 'demo-sensor  *$n\$'"

# Bad configuration and bad usage are refused with exit code 2 and a message naming them.
printf '[agent]\ndatabase = x\nbogus = 1\n' > "$work/bad.ini"
set +e; "$bin/otakey-agent" -c "$work/bad.ini" 2> "$work/bad.err"; rc=$?; set -e
check "a bad agent config exits 2 naming the key" bash -c "test $rc -eq 2 && grep -q 'bogus' '$work/bad.err'"
# A Unix socket takes no TCP keys, its path is absolute; a socket nobody
# listens on, or a wrong password on it, stops the agent (exit 1).
sed 's/^broker_socket = .*/&\nbroker_port = 8883/' "$work/agent.ini" > "$work/bad.ini"
set +e; "$bin/otakey-agent" -c "$work/bad.ini" 2> "$work/bad.err"; rc=$?; set -e
check "broker_socket with broker_port exits 2 naming both" \
  bash -c "test $rc -eq 2 && grep -q 'broker_socket takes no broker_host, broker_port' '$work/bad.err'"
sed 's|^broker_socket = .*|broker_socket = lab/servers.sock|' "$work/agent.ini" > "$work/bad.ini"
set +e; "$bin/otakey-agent" -c "$work/bad.ini" 2> "$work/bad.err"; rc=$?; set -e
check "a relative broker_socket exits 2" \
  bash -c "test $rc -eq 2 && grep -q 'broker_socket: must be an absolute path' '$work/bad.err'"
sed "s|^broker_socket = .*|broker_socket = $work/none.sock|" "$work/agent.ini" > "$work/bad.ini"
set +e; timeout 30 "$bin/otakey-agent" -c "$work/bad.ini" 2> "$work/bad.err"; rc=$?; set -e
check "a socket nobody listens on exits 1 naming it" \
  bash -c "test $rc -eq 1 && grep -q 'cannot connect to broker unix:$work/none.sock' '$work/bad.err'"
sed 's/^password = .*/password = wrong/' "$work/agent.ini" > "$work/bad.ini"
set +e; timeout 30 "$bin/otakey-agent" -c "$work/bad.ini" 2> "$work/bad.err"; rc=$?; set -e
check "a wrong password on the socket exits 1 (refused)" \
  bash -c "test $rc -eq 1 && grep -q 'refused the agent' '$work/bad.err'"
set +e; "$bin/otakey" device show --db "$work/registry.db" nothex 2> "$work/bad.err"; rc=$?; set -e
check "a bad CLI argument exits 2 naming it" bash -c "test $rc -eq 2 && grep -q 'ID' '$work/bad.err'"

set +e; "$bin/otakey" device list --db "$work/no-such.db" 2> "$work/bad.err"; rc=$?; set -e
check "a missing registry is an error, not a new empty one" \
  bash -c "test $rc -eq 1 && grep -q 'no registry' '$work/bad.err' && test ! -e '$work/no-such.db'"

# A clone: same id as device 1, its own (empty) key partition.
start_device "$(device_id 1)" clone
check "the clone's claim is refused as ALREADY_CLAIMED" \
  wait_for 30 grep -q '"last_remote":"ALREADY_CLAIMED"' "$work/dev/clone.json"
check "the clone is not provisioned" grep -q '"state":"claiming"' "$work/dev/clone.json"
check "the refusal is in the audit log" \
  bash -c "'$bin/otakey' audit list --db '$work/registry.db' | grep -q 'claim-refused.*$(device_id 1).*ALREADY_CLAIMED'"
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true; rm -f "$work/dev/clone.json"

# A rotation campaign over every device (3 a second); the agent dies mid-way
# (SIGKILL) and comes back.
"$bin/otakey" campaign start --db "$work/registry.db" --rotate --all --rate 3 >/dev/null
sleep 1
kill -9 "$agent_pid"
sleep 1
start_agent
check "after SIGKILL and restart every device is on version 2" \
  wait_all rotation '"state":"ready","version":2,"cloud":1' $n
check "device and agent agree on every version" bash -c \
  "'$bin/otakey' device list --db '$work/registry.db' --json | grep -o '\"version\":[0-9]*' | sort | uniq -c | grep -qx ' *$n \"version\":2'"
check "no update is left pending" bash -c \
  "! '$bin/otakey' device list --db '$work/registry.db' --json | grep -q '\"pending_version\":[1-9]'"
# The engine counts outcomes about once a second once every device started.
check "the campaign finished with every device done" wait_for 60 bash -c \
  "'$bin/otakey' campaign status --db '$work/registry.db' 1 --json | grep -q '\"state\":\"done\",\"total\":$n,\"started\":$n,\"done\":$n,\"failed\":0'"

# A campaign aborted at once: the devices it had not started keep their keys.
"$bin/otakey" campaign start --db "$work/registry.db" --rotate --devices "$(device_id 4),$(device_id 5),$(device_id 6)" --rate 1 >/dev/null
"$bin/otakey" campaign abort --db "$work/registry.db" 2 >/dev/null
sleep 2
check "an aborted campaign stops" bash -c \
  "'$bin/otakey' campaign status --db '$work/registry.db' 2 --json | grep -q '\"state\":\"aborted\"'"
# (a device that polled between start and abort may have taken the one
# slot the rate gave: which devices started is the campaign's to say)
started=$("$bin/otakey" campaign status --db "$work/registry.db" 2 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["started"])')
kept=$(cat "$work/dev/$(device_id 4).json" "$work/dev/$(device_id 5).json" "$work/dev/$(device_id 6).json" | grep -c '"version":2' || true)
check "devices it had not started keep their version ($started of 3 started, $kept on version 2)" \
  test "$started" -lt 3 -a "$kept" -ge $((3 - started))
set +e; "$bin/otakey" campaign resume --db "$work/registry.db" 2 >/dev/null; rc=$?; set -e
check "an aborted campaign cannot be resumed (exit 1)" test "$rc" -eq 1
set +e; "$bin/otakey" campaign start --db "$work/registry.db" --rotate --batch zz >/dev/null 2>&1; rc=$?; set -e
check "a bad selector is refused" test "$rc" -eq 1

# Revocation: the agent refuses the device from then on.
"$bin/otakey" device revoke --config "$work/agent.ini" "$(device_id 2)" >/dev/null
check "a revoked device is refused by the agent (at its next poll)" \
  wait_for 30 grep -q '"last_remote":"REVOKED"' "$work/dev/$(device_id 2).json"

# The agent broker restarted: the agent connects to its new socket again.
ups() { grep -c 'connected to unix:' "$work/agent.log" || true; }
up0=$(ups)
bp=$(cat "$LAB_DIR/agent-broker.pid"); kill "$bp"
while kill -0 "$bp" 2>/dev/null; do sleep 0.05; done
sleep 2
mosquitto -c "$LAB_DIR/agent-broker.conf" >> "$LAB_DIR/agent-broker.log" 2>&1 &
echo $! > "$LAB_DIR/agent-broker.pid"
pids+=($!)
check "after a restart of its broker the agent is connected through the new socket again" \
  wait_for 30 bash -c "[ \$(grep -c 'connected to unix:' '$work/agent.log') -gt $up0 ]"

# The audit log: intact, then edited by hand, then caught.
check "audit log verifies" "$bin/otakey" audit verify --db "$work/registry.db"
kill -TERM "$agent_pid"; set +e; wait "$agent_pid"; rc=$?; set -e
check "the agent shuts down cleanly on SIGTERM (exit 0)" test "$rc" -eq 0
check "and says so in its log" grep -q 'shutting down' "$work/agent.log"
sqlite3 "$work/registry.db" "DROP TRIGGER audit_no_update; UPDATE audit SET code = code + 1 WHERE seq = 3;"
set +e; "$bin/otakey" audit verify --db "$work/registry.db" >/dev/null; rc=$?; set -e
check "an edited audit row makes 'audit verify' fail with exit code 3" test "$rc" -eq 3

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
