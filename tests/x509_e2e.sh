#!/usr/bin/env bash
# Certificate clouds end to end (docs/protocol.md §11), over real brokers:
# a version 1 fleet and a version 2 certificate fleet side by side on one
# agent (lab "mixed": clouds 1 and 2 take certificates from CAs of their
# own, cloud 3 takes passwords). Claim, rotation, switch from cloud 1 to
# cloud 2; after each commit the retired certificate, taken out of the
# device's flash, is refused by the cloud's TLS to stock mosquitto_pub; a
# revoked device's certificate is refused within seconds; a certificate is good
# on its own cloud and topics only; and no device private key exists
# anywhere but in its device's key store (registry, logs, a capture of
# every protocol message, the clouds' files).
# Usage: tests/x509_e2e.sh BUILD_DIR
set -euo pipefail
umask 077
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "${1:?usage: x509_e2e.sh BUILD_DIR}" && pwd)
work=$(mktemp -d /tmp/otakey-x509.XXXXXX)
FLEET_CLOUDS=mixed
. "$root/scripts/fleet.sh"
trap fleet_cleanup EXIT
fails=0; passes=0
check() { # check DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@"; then passes=$((passes + 1)); echo "ok: $what"; else fails=$((fails + 1)); echo "FAILED: $what"; fi
}

fleet_setup
# Every protocol message both ways, as the agent's broker carries them (hex).
mosquitto_sub -h 127.0.0.1 -p "$LAB_SERVER_PORT" --cafile "$LAB_CA" -u "$LAB_AGENT_USER" \
  -P "$LAB_AGENT_PASSWORD" -i otakey-capture -t 'otakey/v1/up/#' -t 'otakey/v1/down/#' \
  -F '%t %x' > "$work/capture.hex" 2>/dev/null &
pids+=($!)
# The capture must be subscribed before the first device speaks: a marker
# published until the capture shows it.
marker=otakey/v1/down/ffffffffffffffffffffffffffffffff
capture_up() {
  mosquitto_pub -h 127.0.0.1 -p "$LAB_SERVER_PORT" --cafile "$LAB_CA" -u "$LAB_AGENT_USER" \
    -P "$LAB_AGENT_PASSWORD" -i otakey-capture-marker -t "$marker" -m marker 2>/dev/null || true
  grep -q "^$marker " "$work/capture.hex"
}
wait_for 30 capture_up || { echo "the capture of the protocol messages did not start"; exit 1; }
start_agent

v2="1 2 3"; v1="4 5"
for i in $v2; do DEVICE_PROTO=2 start_device "$(device_id "$i")"; done
for i in $v1; do DEVICE_PROTO=1 start_device "$(device_id "$i")"; done
t0=$(date +%s.%N)
check "version 2 devices claim onto certificate cloud 1" \
  wait_all claim-v2 '"state":"ready","version":1,"cloud":1,.*"kind":2' 3
check "version 1 devices claim onto password cloud 3 (claim_cloud_v1)" \
  wait_all claim-v1 '"state":"ready","version":1,"cloud":3,.*"kind":1' 2

