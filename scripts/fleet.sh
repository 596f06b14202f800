# Shell helpers to run a fleet over real brokers (sourced by scripts/demo_mqtt.sh
# and the end-to-end tests). Needs: bin (build dir with otakey, otakey-agent,
# otakey-device) and work (an empty scratch dir).
# Every process started is recorded in pids and stopped by fleet_cleanup.
# FLEET_DB, when set, is the agent's database (a PostgreSQL URI, say);
# $work/registry.db otherwise.
pids=()
agent_pid=
batch=0000000100000001

fleet_cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  bash "$root/scripts/lab.sh" stop "$work/lab" 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}

# Brokers, agent key, a product batch and the agent's config file.
# FLEET_CLOUDS=passwd: password-file clouds instead of dynamic security;
# FLEET_CLOUDS=x509: certificate clouds (devices run protocol version 2);
# FLEET_PKCS11=1 (with x509 or mixed): the clouds' CA keys and the agent's
# signing key are in a PKCS#11 token (SoftHSM), not in files; the agent signs
# with the token.
# FLEET_CLOUDS=mixed: clouds 1 and 2 take certificates, cloud 3 (dynamic
# security) is where version 1 devices claim (claim_cloud_v1).
# FLEET_LINK=unix: the agent reaches its broker through the lab's Unix socket
# (broker_socket) instead of TLS on loopback.
fleet_setup() {
  local c l lc port
  umask 077 # keys, PK, configs with passwords, registries: the owner's alone
  OTK_MOSQUITTO_PLUGIN=${OTK_MOSQUITTO_PLUGIN:-$bin/otakey_mosquitto.so} \
    bash "$root/scripts/lab.sh" start "$work/lab" "${FLEET_CLOUDS:-dynsec}"
  . "$work/lab/lab.env"
  [ -z "${FLEET_PKCS11:-}" ] || fleet_token
  pub=$("$bin/otakey" keygen "$work/agent.key")
  local sign_key=$work/agent.key
  if [ -n "${FLEET_PKCS11:-}" ]; then
    # The agent's signing key in the token too: made there from a fresh P-256 key.
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/hsm/agent-sign.pem"
    softhsm2-util --import "$work/hsm/agent-sign.pem" --token otakey --label agent-sign --id 10 \
      --pin "$(cat "$work/hsm/pin")" > /dev/null
    pub=$(openssl pkey -in "$work/hsm/agent-sign.pem" -pubout -outform DER | tail -c 64 | od -An -tx1 -v | tr -d ' \n')
    rm -f "$work/hsm/agent-sign.pem" "$work/agent.key"
    sign_key="pkcs11:token=otakey;object=agent-sign;type=private"
  fi
  "$bin/otakey" product create --db "${FLEET_DB:-$work/registry.db}" --batch $batch --name demo-sensor \
    --pk-out "$work/batch.pk"
  local link
  if [ "${FLEET_LINK:-tls}" = unix ]; then
    [ -n "${LAB_SERVER_SOCKET:-}" ] || { echo "fleet: the lab has no Unix socket (path too long)" >&2; return 1; }
    link="broker_socket = $LAB_SERVER_SOCKET"
  else
    link=$(printf 'broker_host = 127.0.0.1\nbroker_port = %s\ncafile = %s' "$LAB_SERVER_PORT" "$LAB_CA")
  fi
  cat > "$work/agent.ini" <<EOC
[agent]
database = ${FLEET_DB:-$work/registry.db}
signing_key = $sign_key
$link
username = $LAB_AGENT_USER
password = $LAB_AGENT_PASSWORD
claim_cloud = 1
EOC
  if [ -n "${FLEET_PKCS11:-}" ]; then
    printf 'pkcs11_module = %s\npkcs11_pin_file = %s\n' "$FLEET_PKCS11_MODULE" "$work/hsm/pin" >> "$work/agent.ini"
  fi
  if [ -n "${LAB_AGENT_CERTS_PORT:-}" ]; then
    printf 'devices_crl_file = %s\nbroker_pid_file = %s\n' "$LAB_DEVICES_CRL" "$LAB_AGENT_BROKER_PID" >> "$work/agent.ini"
  fi
  local clouds="1 2" kind
  if [ "$LAB_CLOUDS" = mixed ]; then clouds="1 2 3"; echo 'claim_cloud_v1 = 3' >> "$work/agent.ini"; fi
  for c in $clouds; do
    l=$(echo $c | tr 123 ABC)
    port=LAB_CLOUD_${l}_PORT
    printf '\n[cloud.%s]\nhost = 127.0.0.1\nport = %s\nadmin_cafile = %s\n' $c "${!port}" "$LAB_CA" >> "$work/agent.ini"
    lc=$(echo $l | tr ABC abc)
    kind=$LAB_CLOUDS
    if [ "$kind" = mixed ]; then
      if [ $c = 3 ]; then kind=dynsec; else kind=x509; fi
    fi
    if [ "$kind" = x509 ]; then
      local cc=LAB_CLOUD_${l}_CA_CERT ck=LAB_CLOUD_${l}_CA_KEY crl=LAB_CLOUD_${l}_CRL key
      key=${!ck}
      if [ -n "${FLEET_PKCS11:-}" ]; then
        key="pkcs11:token=otakey;object=cloud-$lc-ca;type=private"
        printf 'pkcs11_module = %s\npkcs11_pin_file = %s\n' "$FLEET_PKCS11_MODULE" "$work/hsm/pin" >> "$work/agent.ini"
      fi
      printf 'type = x509\nca_cert = %s\nca_key = %s\ncrl_file = %s\ncrl_shares = 16\nserver_ca = %s\npid_file = %s\n' \
        "${!cc}" "$key" "${!crl}" "$LAB_CA" "$LAB_DIR/cloud-$lc.pid" >> "$work/agent.ini"
    elif [ "$kind" = passwd ]; then
      printf 'type = passwd\npassword_file = %s\nacl_file = %s\npid_file = %s\n' \
        "$LAB_DIR/cloud-$lc.passwd" "$LAB_DIR/cloud-$lc.acl" "$LAB_DIR/cloud-$lc.pid" >> "$work/agent.ini"
    else
      printf 'admin_user = %s\nadmin_password = %s\n' "$LAB_CLOUD_ADMIN" "$LAB_CLOUD_PASSWORD" >> "$work/agent.ini"
    fi
  done
  mkdir -p "$work/dev"
}

