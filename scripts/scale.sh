# Phases of a scale-out run: brokers, one PostgreSQL, several otakey-agent
# processes sharing the device topics (MQTT 5 shared subscription) and the
# database. Sourced by tests/e2e_scale.sh; a fleet simulator can call the
# same phases with its own device processes. Needs root, bin and work as
# scripts/fleet.sh does (which it sources).
. "$root/scripts/fleet.sh"
agents=()   # pids of the running agents, by index

# PostgreSQL of its own in $work/pg, then brokers, key, batch and agent.ini.
scale_setup() {
  bash "$root/scripts/pg.sh" start "$work/pg"
  . "$work/pg/pg.env"
  export FLEET_DB=$OTK_PG_URL
  fleet_setup
}

# Agents stop before the database they use, then the rest goes.
scale_cleanup() {
  local p
  for p in "${agents[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${agents[@]}"; do wait "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  bash "$root/scripts/pg.sh" stop "$work/pg" 2>/dev/null || true
  fleet_cleanup
}

# scale_start_agent I: agent I, its own client id, the shared group, log agent-I.log
# (SCALE_LOG_LEVEL, default info).
scale_start_agent() {
  local i=$1
  { cat "$work/agent.ini"; } | sed "s/^\[agent\]\$/[agent]\nclient_id = otakey-agent-$i\nshare_group = otakey\nlog_level = ${SCALE_LOG_LEVEL:-info}/" \
    > "$work/agent-$i.ini"
  "$bin/otakey-agent" -c "$work/agent-$i.ini" 2>> "$work/agent-$i.log" &
  agents[$i]=$!
  pids+=($!)
}

# scale_kill_agent I: SIGKILL, as a crash would.
scale_kill_agent() {
  kill -9 "${agents[$1]}" 2>/dev/null || true
  wait "${agents[$1]}" 2>/dev/null || true
  unset "agents[$1]"
}

# scale_devices N: N device processes, ids 1..N.
scale_devices() {
  local i
  for i in $(seq 1 "$1"); do start_device "$(device_id "$i")"; done
}

# psql_value SQL: one value from the agents' database.
psql_value() {
  "$PG_BIN/psql" -X -A -t -q "$OTK_PG_URL" -c "$1"
}

# campaign_field ID FIELD: a number from 'otakey campaign status --json'.
campaign_field() {
  "$bin/otakey" campaign status --db "$OTK_PG_URL" "$1" --json | grep -o "\"$2\":[0-9]*" | cut -d: -f2
}
