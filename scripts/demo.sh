#!/usr/bin/env bash
# The end-to-end demo on the embedded defaults: installs what it needs,
# builds, starts three TLS brokers on free loopback ports (agent broker,
# cloud A, cloud B with dynamic security), the agent daemon and N devices
# (default 20); claim -> telemetry on cloud A -> rotation -> switch to
# cloud B; prints a summary table and stops everything it started.
# --clouds x509: certificate clouds (protocol version 2), passwd: password files.
# The agent's HTTP API (docs/api.md) is on, over TLS on a free loopback port:
# the first line is the dashboard's address with an operator token (in the
# fragment, which the browser does not send) and the CA to trust; the last,
# the campaigns as GET /v1/campaigns reports them.
# --prometheus (or DEMO_PROMETHEUS=1): Debian's prometheus (installed if
# missing) on a free loopback port scrapes the agent's /metrics every second
# over TLS with a read token (storage in the demo's scratch dir); the devices
# start after its first scrape, and the demo ends with its claims per second
# beside the demo's own (devices / claim phase seconds): over the claim phase
# (otakey_claims_total's increase from its last scrape before the phase to
# its first after it, over their distance: D to D + 2 s for a phase of D s,
# so lower than the demo's rate when the phase lasts a second or so) and at
# its peak (irate between two scrapes). otakey_claims_total counts the new
# key sets claims got (a CLAIM a device repeats and the agent answers again
# is otakey_responses_resent_total).
# Usage: scripts/demo.sh [--prometheus] [--clouds dynsec|passwd|x509] [devices] [build-dir]
#   (build-dir: already built; nothing is built, only what is missing installed)
# OTAKEY_BIN=/usr/bin: the installed programs instead of a build (the Debian
# packages; scripts/demo_mqtt.sh --help).
set -euo pipefail
cd "$(dirname "$0")/.."
args=()
for a in "$@"; do
  case $a in
    --help|-h) sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; exit 0 ;;
    --prometheus) DEMO_PROMETHEUS=1 ;;
    *) args+=("$a") ;;
  esac
