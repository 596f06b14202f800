#!/usr/bin/env bash
# Plots of bench/run's fleet.csv (gnuplot, PNG):
#   throughput.png  devices/s against fleet size, one line per scheme/phase
#   latency.png     p99 latency against fleet size
#   bytes.png       payload + MQTT framing per device and operation (smallest fleet)
# Usage: bench/plot.sh FLEET.CSV OUTDIR
set -euo pipefail
csv=$1; out=$2
command -v gnuplot >/dev/null || { echo "plot: gnuplot missing (apt-get install gnuplot-nox)" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# One data file per series: "scheme phase" -> fleet devices/s p99.
awk -F, -v dir="$tmp" 'NR > 1 {
  name = $2 ($3 == "re-key" ? "" : " " $3); f = name; gsub(/[^A-Za-z0-9]/, "_", f)
  if (!(f in seen)) { seen[f] = 1; print name > (dir "/" f ".name"); order[++n] = f }
  print $1, $8, $11 >> (dir "/" f ".dat")
} END { for (i = 1; i <= n; i++) print order[i] > (dir "/series") }' "$csv"
# Bytes per device at the smallest fleet size: there every device stays
# connected (larger fleets may be duty-cycled, and early polls add bytes).
awk -F, 'NR > 1 && (min == "" || $1 + 0 <= min) { if (min == "" || $1 + 0 < min) { min = $1 + 0; delete rows; k = 0 }
  rows[++k] = "\"" $2 ($3 == "re-key" ? "" : " " $3) "\" " ($17 + $18 + $19 + $20) }
  END { for (i = 1; i <= k; i++) print rows[i]; print min > "/dev/stderr" }' "$csv" > "$tmp/bytes.dat" 2> "$tmp/bytes.fleet"
plots=""
for f in $(cat "$tmp/series"); do
  plots="$plots \"$tmp/$f.dat\" using 1:COL with linespoints title \"$(cat "$tmp/$f.name")\","
done
gnuplot <<EOG
set terminal pngcairo size 900,560 font ",10"
set grid
set logscale x
set key outside right
set xlabel "fleet size (devices)"
set output "$out/throughput.png"
set title "Devices per second (one operation per device)"
set logscale y
set ylabel "devices/s"
plot ${plots//COL/2}
set output "$out/latency.png"
set title "p99 latency per device"
set ylabel "ms"
plot ${plots//COL/3}
unset logscale x
set output "$out/bytes.png"
set title "Bytes per device and operation, payload + MQTT framing, both directions ($(cat "$tmp/bytes.fleet") devices)"
set ylabel "bytes (log scale)"
set xlabel ""
set style fill solid 0.6
set boxwidth 0.6
set xtics rotate by -30
unset key
plot "$tmp/bytes.dat" using 0:2:xtic(1) with boxes, "" using 0:2:(sprintf("%.0f", \$2)) with labels offset 0,1
EOG
echo "plot: $out/throughput.png $out/latency.png $out/bytes.png"
