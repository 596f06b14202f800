#!/usr/bin/env bash
# The operator's whole flow through the HTTP API alone (docs/api.md), over
# real brokers, real TLS and a real registry: create a product, watch the
# claims arrive as events, a rotation campaign with an error threshold that
# pauses itself on injected failures (devices revoked under it) and is
# resumed, a cloud switch, a switch to a misconfigured cloud whose canary
# fails, a revocation, the audit log verified, and the server checked
# against docs/openapi.json. With OTK_PG_URL set (tests/with_pg.sh) the
# registry is PostgreSQL and two agents serve it: the calls alternate
# between them and the events are read from the other one.
# Usage: tests/api_e2e.sh BUILD_DIR
set -euo pipefail
umask 077
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "${1:?usage: api_e2e.sh BUILD_DIR}" && pwd)
work=$(mktemp -d /tmp/otakey-api.XXXXXX)
[ -n "${OTK_PG_URL:-}" ] && FLEET_DB=$OTK_PG_URL
. "$root/scripts/fleet.sh"
trap fleet_cleanup EXIT
fails=0; passes=0
check() { # check DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@"; then passes=$((passes + 1)); echo "ok: $what"; else fails=$((fails + 1)); echo "FAILED: $what"; fi
}
# jget JSON EXPR: one value out of a JSON document (python3's json, no jq needed).
jget() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"; }
# until_json SECONDS PATH EXPR: polls GET PATH until EXPR (python, d = the body) holds.
until_json() {
  local deadline=$((SECONDS + $1)) body
  while :; do
    body=$(api GET "$2")
    if python3 -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if eval(sys.argv[2]) else 1)' \
        "$body" "$3" 2>/dev/null; then return 0; fi
    if [ $SECONDS -ge $deadline ]; then echo "  (last answer: $body)" >&2; return 1; fi
    sleep 0.2
  done
}

fleet_setup
# Cloud 3 is misconfigured on purpose: its clients are created on cloud B's
# broker while devices are sent to cloud A's, which refuses them.
printf '\n[cloud.3]\nhost = 127.0.0.1\nport = %s\nadmin_host = 127.0.0.1\nadmin_port = %s\nadmin_cafile = %s\nadmin_user = %s\nadmin_password = %s\n' \
  "$LAB_CLOUD_A_PORT" "$LAB_CLOUD_B_PORT" "$LAB_CA" "$LAB_CLOUD_ADMIN" "$LAB_CLOUD_PASSWORD" >> "$work/agent.ini"
fleet_api
sed -i '/^\[agent\]/a log_format = json' "$work/agent.ini"
# Offers are repeated after 1 s (the sleeper below is offered nothing more).
sed -i '/^\[agent\]/a notify_resend_ms = 1000' "$work/agent.ini"
urls=("$API_URL")
# Bad [api] settings stop the agent at once (exit 2), saying why.
cp "$LAB_DIR/server.key" "$work/open.key"; chmod 644 "$work/open.key"
sed "s|^keyfile = .*|keyfile = $work/open.key|" "$work/agent.ini" > "$work/bad-key.ini"
sed "s|^listen = .*|listen = 0.0.0.0:1\ntls = 0|" "$work/agent.ini" > "$work/bad-tls.ini"
set +e
"$bin/otakey-agent" -c "$work/bad-key.ini" > "$work/bad-key.log" 2>&1; rc_key=$?
"$bin/otakey-agent" -c "$work/bad-tls.ini" > "$work/bad-tls.log" 2>&1; rc_tls=$?
set -e
check "an API key file others may read: exit 2 (chmod 600)" \
  bash -c "[ $rc_key = 2 ] && grep -q 'chmod 600' '$work/bad-key.log'"
check "tls = 0 on a non-loopback address: exit 2" \
  bash -c "[ $rc_tls = 2 ] && grep -q 'loopback' '$work/bad-tls.log'"