# fleet_api: turns the agent's HTTP API on (docs/api.md) over TLS with the lab's
# server certificate; API_URL, API_CA, API_TOKEN (operator), API_READ_TOKEN.
fleet_api() {
  . "$root/scripts/ports.sh"
  local port
  port=$(free_port api)
  API_TOKEN=$("$bin/otakey" token create --tokens "$work/api.tokens" --name ops --role operator 2>/dev/null)
  API_READ_TOKEN=$("$bin/otakey" token create --tokens "$work/api.tokens" --name viewer --role read 2>/dev/null)
  printf '\n[api]\nlisten = 127.0.0.1:%s\ncertfile = %s\nkeyfile = %s\ntokens = %s\n' "$port" \
    "$LAB_DIR/server.crt" "$LAB_DIR/server.key" "$work/api.tokens" >> "$work/agent.ini"
  API_URL=https://127.0.0.1:$port
  API_CA=$LAB_CA
}

# api METHOD PATH [JSON]: one API call as the operator; prints the body.
api() {
  curl -sS --cacert "$API_CA" -H "Authorization: Bearer $API_TOKEN" -X "$1" \
    ${3:+-H 'Content-Type: application/json' --data "$3"} "$API_URL$2"
}

# A SoftHSM token holding the certificate clouds' CA keys, which leave their files.
fleet_token() {
  local c
  FLEET_PKCS11_MODULE=${FLEET_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
  mkdir -p "$work/hsm/tokens"
  printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
    "$work/hsm/tokens" > "$work/hsm/softhsm2.conf"
  export SOFTHSM2_CONF=$work/hsm/softhsm2.conf
  openssl rand -hex 8 > "$work/hsm/pin"
  softhsm2-util --init-token --free --label otakey --pin "$(cat "$work/hsm/pin")" \
    --so-pin "$(openssl rand -hex 8)" > /dev/null
  for c in a b; do
    softhsm2-util --import "$LAB_DIR/cloud-$c-ca.key" --token otakey --label "cloud-$c-ca" \
      --id "0$( [ $c = a ] && echo 1 || echo 2)" --pin "$(cat "$work/hsm/pin")" > /dev/null
    rm -f "$LAB_DIR/cloud-$c-ca.key"
  done
}

# start_agent: the agent daemon, its log appended to $work/agent.log; returns
# once it has subscribed to the device topics (a claim sent before that is
# only answered at the device's next retry, seconds later), or has exited.
start_agent() {
  local before
  before=$(grep -c 'subscribed to' "$work/agent.log" 2>/dev/null || true)
  "$bin/otakey-agent" -c "$work/agent.ini" 2>> "$work/agent.log" &
  agent_pid=$!
  pids+=($agent_pid)
  wait_for 60 bash -c "[ \"\$(grep -c 'subscribed to' '$work/agent.log' 2>/dev/null)\" -gt ${before:-0} ] ||
    ! kill -0 $agent_pid 2>/dev/null" || true
}

device_id() { printf 'd0d0d0d0d0d0d0d0d0d0d0d0%08x' "$1"; }

# start_device ID [NAME]: a device process; NAME (default ID) names its files.
# DEVICE_PROTO: the protocol version devices speak (default 2 on x509 clouds, else 1);
# DEVICE_ARGS: more otakey-device arguments (a test hook: --cut-at K).
start_device() {
  local id=$1 name=${2:-$1} proto=1
  if [ -n "${DEVICE_PROTO:-}" ]; then proto=$DEVICE_PROTO; elif [ "${LAB_CLOUDS:-}" = x509 ]; then proto=2; fi
  "$bin/otakey-device" --proto "$proto" --id "$id" --flash "$work/dev/$name.flash" --batch $batch \
    --pk "$work/batch.pk" --agent-pub "$pub" --broker "127.0.0.1:$LAB_AGENT_PORT" \
    --cafile "$LAB_CA" --status "$work/dev/$name.json" --poll-ms "${POLL_MS:-60000}" --telemetry-ms 250 \
    ${LAB_AGENT_CERTS_PORT:+--broker-certs "127.0.0.1:$LAB_AGENT_CERTS_PORT"} ${DEVICE_ARGS:-} \
    2> "$work/dev/$name.log" &
  pids+=($!)
  echo $! > "$work/dev/$name.pid"
}

# stop_device NAME: ends the device process start_device started under NAME
# (by its pid: tests run side by side with the same device ids), and waits
# until it is gone.
stop_device() {
  local pid
  pid=$(cat "$work/dev/$1.pid" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
}

# device_state NAME: whether device NAME's process runs, and if so where it
# waits (its kernel stack, and its threads' stacks when gdb is there).
device_state() {
  local pid
  pid=$(cat "$work/dev/$1.pid" 2>/dev/null || true)
  if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then echo "    process: gone"; return 0; fi
  echo "    process: $(ps -o pid=,stat=,etime=,wchan:32= -p "$pid" 2>/dev/null)"
  sed 's/^/    kernel: /' "/proc/$pid/stack" 2>/dev/null | head -8 || true
  if command -v gdb > /dev/null; then
    timeout 30 gdb -p "$pid" -batch -ex 'thread apply all bt 12' 2>/dev/null | grep '^#' | sed 's/^/    gdb: /' || true
  fi
}

# wait_for SECONDS COMMAND...: until COMMAND succeeds (tried every 0.1 s), for
# SECONDS at most; 1 when it never did. For what happens in its own time
# (a device's next poll, the agent's next pass, a broker's reload): on a
# loaded machine it can take several times what it takes on an idle one.
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.1
  done
}

# wait_all WHAT REGEX COUNT: until COUNT status files match REGEX (60 s at most).
wait_all() {
  local what=$1 re=$2 want=$3 deadline=$((SECONDS + 60)) ok
  while :; do
    ok=$(cat "$work"/dev/*.json 2>/dev/null | grep -cE "$re" || true)
    [ "$ok" -ge "$want" ] && break
    if [ $SECONDS -ge $deadline ]; then
      echo "fleet: $what: only $ok of $want devices got there; see $work (KEEP=1 keeps it)" >&2
      tail -5 "$work/agent.log" >&2
      # Each device that did not: its status, its log, what the agent said of it.
      local f id
      for f in "$work"/dev/*.json; do
        grep -qE "$re" "$f" 2>/dev/null && continue
        id=$(basename "$f" .json)
        echo "  $id: $(cat "$f" 2>/dev/null)" >&2
        tail -3 "${f%.json}.log" 2>/dev/null | sed 's/^/    device: /' >&2
        grep -h "$id" "$work"/agent*.log 2>/dev/null | tail -3 | sed 's/^/    agent: /' >&2
        device_state "$id" >&2
      done
      return 1
    fi
    sleep 0.1
  done
  printf '%s: %d devices in %.2f s\n' "$what" "$want" "$(echo "$(date +%s.%N) - $t0" | bc)"
  t0=$(date +%s.%N)
}
