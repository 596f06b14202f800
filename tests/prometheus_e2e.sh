#!/usr/bin/env bash
# A real Prometheus scrapes the agent's /metrics during the demo
# (scripts/demo.sh --prometheus on BUILD_DIR, DEVICES devices, default 20),
# and what it saw agrees with the demo:
#  - its target (the agent's /metrics over TLS with a read token) is up
#    (/api/v1/targets: health "up", no error) after the claim phase;
#  - otakey_claims_total: 0 in its first sample (the demo starts its devices
#    after Prometheus's first scrape), in the end exactly the number of
#    devices the demo claimed (a CLAIM a device repeats, no answer within 1 s
#    on a loaded machine, is answered again and counted apart, in
#    otakey_responses_resent_total), and the demo's own line says the same;
#  - claims per second, against the demo's N/D (N devices, a claim phase of D s
#    as the demo prints it). Prometheus knows the counter only at its 1 s
#    scrapes, and D is often shorter than one, so no query of it can return
#    N/D itself; the tolerances follow from the scrape spacing s (min..max,
#    measured from the samples), with C the claims it counted (= N):
#    * timeline: its first sample above 0 is after the phase began, its last
#      below C before it ended (0.25 s margin: the phase's ends are when its
#      line arrived here, a sample's timestamp is its scrape's start);
#    * over the phase (the demo's PromQL: the increase from the last sample at
#      or before the phase's start, T1, to the last at or before its end + 1 s,
#      T2, over T2 - T1): all C claims in it, and since D <= T2 - T1 < D + 2 s
#      the rate lies within [C/(D + 2 x s_max + 0.25 s), C/D + 5 %] (5 %: the
#      start here is the line's arrival minus D); checked from the raw samples
#      and for the demo's figure;
#    * peak (irate: claims between consecutive samples over their spacing):
#      within [C/((floor(D/s_min)+2) x s_max), C/s_min], 10 % either way (a
#      phase of D s touches at most floor(D/s_min)+2 scrape intervals, so the
#      busiest holds at least that share, and at most all C); the demo's
#      max_over_time(irate(...)) equals the peak from the raw samples (1 %).
# The test polls Prometheus while the demo runs (every 0.5 s) and keeps the
# last raw samples of otakey_claims_total (/api/v1/query of a range vector).
# Prints ok:/FAILED: lines; exit 1 on failure, 77 (skipped) when prometheus is
# missing and cannot be installed (bash scripts/deps.sh prometheus).
# Usage: tests/prometheus_e2e.sh BUILD_DIR   (KEEP=1 keeps the scratch dirs)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "${1:?usage: prometheus_e2e.sh BUILD_DIR}" && pwd)
n=${DEVICES:-20}
T0=$EPOCHREALTIME

if ! command -v prometheus > /dev/null || ! command -v curl > /dev/null; then
  echo "prometheus_e2e: prometheus or curl is missing; installing them (scripts/deps.sh prometheus curl)"
  bash "$root/scripts/deps.sh" prometheus curl > /dev/null 2>&1 || true
fi
if ! command -v prometheus > /dev/null || ! command -v curl > /dev/null; then
  echo "SKIPPED: prometheus_e2e needs Debian's prometheus and curl, which are not installed and could not be (bash scripts/deps.sh prometheus curl)"
  exit 77
fi