# pub_as PREFIX PORT ID [TOPIC]: stock mosquitto_pub logs in with the certificate
# and key PREFIX.crt / PREFIX.key and publishes one message at QoS 1.
# (The login takes the device's client id, the CN: the running device and the
# probe may take the session from each other, so a login is tried 3 times;
# a refusal is a TLS handshake that fails.)
pub_once() {
  local id=$3
  timeout -k 5 10 mosquitto_pub -h 127.0.0.1 -p "$2" --cafile "$LAB_CA" --cert "$1.crt" --key "$1.key" \
    -i "$id-probe" -V mqttv5 -q 1 -t "${4:-devices/$id/probe}" -m probe 2>> "$work/pub.err"
}
pub_as() { pub_once "$@" || { sleep 0.2; pub_once "$@"; } || { sleep 0.2; pub_once "$@"; }; }
refused() { # no CONNACK accepting the login (TLS 1.3 reports a refused certificate late)
  local out id=$3
  out=$(timeout -k 5 10 mosquitto_pub -d -h 127.0.0.1 -p "$2" --cafile "$LAB_CA" --cert "$1.crt" \
    --key "$1.key" -i "$id-probe" -V mqttv5 -q 1 -t "devices/$id/probe" -m probe 2>&1) || true
  echo "$out" >> "$work/pub.err"
  ! grep -q "received CONNACK (0)" <<< "$out"
}
# dump N NAME: device N's active certificate and key, read out of its flash.
dump() {
  "$bin/otakey-flashdump" "$work/dev/$(device_id "$1").flash" --pem "$work/$2" > /dev/null &&
    mv "$work/$2.active.crt" "$work/$2.crt" && mv "$work/$2.active.key" "$work/$2.key"
}
# until_refused PREFIX PORT ID: seconds until a login with PREFIX is refused (60 s at most).
until_refused() {
  local t=$(date +%s.%N) deadline=$((SECONDS + 60))
  while [ $SECONDS -lt $deadline ]; do
    if refused "$@"; then echo "$(date +%s.%N) - $t" | bc; return 0; fi
    sleep 0.1
  done
  echo never; return 1
}
# The CRL is rewritten and the broker reloads it within about 2 s of a commit or
# a revocation on an idle machine (docs/operations.md); the bound below leaves
# room for a loaded one with the sanitizer build, and still fails a refusal
# that waits for anything else (a broker restart, the next reload for another
# reason).
prompt=15
id1=$(device_id 1); id2=$(device_id 2); id3=$(device_id 3)
A=$LAB_CLOUD_A_PORT; B=$LAB_CLOUD_B_PORT

dump 1 d1-v1
check "the device's certificate names it and comes from cloud 1's CA" bash -c \
  "openssl x509 -in '$work/d1-v1.crt' -noout -subject -issuer | tr -d ' ' | grep -q 'subject=CN=$id1' &&
   openssl verify -CAfile '$LAB_CLOUD_A_CA_CERT' '$work/d1-v1.crt' >/dev/null"
check "stock mosquitto_pub logs in to cloud 1 with it" pub_as "$work/d1-v1" "$A" "$id1"
# MQTT 5 answers a publish the ACL denies with "not authorized" (mosquitto_pub
# warns). The broker gives a certificate's login the device's own client id,
# so the running device and this probe take the session from each other: a
# probe that lost it tries again.
acl_says() { # acl_says TOPIC: what a publish there with device 1's certificate is answered
  local i out
  for i in 1 2 3 4 5; do
    out=$(timeout -k 5 10 mosquitto_pub -h 127.0.0.1 -p "$A" --cafile "$LAB_CA" --cert "$work/d1-v1.crt" \
      --key "$work/d1-v1.key" -V mqttv5 -q 1 -t "$1" -m x 2>&1) && { echo "${out:-accepted}"; return; }
    sleep 0.2
  done
  echo "no answer"
}
check "its own topics are allowed" test "$(acl_says "devices/$id1/x")" = accepted
check "but not another device's (ACL devices/%u/#)" bash -c "[[ '$(acl_says "devices/$id2/x")' == *'Not authorized'* ]]"
check "it is refused by cloud 2 (another CA)" refused "$work/d1-v1" "$B" "$id1"
check "a login without a certificate is refused" bash -c \
  "! timeout -k 5 10 mosquitto_pub -h 127.0.0.1 -p $A --cafile '$LAB_CA' -i $id1 -t devices/$id1/x -m x 2>/dev/null"

# The agent broker: a device holding a certificate set talks to the agent
# logged in with it, and an anonymous client cannot take its id.
check "devices with a certificate set use the agent broker's certificate listener" \
  grep -q "as $id1 (p5, c1, k30, u'$id1')" "$LAB_DIR/agent-broker.log"
