# bench/run: min / median / max over the runs of each fleet size, from the
# CSV rows of this invocation (bench/phases.awk's columns) and the crypto
# floors measured beside them:
#   awk -F, -v floors=FILE -f bench/summary.awk ALL.CSV
# FILE: "fleet run op µs share" lines of bench/floor.sh (may be absent).
function sortn(a, n,    i, j, x) { # insertion sort, numbers
  for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
}
# "min / median / max" of the values of key k (the median of an even count:
# the mean of the middle two); "-" when none.
function mmm(k, fmt,    n, i, a, med) {
  n = cnt[k]
  if (n == 0) return "-"
  for (i = 1; i <= n; i++) a[i] = val[k, i] + 0
  sortn(a, n)
  med = n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  if (n == 1) return sprintf(fmt, med)
  return sprintf(fmt " / " fmt " / " fmt, a[1], med, a[n])
}
function add(k, x) { if (x != "") { cnt[k]++; val[k, cnt[k]] = x } }
NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
$2 ~ /^ota-key/ && $(col["run"]) != "" {
  g = $1 SUBSEP $2 SUBSEP $3
  if (!(g in seen)) { seen[g] = 1; order[++ng] = g }
  runs[g]++
  split("devices_per_s p50_ms p95_ms p99_ms wall_s failures agent_us agent_broker_us cloud_a_us " \
        "cloud_b_us cli_us postgres_us server_us devices_per_server_cpu_s server_util " \
        "server_core_busy server_core_other fleet_core_busy server_core_steal server_softirq_us device_cpu_us " \
        "floor_us agent_floor_ratio", names, " ")
  for (i in names) if (names[i] in col) add(g SUBSEP names[i], $(col[names[i]]))
  if ($(col["postgres_us"]) != "") pg = 1
}
END {
  if (ng == 0) exit
  print "### Server side on its own core: throughput and latency (min / median / max over the runs)"
  print ""
  print "| fleet | scheme | phase | runs | wall s | devices/s | server core used by the servers | busy with anything (others) | devices per server CPU-second | p50 ms | p95 ms | p99 ms | failures |"
  print "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for (i = 1; i <= ng; i++) {
    g = order[i]; split(g, p, SUBSEP)
    printf "| %s | %s | %s | %d | %s | %s | %s | %s (%s) | %s | %s | %s | %s | %s |\n", p[1], p[2], p[3], runs[g],
      mmm(g SUBSEP "wall_s", "%.2f"), mmm(g SUBSEP "devices_per_s", "%.0f"), mmm(g SUBSEP "server_util", "%.2f"),
      mmm(g SUBSEP "server_core_busy", "%.2f"), mmm(g SUBSEP "server_core_other", "%.2f"),
      mmm(g SUBSEP "devices_per_server_cpu_s", "%.0f"), mmm(g SUBSEP "p50_ms", "%.0f"),
      mmm(g SUBSEP "p95_ms", "%.0f"), mmm(g SUBSEP "p99_ms", "%.0f"), mmm(g SUBSEP "failures", "%d")
  }
  print ""
  print "### Server CPU per device by process, µs (min / median / max over the runs)"
  print ""
  printf "| fleet | phase | agent | agent broker | cloud A | cloud B | campaign command |%s server total | softirq on the server core | simulator (other core) |\n", pg ? " PostgreSQL |" : ""
  printf "|---:|---|---:|---:|---:|---:|---:|%s---:|---:|---:|\n", pg ? "---:|" : ""
  for (i = 1; i <= ng; i++) {
    g = order[i]; split(g, p, SUBSEP)
    printf "| %s | %s | %s | %s | %s | %s | %s |%s %s | %s | %s |\n", p[1], p[3],
      mmm(g SUBSEP "agent_us", "%.0f"), mmm(g SUBSEP "agent_broker_us", "%.0f"), mmm(g SUBSEP "cloud_a_us", "%.0f"),
      mmm(g SUBSEP "cloud_b_us", "%.0f"), mmm(g SUBSEP "cli_us", "%.1f"),
      pg ? " " mmm(g SUBSEP "postgres_us", "%.0f") " |" : "", mmm(g SUBSEP "server_us", "%.0f"),
      mmm(g SUBSEP "server_softirq_us", "%.0f"), mmm(g SUBSEP "device_cpu_us", "%.0f")
  }
  print ""
  if (floors != "" && (getline line < floors) > 0) {
    do { split(line, f, " "); k = f[3]; if (!(k in fseen)) { fseen[k] = 1; forder[++nf] = k }
         add("floor" SUBSEP k, f[4]); add("share" SUBSEP k, f[5]) } while ((getline line < floors) > 0)
    print "### The agent against its crypto floor (min / median / max over the runs)"
    print ""
    print "| fleet | phase | agent CPU µs/device | crypto floor µs/device | agent / floor |"
    print "|---:|---|---:|---:|---:|"
    for (i = 1; i <= ng; i++) {
      g = order[i]; split(g, p, SUBSEP)
      printf "| %s | %s | %s | %s | %s× |\n", p[1], p[3], mmm(g SUBSEP "agent_us", "%.0f"),
        mmm(g SUBSEP "floor_us", "%.1f"), mmm(g SUBSEP "agent_floor_ratio", "%.2f")
    }
    print ""
    print "`openssl speed` on the server core, µs of CPU per operation (min / median / max over the runs;"
    print "share: how much of the wall time openssl had that core):"
    print ""
    print "| primitive | µs per operation | share of the core |"
    print "|---|---:|---:|"
    for (i = 1; i <= nf; i++)
      printf "| %s | %s | %s |\n", forder[i], mmm("floor" SUBSEP forder[i], forder[i] ~ /^ec/ ? "%.1f" : "%.2f"),
        mmm("share" SUBSEP forder[i], "%.2f")
    print ""
  }
}
