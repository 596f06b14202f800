#!/usr/bin/env bash
# The crypto floor of the agent's operations, measured with `openssl speed`
# (the OpenSSL the agent links): prints one line per primitive,
#   <op> <µs of CPU per operation> <share of a core openssl got>
# ecdsa_sign, ecdsa_verify, ecdh (P-256; ECDH is the derivation alone),
# sha256_256, hmac_sha256_256 (256-byte inputs), aes128ccm_128 (128 bytes),
# sha512_64 (64 bytes). Run it where the agent runs (bench/run: taskset on
# the server core).
#
# The divisor is openssl's CPU time (no -elapsed): the agent's figure it is
# compared with is CPU time too, and on a core shared with other work the
# wall clock would count the others' time. The share column says how much of
# the wall time openssl had the core (1.0: alone).
# Usage: bench/floor.sh [SECONDS]   (ECC tests SECONDS each, default 2; the
#        symmetric ones, ~3 % of the floor, 1 s each)
set -euo pipefail
secs=${1:-2}
[[ "$secs" =~ ^[1-9][0-9]*$ ]] || { echo "floor: SECONDS must be a positive integer" >&2; exit 2; }
# -mr output (on stderr): "+DTP:256:sign:ecdsa:2" names the test of the next "+R<n>:count:bits:cpu_s";
# "+R:count:name:cpu_s" for digests, MACs and ciphers.
openssl speed -mr -seconds "$secs" ecdsap256 ecdhp256 2>&1 |
  awk -F: -v s="$secs" '
    /^\+DTP:/ { op = ($4 == "ecdh" ? "ecdh" : "ecdsa_" $3); next }
    /^\+R[0-9]+:/ && op != "" { printf "%s %.3f %.2f\n", op, $4 / $2 * 1e6, $4 / s; op = "" }'
sym() { # LABEL BYTES ARGS...
  local label=$1 bytes=$2; shift 2
  openssl speed -mr -seconds 1 -bytes "$bytes" "$@" 2>&1 |
    awk -F: -v l="$label" '/^\+R:/ { printf "%s %.4f %.2f\n", l, $4 / $2 * 1e6, $4 / 1 }'
}
sym sha256_256 256 -evp sha256
sym hmac_sha256_256 256 -hmac sha256
sym aes128ccm_128 128 -evp aes-128-ccm
sym sha512_64 64 -evp sha512
