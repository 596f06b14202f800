#!/usr/bin/env bash
# Model checking of the atomic update (formal/atomic.pml) with spin:
# the model must verify with no error, and each deliberately broken
# variant must be caught. Then the ProVerif model (formal/otakey.pv) if it
# exists and a proverif binary is on PATH (or PROVERIF=/path/to/proverif).
# Usage: scripts/verify.sh [--large]   (--large: wider bounds, about a minute)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh spin
root=$(pwd)
work=$(mktemp -d /tmp/otakey-verify.XXXXXX)
trap 'rm -rf "$work"' EXIT
bounds=()
[ "${1:-}" = --large ] && bounds=(-DMAXV=6 -DMAXDROP=3 -DMAXDUP=3 -DMAXPOWER=2 -DMAXCRASH=2 -DUPDATES=2)
fail=0

# run_spin NAME EXPECT [defines...]: EXPECT is "ok" or "caught".
run_spin() {
  local name=$1 expect=$2 out errors states; shift 2
  rm -f "$work"/pan* "$work"/*.trail
  (cd "$work" && spin "$@" -a "$root/formal/atomic.pml" > spin.log 2>&1 &&
     gcc -O2 -DSAFETY -DMEMLIM=8000 -w -o pan pan.c) || { echo "spin: $name: model did not build"; cat "$work/spin.log"; fail=1; return; }
  out=$(cd "$work" && ./pan -m20000000 2>&1 || true)
  errors=$(printf '%s\n' "$out" | sed -n 's/.*errors: \([0-9]*\).*/\1/p')
  states=$(printf '%s\n' "$out" | sed -n 's/^ *\([0-9e+.]*\) states, stored.*/\1/p')
  if [ "$expect" = ok ] && [ "$errors" = 0 ]; then
    echo "spin: $name: verified, $states states, 0 errors"
  elif [ "$expect" = caught ] && [ -n "$errors" ] && [ "$errors" != 0 ]; then
    echo "spin: $name: caught as expected ($(printf '%s\n' "$out" | grep -m1 -o 'assertion violated.*' | cut -c1-90))"
  else
    echo "spin: $name: UNEXPECTED (errors: ${errors:-?}, expected $expect)"
    printf '%s\n' "$out" | tail -20
    fail=1
  fi
}

run_spin "atomic update" ok "${bounds[@]}"
run_spin "broken: agent deletes old credentials when it issues" caught -DBROKEN_EARLY_DELETE
run_spin "broken: device commits on response, before proof" caught -DBROKEN_COMMIT_ON_RESPONSE

pv=${PROVERIF:-$(command -v proverif || true)}
if [ -f formal/otakey.pv ]; then
  if [ -n "$pv" ]; then
    "$pv" formal/otakey.pv | grep -E '^RESULT' | tee "$work/pv.txt"
    if grep -q 'is false\|cannot be proved' "$work/pv.txt"; then fail=1; fi
  else
    echo "proverif: not installed; skipped. ProVerif 2.x is not packaged by Debian: build it from"
    echo "  its source (OCaml: apt-get install ocaml-nox ocaml-findlib; then ./build in the source"
    echo "  tree) outside this repository, and run PROVERIF=/path/to/proverif $0"
  fi
fi
exit $fail
