# free_port WHO: a loopback TCP port nothing listens on (sourced by lab.sh and pg.sh).
# It is taken below the kernel's ephemeral range (ip_local_port_range), so
# that no outgoing connection holds it as its local port when a server binds it.
free_port() {
  local p try lo=32768 span
  read -r lo _ < /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
  if [ "$lo" -gt 12000 ]; then span=$((lo - 10000)); else lo=61000; span=4000; fi
  for try in $(seq 100); do
    if [ "$lo" = 61000 ]; then p=$((61000 + RANDOM % span)); else p=$((10000 + RANDOM % span)); fi
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  echo "$1: no free port found" >&2; exit 1
}
