#!/usr/bin/env bash
# Runs a command with a PostgreSQL cluster of its own (scripts/pg.sh) around
# it; the conninfo is in the environment (OTK_PG_URL) and replaces any
# argument spelled @PG@. The cluster is always stopped and removed.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d /tmp/otakey-pg.XXXXXX)
trap 'bash "$here/scripts/pg.sh" stop "$dir"; rm -rf "$dir"' EXIT
bash "$here/scripts/pg.sh" start "$dir"
set -a; . "$dir/pg.env"; set +a
args=()
for a in "$@"; do args+=("${a//@PG@/$OTK_PG_URL}"); done
"${args[@]}"
