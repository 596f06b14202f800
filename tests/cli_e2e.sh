#!/usr/bin/env bash
# The operator's programs as an operator meets them, over the real lab:
# defects found by using them, each checked here so that it cannot return.
#  - otakey device update --all with 0 and 3 devices (it crashed), and
#    --switch-to 9 --all on an empty registry (it never returned);
#  - --json output with a product name holding quotes and backslashes (it
#    was built with printf): valid JSON that round-trips the name;
#  - --help and --version of the three programs, each subcommand's own help;
#  - a campaign's outcomes: a switch to a cloud the agent does not serve
#    (it was reported done) fails each device, with the reason;
#  - otakey-agent: a mistyped database path (it created an empty registry), a
#    wrong broker password (it retried for ever), SIGHUP (it died), log lines
#    with timestamps and one line per claim and commit.
# Usage: tests/cli_e2e.sh BUILD_DIR
set -euo pipefail
umask 077
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "${1:?usage: cli_e2e.sh BUILD_DIR}" && pwd)
work=$(mktemp -d /tmp/otakey-cli.XXXXXX)
. "$root/scripts/fleet.sh"
trap fleet_cleanup EXIT
fails=0
check() { # check DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@"; then echo "ok: $what"; else fails=$((fails + 1)); echo "FAILED: $what"; fi
}
is_rc_with() { [ "$1" = "$2" ] && grep -q -- "$3" <<< "$4"; } # RC WANT PATTERN TEXT
json_valid() { [ "$(sqlite3 :memory: "SELECT json_valid(readfile('$1'))")" = 1 ]; }

# ---- without brokers ----
db0=$work/empty.db
"$bin/otakey" product create --db "$db0" --batch 00000009000000ff --name 'say "hi" \ bye' \
  --pk-out "$work/empty.pk" > /dev/null
rc=0; out=$(timeout -k 5 20 "$bin/otakey" device update --db "$db0" --rotate --all 2>&1) || rc=$?
check "device update --rotate --all with no device: exit 0, 0 requested" \
  is_rc_with "$rc" 0 'update requested for 0 devices, 0 failed' "$out"
rc=0; timeout -k 5 20 "$bin/otakey" device update --db "$db0" --switch-to 9 --all > /dev/null 2>&1 || rc=$?
check "device update --switch-to 9 --all on an empty registry returns" test "$rc" = 0
"$bin/otakey" product list --db "$db0" --json > "$work/products.json"
check "product list --json is valid JSON with quotes and backslashes in a name" json_valid "$work/products.json"
check "... and gives the name back as it was" \
  test "$(sqlite3 :memory: "SELECT json_extract(readfile('$work/products.json'), '\$[0].product')")" = 'say "hi" \ bye'
"$bin/otakey" device list --db "$db0" --json > "$work/devices.json"
check "device list --json on no device: an empty array" test "$(cat "$work/devices.json")" = "[]"
for p in otakey otakey-agent otakey-device; do
  rc=0; out=$("$bin/$p" --help 2>&1) || rc=$?
  check "$p --help: exit 0 and a usage" is_rc_with "$rc" 0 "^usage: $p" "$out"
  rc=0; out=$("$bin/$p" --version 2>&1) || rc=$?
  check "$p --version" is_rc_with "$rc" 0 "^$p [0-9]*\.[0-9]*\.[0-9]*$" "$out"
done
"$bin/otakey" --help > "$work/help-all.out"
for c in "keygen" "product create" "device revoke" "campaign start" "audit verify"; do
  # shellcheck disable=SC2086
  "$bin/otakey" $c --help > "$work/help-one.out" 2>&1 || true
  check "otakey $c --help explains that command" is_rc_with 0 0 "^usage: otakey $c" "$(cat "$work/help-one.out")"
done

