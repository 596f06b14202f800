#!/usr/bin/env bash
# What a certificate cloud's CRL costs (docs/operations.md, "type = x509"):
# bench_crl grows a CRL to 1,000, 10,000 and 100,000 entries through the
# agent's own flush and times it; then a real mosquitto loads the CRL of
# each size (require_certificate, crlfile) and its CPU time per reload
# (SIGHUP) is read from /proc, min/median/max of 5 reloads, then its CPU
# time per TLS login (LOGINS, default 300). Each for the CRL in 1, 16 and
# 64 shares (crl_shares; SHARES="1 16 64" by default).
# Usage: bench/crl.sh [BUILD_DIR]   (default build/release, built if missing)
set -euo pipefail
umask 077
cd "$(dirname "$0")/.."
build=${1:-build/release}
if [ ! -x "$build/bench_crl" ]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build" -j"$(nproc)" --target bench_crl >/dev/null
fi
. scripts/ports.sh
work=$(mktemp -d /tmp/otakey-crl.XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
tick=$(getconf CLK_TCK)
cpu_ms() { awk -v t="$tick" '{ print ($14 + $15) * 1000 / t }' "/proc/$1/stat"; }

shares=${SHARES:-1 16 64}
echo "## The agent: flushing the CRL"
for sh in $shares; do
  echo
  echo "crl_shares = $sh:"
  echo
  mkdir -p "$work/agent-$sh"
  "$build/bench_crl" "$work/agent-$sh" 100000 5 "$sh"
done
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=bench-server-ca \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
  -keyout "$work/server-ca.key" -out "$work/server-ca.crt" -days 2 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
  -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
openssl x509 -req -in "$work/server.csr" -CA "$work/server-ca.crt" -CAkey "$work/server-ca.key" \
  -CAcreateserial -days 2 -out "$work/server.crt" 2>/dev/null
echo
echo "## The broker: mosquitto reloading the CRL (SIGHUP), and a TLS login checking it"
echo
echo "| CRL entries | crl_shares | CRL file (KiB) | broker CPU per reload: min / median / max (ms) | broker CPU per TLS login (ms) |"
echo "|---:|---:|---:|---|---:|"
for n in 1000 10000 100000; do
  for sh in $shares; do
    d="$work/$n-$sh"
    mkdir -p "$d"
    "$build/bench_crl" "$d" "$n" 1 "$sh" > /dev/null
    port=$(free_port crl)
    # The chain needs a CA certificate with CA extensions: one for the
    # same key and name as bench_crl's (which signs CRLs only).
    openssl req -x509 -new -key "$d/ca.key" -subj /CN=bench-crl-ca -days 2 \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
      -out "$d/ca-v3.crt" 2>/dev/null
    printf 'user root\nlistener %s 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\ncrlfile %s\nrequire_certificate true\nuse_identity_as_username true\nallow_anonymous false\npersistence false\n' \
      "$port" "$d/ca-v3.crt" "$work/server.crt" "$work/server.key" "$d/crl.pem" > "$work/m.conf"
    : > "$work/m.log"
    mosquitto -c "$work/m.conf" > "$work/m.log" 2>&1 &
    pid=$!
    for i in $(seq 100); do grep -q "running" "$work/m.log" && break; sleep 0.05; done
    t=()
    for r in 1 2 3 4 5; do
      a=$(cpu_ms "$pid"); kill -HUP "$pid"; sleep 1.5; b=$(cpu_ms "$pid")
      t+=("$(echo "$b - $a" | bc)")
    done
    # Logins with a device certificate of the CRL's CA, naming share 0 as
    # the agent's certificates name theirs (with one share: none). The
    # broker checks it against the CRL it names at each login; OpenSSL
    # verifies that CRL's signature there, over all its entries.
    ext="$d/dev.ext"
    if [ "$sh" -gt 1 ]; then
      printf 'crlDistributionPoints = URI:urn:otakey:crl:000/%03d\n' "$sh" > "$ext"
    else
      printf 'basicConstraints = CA:FALSE\n' > "$ext"
    fi
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=device \
      -keyout "$d/dev.key" -out "$d/dev.csr" 2>/dev/null
    openssl x509 -req -in "$d/dev.csr" -CA "$d/ca-v3.crt" -CAkey "$d/ca.key" -extfile "$ext" \
      -CAcreateserial -days 2 -out "$d/dev.crt" 2>/dev/null
    logins=${LOGINS:-300}
    a=$(cpu_ms "$pid")
    for i in $(seq "$logins"); do
      mosquitto_pub -h localhost -p "$port" --cafile "$work/server-ca.crt" --cert "$d/dev.crt" \
        --key "$d/dev.key" -t t -m x -q 0 || { echo "bench/crl.sh: a login was refused" >&2; cat "$work/m.log" >&2; exit 1; }
    done
    b=$(cpu_ms "$pid")
    login=$(echo "scale=2; ($b - $a) / $logins" | bc)
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
    sorted=$(printf '%s\n' "${t[@]}" | sort -n | tr '\n' ' ')
    set -- $sorted
    printf '| %s | %s | %s | %s / %s / %s | %s |\n' "$n" "$sh" "$(( $(stat -c %s "$d/crl.pem") / 1024 ))" "$1" "$3" "$5" "$login"
  done
done