done
[ "${DEMO_PROMETHEUS:-0}" != 0 ] || DEMO_PROMETHEUS=
demo_need=()
command -v curl >/dev/null || demo_need+=(curl)
[ -z "$DEMO_PROMETHEUS" ] || command -v prometheus >/dev/null || demo_need+=(prometheus)
[ ${#demo_need[@]} -eq 0 ] || bash scripts/deps.sh "${demo_need[@]}"

# scripts/demo_mqtt.sh starts its agent with demo_start_agent: the API on
# (fleet_api in scripts/fleet.sh), Prometheus first when asked for, the
# devices once it has scraped the agent (otakey_claims_total at 0, the
# baseline of its rate); the claim phase is kept as the demo times it
# (demo_claim_s as printed, from and to: the t0 it starts and ends with).
demo_start_agent() {
  fleet_api
  [ -z "$DEMO_PROMETHEUS" ] || demo_prometheus_start
  start_agent
  echo "API: dashboard $API_URL/#token=$API_TOKEN (operator token; trust the CA $API_CA)"
  if [ -n "$DEMO_PROMETHEUS" ]; then
    echo "Prometheus: $PROM_URL (scrapes $API_URL/metrics every second)"
    demo_prometheus_wait 'otakey_claims_total' 'scrape of the agent'
  fi
  eval "demo_$(declare -f wait_all)"
  wait_all() {
    local rc=0 from=$t0
    demo_wait_all "$@" > "$work/phase" || rc=$?
    cat "$work/phase"
    if [ "$1" = claim ]; then
      demo_claim_s=$(sed -n 's/.* in \([0-9.]*\) s$/\1/p' "$work/phase") demo_claim_from=$from demo_claim_to=$t0
    fi
    return $rc
  }
}
demo_prometheus_start() {
  local port
  port=$(free_port prometheus)
  mkdir -p "$work/prometheus"
  printf '%s' "$API_READ_TOKEN" > "$work/prometheus/token" # 0600 (umask 077)
  cat > "$work/prometheus/prometheus.yml" <<EOC
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: otakey
    scheme: https
    tls_config:
      ca_file: $API_CA
    authorization:
      credentials_file: $work/prometheus/token
    static_configs:
      - targets: ['${API_URL#https://}']
EOC
  prometheus --config.file="$work/prometheus/prometheus.yml" --storage.tsdb.path="$work/prometheus/data" \
    --web.listen-address="127.0.0.1:$port" > "$work/prometheus/log" 2>&1 &
  pids+=($!)
  PROM_URL=http://127.0.0.1:$port
  demo_prometheus_wait '' '/-/ready'
}
# demo_prometheus_wait QUERY WHAT: until QUERY has a value (/-/ready without one), 30 s at most.
demo_prometheus_wait() {
  local deadline=$((SECONDS + 30))
  until if [ -n "$1" ]; then demo_prometheus_value "$1" | grep -q .; else curl -sf "$PROM_URL/-/ready" > /dev/null; fi; do
    if [ $SECONDS -ge $deadline ]; then
      echo "demo: Prometheus: no $2 in 30 s; see $work/prometheus/log (KEEP=1 keeps it)" >&2
      tail -5 "$work/prometheus/log" >&2
      exit 1
    fi
    sleep 0.1
  done
}
# demo_prometheus_value QUERY [TIME]: the first value of an instant query, nothing if none.
demo_prometheus_value() {
  { curl -sS --get "$PROM_URL/api/v1/query" --data-urlencode "query=$1" ${2:+--data-urlencode "time=$2"} 2>/dev/null || true; } |
    sed -n 's/.*"value":\[[0-9.e+]*,"\([^"]*\)"\].*/\1/p'
}

# The demo itself, in this shell (its agent still answers when it ends),
# starting its agent with demo_start_agent.
DEMO_START_AGENT=demo_start_agent
. scripts/demo_mqtt.sh "${args[@]}"

echo
demo_campaigns=$(api GET /v1/campaigns 2>&1 || true)
demo_view=$(grep -o '{"id":[^{}]*}' <<< "$demo_campaigns" | sed -E 's/.*"id":([0-9]+),"kind":"([a-z]+)".*"state":"([a-z_]+)".*"total":([0-9]+),"started":([0-9]+),"done":([0-9]+),"failed":([0-9]+).*/campaign \1 (\2): \3, \6 of \4 devices done, \7 failed/' | paste -sd';' | sed 's/;/; /g' || true)
echo "API (GET /v1/campaigns): ${demo_view:-$demo_campaigns}"
if [ -n "$DEMO_PROMETHEUS" ]; then
  # Over the claim phase: between Prometheus's last scrape before it began and
  # its first after it ended (evaluated one scrape interval after the end).
  demo_at=$(echo "$demo_claim_to + 1" | bc)
  demo_rate=$(demo_prometheus_value "(otakey_claims_total - otakey_claims_total @ $demo_claim_from) /
    (timestamp(otakey_claims_total) - timestamp(otakey_claims_total @ $demo_claim_from))" "$demo_at")
  demo_claims=$(demo_prometheus_value "otakey_claims_total - otakey_claims_total @ $demo_claim_from" "$demo_at")
  demo_span=$(demo_prometheus_value "timestamp(otakey_claims_total) - timestamp(otakey_claims_total @ $demo_claim_from)" "$demo_at")
  demo_peak=$(demo_prometheus_value 'max_over_time(irate(otakey_claims_total[3s])[5m:250ms])')
  demo_total=$(demo_prometheus_value 'otakey_claims_total')
  printf 'claims per second: demo %.1f (%d devices in %s s); Prometheus %.1f over the claim phase (%s claims between its scrapes %.2f s apart), %.1f at its peak (irate); otakey_claims_total %s\n' \
    "$(echo "$n / $demo_claim_s" | bc -l)" "$n" "$demo_claim_s" "${demo_rate:-0}" "${demo_claims:-none}" "${demo_span:-0}" \
    "${demo_peak:-0}" "${demo_total:-none}"
fi
