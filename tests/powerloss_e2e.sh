#!/usr/bin/env bash
# Power loss at every flash operation, over the real system: TLS brokers
# (scripts/lab.sh), the otakey-agent daemon over SQLite with two
# dynamic-security clouds, and otakey-device processes on file-backed key
# partitions. For each phase of the life cycle
#   claim   - a blank device claims its first key set
#   rotate  - 'otakey campaign start --rotate' on a claimed device
#   switch  - 'otakey campaign start --switch-to 2' on a rotated device
# the uncut phase is run once to count its flash operations (N); then for
# cut points k in 1..N, clean and torn, a fresh device runs the phase with
# power cut at its k-th flash operation (otakey-device --cut-at k [--tear]:
# the process dies there, leaving that operation undone or half done),
# is restarted without the cut and must converge: READY on the version the
# agent committed ('otakey device show' and the device agree, nothing left
# pending, the phase's goal reached) and its credentials accepted by its
# cloud (telemetry acknowledged after convergence). Each cut point prints
# the set the device came back up with (old: what it had before the phase,
# new: the phase's set) and the time to converge.
#
# Usage: tests/powerloss_e2e.sh BUILD_DIR [--long] [--step N] [--parallel N]
#   default (short form): every 4th cut point (and the last), clean and torn
#   --long: every cut point; --step N: every N-th; --parallel N: cut points
#   run at once (default 8; each has its own device id).
# Exit code 0 when every cut point converged.
set -euo pipefail
umask 077 # keys, PK, configs with passwords, registries: the owner's alone
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "${1:?usage: powerloss_e2e.sh BUILD_DIR [--long] [--step N] [--parallel N]}" && pwd)
shift
step=4 parallel=8
while [ $# -gt 0 ]; do
  case "$1" in
    --long) step=1 ;;
    --step) step=${2:?--step needs a number}; shift ;;
    --parallel) parallel=${2:?--parallel needs a number}; shift ;;
    *) echo "powerloss: unknown option '$1'" >&2; exit 2 ;;
  esac
  shift
done
[[ "$step" =~ ^[1-9][0-9]*$ && "$parallel" =~ ^[1-9][0-9]*$ ]] ||
  { echo "powerloss: --step and --parallel take a number >= 1" >&2; exit 2; }

work=$(mktemp -d /tmp/otakey-powerloss.XXXXXX)
. "$root/scripts/fleet.sh"
declare -A live=()   # device processes still running (pid -> name)
declare -A pid_of=() # name -> pid of its current process
declare -A res=()    # name -> why its cut run went wrong (empty: cut as asked)
declare -A stage=() acked0=() ver0=() took=() # convergence checks, see advance
t0=0
pl_cleanup() {
  local p
  for p in "${!live[@]}"; do kill "$p" 2>/dev/null || true; done
  fleet_cleanup
}
trap pl_cleanup EXIT

passes=0 fails=0 seq_no=0
fleet_setup
# Offers not answered are repeated quickly, so a device that lost power
# right after an offer is not kept waiting for the production default.
sed -i '/^\[agent\]$/a notify_resend_ms = 500' "$work/agent.ini"
start_agent

# jget FILE KEY: a number or string field of a device status line.
jget() { sed -nE "s/.*\"$2\":\"?([^\",}]*).*/\1/p" "$1" 2>/dev/null; }

# dev_start NAME [HOOK ARGS...]: the device NAME (its id in $work/dev/NAME.id).
dev_start() {
  local name=$1; shift
  rm -f "$work/dev/$name.json"
  "$bin/otakey-device" --id "$(cat "$work/dev/$name.id")" --flash "$work/dev/$name.flash" \
    --batch $batch --pk "$work/batch.pk" --agent-pub "$pub" --broker "127.0.0.1:$LAB_AGENT_PORT" \
    --cafile "$LAB_CA" --status "$work/dev/$name.json" --poll-ms 1000 --telemetry-ms 100 \
    "$@" 2>> "$work/dev/$name.log" &
  live[$!]=$name
  pid_of[$name]=$!
}

# dev_new NAME: a fresh device id for NAME.
dev_new() { seq_no=$((seq_no + 1)); device_id "$seq_no" > "$work/dev/$1.id"; }

# dev_stop NAME: SIGTERM and wait (a clean stop, not a power cut).
dev_stop() {
  local p=${pid_of[$1]}
  kill "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  unset "live[$p]"
}

# converged NAME PHASE BEFORE: 0 when device and agent agree the phase is done.
converged() {
  local f="$work/dev/$1.json" v c u show
  [ "$(jget "$f" state)" = ready ] || return 1
  v=$(jget "$f" version); c=$(jget "$f" cloud); u=$(jget "$f" user)
  case "$2" in
    claim) [ "$v" -ge 1 ] ;;
    rotate) [ "$v" -gt "$3" ] && [ "$c" -eq 1 ] ;;
    switch) [ "$v" -gt "$3" ] && [ "$c" -eq 2 ] ;;
  esac || return 1
  show=$("$bin/otakey" device show --db "$work/registry.db" --json "$(cat "$work/dev/$1.id")") || return 1
  [[ "$show" == *"\"state\":\"active\",\"version\":$v,\"cloud\":$c,\"user\":\"$u\",\"pending_version\":0,"* ]]
}

