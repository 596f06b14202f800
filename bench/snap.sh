#!/usr/bin/env bash
# CPU accounting at a phase boundary of bench/run: appends to DIR/snaps one
# snapshot, tagged TAG, of
#   T TAG <epoch µs>
#   S TAG cpuN <busy> <total> <steal> <softirq>   every CPU of /proc/stat (ticks)
#   P TAG <label> <pid> <ns>       each server process of DIR/pids ("label pid"
#                                  lines; a label ending in '+' takes the pid
#                                  and its live children: PostgreSQL): the sum
#                                  of /proc/PID/task/*/schedstat (ns on CPU)
# and then, with a command, runs it and appends
#   C TAG <user s> <sys s>         its CPU time (getrusage of the child)
# exiting with its status. bench/run calls it before the fleet starts and as
# the fleet's --rotate-cmd / --switch-cmd (the campaign command of the phase
# it starts), and when the last phase ends; bench/phases.awk turns the
# snapshots into CPU per device and process.
# Usage: bench/snap.sh DIR TAG [CMD ARGS...]
# Only bash builtins read /proc, so a snapshot costs no fork.
set -uo pipefail
dir=$1; tag=$2; shift 2

ns_of() { # NS: the ns on CPU of every thread of process $1; 1 if it is gone
  local t ns rest any=
  NS=0
  for t in /proc/"$1"/task/*/schedstat; do
    read -r ns rest 2>/dev/null < "$t" || continue
    NS=$((NS + ns)); any=1
  done
  [ -n "$any" ]
}

snap() {
  local out name u ni s id io irq sirq st rest label pid f c
  local -a fields
  out="T $tag ${EPOCHREALTIME/[.,]/}"$'\n'
  while read -r name u ni s id io irq sirq st rest; do
    case $name in
      cpu[0-9]*) out+="S $tag $name $((u + ni + s + irq + sirq + st)) $((u + ni + s + id + io + irq + sirq + st)) $st $sirq"$'\n' ;;
      intr) break ;;
    esac
  done < /proc/stat
  if [ -f "$dir/pids" ]; then
    while read -r label pid; do
      [ -n "$pid" ] || continue
      if [ "${label%+}" != "$label" ]; then
        # The process and its children as they are now.
        for f in /proc/[0-9]*/stat; do
          read -r c 2>/dev/null < "$f" || continue
          read -r -a fields <<< "${c##*) }" # state ppid ...
          c=${f#/proc/}; c=${c%/stat}
          if [ "$c" = "$pid" ] || [ "${fields[1]}" = "$pid" ]; then
            ns_of "$c" && out+="P $tag ${label%+} $c $NS"$'\n'
          fi
        done
      else
        ns_of "$pid" && out+="P $tag $label $pid $NS"$'\n'
      fi
    done < "$dir/pids"
  fi
  printf '%s' "$out" >> "$dir/snaps"
}

snap
[ $# -gt 0 ] || exit 0
TIMEFORMAT='%3U %3S'
tf=$(mktemp "$dir/time.XXXXXX")
# The command's stderr stays on ours (fd 3); only time's report goes to $tf.
{ time "$@" 2>&3; } 3>&2 2>"$tf"
rc=$?
read -r us ss < "$tf" && echo "C $tag $us $ss" >> "$dir/snaps"
rm -f "$tf"
exit $rc
