#!/usr/bin/env bash
# Hostile clients against the real agent daemon, over the real TLS brokers
# of scripts/lab.sh (docs/reliability.md, "Hostile clients"):
#  1. otakey-hostile attacks: replays, forged MACs and signatures, a version
#     rollback, a cloned id, oversized / truncated / malformed messages, a
#     header naming another device; each reply and audit row checked; the
#     victim device still rotates afterwards; the audit log still verifies.
#  2. a flood of invalid claims from many connections while legitimate
#     otakey-device processes claim: their start-to-ready latency p50/p99
#     without and with the flood, and the audit rows the flood added.
# Usage: tests/hostile_e2e.sh BUILD_DIR [--long]
#   short form (ctest hostile_e2e): 10 devices, 200 connections, one 10 s
#     flood at full speed with the agent's rate limiter on
#   --long: 40 devices per round, 200 connections, 60 s floods: full speed
#     and 2000 claims/s, each with the rate limiter on and off, and rounds
#     without a flood in between (the machine's load changes over time)
# Override with HOSTILE_DEVICES, HOSTILE_CONNS, HOSTILE_SECONDS and
# HOSTILE_ROUNDS (e.g. "0:on 2000:off none": RATE:LIMITER, rate 0 = full
# speed; "none" = the same number of devices without a flood).
set -euo pipefail
umask 077 # keys, PK, configs with passwords, registries: the owner's alone
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "${1:?usage: hostile_e2e.sh BUILD_DIR [--long]}" && pwd)
long=0; [ "${2:-}" = --long ] && long=1
ndev=${HOSTILE_DEVICES:-$([ $long = 1 ] && echo 40 || echo 10)}
conns=${HOSTILE_CONNS:-200}
secs=${HOSTILE_SECONDS:-$([ $long = 1 ] && echo 60 || echo 10)}
work=$(mktemp -d /tmp/otakey-hostile.XXXXXX)
. "$root/scripts/fleet.sh"
trap fleet_cleanup EXIT
fails=0
check() { # check DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@"; then echo "ok: $what"; else fails=$((fails + 1)); echo "FAILED: $what"; fi
}

fleet_setup
start_agent
db=$work/registry.db
audit_rows() { sqlite3 "$db" 'SELECT coalesce(max(seq), 0) FROM audit'; }

# ---- 1. the attacks, on a victim device claimed and rotated under watch ----
victim=$(device_id 9001)
"$bin/otakey-hostile" attacks --broker "127.0.0.1:$LAB_AGENT_PORT" --server "127.0.0.1:$LAB_SERVER_PORT" --cafile "$LAB_CA" \
  --user "$LAB_AGENT_USER" --password "$LAB_AGENT_PASSWORD" --db "$db" --batch $batch \
  --pk "$work/batch.pk" --victim "$victim" --victim-flash "$work/dev/victim.flash" \
  --victim-status "$work/dev/victim.json" --ready "$work/hostile.ready" \
  --rotate-cmd "'$bin/otakey' device update --db '$db' --rotate $victim >/dev/null" \
  > "$work/attacks.out" 2>&1 &
hpid=$!
pids+=($hpid)
# The victim starts once the attacker's capture is subscribed: it must see the claim.
wait_for 60 bash -c "[ -e '$work/hostile.ready' ] || ! kill -0 $hpid 2>/dev/null" || true
start_device "$victim" victim
set +e; wait "$hpid"; rc=$?; set -e
cat "$work/attacks.out"
check "every attack got the reply and audit row docs/protocol.md expects" test "$rc" -eq 0
check "the audit log verifies after the attacks" "$bin/otakey" audit verify --db "$db"

# ---- 2. the flood ----
# provision PREFIX FIRST COUNT [GAP]: starts COUNT devices (GAP seconds apart)
# and writes each one's start-to-ready time in ms to $work/PREFIX.lat; status
# files are read every 50 ms, while devices are still being started too.
provision() {
  local prefix=$1 first=$2 count=$3 gap=${4:-0} i=0 f name now next gap_ns deadline left=$3
  declare -A started=()
  : > "$work/$prefix.lat"
  gap_ns=$(echo "$gap * 1000000000 / 1" | bc)
  deadline=$((SECONDS + 120 + $(echo "$count * $gap / 1" | bc)))
  next=$(date +%s%N)
  while [ "$left" -gt 0 ] && [ $SECONDS -lt $deadline ]; do
    now=$(date +%s%N)
    while [ "$i" -lt "$count" ] && [ "$now" -ge "$next" ]; do
      name=$prefix-$((first + i))
      started[$name]=$now
      start_device "$(device_id $((first + i)))" "$name"
      i=$((i + 1)); next=$((next + gap_ns))
    done
    for f in $(grep -ls '"state":"ready"' "$work"/dev/"$prefix"-*.json); do
      name=$(basename "$f" .json)
      [ -n "${started[$name]:-}" ] || continue
      echo $(((now - ${started[$name]}) / 1000000)) >> "$work/$prefix.lat"
      unset "started[$name]"
      left=$((left - 1))
    done
    sleep 0.05
  done
  [ "$left" -eq 0 ] || echo "provision $prefix: $left devices not ready in time" >&2
}
pct() { # pct FILE P: the P-th percentile (nearest rank) of the numbers in FILE
  sort -n "$1" | awk -v p="$2" '{ v[NR] = $1 } END { if (NR == 0) { print "-"; exit }
    r = int((p * NR + 99) / 100); if (r < 1) r = 1; print v[r] }'
}

