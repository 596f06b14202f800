#!/usr/bin/env bash
# End-to-end over real brokers: three mosquitto brokers with TLS on free
# loopback ports (agent broker, cloud A, cloud B with dynamic security),
# the otakey-agent daemon over SQLite, and N otakey-device processes.
# Claim -> telemetry on cloud A -> rotation -> switch to cloud B, then a
# summary table. Everything started is stopped on exit.
# --clouds passwd|x509: password-file clouds, or certificate clouds (the
# devices speak protocol version 2 and log in with certificates the agent
# has their cloud's CA issue; docs/protocol.md §11).
# Usage: scripts/demo.sh [--clouds dynsec|passwd|x509] [devices]   (default 20)
#        scripts/demo_mqtt.sh [--clouds ...] [devices] [build-dir]   (build-dir: already built)
# OTAKEY_BIN=/usr/bin: the installed programs instead of a build (the Debian
# packages): otakey and otakey-device from OTAKEY_BIN, otakey-agent from
# OTAKEY_SBIN (default OTAKEY_BIN), the plugin OTAKEY_PLUGIN (default
# /usr/lib/otakey/otakey_mosquitto.so); nothing is built.
set -euo pipefail
umask 077 # keys, PK, configs with passwords, registries: the owner's alone
cd "$(dirname "$0")/.."
if [ "${1:-}" = --help ] || [ "${1:-}" = -h ]; then
  sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
  exit 0
fi
if [ "${1:-}" = --clouds ]; then
  case "${2:-}" in dynsec|passwd|x509) FLEET_CLOUDS=$2 ;; *) echo "demo: --clouds must be dynsec, passwd or x509" >&2; exit 2 ;; esac
  shift 2
fi
n=${1:-20}
build=${2:-build/release}
[[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 500 ] || { echo "demo: devices must be 1..500" >&2; exit 2; }
if [ -z "${2:-}" ] && [ -z "${OTAKEY_BIN:-}" ]; then
  bash scripts/deps.sh
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build" -j"$(nproc)" --target otakey otakey-agent otakey-device otakey_mosquitto >/dev/null
fi
[ -n "${OTAKEY_BIN:-}" ] || bin=$(cd "$build" && pwd)
root=$(pwd)
work=$(mktemp -d /tmp/otakey-demo.XXXXXX)
. scripts/fleet.sh
trap fleet_cleanup EXIT
if [ -n "${OTAKEY_BIN:-}" ]; then # links to the installed programs, as in a build dir
  bin=$work/bin
  mkdir "$bin"
  ln -s "$OTAKEY_BIN/otakey" "$OTAKEY_BIN/otakey-device" "${OTAKEY_SBIN:-$OTAKEY_BIN}/otakey-agent" "$bin/"
  ln -s "${OTAKEY_PLUGIN:-/usr/lib/otakey/otakey_mosquitto.so}" "$bin/otakey_mosquitto.so"
fi
command -v bc >/dev/null || { echo "demo: needs bc" >&2; exit 1; }

fleet_setup
# A caller that sources this file may start the agent its own way (scripts/demo.sh: API, Prometheus).
"${DEMO_START_AGENT:-start_agent}"
t0=$(date +%s.%N)
for i in $(seq 1 "$n"); do start_device "$(device_id "$i")"; done
wait_all "claim" '"state":"ready","version":1,"cloud":1' "$n"
wait_all "telemetry on cloud A" '"version":1,"cloud":1,.*"telemetry_acked":[1-9]' "$n"
"$bin/otakey" campaign start --db "$work/registry.db" --rotate --all --rate 200
wait_all "rotation campaign" '"state":"ready","version":2,"cloud":1' "$n"
"$bin/otakey" campaign start --db "$work/registry.db" --switch-to 2 --all --rate 200 --canary 2
wait_all "switch campaign to cloud B (2 canaries first)" '"state":"ready","version":3,"cloud":2' "$n"
wait_all "telemetry on cloud B" '"version":3,"cloud":2,.*"telemetry_acked":[1-9]' "$n"
sleep 1.5 # the engine marks the campaigns done (it counts outcomes once a second)
"$bin/otakey" campaign status --db "$work/registry.db"
"$bin/otakey" audit verify --db "$work/registry.db"
echo
printf '| %-32s | %-6s | %-7s | %-5s | %-9s | %-11s |\n' device state version cloud telemetry "agent bytes"
printf '|%s|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..34})" -------- --------- ------- ----------- -------------
for f in "$work"/dev/*.json; do
  sed -E 's/.*"id":"([^"]*)","state":"([^"]*)","version":([0-9]+),"cloud":([0-9]+).*"telemetry_acked":([0-9]+),"agent_bytes_up":([0-9]+),"agent_bytes_down":([0-9]+).*/\1 \2 \3 \4 \5 \6 \7/' "$f"
done | awk '{ c = $4 == 1 ? "A" : $4 == 2 ? "B" : "-"; printf "| %-32s | %-6s | %-7s | %-5s | %-9s | %-11s |\n", $1, $2, $3, c, $5, $6 + $7 }'