# cloud_clients NAME: the device's clients on clouds A and B ("1:user"), one a line.
cloud_clients() {
  local id c port
  id=$(cat "$work/dev/$1.id")
  for c in 1 2; do
    port=$LAB_CLOUD_A_PORT; [ $c -eq 2 ] && port=$LAB_CLOUD_B_PORT
    mosquitto_ctrl -h 127.0.0.1 -p "$port" --cafile "$LAB_CA" -u "$LAB_CLOUD_ADMIN" \
      -P "$LAB_CLOUD_PASSWORD" dynsec listClients | sed -n "s/^\($id-.*\)/$c:\1/p"
  done
}

# advance NAME PHASE BEFORE: takes NAME through the checks of convergence
# as far as they pass now; 0 once all passed. The checks, in order:
#  0 converged (device and agent agree, the phase's goal reached);
#  1 two more telemetry acknowledgements on that version (the cloud link
#    uses the committed set by then);
#  2 the clouds hold the committed set's client and no other for the
#    device (sets issued before the cut were cleaned up).
advance() {
  local f="$work/dev/$1.json"
  case "${stage[$1]:-0}" in
    0) converged "$1" "$2" "$3" || return 1
       acked0[$1]=$(jget "$f" telemetry_acked); ver0[$1]=$(jget "$f" version); stage[$1]=1
       [ -n "${took[$1]}" ] || took[$1]=$(echo "$(date +%s.%N) - $t0" | bc) ;&
    1) [ "$(jget "$f" version)" = "${ver0[$1]}" ] || { stage[$1]=0; return 1; }
       [ "$(jget "$f" telemetry_acked)" -ge $((${acked0[$1]} + 2)) ] || return 1
       stage[$1]=2 ;&
    2) [ "$(cloud_clients "$1")" = "$(jget "$f" cloud):$(jget "$f" user)" ] || return 1
       stage[$1]=3 ;;
  esac
}

# wait_converged PHASE BEFORE NAME...: until every device passed advance
# (a minute at most); took[NAME]: seconds from the call until device and
# agent were seen to agree (check 0).
wait_converged() {
  local phase=$1 before=$2 n left deadline=$((SECONDS + 60)); shift 2
  t0=$(date +%s.%N)
  for n in "$@"; do stage[$n]=0; took[$n]=; done
  while :; do
    left=0
    for n in "$@"; do
      [ "${stage[$n]}" -lt 3 ] || continue
      advance "$n" "$phase" "$before" || left=$((left + 1))
    done
    [ $left -gt 0 ] || return 0
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.05
  done
}

# start_phase PHASE NAME...: what sets the phase going for these devices
# (a claim needs nothing: a blank device claims at start).
start_phase() {
  local phase=$1 ids; shift
  [ "$phase" = claim ] && return 0
  ids=$(for n in "$@"; do cat "$work/dev/$n.id"; echo; done | paste -sd,)
  if [ "$phase" = rotate ]; then
    "$bin/otakey" campaign start --db "$work/registry.db" --rotate --devices "$ids" --rate 1000 >/dev/null
  else
    "$bin/otakey" campaign start --db "$work/registry.db" --switch-to 2 --devices "$ids" --rate 1000 >/dev/null
  fi
}

# prepare PHASE NAME...: brings fresh devices to the phase's starting point
# (claim: blank; rotate: claimed; switch: claimed and rotated) and stops them.
prepare() {
  local phase=$1 n; shift
  for n in "$@"; do dev_new "$n"; done
  [ "$phase" = claim ] && return 0
  for n in "$@"; do dev_start "$n"; done
  wait_converged claim 0 "$@" || { echo "powerloss: devices did not claim: $*" >&2; return 1; }
  if [ "$phase" = switch ]; then
    start_phase rotate "$@"
    wait_converged rotate 1 "$@" || { echo "powerloss: devices did not rotate: $*" >&2; return 1; }
  fi
  for n in "$@"; do dev_stop "$n"; done
}

before_of() { case "$1" in claim) echo 0 ;; rotate) echo 1 ;; switch) echo 2 ;; esac; }