anon() { # anon ID: an anonymous publish on the devices listener under client id ID
  timeout -k 5 10 mosquitto_pub -h 127.0.0.1 -p "$LAB_AGENT_PORT" --cafile "$LAB_CA" -i "$1" -V mqttv5 \
    -q 1 -t "otakey/v1/up/$1" -m hijack 2>> "$work/pub.err"
}
check "an anonymous client may use a free device id there (control)" anon "$(device_id 99)"
kicks=$(grep -c "Client $id1 already connected" "$LAB_DIR/agent-broker.log" || true)
refused_anon() { ! anon "$1"; }
check "but not the id of a device connected with its certificate" refused_anon "$id1"
sleep 0.5
check "and the device's session is not taken" \
  test "$(grep -c "Client $id1 already connected" "$LAB_DIR/agent-broker.log" || true)" = "$kicks"
check "version 1 devices stay on the anonymous listener" \
  bash -c "! grep -q \"u'$(device_id 4)'\" '$LAB_DIR/agent-broker.log'"

# Rotation of both fleets in one campaign.
"$bin/otakey" campaign start --db "$work/registry.db" --rotate --all --rate 100 > /dev/null
check "rotation: version 2 devices on a new certificate" \
  wait_all rotate-v2 '"state":"ready","version":2,"cloud":1,.*"kind":2' 3
check "rotation: version 1 devices on a new password" \
  wait_all rotate-v1 '"state":"ready","version":2,"cloud":3,.*"kind":1' 2
s=$(until_refused "$work/d1-v1" "$A" "$id1") || true
echo "retired certificate refused after the rotation's commit in $s s"
check "the retired certificate is refused by cloud 1 within $prompt s" bash -c "[ '$s' != never ] && (( \$(echo '$s < $prompt' | bc) ))"
check "the retired certificate is refused by the agent broker too" bash -c \
  "deadline=\$((SECONDS + 60)); while [ \$SECONDS -lt \$deadline ]; do ! timeout -k 5 10 mosquitto_pub -h 127.0.0.1 -p $LAB_AGENT_CERTS_PORT \
     --cafile '$LAB_CA' --cert '$work/d1-v1.crt' --key '$work/d1-v1.key' -V mqttv5 -q 1 \
     -t otakey/v1/up/$id1 -m x 2>/dev/null && exit 0; sleep 0.1; done; exit 1"
dump 1 d1-v2
check "the new one logs in" pub_as "$work/d1-v2" "$A" "$id1"

# Switch to cloud 2 (another CA) of every device: version 1 devices cannot go there.
"$bin/otakey" campaign start --db "$work/registry.db" --switch-to 2 --all --rate 100 > /dev/null
check "switch: version 2 devices on cloud 2 with its CA's certificates" \
  wait_all switch '"state":"ready","version":3,"cloud":2,.*"kind":2' 3
s=$(until_refused "$work/d1-v2" "$A" "$id1") || true
echo "retired certificate refused after the switch's commit in $s s"
check "the certificate of cloud 1 is refused there after the switch, within $prompt s" \
  bash -c "[ '$s' != never ] && (( \$(echo '$s < $prompt' | bc) ))"
dump 1 d1-v3
check "the device's certificate from cloud 2's CA logs in to cloud 2" pub_as "$work/d1-v3" "$B" "$id1"
check "and verifies under cloud 2's CA only" bash -c \
  "openssl verify -CAfile '$LAB_CLOUD_B_CA_CERT' '$work/d1-v3.crt' >/dev/null &&
   ! openssl verify -CAfile '$LAB_CLOUD_A_CA_CERT' '$work/d1-v3.crt' >/dev/null 2>&1"
check "version 1 devices stay on their password cloud" \
  bash -c "[ \$(cat '$work'/dev/*.json | grep -c '\"state\":\"ready\",\"version\":2,\"cloud\":3') -eq 2 ]"
