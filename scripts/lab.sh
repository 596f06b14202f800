#!/usr/bin/env bash
# A local lab of real brokers on free loopback ports, all over TLS (and one
# Unix socket for the servers on this host):
#   agent broker  - two listeners, each guarded by otakey's mosquitto plugin
#                   (src/broker/policy.h; docs/security.md):
#                   devices (LAB_AGENT_PORT): anonymous clients whose client id
#                     is a device id, each limited to publishing its own
#                     otakey/v1/up/<id> and receiving its own otakey/v1/down/<id>;
#                   servers (LAB_SERVER_PORT): agents, and the benchmark's
#                     baseline servers, log in with a password; each topic
#                     space has one owner (otakey/v1: otakey-agent, bench/v1:
#                     otakey-bench), shared subscriptions included; the
#                     same on a Unix socket (LAB_SERVER_SOCKET, DIR/servers.sock,
#                     the owner's alone; empty when DIR's path is too long)
#                   devices with certificates (LAB_AGENT_CERTS_PORT, x509
#                     and mixed labs): devices holding a certificate set log
#                     in with it; the anonymous listener cannot take their ids
#   cloud A, B    - mosquitto with the dynamic-security plugin; the agent
#                   administers device clients through it
# Every file written is readable by its owner alone (umask 077).
# Usage: scripts/lab.sh start DIR [dynsec|passwd|x509|mixed]   (writes DIR/lab.env)
#        passwd: the clouds authenticate from a password_file + acl_file that
#        the agent rewrites (type = passwd), instead of dynamic security; the
#        plugin binds each device's credentials to its own client id
#        x509: certificate clouds (protocol version 2, docs/protocol.md §11):
#        each has an issuing CA of its own (cloud-X-ca.crt/.key), a CRL the
#        agent maintains (cloud-X-crl.pem), require_certificate with the
#        certificate's CN as user name and the ACL devices/%u/#
#        mixed: clouds A and B as with x509, and a third, cloud C, with dynamic
#        security, for version 1 devices beside version 2 ones
#        scripts/lab.sh stop DIR
# The plugin is $OTK_MOSQUITTO_PLUGIN, or else the newest build/*/otakey_mosquitto.so.
# LAB_REPORT_MS (default 10000): period of the plugin's refusal reports.
# LAB_MAX_QUEUED: the agent broker's max_queued_messages (mosquitto's default when unset).
set -euo pipefail
umask 077
cmd=${1:-}; dir=${2:-}; clouds=${3:-dynsec}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR [dynsec|passwd|x509|mixed]" >&2; exit 2; }
case "$clouds" in
  dynsec|passwd|x509) letters="a b" ;;
  mixed) letters="a b c" ;;
  *) echo "lab: clouds must be dynsec, passwd, x509 or mixed" >&2; exit 2 ;;
esac
# kind_of LETTER: how that cloud authenticates devices.
kind_of() {
  if [ "$clouds" = mixed ]; then
    if [ "$1" = c ]; then echo dynsec; else echo x509; fi
  else
    echo "$clouds"
  fi
}
dynsec_so=$(ls /usr/lib/*/mosquitto_dynamic_security.so 2>/dev/null | head -n1 || true)
here=$(cd "$(dirname "$0")/.." && pwd)
otk_so=${OTK_MOSQUITTO_PLUGIN:-$(ls -t "$here"/build/*/otakey_mosquitto.so 2>/dev/null | head -n1 || true)}

