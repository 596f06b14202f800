# free_port WHO: a loopback TCP port nothing listens on (sourced by lab.sh and pg.sh).
# It is taken below the kernel's ephemeral range (ip_local_port_range), so
# that no outgoing connection holds it as its local port when a server binds it.
free_port() {
  local p try lo=32768 base=10000 span
  read -r lo _ < /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
  span=$((lo - base))
  [ "$span" -ge 2000 ] || { base=61000; span=4000; } # a range starting low: above its usual end
  for try in $(seq 100); do
    p=$((base + RANDOM % span))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  echo "$1: no free port found" >&2; exit 1
}
