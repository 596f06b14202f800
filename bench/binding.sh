#!/usr/bin/env bash
# Cost of binding device credentials to their ids on a password-file cloud
# (docs/security.md): two mosquitto brokers over TLS, each with a password
# file of N device clients written by the agent's adapter, one with otakey's
# plugin (role cloud), one without; per broker: reload time, broker CPU per
# login, and whether a device's credentials work under another device's id.
# Usage: bench/binding.sh [N] [LOGINS] [RUNS]   (default 100000 500 3)
set -euo pipefail
umask 077
cd "$(dirname "$0")/.."
n=${1:-100000}; logins=${2:-500}; runs=${3:-3}
if [ -n "${BUILD:-}" ]; then build=$BUILD; else
  bash scripts/deps.sh >/dev/null
  build=build/release
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build" -j"$(nproc)" --target bench_binding otakey_mosquitto >/dev/null
fi
bin=$(cd "$build" && pwd)
work=$(mktemp -d /tmp/otakey-binding.XXXXXX)
lab=$work/lab
trap 'bash scripts/lab.sh stop "$lab" >/dev/null 2>&1 || true; for p in "$work"/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null; done; rm -rf "$work"' EXIT
# The lab's CA and server certificate, then two brokers of our own.
OTK_MOSQUITTO_PLUGIN=$bin/otakey_mosquitto.so bash scripts/lab.sh start "$lab" passwd >/dev/null
. "$lab/lab.env"
bash scripts/lab.sh stop "$lab" >/dev/null
. scripts/ports.sh
echo "| broker | clients | reload, all (ms) | reload, one more (ms) | broker CPU per login (µs) | login wall p50 (ms) | broker CPU per foreign-id login (µs) | foreign id accepted |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for r in $(seq "$runs"); do
  for kind in plugin none; do
    d=$work/$kind-$r; mkdir -p "$d"; : > "$d/pw"; : > "$d/acl"
    port=$(free_port binding)
    { printf 'user root\npersistence false\nset_tcp_nodelay true\nper_listener_settings true\nlistener %s 127.0.0.1\n' "$port"
      printf 'cafile %s\ncertfile %s\nkeyfile %s\n' "$lab/ca.crt" "$lab/server.crt" "$lab/server.key"
      printf 'allow_anonymous false\npassword_file %s\nacl_file %s\n' "$d/pw" "$d/acl"
      [ $kind = plugin ] && printf 'plugin %s\nplugin_opt_role cloud\n' "$bin/otakey_mosquitto.so"
    } > "$d/conf"
    mosquitto -c "$d/conf" > "$d/log" 2>&1 & echo $! > "$d/broker.pid"
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
    printf '| %s | ' "$([ $kind = plugin ] && echo "otakey plugin (bound)" || echo "stock (not bound)")"
    "$bin/bench_binding" "$d/pw" "$d/acl" "$d/broker.pid" "$port" "$lab/ca.crt" "$n" "$logins" | sed 's/^| //'
    kill "$(cat "$d/broker.pid")"; wait "$(cat "$d/broker.pid")" 2>/dev/null || true; rm -f "$d/broker.pid"
  done
done
