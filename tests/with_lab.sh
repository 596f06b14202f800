#!/usr/bin/env bash
# Runs a command with a lab of real brokers (scripts/lab.sh) around it; the
# lab's settings are in the environment (LAB_*). The lab is always stopped.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d /tmp/otakey-lab.XXXXXX)
trap 'bash "$here/scripts/lab.sh" stop "$dir"; rm -rf "$dir"' EXIT
bash "$here/scripts/lab.sh" start "$dir"
set -a; . "$dir/lab.env"; set +a
"$@"
