#!/usr/bin/env bash
# End-to-end over real brokers: three mosquitto brokers with TLS on free
# loopback ports (agent broker, cloud A, cloud B with dynamic security),
# the otakey-agent daemon over SQLite, and N otakey-device processes.
# Claim -> telemetry on cloud A -> rotation -> switch to cloud B, then a
# summary table. Everything started is stopped on exit.
# Usage: scripts/demo_mqtt.sh [devices] [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20}
build=${2:-build/release}
[[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 500 ] || { echo "demo: devices must be 1..500" >&2; exit 2; }
if [ -z "${2:-}" ]; then
  bash scripts/deps.sh
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build" -j"$(nproc)" --target otakey otakey-agent otakey-device >/dev/null
fi
bin=$(cd "$build" && pwd)
work=$(mktemp -d /tmp/otakey-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  bash scripts/lab.sh stop "$work/lab" 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

bash scripts/lab.sh start "$work/lab"
. "$work/lab/lab.env"
batch=0000000100000001
pub=$("$bin/otakey" keygen "$work/agent.key")
"$bin/otakey" product create --db "$work/registry.db" --batch $batch --name demo-sensor --pk-out "$work/batch.pk"
cat > "$work/agent.ini" <<EOF
[agent]
database = $work/registry.db
signing_key = $work/agent.key
broker_host = 127.0.0.1
broker_port = $LAB_AGENT_PORT
cafile = $LAB_CA
username = $LAB_AGENT_USER
password = $LAB_AGENT_PASSWORD
claim_cloud = 1

[cloud.1]
host = 127.0.0.1
port = $LAB_CLOUD_A_PORT
admin_cafile = $LAB_CA
admin_user = $LAB_CLOUD_ADMIN
admin_password = $LAB_CLOUD_PASSWORD

[cloud.2]
host = 127.0.0.1
port = $LAB_CLOUD_B_PORT
admin_cafile = $LAB_CA
admin_user = $LAB_CLOUD_ADMIN
admin_password = $LAB_CLOUD_PASSWORD
EOF
"$bin/otakey-agent" -c "$work/agent.ini" 2> "$work/agent.log" &
pids+=($!)
sleep 0.3
mkdir -p "$work/dev"
t0=$(date +%s.%N)
for i in $(seq 1 "$n"); do
  id=$(printf 'd0d0d0d0d0d0d0d0d0d0d0d0%08x' "$i")
  "$bin/otakey-device" --id "$id" --flash "$work/dev/$id.flash" --batch $batch --pk "$work/batch.pk" \
    --agent-pub "$pub" --broker "127.0.0.1:$LAB_AGENT_PORT" --cafile "$LAB_CA" \
    --status "$work/dev/$id.json" --poll-ms 500 --telemetry-ms 250 2> "$work/dev/$id.log" &
  pids+=($!)
done

# Waits until every device reports the condition (a grep -E on its status line).
wait_all() {
  local what=$1 re=$2 deadline=$((SECONDS + 60)) ok
  while :; do
    ok=$(cat "$work"/dev/*.json 2>/dev/null | grep -cE "$re" || true)
    [ "$ok" -ge "$n" ] && break
    if [ $SECONDS -ge $deadline ]; then
      echo "demo: $what: only $ok of $n devices got there; see $work (KEEP=1 keeps it)" >&2
      tail -5 "$work/agent.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  printf '%s: %d devices in %.2f s\n' "$what" "$n" "$(echo "$(date +%s.%N) - $t0" | bc)"
  t0=$(date +%s.%N)
}
command -v bc >/dev/null || { echo "demo: needs bc" >&2; exit 1; }
wait_all "claim" '"state":"ready","version":1,"cloud":1'
wait_all "telemetry on cloud A" '"version":1,"cloud":1,.*"telemetry_acked":[1-9]'
"$bin/otakey" device update --db "$work/registry.db" --rotate --all
wait_all "rotation" '"state":"ready","version":2,"cloud":1'
"$bin/otakey" device update --db "$work/registry.db" --switch-to 2 --all
wait_all "switch to cloud B" '"state":"ready","version":3,"cloud":2'
wait_all "telemetry on cloud B" '"version":3,"cloud":2,.*"telemetry_acked":[1-9]'
"$bin/otakey" audit verify --db "$work/registry.db"
echo
printf '| %-32s | %-6s | %-7s | %-5s | %-9s | %-11s |\n' device state version cloud telemetry "agent bytes"
printf '|%s|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..34})" -------- --------- ------- ----------- -------------
for f in "$work"/dev/*.json; do
  sed -E 's/.*"id":"([^"]*)","state":"([^"]*)","version":([0-9]+),"cloud":([0-9]+).*"telemetry_acked":([0-9]+),"agent_bytes_up":([0-9]+),"agent_bytes_down":([0-9]+).*/\1 \2 \3 \4 \5 \6 \7/' "$f"
done | awk '{ c = $4 == 1 ? "A" : $4 == 2 ? "B" : "-"; printf "| %-32s | %-6s | %-7s | %-5s | %-9s | %-11s |\n", $1, $2, $3, c, $5, $6 + $7 }'
