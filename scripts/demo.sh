#!/usr/bin/env bash
# The end-to-end demo on the embedded defaults: installs what it needs,
# builds, starts three TLS brokers on free loopback ports (agent broker,
# cloud A, cloud B with dynamic security), the agent daemon and N devices
# (default 20); claim -> telemetry on cloud A -> rotation -> switch to
# cloud B; prints a summary table and stops everything it started.
# --clouds x509: certificate clouds (protocol version 2), passwd: password files.
# Usage: scripts/demo.sh [--clouds dynsec|passwd|x509] [devices]
set -euo pipefail
cd "$(dirname "$0")/.."
exec bash scripts/demo_mqtt.sh "$@"