# run_batch PHASE ITEM...: ITEM is k:mode (mode clean|torn); the cut points
# run at once, each on its own device.
run_batch() {
  local phase=$1 before item k mode name p rc bv bs v set out deadline; shift
  before=$(before_of "$phase")
  local names=()
  for item in "$@"; do names+=("$phase-${item/:/-}"); done
  prepare "$phase" "${names[@]}"
  for item in "$@"; do
    k=${item%:*}; mode=${item#*:}; name="$phase-$k-$mode"
    if [ "$mode" = torn ]; then dev_start "$name" --cut-at "$k" --tear; else dev_start "$name" --cut-at "$k"; fi
  done
  # Devices poll at boot; the campaign's offer (or the next poll) reaches them.
  start_phase "$phase" "${names[@]}"
  deadline=$((SECONDS + 60)) # for the whole batch: a failure costs one minute, not one each
  for name in "${names[@]}"; do
    p=${pid_of[$name]}; out=
    while kill -0 "$p" 2>/dev/null; do
      if converged "$name" "$phase" "$before"; then out="not reached"; dev_stop "$name"; break; fi
      if [ $SECONDS -ge $deadline ]; then out="neither cut nor converged in 60 s"; dev_stop "$name"; break; fi
      sleep 0.05
    done
    if [ -z "$out" ]; then
      set +e; wait "$p"; rc=$?; set -e
      unset "live[$p]"
      [ "$rc" -eq 3 ] || out="exited $rc instead of the power cut"
    fi
    res[$name]=$out
  done
  # Power back: every cut device boots without the hook and must converge.
  for name in "${names[@]}"; do dev_start "$name"; done
  wait_converged "$phase" "$before" "${names[@]}" || true
  for name in "${names[@]}"; do
    k=${name#"$phase"-}; mode=${k#*-}; k=${k%-*}
    out=${res[$name]}
    if [ -n "$out" ]; then
      fails=$((fails + 1)); printf 'FAILED %-6s cut %3s %-5s %s\n' "$phase" "$k" "$mode" "$out"
      dev_stop "$name"; continue
    fi
    if [ "${stage[$name]}" -eq 3 ]; then
      bv=$(jget "$work/dev/$name.json" boot_version); bs=$(jget "$work/dev/$name.json" boot_staged)
      v=$(jget "$work/dev/$name.json" version)
      if [ "$bv" -gt "$before" ]; then set=new; count_new=$((count_new + 1))
      elif [ "$bs" -eq "$v" ]; then set="old+staged"; count_staged=$((count_staged + 1))
      else set=old; count_old=$((count_old + 1)); fi
      passes=$((passes + 1))
      printf 'ok     %-6s cut %3s %-5s came back on %-10s (active v%s, staged v%s); converged on v%s cloud %s, %.2f s after power back\n' \
        "$phase" "$k" "$mode" "$set" "$bv" "$bs" "$v" "$(jget "$work/dev/$name.json" cloud)" "${took[$name]}"
    else
      fails=$((fails + 1))
      printf 'FAILED %-6s cut %3s %-5s did not converge (passed %d of 3 checks): %s; clouds: %s\n' "$phase" "$k" "$mode" \
        "${stage[$name]}" "$(cat "$work/dev/$name.json" 2>/dev/null)" "$(cloud_clients "$name" | paste -sd' ')"
      tail -3 "$work/dev/$name.log" | sed 's/^/       device: /'
    fi
    dev_stop "$name"
  done
}

command -v bc >/dev/null || { echo "powerloss: needs bc" >&2; exit 1; }
start_all=$SECONDS
for phase in claim rotate switch; do
  phase_t0=$SECONDS
  before=$(before_of "$phase")
  # The uncut phase on a fresh device counts its flash operations.
  prepare "$phase" "$phase-ref"
  dev_start "$phase-ref"
  start_phase "$phase" "$phase-ref"
  wait_converged "$phase" "$before" "$phase-ref" || { echo "powerloss: the uncut $phase did not converge" >&2; exit 1; }
  ops=$(jget "$work/dev/$phase-ref.json" flash_ops)
  dev_stop "$phase-ref"
  [ "$ops" -ge 1 ] || { echo "powerloss: the uncut $phase performed no flash operation" >&2; exit 1; }
  items=()
  for k in $(seq 1 "$step" "$ops"); do items+=("$k:clean" "$k:torn"); done
  [ $(((ops - 1) % step)) -eq 0 ] || items+=("$ops:clean" "$ops:torn")
  count_old=0 count_staged=0 count_new=0 fails_before=$fails
  for ((i = 0; i < ${#items[@]}; i += parallel)); do
    run_batch "$phase" "${items[@]:i:parallel}"
  done
  printf '%s: %d flash operations uncut; %d cut points (%s, clean and torn): old set %d, old set + new staged %d, new set %d; %d converged, %d failed in %d s\n' \
    "$phase" "$ops" "${#items[@]}" "$([ "$step" -eq 1 ] && echo every operation || echo "every ${step}th operation and the last")" \
    "$count_old" "$count_staged" "$count_new" "$((count_old + count_staged + count_new))" "$((fails - fails_before))" \
    "$((SECONDS - phase_t0))" | tee -a "$work/summary"
done
echo
cat "$work/summary"
"$bin/otakey" audit verify --db "$work/registry.db" || fails=$((fails + 1))
echo "$passes passed, $fails failed ($((SECONDS - start_all)) s)"
[ "$fails" -eq 0 ]