start_agent
if [ -n "${OTK_PG_URL:-}" ]; then
  port2=$(free_port api2)
  sed -e "s/^listen = .*/listen = 127.0.0.1:$port2/" -e '/^\[agent\]/a client_id = otakey-agent-2' \
    "$work/agent.ini" > "$work/agent2.ini"
  "$bin/otakey-agent" -c "$work/agent2.ini" 2>> "$work/agent2.log" &
  pids+=($!); agent2_pid=$!
  urls+=("https://127.0.0.1:$port2")
fi
# Every call goes to the next agent in turn (the count is kept in a file:
# calls run in subshells).
echo 0 > "$work/n_call"
api() {
  local n url
  n=$(cat "$work/n_call"); echo $((n + 1)) > "$work/n_call"
  url=${urls[$((n % ${#urls[@]}))]}
  curl -sS --cacert "$API_CA" -H "Authorization: Bearer $API_TOKEN" -X "$1" \
    ${3:+-H 'Content-Type: application/json' --data "$3"} "$url$2"
}
for u in "${urls[@]}"; do wait_for 60 curl -fsS --cacert "$API_CA" "$u/healthz" >/dev/null 2>&1 || true; done
check "every agent's API answers /healthz over TLS" \
  bash -c "for u in ${urls[*]}; do curl -fsS --cacert '$API_CA' \$u/healthz | grep -q true || exit 1; done"

# The event stream, from the last agent, from the start of the log.
curl -sS -N --cacert "$API_CA" -H "Authorization: Bearer $API_READ_TOKEN" \
  "${urls[-1]}/v1/events?after=0" > "$work/events.txt" 2> "$work/events.err" &
pids+=($!)

# A product made through the API; its PK goes into the devices' firmware.
out=$(api POST /v1/products '{"batch":"00000002000000aa","name":"api \"sensor\" v2"}')
check "POST /v1/products creates a batch and returns its PK once" \
  test "$(jget "$out" 'len(d["pk"])')" = 64
jget "$out" 'd["pk"]' > "$work/batch2.pk"
check "the same batch again is a conflict (409)" \
  test "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$API_CA" -H "Authorization: Bearer $API_TOKEN" \
    -X POST -d '{"batch":"00000002000000aa","name":"x"}' "$API_URL/v1/products")" = 409
out=$(api GET /v1/products)
check "GET /v1/products lists it with its name as given (JSON-escaped)" \
  test "$(jget "$out" '[p["name"] for p in d["products"] if p["batch"]=="00000002000000aa"][0]')" = 'api "sensor" v2'

batch=00000002000000aa
cp "$work/batch2.pk" "$work/batch.pk"
ndev=6
for i in $(seq $ndev); do start_device "$(device_id "$i")"; done
t0=$(date +%s.%N)
check "$ndev devices claim from the API's batch" wait_all claim '"state":"ready","version":1' $ndev
check "the claims arrive as events (claim_issued and commit, one per device)" \
  wait_for 30 bash -c "[ \$(grep -c '^event: commit' '$work/events.txt') -ge $ndev ] && \
    [ \$(grep -c '^event: claim_issued' '$work/events.txt') -ge $ndev ]"
out=$(api GET "/v1/devices?state=active&batch=$batch&limit=4")
check "devices filtered by state and batch, a page of 4 with a next cursor" \
  test "$(jget "$out" 'len(d["devices"]), d["next"] is not None')" = "(4, True)"
next=$(jget "$out" 'd["next"]')
out=$(api GET "/v1/devices?state=active&batch=$batch&limit=4&after=$next")
check "the next page holds the other 2" test "$(jget "$out" 'len(d["devices"]), d["next"]')" = "(2, None)"

# A rotation with an error threshold: two devices are revoked under it
# (injected failures) before their turn comes (one device a second, in the
# order listed); it pauses itself, then resumes and finishes. The operator
# pauses it first, so that the two revoked are surely ones it has not
# started, however slow the machine.
sel=ids:$(for i in $(seq $ndev); do printf '%s,' "$(device_id "$i")"; done | sed 's/,$//')
out=$(api POST /v1/campaigns '{"kind":"rotate","selector":"'"$sel"'","rate":1,"max_failures":2}')
c1=$(jget "$out" 'd["id"]')
check "POST /v1/campaigns starts a rotation of $ndev devices (201)" test "$(jget "$out" 'd["total"]')" = $ndev
out=$(api POST "/v1/campaigns/$c1/pause")
check "pause (200)" test "$(jget "$out" 'd["state"]')" = paused
k=$(jget "$out" 'd["started"]')
check "the operator's pause came before the fifth device ($k started)" test "$k" -le 4
for i in $((k + 1)) $((k + 2)); do api POST "/v1/devices/$(device_id $i)/revoke" > /dev/null; done
live=()  # the 4 devices left active, in order
for i in $(seq $ndev); do [ $i = $((k + 1)) ] || [ $i = $((k + 2)) ] || live+=("$(device_id $i)"); done
check "resume (200)" test "$(jget "$(api POST "/v1/campaigns/$c1/resume")" 'd["state"]')" = running
check "the campaign pauses itself at 2 failures (error_threshold)" \
  until_json 30 "/v1/campaigns/$c1" 'd["state"]=="paused" and d["pause_reason"]=="error_threshold" and d["failed"]==2'
out=$(api GET "/v1/campaigns/$c1")
check "each failure has its reason (REVOKED)" \
  test "$(jget "$out" 'sorted(f["reason"] for f in d["failures"])')" = "['REVOKED', 'REVOKED']"
started_at_pause=$(jget "$out" 'd["started"]')
sleep 2
check "a paused campaign starts no more devices" \
  test "$(jget "$(api GET "/v1/campaigns/$c1")" 'd["started"]')" = "$started_at_pause"
out=$(api POST "/v1/campaigns/$c1/resume")
check "resume (200)" test "$(jget "$out" 'd["state"]')" = running
check "the resumed campaign finishes: 4 done, 2 failed" \
  until_json 40 "/v1/campaigns/$c1" 'd["state"]=="done" and d["done"]==4 and d["failed"]==2'
check "its outcome does not change afterwards" \
  until_json 5 "/v1/campaigns/$c1" 'd["done"]==4 and d["failed"]==2'
check "a finished campaign cannot be resumed (409)" \
  test "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$API_CA" -H "Authorization: Bearer $API_TOKEN" \
    -X POST "$API_URL/v1/campaigns/$c1/resume")" = 409

# A cloud switch of the active devices to cloud 2.
out=$(api POST /v1/campaigns '{"kind":"switch","target_cloud":2,"selector":"all","rate":100}')
c2=$(jget "$out" 'd["id"]')
check "the switch to cloud 2 finishes: 4 done" \
  until_json 40 "/v1/campaigns/$c2" 'd["state"]=="done" and d["done"]==4 and d["failed"]==0'
check "GET /v1/devices?cloud=2 lists the 4 switched devices" \
  until_json 5 "/v1/devices?cloud=2&state=active" 'len(d["devices"])==4'
check "a switch to a cloud the agent does not serve is refused (400)" \
  test "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$API_CA" -H "Authorization: Bearer $API_TOKEN" \
    -X POST -d '{"kind":"switch","target_cloud":9}' "$API_URL/v1/campaigns")" = 400

# A switch to the misconfigured cloud 3 with one canary: the cloud refuses
# the canary's set, the device aborts, the campaign waits for an operator.
out=$(api POST /v1/campaigns '{"kind":"switch","target_cloud":3,"selector":"all","rate":100,"canary":1}')
c3=$(jget "$out" 'd["id"]')
check "a canary refused by its cloud pauses the campaign (canary_failed, reason CLOUD)" \
  until_json 40 "/v1/campaigns/$c3" 'd["state"]=="paused" and d["pause_reason"]=="canary_failed" and [f["reason"] for f in d["failures"]]==["CLOUD"]'
out=$(api POST "/v1/campaigns/$c3/abort")
check "abort (200); the other devices were never started" \
  test "$(jget "$out" 'd["state"], d["started"]')" = "('aborted', 1)"
check "the canary keeps working on its old cloud (it aborted the staged set)" \
  wait_all after-abort '"state":"ready","version":3,"cloud":2' 4

# A revocation: refused from then on, its credentials deleted by the agent.
v=${live[1]}
out=$(api POST "/v1/devices/$v/revoke")
check "POST /v1/devices/ID/revoke: the device reads revoked" test "$(jget "$out" 'd["state"]')" = revoked
check "... and the agent deletes its cloud credentials (want none; it takes such devices 4 times a second)" \
  until_json 30 "/v1/devices/$v" 'd["want"]=="none"'
check "an unknown device is 404, a malformed id 400" \
  test "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$API_CA" -H "Authorization: Bearer $API_TOKEN" \
    "$API_URL/v1/devices/ffffffffffffffffffffffffffffffff")$(curl -s -o /dev/null -w '%{http_code}' \
    --cacert "$API_CA" -H "Authorization: Bearer $API_TOKEN" "$API_URL/v1/devices/nothex")" = 404400

# Roles and tokens.
code() { curl -s -o /dev/null -w '%{http_code}' --cacert "$API_CA" "$@"; }
check "no token: 401; a wrong token: 401" \
  test "$(code "$API_URL/v1/devices")$(code -H 'Authorization: Bearer 00' "$API_URL/v1/devices")" = 401401
check "a read token may read (200) but not start a campaign (403), and nothing is created" \
  test "$(code -H "Authorization: Bearer $API_READ_TOKEN" "$API_URL/v1/campaigns")$(code \
    -H "Authorization: Bearer $API_READ_TOKEN" -X POST -d '{"kind":"rotate"}' "$API_URL/v1/campaigns")$(jget \
    "$(api GET /v1/campaigns)" 'len(d["campaigns"])')" = 2004033
check "a body over 64 KiB is refused (413)" \
  test "$(head -c 70000 /dev/zero | tr '\0' a | code -H "Authorization: Bearer $API_TOKEN" -X POST \
    --data-binary @- "$API_URL/v1/campaigns")" = 413
check "malformed JSON is refused (400)" \
  test "$(code -H "Authorization: Bearer $API_TOKEN" -X POST -d '{"kind":' "$API_URL/v1/campaigns")" = 400

# The audit: verified, and every operator call names its token.
out=$(api GET /v1/audit/verify)
check "GET /v1/audit/verify: the chain verifies" test "$(jget "$out" 'd["ok"]')" = True
out=$(api GET "/v1/audit?kind=revoke")
check "the revocations are audited with actor api:ops" \
  test "$(jget "$out" 'sorted(set(r["actor"] for r in d["rows"])), len(d["rows"])')" = "(['api:ops'], 3)"
out=$(api GET "/v1/audit?kind=campaign&limit=1000")
check "campaign state changes are audit rows (paused, running, done ...)" \
  test "$(jget "$out" '",".join(r["code"] for r in d["rows"] if r["version"]=='"$c1"')')" = "running,paused,running,paused,running,done"
check "the event stream carried the campaign's pause" grep -q '"kind":"campaign","msg_type":null,"device":null,"version":'"$c1"',"code":"paused"' "$work/events.txt"
# first_id_after ID: the first event id the stream sends to a client that saw ID
# (read from a file as it arrives: no fixed time for a TLS handshake to fit in).
first_id_after() {
  local pid
  : > "$work/resume.txt"
  curl -sS -N --cacert "$API_CA" -H "Authorization: Bearer $API_TOKEN" -H "Last-Event-ID: $1" \
    "$API_URL/v1/events" > "$work/resume.txt" 2>/dev/null & pid=$!
  wait_for 30 grep -q '^id:' "$work/resume.txt" || true
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
  grep -m1 '^id:' "$work/resume.txt"
}
check "the event stream resumes after a given id (Last-Event-ID): the next event is id+1" \
  test "$(first_id_after 5)" = "id: 6"

# The CLI as the API's client: --url prints what --db prints.
db=${FLEET_DB:-$work/registry.db}
printf '%s\n' "$API_TOKEN" > "$work/token"
cli() { "$bin/otakey" "$@" --url "$API_URL" --token-file "$work/token" --cafile "$API_CA"; }
same() { # same DESCRIPTION ARGS...: one command by --url and by --db, same output and exit code
  local what=$1 u d ru rd; shift
  set +e
  u=$(cli "$@" 2>&1); ru=$?
  d=$("$bin/otakey" "$@" --db "$db" 2>&1); rd=$?
  set -e
  if [ "$u" = "$d" ] && [ $ru = $rd ]; then return 0; fi
  echo "  --url (exit $ru): $(head -c 300 <<< "$u")" >&2
  echo "  --db  (exit $rd): $(head -c 300 <<< "$d")" >&2
  return 1
}
for c in "product list" "product list --json" "device list" "device list --json" \
         "device show $(device_id 1)" "device show $(device_id 1) --json" "campaign status" \
         "campaign status --json" "campaign status $c1" "campaign status $c3 --json" \
         "audit list" "audit list --json" "audit verify" "audit verify --json"; do
  # shellcheck disable=SC2086
  check "otakey $c: --url prints what --db prints" same "$c" $c
done
check "otakey device show of an unknown device: exit 1 both ways" \
  same "show unknown" device show ffffffffffffffffffffffffffffffff
out=$(cli campaign start --rotate --devices "${live[2]},${live[3]}" --rate 1 --json)
c4=$(jget "$out" 'd["campaign"]')
check "otakey campaign start --url: a campaign of 2 devices" test "$(jget "$out" 'd["devices"]')" = 2
# (2 devices at 1 a second: the campaign may end before the pause arrives,
# which the CLI then reports as such, exit 1)
check "otakey campaign pause/resume --url (or: it had ended already)" \
  bash -c "{ '$bin/otakey' campaign pause $c4 --url '$API_URL' --token-file '$work/token' --cafile '$API_CA' >/dev/null && \
    '$bin/otakey' campaign resume $c4 --url '$API_URL' --token-file '$work/token' --cafile '$API_CA' >/dev/null; } || \
    '$bin/otakey' campaign status $c4 --json --url '$API_URL' --token-file '$work/token' --cafile '$API_CA' | grep -q '\"state\":\"done\"'"
check "... and it finishes (campaign status --watch --url)" \
  bash -c "timeout -k 5 120 '$bin/otakey' campaign status $c4 --watch --json --url '$API_URL' --token-file '$work/token' \
    --cafile '$API_CA' | tail -1 | grep -q '\"state\":\"done\"'"
check "otakey product create --url writes the PK (0600) the API returned" \
  bash -c "'$bin/otakey' product create --batch 00000003000000bb --name three --pk-out '$work/pk3' --url '$API_URL' \
    --token-file '$work/token' --cafile '$API_CA' && [ \$(stat -c %a '$work/pk3') = 600 ] && [ \$(tr -d '\n' < '$work/pk3' | wc -c) = 64 ]"
check "otakey device revoke --url waits for the agent's deletions" \
  bash -c "'$bin/otakey' device revoke ${live[3]} --wait 60 --url '$API_URL' --token-file '$work/token' --cafile '$API_CA' | \
    grep -q 'credentials are deleted'"
check "OTAKEY_URL and OTAKEY_TOKEN stand for --url and --token-file" \
  bash -c "OTAKEY_URL='$API_URL' OTAKEY_TOKEN='$API_TOKEN' OTAKEY_CAFILE='$API_CA' '$bin/otakey' device list | grep -q ${live[2]}"
check "a read token through the CLI: listing works, a campaign is refused (exit 1, FORBIDDEN)" \
  bash -c "OTAKEY_TOKEN='$API_READ_TOKEN' '$bin/otakey' device list --url '$API_URL' --cafile '$API_CA' >/dev/null && \
    ! OTAKEY_TOKEN='$API_READ_TOKEN' '$bin/otakey' campaign start --rotate --all --url '$API_URL' --cafile '$API_CA' 2> '$work/ro.err' && \
    grep -q FORBIDDEN '$work/ro.err'"
check "the CLI checks the API's certificate (no --cafile: the system's CAs refuse it, exit 1)" \
  bash -c "! '$bin/otakey' device list --url '$API_URL' --token-file '$work/token' 2> '$work/tls.err' && grep -qi 'certificate' '$work/tls.err'"
check "--url with --db is a usage error (exit 2)" \
  bash -c "'$bin/otakey' device list --url '$API_URL' --db '$db' --token-file '$work/token'; [ \$? = 2 ]"
check "a wrong token through the CLI: exit 1, UNAUTHORIZED" \
  bash -c "! OTAKEY_TOKEN=nope '$bin/otakey' device list --url '$API_URL' --cafile '$API_CA' 2> '$work/wt.err' && grep -q UNAUTHORIZED '$work/wt.err'"
out=$(api GET "/v1/audit?kind=campaign&limit=1000")
check "the CLI's campaign over the API is audited as the token's (api:ops)" \
  test "$(jget "$out" '[r["actor"] for r in d["rows"] if r["version"]=='"$c4"'][0]')" = api:ops

# SIGHUP takes a new cloud list: cloud 4 (on cloud B's broker) appears, and
# the active devices switch to it.
for f in "$work/agent.ini" ${agent2_pid:+"$work/agent2.ini"}; do
  printf '\n[cloud.4]\nhost = 127.0.0.1\nport = %s\nadmin_cafile = %s\nadmin_user = %s\nadmin_password = %s\n' \
    "$LAB_CLOUD_B_PORT" "$LAB_CA" "$LAB_CLOUD_ADMIN" "$LAB_CLOUD_PASSWORD" >> "$f"
done
kill -HUP "$agent_pid" ${agent2_pid:+"$agent2_pid"}
check "SIGHUP: every agent's API lists cloud 4" \
  wait_for 60 bash -c "n=0; for u in ${urls[*]}; do curl -fsS --cacert '$API_CA' -H 'Authorization: Bearer $API_TOKEN' \
    \$u/v1/clouds | grep -q '\"id\":4,' && n=\$((n + 1)); done; [ \$n = ${#urls[@]} ]"
# (the agent logs the reload just after its API lists the new clouds)
check "... and the agent says so in its log" wait_for 10 grep -q 'reloaded the clouds: 4' "$work/agent.log"
active=$(jget "$(api GET '/v1/devices?state=active')" 'len(d["devices"])')
out=$(api POST /v1/campaigns '{"kind":"switch","target_cloud":4,"selector":"all","rate":100}')
c5=$(jget "$out" 'd["id"]')
check "a switch to the reloaded cloud 4 finishes ($active devices)" \
  until_json 40 "/v1/campaigns/$c5" 'd["state"]=="done" and d["done"]=='"$active"' and d["failed"]==0'
check "... and they are on cloud 4" until_json 5 "/v1/devices?cloud=4&state=active" 'len(d["devices"])=='"$active"

# A device that sleeps: the broker has no subscriber for its update offer
# (PUBACK "no matching subscribers"), so the agent offers it nothing more
# for notify_asleep_ms (10 min) though offers are repeated every second here;
# its poll when it wakes gets the update.
metric() { local n=0 u; for u in "${urls[@]}"; do
  n=$((n + $(curl -sS --cacert "$API_CA" -H "Authorization: Bearer $API_READ_TOKEN" "$u/metrics" |
    sed -n "s/^$1 //p"))); done; echo "$n"; }
sleeper=$(jget "$(api GET '/v1/devices?state=active')" 'd["devices"][0]["id"]')
stop_device "$sleeper"
sleep 5.5 # (an offer within 5 s of a device's last message is not taken for sleep)
asleep0=$(metric otakey_notifies_asleep_total)
out=$(api POST /v1/campaigns '{"kind":"rotate","selector":"ids:'"$sleeper"'","rate":100}')
c6=$(jget "$out" 'd["id"]')
for _ in $(seq 50); do [ "$(metric otakey_notifies_asleep_total)" -gt "$asleep0" ] && break; sleep 0.2; done
asleep1=$(metric otakey_notifies_asleep_total)
check "an offer to a sleeping device finds no subscriber: counted asleep ($asleep0, then $asleep1)" \
  test "$asleep1" -gt "$asleep0"
sleep 3.5
asleep2=$(metric otakey_notifies_asleep_total)
check "... and offered nothing more in 3.5 s (resend 1 s): $asleep0, $asleep1, $asleep2 asleep" \
  test "$asleep2" = "$asleep1" -a "$asleep1" = "$((asleep0 + 1))"
start_device "$sleeper"
check "... its poll when it wakes gets the update: the campaign finishes" \
  until_json 30 "/v1/campaigns/$c6" 'd["state"]=="done" and d["done"]==1'

# A device whose agent link drops (here another client takes its id for a
# second) polls when the link is back: an offer sent meanwhile found no
# subscriber, and the agent holds the next one.
awake=$(jget "$(api GET '/v1/devices?state=active')" '[x["id"] for x in d["devices"] if x["id"]!="'"$sleeper"'"][0]')
up_bytes() { sed -nE 's/.*"agent_bytes_up":([0-9]+).*/\1/p' "$work/dev/$awake.json"; }
up0=$(up_bytes)
timeout -k 5 5 mosquitto_sub -h 127.0.0.1 -p "$LAB_AGENT_PORT" --cafile "$LAB_CA" -i "$awake" \
  -t "otakey/v1/down/$awake" -C 1 -W 1 > /dev/null 2>&1 || true
for _ in $(seq 50); do [ "$(up_bytes)" -gt "$up0" ] && break; sleep 0.2; done
check "a device whose agent link dropped polls when it is back ($up0, then $(up_bytes) bytes up)" \
  test "$(up_bytes)" -gt "$up0"

# (with two agents, the commits are shared between their logs)
check "log_format = json: every line of the agents' logs is a JSON object, one per commit at info" \
  python3 -c 'import json,sys
rows=[json.loads(l) for f in sys.argv[1:] for l in open(f) if l.strip()]
assert all({"ts","level","msg","program"} <= set(r) for r in rows)
assert sum(1 for r in rows if r["level"]=="info" and r["msg"].endswith("committed")) >= 6' \
  "$work/agent.log" ${agent2_pid:+"$work/agent2.log"}

# Metrics, and the server against its OpenAPI document.
out=$(curl -sS --cacert "$API_CA" -H "Authorization: Bearer $API_READ_TOKEN" "$API_URL/metrics")
printf '%s\n' "$out" > "$work/metrics.txt"
check "/metrics counts claims and commits and the fleet by state" \
  bash -c "grep -q '^otakey_devices{state=\"revoked\"} 4\$' '$work/metrics.txt' && grep -Eq '^otakey_commits_total [1-9]' '$work/metrics.txt'"
if [ -f "$root/tests/api_check.py" ]; then
  check "the server answers as docs/openapi.json says (tests/api_check.py)" \
    python3 "$root/tests/api_check.py" --spec "$root/docs/openapi.json" --url "$API_URL" --cafile "$API_CA" \
      --token "$API_TOKEN" --read-token "$API_READ_TOKEN" --device "$(device_id 1)" --campaign "$c1" --batch "$batch" \
      --mutate --quiet
fi
if [ -n "${OTK_PG_URL:-}" ]; then
  check "both agents answered (PostgreSQL, ${#urls[@]} agents, $(cat "$work/n_call") calls in turn)" \
    test "$(cat "$work/n_call")" -ge 20
fi

echo "api: $passes passed, $fails failed"
if [ "$fails" -ne 0 ]; then tail -20 "$work/agent.log"; exit 1; fi