check "the campaign reports them failed, with the reason" bash -c \
  "deadline=\$((SECONDS + 60)); while [ \$SECONDS -lt \$deadline ]; do '$bin/otakey' campaign status --db '$work/registry.db' 2 > '$work/c2.txt';
     grep -q 'done.*3 done, 2 failed' '$work/c2.txt' && grep -qi 'version' '$work/c2.txt' && exit 0; sleep 0.1; done
   cat '$work/c2.txt'; exit 1"

# Revocation: the device's certificate is refused by its cloud promptly.
dump 2 d2
check "device 2's certificate logs in before it is revoked" pub_as "$work/d2" "$B" "$id2"
t=$(date +%s.%N)
"$bin/otakey" device revoke --config "$work/agent.ini" "$id2" --wait 60 > "$work/revoke.out"
s=$(until_refused "$work/d2" "$B" "$id2") || true
s=$(echo "$(date +%s.%N) - $t" | bc)
echo "revoked device's certificate refused $s s after 'otakey device revoke' started"
check "a revoked device's certificate is refused within $prompt s" bash -c "(( \$(echo '$s < $prompt' | bc) ))"
check "the other devices' certificates still log in" bash -c \
  "'$bin/otakey-flashdump' '$work/dev/$id3.flash' --pem '$work/d3' >/dev/null &&
   timeout -k 5 10 mosquitto_pub -h 127.0.0.1 -p $B --cafile '$LAB_CA' --cert '$work/d3.active.crt' \
     --key '$work/d3.active.key' -i p3 -V mqttv5 -q 1 -t devices/$id3/p -m p"
# A session opened before its certificate was revoked ends at the CRL reload
# (the broker checks the CRL at the handshake only; the plugin ends it).
stop_device "$id3"
sleep 0.3
timeout -k 5 30 mosquitto_sub -h 127.0.0.1 -p $B --cafile "$LAB_CA" --cert "$work/d3.active.crt" \
  --key "$work/d3.active.key" -V mqttv5 -t "devices/$id3/#" -d > "$work/live.out" 2>&1 &
live=$!
for i in $(seq 50); do grep -q 'SUBACK' "$work/live.out" && break; sleep 0.1; done
t=$(date +%s.%N)
"$bin/otakey" device revoke --config "$work/agent.ini" "$id3" --wait 10 > /dev/null
for i in $(seq 100); do grep -q "$id3: certificate revoked, disconnected" "$LAB_DIR/cloud-b.log" && break; sleep 0.1; done
s=$(echo "$(date +%s.%N) - $t" | bc)
kill $live 2>/dev/null || true
echo "a live session of a revoked certificate ended $s s after 'otakey device revoke' started"
check "a live session of a revoked certificate is ended within $prompt s" bash -c \
  "grep -q 'SUBACK' '$work/live.out' && grep -q '$id3: certificate revoked, disconnected' '$LAB_DIR/cloud-b.log' &&
   (( \$(echo '$s < $prompt' | bc) ))"
check "a certificate logs in under its own CN only (use_username_as_clientid)" bash -c \
  "grep -q 'as $id1 (p5' '$LAB_DIR/cloud-b.log' && ! grep -q 'as $id1-probe' '$LAB_DIR/cloud-a.log'"
check "the CRL of cloud 1 lists the retired certificates (2 per version 2 device)" bash -c \
  "[ \$(openssl storeutl -noout -text -crls '$LAB_CLOUD_A_CRL' | grep -c 'Serial Number') -eq 6 ]"