provision base 1 "$ndev" 0.2
echo "without flood: $(wc -l < "$work/base.lat") of $ndev devices ready; start-to-ready p50 $(pct "$work/base.lat" 50) ms, p99 $(pct "$work/base.lat" 99) ms"

# restart_agent on|off: the agent again, with its rate limiter on (defaults) or off.
cp "$work/agent.ini" "$work/agent-on.ini"
sed '/^\[agent\]/a ratelimit_client_rate = 0\nratelimit_refusal_rate = 0' "$work/agent-on.ini" > "$work/agent-off.ini"
limiter=on
restart_agent() {
  [ "$1" = "$limiter" ] && return 0
  kill -TERM "$agent_pid"; wait "$agent_pid" 2>/dev/null || true
  cp "$work/agent-$1.ini" "$work/agent.ini"
  start_agent
  limiter=$1
}

# flood_round N RATE LIMITER: a flood (RATE claims a second in all, 0: as fast
# as the broker takes them) while ndev new devices claim.
summary=()
flood_round() {
  local r=$1 rate=$2 seq0 seq1 frc what
  if [ "$rate" = none ]; then # the same number of devices, no flood
    provision quiet$r $((1000 * r)) "$ndev" 0.2
    summary+=("no flood (load average $(cut -d' ' -f1 /proc/loadavg)): $(wc -l < "$work/quiet$r.lat") of $ndev ready; start-to-ready p50 $(pct "$work/quiet$r.lat" 50) ms, p99 $(pct "$work/quiet$r.lat" 99) ms")
    return
  fi
  restart_agent "$3"
  what="$([ "$rate" = 0 ] && echo "full speed" || echo "$rate/s"), limiter $3"
  seq0=$(audit_rows)
  "$bin/otakey-hostile" flood --broker "127.0.0.1:$LAB_AGENT_PORT" --cafile "$LAB_CA" \
    --batch $batch --conns "$conns" --seconds "$secs" --rate "$rate" > "$work/flood$r.out" 2>&1 &
  fpid=$!
  pids+=($fpid)
  # The legitimate devices start once the flood runs, spread over its first half.
  for _ in $(seq 300); do grep -qs 'connections up' "$work/flood$r.out" && break; sleep 0.1; done
  sleep 1
  provision flood$r $((1000 * r)) "$ndev" "$(echo "scale=2; $secs / 2 / $ndev" | bc)"
  set +e; wait "$fpid"; frc=$?; set -e
  sleep 1
  seq1=$(audit_rows)
  check "flood ($what) ran" test "$frc" -eq 0
  check "flood ($what): every legitimate device was provisioned" \
    test "$(wc -l < "$work/flood$r.lat")" -eq "$ndev"
  summary+=("flood $what: $(grep -h 'invalid claims' "$work/flood$r.out" | sed 's/^flood: //')")
  summary+=("  devices under it (load average $(cut -d' ' -f1 /proc/loadavg)): $(wc -l < "$work/flood$r.lat") of $ndev ready; start-to-ready p50 $(pct "$work/flood$r.lat" 50) ms, p99 $(pct "$work/flood$r.lat" 99) ms; audit rows added: $((seq1 - seq0))")
}
rounds=${HOSTILE_ROUNDS:-$([ $long = 1 ] && echo "0:on 0:off none 2000:on 2000:off none" || echo "0:on")}
r=0
for spec in $rounds; do
  r=$((r + 1))
  flood_round $r "${spec%%:*}" "${spec##*:}"
done
restart_agent on
echo "---- summary (devices: $ndev per round, flood: $conns connections for $secs s) ----"
echo "without flood: $(wc -l < "$work/base.lat") of $ndev devices ready; start-to-ready p50 $(pct "$work/base.lat" 50) ms, p99 $(pct "$work/base.lat" 99) ms"
printf '%s\n' "${summary[@]}"
grep -h 'rate limit' "$work/agent.log" | tail -3 || true
check "the audit log verifies after the floods" "$bin/otakey" audit verify --db "$db"
check "the agent is still running" kill -0 "$agent_pid"

echo "hostile: $fails failed"
[ "$fails" -eq 0 ]
