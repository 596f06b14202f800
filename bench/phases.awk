# bench/run: the fleet's CSV of one run, each row with columns added at the
# end from the CPU snapshots of bench/snap.sh (DIR/snaps):
#   awk -F, -v run=R -v pin=LABEL -v srv=CPUS -v flt=CPUS -v floor_claim=US \
#       -v floor_update=US -f bench/phases.awk SNAPS FLEET.CSV
# srv, flt: the server's and the simulator's CPUs ("0", "1", "0-1", "all");
# floor_*: the crypto floor per claim and per update in µs (empty: none).
# A phase runs from its snapshot to the next one: claim (taken before the
# simulator starts), rotate and switch (taken by their campaign command), end
# (when the simulator reports the switch done, or exits).
# Added columns (empty where not measured: baselines, a phase with no end):
#   run, pin                       this run's number, the pinning ("srv/flt" or none)
#   agent_us .. postgres_us        CPU per completed device of each server process
#                                  (/proc/PID/task/*/schedstat, ns), and of the
#                                  campaign command (cli_us, getrusage)
#   server_us                      their sum
#   devices_per_server_cpu_s       devices per second of server CPU (1e6 / server_us)
#   server_util                    server processes' CPU / the phase's interval / server CPUs
#   server_core_busy, _other       the server CPUs' busy share (/proc/stat, everything
#                                  on them), and that minus the server processes
#   fleet_core_busy                the simulator CPUs' busy share
#   server_core_steal              the hypervisor's share of the server CPUs
#   server_core_softirq            the server CPUs' share in softirq (the loopback
#                                  network stack; counted in no process), and
#   server_softirq_us              that as µs per device
#   floor_us, agent_floor_ratio    the phase's crypto floor per device, agent_us / it
#   interval_s                     the snapshot interval (the claim's includes the
#                                  simulator's start-up)
function cpus_of(spec, out,    n, i, a, b, parts, k, m) {
  delete out
  if (spec == "all" || spec == "") { for (k in allcpu) out[k] = 1; return }
  n = split(spec, parts, ",")
  for (i = 1; i <= n; i++) {
    if (split(parts[i], m, "-") == 2) { a = m[1] + 0; b = m[2] + 0 } else { a = parts[i] + 0; b = a }
    for (k = a; k <= b; k++) out["cpu" k] = 1
  }
}
# The share of the CPUs of set in what ("busy", "steal", "softirq") from a to b.
function busy(set, a, b, what,    k, bu, to, st, si) {
  bu = to = st = si = 0
  for (k in set) {
    if (!((a SUBSEP k) in sbusy) || !((b SUBSEP k) in sbusy)) continue
    bu += sbusy[b, k] - sbusy[a, k]; to += stotal[b, k] - stotal[a, k]; st += ssteal[b, k] - ssteal[a, k]
    si += ssirq[b, k] - ssirq[a, k]
  }
  if (to <= 0) return ""
  return what == "steal" ? st / to : what == "softirq" ? si / to : bu / to
}
# CPU seconds of LABEL's processes from snapshot a to b (a process that started
# meanwhile counts from 0; one that ended meanwhile is lost).
function proc_s(label, a, b,    key, p, s, any) {
  s = 0; any = 0
  for (key in pns) {
    split(key, p, SUBSEP)
    if (p[1] != b || p[2] != label) continue
    s += pns[key] - ((a SUBSEP label SUBSEP p[3]) in pns ? pns[a, label, p[3]] : 0); any = 1
  }
  return any ? s / 1e9 : ""
}
function f1(x) { return x == "" ? "" : sprintf("%.1f", x) }
function f3(x) { return x == "" ? "" : sprintf("%.3f", x) }
BEGIN {
  nextof["claim"] = "rotate"; nextof["rotate"] = "switch"; nextof["switch"] = "end"
  nlab = split("agent agent_broker cloud_a cloud_b", labs, " ")
}
FILENAME == ARGV[1] {
  if ($0 ~ /^T /) { split($0, f, " "); t[f[2]] = f[3] }
  else if ($0 ~ /^S /) { split($0, f, " "); sbusy[f[2], f[3]] = f[4]; stotal[f[2], f[3]] = f[5]; ssteal[f[2], f[3]] = f[6]; ssirq[f[2], f[3]] = f[7]; allcpu[f[3]] = 1 }
  else if ($0 ~ /^P /) { split($0, f, " "); pns[f[2], f[3], f[4]] = f[5]; if (f[3] == "postgres") pg = 1 }
  else if ($0 ~ /^C /) { split($0, f, " "); cli[f[2]] = f[3] + f[4] }
  next
}
FNR == 1 {
  print $0 ",run,pin,agent_us,agent_broker_us,cloud_a_us,cloud_b_us,cli_us,postgres_us,server_us," \
    "devices_per_server_cpu_s,server_util,server_core_busy,server_core_other,fleet_core_busy," \
    "server_core_steal,server_core_softirq,server_softirq_us,floor_us,agent_floor_ratio,interval_s"
  cpus_of(srv, sset); cpus_of(flt, fset)
  next
}
{
  a = $3; b = ($3 in nextof) ? nextof[$3] : ""
  # The end of a phase: the next snapshot taken (a phase may have been skipped).
  while (b != "" && !(b in t)) b = (b in nextof) ? nextof[b] : ""
  if ($2 !~ /^ota-key/ || !(a in t) || b == "") {
    print $0 "," run "," pin ",,,,,,,,,,,,,,,,,,"
    next
  }
  done = $5 > 0 ? $5 : 1
  iv = (t[b] - t[a]) / 1e6
  tot = 0
  for (i = 1; i <= nlab; i++) { s = proc_s(labs[i], a, b); v[labs[i]] = s; if (s != "") tot += s }
  v["postgres"] = pg ? proc_s("postgres", a, b) : ""
  if (v["postgres"] != "") tot += v["postgres"]
  v["cli"] = (a in cli) ? cli[a] : 0
  tot += v["cli"]
  nsrv = 0; for (k in sset) if (k in allcpu) nsrv++
  util = iv > 0 && nsrv > 0 ? tot / iv / nsrv : ""
  sb = busy(sset, a, b, "busy")
  other = sb != "" && util != "" ? (sb - util > 0 ? sb - util : 0) : ""
  fl = $3 == "claim" ? floor_claim : floor_update
  out = $0 "," run "," pin
  for (i = 1; i <= nlab; i++) out = out "," (v[labs[i]] == "" ? "" : f1(v[labs[i]] * 1e6 / done))
  out = out "," f1(v["cli"] * 1e6 / done) "," (v["postgres"] == "" ? "" : f1(v["postgres"] * 1e6 / done))
  out = out "," f1(tot * 1e6 / done) "," (tot > 0 ? f1(done / tot) : "")
  out = out "," f3(util) "," f3(sb) "," f3(other) "," f3(busy(fset, a, b, "busy")) "," f3(busy(sset, a, b, "steal"))
  si = busy(sset, a, b, "softirq")
  out = out "," f3(si) "," (si == "" ? "" : f1(si * iv * nsrv * 1e6 / done))
  out = out "," (fl == "" ? "" : f1(fl)) "," (fl == "" || v["agent"] == "" ? "" : sprintf("%.2f", v["agent"] * 1e6 / done / fl))
  print out "," f3(iv)
}