tmp=$(mktemp -d /tmp/otakey-prom-e2e.XXXXXX)
demo_pid=
cleanup() {
  # The demo stops everything it started on its way out (TERM runs its EXIT trap).
  [ -z "$demo_pid" ] || kill "$demo_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT
fails=0
ok() { echo "ok: $*"; }
fail() { echo "FAILED: $*"; fails=$((fails + 1)); }

# The demo, each line of its output stamped with the time it arrived (demo.end: all written).
: > "$tmp/demo.out"
bash "$root/scripts/demo.sh" --prometheus "$n" "$bin" 2> "$tmp/demo.err" > >(
  while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done > "$tmp/demo.out"
  echo end > "$tmp/demo.end"
) &
demo_pid=$!

prom=
claimed=
while kill -0 "$demo_pid" 2>/dev/null; do
  [ -n "$prom" ] || prom=$(sed -n 's/^[0-9.]* Prometheus: \(http:[^ ]*\) .*/\1/p' "$tmp/demo.out")
  [ -n "$claimed" ] || ! grep -q '^[0-9.]* claim: ' "$tmp/demo.out" || claimed=1
  if [ -n "$prom" ]; then
    if curl -sf "$prom/api/v1/query" --get --data-urlencode 'query=otakey_claims_total[5m]' \
      -o "$tmp/samples.new" 2>/dev/null && grep -q '"values"' "$tmp/samples.new"; then
      mv "$tmp/samples.new" "$tmp/samples.json"
    fi
    if [ -n "$claimed" ] && curl -sf "$prom/api/v1/targets" -o "$tmp/targets.new" 2>/dev/null &&
      grep -q '"activeTargets"' "$tmp/targets.new"; then
      mv "$tmp/targets.new" "$tmp/targets.json"
    fi
  fi
  sleep 0.5
done
rc=0
wait "$demo_pid" || rc=$?
demo_pid=
for i in $(seq 50); do [ -e "$tmp/demo.end" ] && break; sleep 0.1; done
elapsed=$(echo "$EPOCHREALTIME - $T0" | bc)

if [ "$rc" -eq 0 ]; then
  ok "demo --prometheus $n ran (exit 0, $(printf '%.1f' "$elapsed") s)"
else
  fail "demo --prometheus exited $rc"
  tail -15 "$tmp/demo.out" | cut -d' ' -f2-
  tail -15 "$tmp/demo.err"
fi
[ -n "$prom" ] && ok "demo started Prometheus at $prom" || fail "demo printed no Prometheus line"

# Target health, seen after the claim phase.
if [ ! -s "$tmp/targets.json" ]; then
  fail "no /api/v1/targets answer after the claim phase"
else
  health=$(grep -o '"health":"[a-z]*"' "$tmp/targets.json" | head -1 | cut -d'"' -f4)
  lasterr=$(grep -o '"lastError":"[^"]*"' "$tmp/targets.json" | head -1 | cut -d'"' -f4)
  scrape_url=$(grep -o '"scrapeUrl":"[^"]*"' "$tmp/targets.json" | head -1 | cut -d'"' -f4)
  if [ "$health" = up ] && [ -z "$lasterr" ] && [[ "$scrape_url" == https://127.0.0.1:*/metrics ]]; then
    ok "target $scrape_url health up, no error"
  else
    fail "target $scrape_url: health '$health', lastError '$lasterr'"
  fi
fi

# The demo's own figures: "claim: N devices in D s", stamped when it arrived.
claim_line=$(grep -m1 '^[0-9.]* claim: ' "$tmp/demo.out" || true)
d_end=${claim_line%% *}
n_claimed=$(sed -n 's/^[0-9.]* claim: \([0-9]*\) devices in .*/\1/p' <<< "$claim_line")
D=$(sed -n 's/.* in \([0-9.]*\) s$/\1/p' <<< "$claim_line")
if [ -z "$claim_line" ] || [ -z "$D" ] || [ "$n_claimed" != "$n" ]; then
  fail "demo's claim line: '${claim_line#* }'"
  exit 1
fi
d_start=$(echo "$d_end - $D" | bc)
r_demo=$(echo "scale=3; $n / $D" | bc -l)
ok "demo: $n devices claimed in $D s = $r_demo claims/s"
demo_line=$(grep -m1 '^[0-9.]* claims per second: ' "$tmp/demo.out" | cut -d' ' -f2- || true)
echo "   demo: $demo_line"
demo_rate=$(sed -n 's/.* Prometheus \([0-9.]*\) over the claim phase.*/\1/p' <<< "$demo_line")
demo_claims=$(sed -n 's/.* over the claim phase (\([0-9]*\) claims.*/\1/p' <<< "$demo_line")
demo_peak=$(sed -n 's/.*, \([0-9.]*\) at its peak.*/\1/p' <<< "$demo_line")
demo_total=$(sed -n 's/.* otakey_claims_total \([0-9]*\)$/\1/p' <<< "$demo_line")

if [ ! -s "$tmp/samples.json" ]; then
  fail "no samples of otakey_claims_total from Prometheus"
  exit 1
fi
# The raw samples, "TIMESTAMP VALUE" lines, as the last poll got them.
grep -o '\[[0-9.]*,"[0-9.e+]*"\]' "$tmp/samples.json" | tr -d '[]"' | tr ',' ' ' > "$tmp/samples"
rel() { printf '%+.2f' "$(echo "$1 - $d_start" | bc)"; }
echo "   Prometheus's samples of otakey_claims_total, s from the demo's claim phase's start:"
awk -v s="$d_start" -v e="$d_end" '$1 >= s - 3 && $1 <= e + 3 { printf "     %+7.3f s  %s\n", $1 - s, $2 }' "$tmp/samples"
read -r first_v last_v max_v n_samples < <(awk 'NR == 1 { f = $2 } { l = $2; if ($2 > m) m = $2 } END { print f + 0, l + 0, m + 0, NR }' "$tmp/samples")
C=$last_v # the claims Prometheus counted
if [ "$first_v" = 0 ]; then
  ok "otakey_claims_total 0 in Prometheus's first sample (scraped before the devices started)"
else
  fail "otakey_claims_total $first_v in Prometheus's first sample: no baseline before the claims"
fi
if [ "$last_v" = "$n" ] && [ "$max_v" = "$n" ]; then
  ok "otakey_claims_total in Prometheus = $last_v = the devices the demo claimed ($n_samples samples)"
else
  fail "otakey_claims_total in Prometheus = $last_v (max $max_v); the demo claimed $n devices"
fi
[ "$demo_total" = "$C" ] && ok "the demo's line says otakey_claims_total $demo_total too" ||
  fail "the demo's line says otakey_claims_total '$demo_total', Prometheus's samples $C"

# Prometheus's timeline against the demo's: its first sample above 0 was taken
# after the claim phase began, its last below the final count before it ended
# (0.25 s margin: the phase's ends are when its line arrived here, a sample's
# timestamp is its scrape's start).
read -r t_up t_below < <(awk -v c="$C" '$2 > 0 && u == "" { u = $1 } $2 < c { b = $1 } END { print (u == "" ? "-" : u), (b == "" ? "-" : b) }' "$tmp/samples")
if [ "$t_up" != - ] && [ "$t_below" != - ] && [ "$(echo "$t_up > $d_start - 0.25 && $t_below < $d_end + 0.25" | bc)" = 1 ]; then
  ok "timeline: Prometheus's first sample above 0 at $(rel "$t_up") s, its last below $C at $(rel "$t_below") s of the demo's claim phase [0, $D] s"
else
  fail "timeline: first sample above 0 at $t_up, last below $C at $t_below; the claim phase from $d_start to $d_end"
fi

# Over the claim phase, as the demo asks it: from the last sample at or before
# its start (T1) to the last at or before its end + 1 s (T2, the first after
# the end with 1 s scrapes). D <= T2 - T1 < D + 2 scrape spacings (+0.25 s), so
# its rate R must lie within [C/(D + 2 x spacing + 0.25 s), C/D + 5 %] (the 5 %:
# the start here is the line's arrival minus D).
read -r T1 v1 T2 v2 smin smax < <(awk -v s="$d_start" -v e="$(echo "$d_end + 1" | bc)" '
  $1 <= s { t1 = $1; v1 = $2 } $1 <= e { t2 = $1; v2 = $2 }
  NR > 1 { g = $1 - pt; if (smin == "" || g < smin) smin = g; if (g > smax) smax = g } { pt = $1 }
  END { print (t1 == "" ? "-" : t1), v1 + 0, (t2 == "" ? "-" : t2), v2 + 0, smin, smax }' "$tmp/samples")
printf '   scrape spacing: %.3f .. %.3f s\n' "$smin" "$smax"
if [ "$T1" = - ] || [ "$T2" = - ]; then
  fail "no samples around the claim phase (T1 $T1, T2 $T2)"
else
  span=$(echo "$T2 - $T1" | bc)
  R=$(echo "scale=3; ($v2 - $v1) / $span" | bc -l)
  r_lo=$(echo "scale=3; $C / ($D + 2 * $smax + 0.25)" | bc -l) r_hi=$(echo "scale=3; $C / $D * 1.05" | bc -l)
  if [ "$(echo "$v2 - $v1" | bc)" = "$C" ] && [ "$(echo "$R >= $r_lo && $R <= $r_hi" | bc)" = 1 ]; then
    ok "claims per second over the claim phase: Prometheus $R (all $C claims between its scrapes at $(rel "$T1") s and $(rel "$T2") s, $(printf '%.2f' "$span") s apart), within [$r_lo, $r_hi]; the demo's $r_demo"
  else
    fail "claims per second over the claim phase: Prometheus $R ($(echo "$v2 - $v1" | bc) of $C claims from $(rel "$T1") s to $(rel "$T2") s), not within [$r_lo, $r_hi]; the demo's $r_demo"
  fi
  if [ -n "$demo_rate" ] && [ "$demo_claims" = "$C" ] && [ "$(echo "$demo_rate >= $r_lo - 0.05 && $demo_rate <= $r_hi + 0.05" | bc)" = 1 ]; then
    ok "the demo's PromQL figure over the claim phase: $demo_rate ($demo_claims claims), within the same bounds"
  else
    fail "the demo's PromQL figure over the claim phase: '$demo_rate' ('$demo_claims' claims), bounds [$r_lo, $r_hi], $C claims"
  fi
fi

# Peak: irate's maximum, claims between consecutive samples over their spacing.
# A phase of D s touches at most floor(D / min spacing) + 2 scrape intervals, so
# the busiest holds at least C / that many claims, over at most the max spacing,
# and at most C over at least the min spacing; 10 % either way.
peak=$(awk 'NR > 1 && $1 > pt { r = ($2 - pv) / ($1 - pt); if (r > p) p = r } { pt = $1; pv = $2 } END { printf "%.3f", p }' "$tmp/samples")
k=$(echo "$D / $smin + 2" | bc)
p_lo=$(echo "scale=3; $C / ($k * $smax) * 0.9" | bc -l) p_hi=$(echo "scale=3; $C / $smin * 1.1" | bc -l)
if [ "$(echo "$peak >= $p_lo && $peak <= $p_hi" | bc)" = 1 ]; then
  ok "peak claims per second (irate) from the raw samples: $peak, within [$p_lo, $p_hi]; the demo's rate $r_demo"
else
  fail "peak claims per second (irate) from the raw samples: $peak, not within [$p_lo, $p_hi]"
fi
if [ -n "$demo_peak" ] && [ "$(echo "d = $demo_peak - $peak; if (d < 0) d = -d; d <= $peak * 0.01 + 0.05" | bc -l)" = 1 ]; then
  ok "the demo's PromQL peak (max_over_time(irate(otakey_claims_total[3s])[5m:250ms])): $demo_peak, the same"
else
  fail "the demo's PromQL peak '$demo_peak' != $peak from the raw samples"
fi

echo "prometheus_e2e: $(printf '%.1f' "$(echo "$EPOCHREALTIME - $T0" | bc)") s"
[ "$fails" -eq 0 ] || { echo "FAILED: $fails check(s)"; exit 1; }