# ---- the agent over the lab ----
fleet_setup
sed -e "s|^database = .*|database = $work/misspelt.db|" "$work/agent.ini" > "$work/bad-db.ini"
rc=0; timeout -k 5 20 "$bin/otakey-agent" -c "$work/bad-db.ini" 2> "$work/bad-db.log" || rc=$?
check "otakey-agent with a mistyped database path: exit 1, says so" \
  is_rc_with "$rc" 1 'no registry at' "$(cat "$work/bad-db.log")"
check "... and creates nothing" test ! -e "$work/misspelt.db"
sed -e "s|^password = .*|password = wrong|" "$work/agent.ini" > "$work/bad-pw.ini"
rc=0; timeout -k 5 30 "$bin/otakey-agent" -c "$work/bad-pw.ini" 2> "$work/bad-pw.log" || rc=$?
check "otakey-agent with a wrong broker password: exit 1, says the broker refused it" \
  is_rc_with "$rc" 1 'refused the agent' "$(cat "$work/bad-pw.log")"
start_agent
for i in 1 2 3; do start_device "$(device_id "$i")"; done
t0=$(date +%s.%N)
wait_all "claim" '"state":"ready","version":1,' 3
kill -HUP "$agent_pid"
# (until the agent has handled the signal, or died of it)
wait_for 30 bash -c "grep -q 'SIGHUP: reloaded' '$work/agent.log' || ! kill -0 $agent_pid 2>/dev/null" || true
check "the agent survives SIGHUP" kill -0 "$agent_pid"
check "... and says what it reloaded" grep -q 'SIGHUP: reloaded' "$work/agent.log"
out=$("$bin/otakey" device update --db "$work/registry.db" --rotate --all 2>&1) || true
check "device update --rotate --all with 3 devices: 3 requested" grep -q "update requested for 3 devices, 0 failed" <<< "$out"
wait_all "rotation requested by device update --all" '"state":"ready","version":2,' 3
check "log lines carry a UTC timestamp to the millisecond" \
  grep -Eq '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z otakey-agent: info: ' "$work/agent.log"
check "one info line per claim answered" test "$(grep -c 'claim answered with key set v1' "$work/agent.log")" -ge 3
check "one info line per commit" test "$(grep -c 'v2 committed' "$work/agent.log")" -ge 3
"$bin/otakey" device list --db "$work/registry.db" --json > "$work/devices.json"
check "device list --json: valid, three devices on v2" \
  test "$(sqlite3 :memory: "SELECT count(*) FROM json_each(readfile('$work/devices.json')) WHERE json_extract(value, '\$.version') = 2")" = 3
# A switch to a cloud the agent does not serve: every device fails, with the reason.
cid=$("$bin/otakey" campaign start --db "$work/registry.db" --switch-to 9 --all --json |
  sed -E 's/.*"campaign":([0-9]+).*/\1/')
deadline=$((SECONDS + 60)) # the engine counts outcomes about once a second
while :; do
  "$bin/otakey" campaign status --db "$work/registry.db" "$cid" > "$work/c9.txt" 2>&1 || true
  grep -q ": done," "$work/c9.txt" && break
  [ $SECONDS -lt $deadline ] || break
  sleep 0.1
done
check "a switch to an unconfigured cloud: 0 done, 3 failed" grep -q "0 done, 3 failed" "$work/c9.txt"
check "... each failure with its reason" \
  test "$(grep -c 'failed .*: the target cloud is not configured on the agent' "$work/c9.txt")" = 3
"$bin/otakey" campaign status --db "$work/registry.db" "$cid" --json > "$work/c9.json"
check "... and in JSON" \
  test "$(sqlite3 :memory: "SELECT json_array_length(readfile('$work/c9.json'), '\$.failures')")" = 3
"$bin/otakey" audit list --db "$work/registry.db" --json > "$work/audit.json"
check "audit list --json is valid JSON" json_valid "$work/audit.json"
"$bin/otakey" campaign status --db "$work/registry.db" --json > "$work/campaigns.json"
check "campaign status --json is valid JSON" json_valid "$work/campaigns.json"

echo
if [ "$fails" -ne 0 ]; then echo "cli: $fails checks failed"; exit 1; fi
echo "cli: every check passed"
