# free_port WHO: a loopback TCP port nothing listens on (sourced by lab.sh and pg.sh).
free_port() {
  local p try
  for try in $(seq 100); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  echo "$1: no free port found" >&2; exit 1
}