# A device that loses power as it commits an update has sent its CONFIRM
# and the agent has committed, answered, and revoked the old set's
# certificate: the device comes back holding that revoked certificate and
# the staged set, and its agent link with the old certificate is refused by
# the agent broker's certificate listener. It must reach the agent all the
# same (it falls back to the anonymous listener) to send its CONFIRM again
# and commit. Cut points: the last 9 flash operations of a rotation,
# counted on a reference device, and one beyond (a device of the campaign
# may make one operation more than the reference, which rotated alone: the
# case sits at its second-to-last); a cut point a device's run does not
# reach is ended after 30 s and started again like the others.
pc=(); for i in $(seq 6 15); do pc+=("$(device_id "$i")"); done
ref=$(device_id 16)
for id in "$ref" "${pc[@]}"; do DEVICE_PROTO=2 start_device "$id"; done
wait_all pc-claim '"state":"ready","version":1,"cloud":1,.*"kind":2' 11 || true
for id in "$ref" "${pc[@]}"; do stop_device "$id"; done
rotate_ids() { "$bin/otakey" campaign start --db "$work/registry.db" --rotate --devices "$(IFS=,; echo "$*")" --rate 1000 > /dev/null; }
DEVICE_PROTO=2 start_device "$ref"
rotate_ids "$ref"
wait_for 60 grep -q '"state":"ready","version":2' "$work/dev/$ref.json" || true
ops=$(sed -nE 's/.*"flash_ops":([0-9]+).*/\1/p' "$work/dev/$ref.json")
stop_device "$ref"
version_of() { "$bin/otakey" device show --db "$work/registry.db" --json "$1" | sed -nE 's/.*"version":([0-9]+),.*/\1/p' | head -1; }
# Whether a cut at a count of flash operations lands between the agent's
# commit and the device's depends on timing (the CONFIRM in flight as the
# power goes) and on the rotation's count of flash operations, which varies
# by one: about one round in three misses the case. A second round, from
# the devices' committed sets, cuts each device at the first flash operation
# for the answer to its CONFIRM (--cut-at-commit: the agent has committed),
# which reaches it; a third is there should the agent's answer be lost.
for round in 1 2 3; do
  declare -A v0=()
  for id in "${pc[@]}"; do v0[$id]=$(version_of "$id"); done
  k=$((ops - 8)); cut_pids=()
  for id in "${pc[@]}"; do
    cut_arg="--cut-at $k"; [ "$round" = 1 ] || cut_arg=--cut-at-commit
    DEVICE_PROTO=2 DEVICE_ARGS="$cut_arg" start_device "$id"
    cut_pids+=("$(cat "$work/dev/$id.pid")"); k=$((k + 1))
  done
  rotate_ids "${pc[@]}"
  cut=0
  for p in "${cut_pids[@]}"; do
    rc=0; wait_for 30 bash -c "! kill -0 $p 2>/dev/null" || kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || rc=$?
    [ "$rc" -eq 3 ] && cut=$((cut + 1))
  done
  # Where the agent committed the rotation the device did not: the device's
  # active certificate, read from its flash, is in the devices' CRL.
  stranded=0
  for id in "${pc[@]}"; do
    [ "$("$bin/otakey-flashdump" "$work/dev/$id.flash" | awk '$1 == "active" { print $2 }')" = "${v0[$id]}" ] || continue
    "$bin/otakey-flashdump" "$work/dev/$id.flash" --pem "$work/pc-$id" > /dev/null 2>&1 || continue
    sn=$(openssl x509 -in "$work/pc-$id.active.crt" -noout -serial | sed 's/serial=//')
    if [ "$(version_of "$id")" = "$((v0[$id] + 1))" ] &&
       wait_for 30 bash -c "openssl storeutl -noout -text -crls '$LAB_DEVICES_CRL' 2>/dev/null | grep -q 'Serial Number: $sn'"; then
      stranded=$((stranded + 1))
    fi
  done
  sleep 2 # the agent broker reloads the CRL (signalled; within a second)
  echo "round $round: power cut $([ "$round" = 1 ] && echo "at the last 9 flash operations of a rotation ($ops) and one beyond" || echo "at the answer to each CONFIRM"): $cut cut, $stranded came back holding a revoked certificate"
  [ "$stranded" -ge 1 ] && break
  # Not reached: the devices commit their sets, then another round.
  for id in "${pc[@]}"; do DEVICE_PROTO=2 start_device "$id"; done
  wait_all pc-round '"state":"ready","version":[2-9],"cloud":1,.*"kind":2' 11 || true
  for id in "${pc[@]}"; do stop_device "$id"; done
