# Shell helpers for the fleet-simulator end-to-end tests (tests/faults_e2e.sh,
# tests/crash_e2e.sh), sourced. The setup is bench/run's: fresh brokers from
# scripts/lab.sh on free ports, a registry with one batch, the agent daemon
# with its ini, then otakey-fleet. Needs: root (the source tree), bin (the
# build directory) and, per run, a scratch directory w.
# The end checks compare three independent records of the same fleet: the
# devices' own key stores (otakey-fleet --state-out), the agent's registry
# and audit log (the otakey CLI), and the clouds (mosquitto_ctrl dynsec).
batch=0000000100000001
agent_pid=

# lab_setup W RESEND_MS: brokers, agent key, batch and agent.ini in W.
lab_setup() {
  local w=$1 resend=$2
  mkdir -p "$w"
  OTK_MOSQUITTO_PLUGIN=$bin/otakey_mosquitto.so bash "$root/scripts/lab.sh" start "$w/lab" >/dev/null
  . "$w/lab/lab.env"
  pub=$("$bin/otakey" keygen "$w/agent.key")
  "$bin/otakey" product create --db "$w/registry.db" --batch $batch --name fault-sensor \
    --pk-out "$w/batch.pk" >/dev/null
  cat > "$w/agent.ini" <<EOC
[agent]
database = $w/registry.db
signing_key = $w/agent.key
broker_host = 127.0.0.1
broker_port = $LAB_SERVER_PORT
cafile = $LAB_CA
username = $LAB_AGENT_USER
password = $LAB_AGENT_PASSWORD
claim_cloud = 1
notify_rate = 2000
notify_resend_ms = $resend
log_level = warn

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
EOC
}

# agent_start W: the agent daemon, its log appended to W/agent.log.
agent_start() {
  "$bin/otakey-agent" -c "$1/agent.ini" 2>> "$1/agent.log" &
  agent_pid=$!
  sleep 0.3
  kill -0 "$agent_pid" 2>/dev/null || { echo "the agent did not start:" >&2; tail -5 "$1/agent.log" >&2; return 1; }
}

agent_stop() {
  [ -n "$agent_pid" ] || return 0
  kill "$agent_pid" 2>/dev/null || true
  wait "$agent_pid" 2>/dev/null || true
  agent_pid=
}

# lab_teardown W: agent and brokers stopped; W removed unless KEEP is set.
lab_teardown() {
  agent_stop
  bash "$root/scripts/lab.sh" stop "$1/lab" 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$1"
}

# broker_restart W: the agent broker stopped (SIGTERM) and started again on
# its port with its configuration; every device connection drops.
broker_restart() {
  local w=$1 p i
  p=$(cat "$w/lab/agent-broker.pid")
  kill "$p"
  for i in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
  mosquitto -c "$w/lab/agent-broker.conf" >> "$w/lab/agent-broker.log" 2>&1 &
  echo $! > "$w/lab/agent-broker.pid"
  for i in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$LAB_AGENT_PORT") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "the agent broker did not come back on port $LAB_AGENT_PORT" >&2
  return 1
}

# fleet W N ARGS...: otakey-fleet over W's lab, OTA-Key only, with the end
# check (W/state.jsonl); extra ARGS (faults, campaigns) are passed on.
fleet() {
  local w=$1 n=$2
  shift 2
  "$bin/otakey-fleet" --lab-env "$w/lab/lab.env" --batch $batch --pk "$w/batch.pk" \
    --agent-pub "$pub" --devices "$n" --schemes ota --baseline-devices 0 \
    --check --state-out "$w/state.jsonl" "$@"
}

# rotate_cmd W [RATE]: the command that starts a rotation of every device
# (RATE devices a second, default 2000).
rotate_cmd() { echo "$bin/otakey campaign start --db $1/registry.db --rotate --all --rate ${2:-2000} >/dev/null"; }
switch_cmd() { echo "$bin/otakey campaign start --db $1/registry.db --switch-to $2 --all --rate 2000 >/dev/null"; }