stop() {
  local f p i
  for f in "$dir"/*.pid; do
    [ -f "$f" ] || continue
    p=$(cat "$f")
    kill "$p" 2>/dev/null || true
    # Leave nothing running: wait for the broker to be gone.
    for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$p" 2>/dev/null || true
    rm -f "$f"
  done
}

. "$(dirname "$0")/ports.sh"

# launch: starts the three brokers and waits until each says it runs; 1 when
# one stopped instead (a port taken meanwhile by another process).
launch() {
  local b i up
  for b in agent-broker $(printf 'cloud-%s ' $letters); do
    mosquitto -c "$dir/$b.conf" > "$dir/$b.log" 2>&1 &
    echo $! > "$dir/$b.pid"
  done
  for b in agent-broker $(printf 'cloud-%s ' $letters); do
    up=0
    for i in $(seq 200); do
      if grep -q "mosquitto version .* running" "$dir/$b.log" 2>/dev/null; then up=1; break; fi
      kill -0 "$(cat "$dir/$b.pid")" 2>/dev/null || break
      sleep 0.05
    done
    [ $up = 1 ] || return 1
  done
}

# Distinct free ports: agent broker (devices, servers, devices with
# certificates), one per cloud.
pick_ports() {
  pa=$(free_port lab); ps=$(free_port lab); pca=$(free_port lab); pcb=$(free_port lab)
  pcc=$(free_port lab); pac=$(free_port lab)
  [ "$(printf '%s\n' "$pa" "$ps" "$pca" "$pcb" "$pcc" "$pac" | sort -u | wc -l)" = 6 ] || pick_ports
}

certs() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj /CN=otakey-lab-ca -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$dir/san.ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 30 -extfile "$dir/san.ext" -out "$dir/server.crt" 2>/dev/null
  # The CA certificate is public: devices and tools read it.
  chmod 644 "$dir/ca.crt"
}

# An issuing CA for cloud $1 and its first (empty) CRL.
issuing_ca() {
  local c=$1
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=otakey-cloud-$c" -keyout "$dir/cloud-$c-ca.key" -out "$dir/cloud-$c-ca.crt" 2>/dev/null
  chmod 644 "$dir/cloud-$c-ca.crt"
  : > "$dir/cloud-$c-index.txt"
  printf '[ca]\ndefault_ca = d\n[d]\ndatabase = %s\ndefault_md = sha256\ndefault_crl_days = 60\n' \
    "$dir/cloud-$c-index.txt" > "$dir/cloud-$c-ca.cnf"
  openssl ca -gencrl -config "$dir/cloud-$c-ca.cnf" -keyfile "$dir/cloud-$c-ca.key" \
    -cert "$dir/cloud-$c-ca.crt" -out "$dir/cloud-$c-crl.pem" 2>/dev/null
  chmod 644 "$dir/cloud-$c-crl.pem"
}

tls_lines() {
  printf 'cafile %s\ncertfile %s\nkeyfile %s\n' "$dir/ca.crt" "$dir/server.crt" "$dir/server.key"
}

start() {
  [ -n "$dynsec_so" ] || { echo "lab: mosquitto's dynamic-security plugin is missing" >&2; exit 1; }
  [ -f "$otk_so" ] || { echo "lab: otakey_mosquitto.so not found (build first, or set OTK_MOSQUITTO_PLUGIN)" >&2; exit 1; }
  otk_so=$(cd "$(dirname "$otk_so")" && pwd)/$(basename "$otk_so")
  mkdir -p "$dir"; chmod 700 "$dir"; stop
  certs
  local agent_pw cloud_pw bench_pw pa ps pca pcb pcc pac c port kind attempt=0 certs=0
  agent_pw=$(openssl rand -hex 16); cloud_pw=$(openssl rand -hex 16); bench_pw=$(openssl rand -hex 16)
  # Fleets of simulated devices need many connections per broker.
  # As root the hard limit can go up to fs.nr_open; otherwise take the hard limit.
  ulimit -n "$(cat /proc/sys/fs/nr_open 2>/dev/null || echo 1048576)" 2>/dev/null ||
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  # A port found free can be taken by another process before a broker binds
  # it (tests run side by side): then everything starts again on new ports.
  # Certificate clouds: an issuing CA each, whose certificates also log
  # devices in to the agent broker's third listener, checked against the
  # clouds' CRLs (the agent keeps devices-crl.pem, all of them in one file).
  if [ "$clouds" = x509 ] || [ "$clouds" = mixed ]; then
    certs=1
    for c in a b; do [ -f "$dir/cloud-$c-ca.key" ] || issuing_ca "$c"; done
    cat "$dir/cloud-a-ca.crt" "$dir/cloud-b-ca.crt" > "$dir/devices-ca.pem"
    cat "$dir/cloud-a-crl.pem" "$dir/cloud-b-crl.pem" > "$dir/devices-crl.pem"
    chmod 644 "$dir/devices-ca.pem" "$dir/devices-crl.pem"
  fi
  # The servers' Unix socket (a sockaddr_un path holds 107 bytes: none
  # beyond that).
  sock=$dir/servers.sock
  [ ${#sock} -le 107 ] || sock=
  while :; do
    attempt=$((attempt + 1))
    pick_ports
    mosquitto_passwd -b -c "$dir/agent.pw" otakey-agent "$agent_pw" 2>/dev/null
    # otakey-bench: the servers of the benchmark's baseline schemes (bench/v1).
    mosquitto_passwd -b "$dir/agent.pw" otakey-bench "$bench_pw" 2>/dev/null
    # set_tcp_nodelay: without it every small message the broker forwards
    # can wait for a delayed ACK (~40 ms on loopback), which would time
    # Nagle's algorithm rather than the protocols (a block stream slows 100x).
    {
      printf 'user root\npersistence false\nset_tcp_nodelay true\nper_listener_settings true\n'
      # LAB_MAX_QUEUED: messages the broker queues for a client (the agents)
      # before it drops (mosquitto's default, 1000, when unset).
      [ -z "${LAB_MAX_QUEUED:-}" ] || printf 'max_queued_messages %s\n' "$LAB_MAX_QUEUED"
      printf '\n# Devices: anonymous, client id = device id, their own topics only.\n'
      printf 'listener %s 127.0.0.1\n' "$pa"
      tls_lines
      printf 'allow_anonymous true\nplugin %s\nplugin_opt_role devices\n' "$otk_so"
      printf 'plugin_opt_spaces otakey/v1 bench/v1\n'
      printf 'plugin_opt_report_topic otakey/v1/broker/refused\nplugin_opt_report_ms %s\n' \
        "${LAB_REPORT_MS:-10000}"
      printf '\n# Agents and servers: a password each; one owner per topic space.\n'
      printf 'listener %s 127.0.0.1\n' "$ps"
      tls_lines
      printf 'allow_anonymous false\npassword_file %s\n' "$dir/agent.pw"
      printf 'plugin %s\nplugin_opt_role agents\n' "$otk_so"
      printf 'plugin_opt_spaces otakey/v1=otakey-agent bench/v1=otakey-bench\n'
      if [ -n "$sock" ]; then
        printf '\n# Servers on this host through a Unix socket: the same passwords and\n'
        printf '# owners; no TLS (only the owner may connect: umask 077).\n'
        printf 'listener 0 %s\n' "$sock"
        printf 'allow_anonymous false\npassword_file %s\n' "$dir/agent.pw"
        printf 'plugin %s\nplugin_opt_role agents\n' "$otk_so"
        printf 'plugin_opt_spaces otakey/v1=otakey-agent bench/v1=otakey-bench\n'
      fi
      if [ $certs = 1 ]; then
        printf '\n# Devices holding a certificate set: logged in with it, the CN as user\n'
        printf '# name and client id; the plugin keeps their ids from anonymous clients.\n'
        printf 'listener %s 127.0.0.1\n' "$pac"
        printf 'cafile %s\ncertfile %s\nkeyfile %s\ncrlfile %s\n' "$dir/devices-ca.pem" \
          "$dir/server.crt" "$dir/server.key" "$dir/devices-crl.pem"
        printf 'require_certificate true\nuse_identity_as_username true\nuse_username_as_clientid true\n'
        printf 'plugin %s\nplugin_opt_role devices\nplugin_opt_identity certificate\n' "$otk_so"
        printf 'plugin_opt_spaces otakey/v1 bench/v1\nplugin_opt_crl %s\n' "$dir/devices-crl.pem"
      fi
    } > "$dir/agent-broker.conf"
    for c in $letters; do
      case $c in a) port=$pca ;; b) port=$pcb ;; c) port=$pcc ;; esac
      kind=$(kind_of $c)
      rm -f "$dir/dynsec-$c.json" "$dir/cloud-$c.passwd" "$dir/cloud-$c.acl"
      if [ "$kind" = x509 ]; then
        # Devices by certificate from this cloud's own CA; the CN is the
        # user name, the ACL binds topics to it; the agent keeps the CRL.
        printf 'pattern readwrite devices/%%u/#\n' > "$dir/cloud-$c.acl"
        { printf 'user root\npersistence false\nset_tcp_nodelay true\nlistener %s 127.0.0.1\n' "$port"
          printf 'cafile %s\ncertfile %s\nkeyfile %s\ncrlfile %s\n' "$dir/cloud-$c-ca.crt" \
            "$dir/server.crt" "$dir/server.key" "$dir/cloud-$c-crl.pem"
          printf 'require_certificate true\nuse_identity_as_username true\nuse_username_as_clientid true\n'
          printf 'acl_file %s\n' "$dir/cloud-$c.acl"
          # The plugin binds the client id to the CN and ends sessions whose
          # certificate the CRL lists since (the broker checks it at the handshake only).
          printf 'plugin %s\nplugin_opt_role certs\nplugin_opt_crl %s\n' "$otk_so" "$dir/cloud-$c-crl.pem"
        } > "$dir/cloud-$c.conf"
        continue
      fi
      if [ "$kind" = passwd ]; then
        # The agent writes these files and signals the broker to reload them;
        # the plugin accepts a device's credentials under its own id only.
        : > "$dir/cloud-$c.passwd"; : > "$dir/cloud-$c.acl"
        { printf 'user root\npersistence false\nset_tcp_nodelay true\nper_listener_settings true\n'
          printf 'listener %s 127.0.0.1\n' "$port"
          tls_lines
          printf 'allow_anonymous false\nplugin %s\nplugin_opt_role cloud\n' "$otk_so"
          printf 'password_file %s\nacl_file %s\n' "$dir/cloud-$c.passwd" "$dir/cloud-$c.acl"
        } > "$dir/cloud-$c.conf"
        continue
      fi
      mosquitto_ctrl dynsec init "$dir/dynsec-$c.json" admin "$cloud_pw" >/dev/null
      { printf 'user root\npersistence false\nset_tcp_nodelay true\nlistener %s 127.0.0.1\n' "$port"
        tls_lines
        printf 'allow_anonymous false\nplugin %s\nplugin_opt_config_file %s\n' "$dynsec_so" "$dir/dynsec-$c.json"
      } > "$dir/cloud-$c.conf"
    done
    launch && break
    stop
    [ $attempt -lt 5 ] || { echo "lab: the brokers did not start (see $dir/*.log)" >&2; exit 1; }
  done
  cat > "$dir/lab.env" <<EOF
LAB_DIR=$dir
LAB_CA=$dir/ca.crt
LAB_AGENT_PORT=$pa
LAB_SERVER_PORT=$ps
LAB_SERVER_SOCKET=$sock
LAB_AGENT_USER=otakey-agent
LAB_AGENT_PASSWORD=$agent_pw
LAB_CLOUD_A_PORT=$pca
LAB_CLOUD_B_PORT=$pcb
LAB_CLOUD_ADMIN=admin
LAB_CLOUD_PASSWORD=$cloud_pw
LAB_CLOUDS=$clouds
LAB_CLOUD_A_PID=$dir/cloud-a.pid
LAB_CLOUD_B_PID=$dir/cloud-b.pid
LAB_BENCH_USER=otakey-bench
LAB_BENCH_PASSWORD=$bench_pw
LAB_PLUGIN=$otk_so
EOF
  if [ $certs = 1 ]; then
    printf 'LAB_AGENT_CERTS_PORT=%s\nLAB_DEVICES_CRL=%s\nLAB_AGENT_BROKER_PID=%s\n' "$pac" \
      "$dir/devices-crl.pem" "$dir/agent-broker.pid" >> "$dir/lab.env"
  fi
  if [ "$clouds" = mixed ]; then
    printf 'LAB_CLOUD_C_PORT=%s\nLAB_CLOUD_C_PID=%s\n' "$pcc" "$dir/cloud-c.pid" >> "$dir/lab.env"
  fi
  if [ "$clouds" = x509 ] || [ "$clouds" = mixed ]; then
    for c in a b; do
      C=$(echo $c | tr ab AB)
      printf 'LAB_CLOUD_%s_CA_CERT=%s\nLAB_CLOUD_%s_CA_KEY=%s\nLAB_CLOUD_%s_CRL=%s\n' \
        "$C" "$dir/cloud-$c-ca.crt" "$C" "$dir/cloud-$c-ca.key" "$C" "$dir/cloud-$c-crl.pem" >> "$dir/lab.env"
    done
  fi
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