done
check "a device cut as it commits comes back holding its revoked certificate (the case is reached)" \
  test "$cut" -ge 1 -a "$stranded" -ge 1
for id in "${pc[@]}"; do DEVICE_PROTO=2 start_device "$id"; done
check "... and every cut device ends on a committed new set all the same (its agent link falls back)" \
  wait_all pc-commit '"state":"ready","version":[2-9],"cloud":1,.*"kind":2' 11
check "... through the anonymous listener, saying why" \
  bash -c "cat $(for id in "${pc[@]}"; do printf "'%s' " "$work/dev/$id.log"; done) | grep -q 'goes to the anonymous listener'"

# A listener that cannot be reached says nothing of a certificate: the agent
# broker away for 5 s (a few reconnection attempts each) sends no
# certificate device to the anonymous listener.
fallbacks() { cat "$work"/dev/*.log | grep -c 'goes to the anonymous listener' || true; }
# Logins with a certificate of the cut devices (ids ...06 to ...0f): the
# broker names a certificate login's user.
cert_logins() { grep -c "u'd0d0d0d0d0d0d0d0d0d0d0d00000000[6-9a-f]'" "$LAB_DIR/agent-broker.log" || true; }
f0=$(fallbacks); l0=$(cert_logins)
bp=$(cat "$LAB_DIR/agent-broker.pid"); kill "$bp"
while kill -0 "$bp" 2>/dev/null; do sleep 0.05; done
sleep 5
mosquitto -c "$LAB_DIR/agent-broker.conf" >> "$LAB_DIR/agent-broker.log" 2>&1 &
echo $! > "$LAB_DIR/agent-broker.pid"
pids+=($!) # (fleet_cleanup waits for the shell's jobs: it must end this one)
wait_for 30 bash -c "(exec 3<>/dev/tcp/127.0.0.1/$LAB_AGENT_CERTS_PORT) 2>/dev/null" || true
sleep 4 # the devices reconnect (once a second)
f1=$(fallbacks)
check "an outage of the agent broker sends no certificate device to the anonymous listener ($f0, then $f1)" \
  test "$f1" = "$f0"
logins_back() { [ "$(cert_logins)" -ge $((l0 + 10)) ]; }
check "... and the 10 cut devices log in with their certificates again" wait_for 30 logins_back

# No device private key anywhere but in its key store.
kill "$agent_pid"; wait "$agent_pid" 2>/dev/null || true
sleep 0.3
scalar() { # the private key of a PEM file, as 64 hex digits
  openssl pkey -in "$1" -noout -text | awk '/^priv:/{p=1;next} /^pub:/{p=0} p' | tr -d ' :\n' | tail -c 64
}
point() { openssl x509 -in "$1" -noout -pubkey | openssl pkey -pubin -outform DER | tail -c 64 | od -An -tx1 -v | tr -d ' \n'; }
hexof() { od -An -tx1 -v "$1" | tr -d ' \n'; }
{
  for f in "$work"/registry.db* "$work"/agent.log "$work"/dev/*.log "$work"/dev/*.json "$LAB_DIR"/*; do
    [ -f "$f" ] && hexof "$f" && echo && cat "$f" && echo
  done
  cat "$work/capture.hex"
} > "$work/haystack.txt" 2>/dev/null
keys=0; found=0; pubs=0
for f in "$work"/d1-v1 "$work"/d1-v2 "$work"/d1-v3 "$work"/d2 "$work"/d3.active; do
  k=$(scalar "$f.key"); p=$(point "$f.crt")
  [ ${#k} -eq 64 ] && keys=$((keys + 1))
  grep -qi "$k" "$work/haystack.txt" && found=$((found + 1))
  grep -qi "$p" "$work/capture.hex" && pubs=$((pubs + 1))
done
check "the capture holds every protocol message (each device key's public half is in it)" test $pubs -eq 5
check "no device private key in the registry, the logs, the capture or the clouds' files ($keys keys)" \
  bash -c "[ $keys -eq 5 ] && [ $found -eq 0 ]"

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