# check_registry W N VERSION CLOUD: the devices (state.jsonl) and the
# registry agree device by device: N devices, READY and active, on VERSION
# and CLOUD, nothing pending, each logged in to its cloud.
check_registry() {
  local w=$1 n=$2 v=$3 c=$4 bad
  sed -E 's/^\{"id":"([0-9a-f]+)","state":"([a-z]+)","version":([0-9]+),"cloud":([0-9]+),"login":"([a-z]+)"\}$/\1 \2 \3 \4 \5/' \
    "$w/state.jsonl" | sort > "$w/devices.txt"
  "$bin/otakey" device list --db "$w/registry.db" | awk 'NR > 1 { print $1, $2, $3, $4, $5 }' |
    sort > "$w/registry.txt"
  bad=$(awk -v v="$v" -v c="$c" '$2 != "ready" || $3 != v || $4 != c || $5 != "ok"' "$w/devices.txt" | wc -l)
  if [ "$(wc -l < "$w/devices.txt")" -ne "$n" ] || [ "$bad" -ne 0 ]; then
    echo "  devices not READY on v$v cloud $c with a working login: $bad of $n" >&2
    awk -v v="$v" -v c="$c" '$2 != "ready" || $3 != v || $4 != c || $5 != "ok"' "$w/devices.txt" | head -3 >&2
    return 1
  fi
  bad=$(awk -v v="$v" -v c="$c" '$2 != "active" || $3 != v || $4 != c || $5 != 0' "$w/registry.txt" | wc -l)
  if [ "$(wc -l < "$w/registry.txt")" -ne "$n" ] || [ "$bad" -ne 0 ]; then
    echo "  registry rows not active on v$v cloud $c with nothing pending: $bad of $n" >&2
    head -3 "$w/registry.txt" >&2
    return 1
  fi
  # Device by device, the same id, version and cloud on both sides.
  if ! diff <(awk '{ print $1, $3, $4 }' "$w/devices.txt") <(awk '{ print $1, $3, $4 }' "$w/registry.txt") >/dev/null; then
    echo "  the devices and the registry disagree" >&2
    return 1
  fi
}

# check_audit W N ISSUES: the audit log verifies; every (device, version)
# was issued exactly once (claim-issued / update-issued), and each of the N
# devices was issued ISSUES sets.
check_audit() {
  local w=$1 n=$2 k=$3 dups per
  "$bin/otakey" audit verify --db "$w/registry.db" >/dev/null || { echo "  audit verify failed" >&2; return 1; }
  "$bin/otakey" audit list --db "$w/registry.db" |
    awk '$2 == "claim-issued" || $2 == "update-issued" { print $4, $5 }' > "$w/issued.txt"
  dups=$(sort "$w/issued.txt" | uniq -d | wc -l)
  per=$(awk '{ print $1 }' "$w/issued.txt" | sort | uniq -c | awk -v k="$k" '$1 != k' | wc -l)
  if [ "$dups" -ne 0 ] || [ "$(awk '{ print $1 }' "$w/issued.txt" | sort -u | wc -l)" -ne "$n" ] || [ "$per" -ne 0 ]; then
    echo "  issues in the audit log: $dups (device, version) issued twice; $per devices without exactly $k issues" >&2
    sort "$w/issued.txt" | uniq -d | head -3 >&2
    return 1
  fi
}

# cloud_clients W PORT: the device clients of one cloud, one per line.
cloud_clients() {
  mosquitto_ctrl -h 127.0.0.1 -p "$2" --cafile "$LAB_CA" -u "$LAB_CLOUD_ADMIN" -P "$LAB_CLOUD_PASSWORD" \
    dynsec listClients | grep -E '^[0-9a-f]{32}-[0-9]+$' || true
}

# check_clouds W N CLOUD: the cloud CLOUD (1 or 2) holds exactly one client
# per device, named after its committed set, and the other cloud none.
check_clouds() {
  local w=$1 n=$2 c=$3 here other
  local pa=$LAB_CLOUD_A_PORT pb=$LAB_CLOUD_B_PORT
  if [ "$c" -eq 1 ]; then here=$pa; other=$pb; else here=$pb; other=$pa; fi
  cloud_clients "$w" "$here" | sort > "$w/cloud.txt"
  awk '{ print $1 "-" $3 }' "$w/devices.txt" | sort > "$w/want-cloud.txt"
  if ! diff "$w/want-cloud.txt" "$w/cloud.txt" >/dev/null; then
    echo "  cloud $c: $(wc -l < "$w/cloud.txt") device clients, want exactly the $n committed ones" >&2
    diff "$w/want-cloud.txt" "$w/cloud.txt" | head -4 >&2
    # A retired set left behind: is it the one the registry keeps to delete?
    sqlite3 "$w/registry.db" "SELECT stale_user FROM devices WHERE stale_user IS NOT NULL" |
      sort > "$w/stale.txt" 2>/dev/null || true
    comm -13 "$w/want-cloud.txt" "$w/cloud.txt" | comm -12 - "$w/stale.txt" > "$w/left.txt"
    [ ! -s "$w/left.txt" ] ||
      echo "  $(wc -l < "$w/left.txt") of them retired sets the registry still marks stale: deleted only at that device's next commit" >&2
    return 1
  fi
  if [ "$(cloud_clients "$w" "$other" | wc -l)" -ne 0 ]; then
    echo "  the other cloud still holds device clients" >&2
    return 1
  fi
}
