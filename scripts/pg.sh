#!/usr/bin/env bash
# A PostgreSQL cluster of its own for tests and benchmarks: Debian's
# postgresql (installed if missing), initdb into DIR as an unprivileged user,
# listening on a free loopback port only, one database 'otakey'.
#
#   scripts/pg.sh start DIR   writes DIR/pg.env (OTK_PG_URL=postgresql://..., PG_PORT)
#   scripts/pg.sh stop DIR    stops the cluster started in DIR (DIR is kept)
#
# As root the server runs as the 'postgres' system user (PostgreSQL refuses
# to run as root); otherwise as the calling user. Authentication is 'trust'
# for loopback connections of this throw-away cluster only.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: scripts/pg.sh start|stop DIR" >&2; exit 2; }

pgbin() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

. "$here/scripts/ports.sh"

start() {
  local bin port try
  bin=$(pgbin)
  if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    bash "$here/scripts/deps.sh" postgresql
    bin=$(pgbin)
  fi
  [ -x "$bin/initdb" ] || { echo "pg: initdb not found after installing postgresql" >&2; exit 1; }
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/sh postgres
    chown postgres "$dir"
    # The server's user must be able to reach DIR through its parents.
    chmod o+x "$(dirname "$dir")" 2>/dev/null || true
  fi
  as_owner "$bin/initdb" -D "$dir/data" -U otakey -A trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
    || { echo "pg: initdb failed (see $dir/initdb.log)" >&2; exit 1; }
  as_owner mkdir -p "$dir/sock"
  for try in 1 2 3 4 5; do
    port=$(free_port pg)
    if as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
         -o "-p $port -k $dir/sock -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null; then
      break
    fi
    port=
  done
  [ -n "$port" ] || { echo "pg: server did not start (see $dir/server.log)" >&2; exit 1; }
  as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U otakey otakey
  {
    echo "OTK_PG_URL=postgresql://otakey@127.0.0.1:$port/otakey"
    echo "PG_PORT=$port"
    echo "PG_BIN=$bin"
  } >"$dir/pg.env"
  echo "pg: PostgreSQL on 127.0.0.1:$port (database otakey, data in $dir/data)" >&2
}

stop() {
  local bin
  bin=$(pgbin)
  [ -f "$dir/data/postmaster.pid" ] || return 0
  as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null || true
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: scripts/pg.sh start|stop DIR" >&2; exit 2 ;;
esac
