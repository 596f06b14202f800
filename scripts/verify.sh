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
# Broken variants of the ProVerif model, made from it with sed so that they
# stay the shipped model but for one change; each must make a query false.
broken_pv() {
  case "$1" in
    resend-claim-set) # the agent re-sends a device's set to any later claim of its id
      sed -e 's/^    new ak: key; new cred: bitstring;$/    let ak = setfor(id) in let cred = credfor(id) in/' \
          -e 's/^free PK: key\..*$/&\nfun setfor(bitstring): key [private].\nfun credfor(bitstring): bitstring [private]./' ;;
    no-ecdh) # the response keys do not use the ephemeral ECDH
      sed -e 's/kdf(th, exp(ed, ea), extra/kdf(th, g, extra/' -e 's/kdf(th, exp(ea, ed), nil/kdf(th, g, nil/' \
          -e 's/kdf(th2, exp(ea2, ed2), key2bs(ak)/kdf(th2, g, key2bs(ak)/' ;;
  esac < formal/otakey.pv
}
if [ -f formal/otakey.pv ]; then
  if [ -n "$pv" ]; then
    "$pv" formal/otakey.pv | grep -E '^RESULT' | tee "$work/pv.txt"
    if grep -q 'is false\|cannot be proved' "$work/pv.txt"; then echo "proverif: a query does not hold"; fail=1; fi
    for b in resend-claim-set no-ecdh; do
      broken_pv "$b" > "$work/$b.pv"
      if cmp -s "$work/$b.pv" formal/otakey.pv; then echo "proverif: broken variant $b: no change made"; fail=1; continue; fi
      if "$pv" "$work/$b.pv" | grep -E '^RESULT' | grep -q 'is false'; then
        echo "proverif: broken variant $b: caught (a query is false)"
      else
        echo "proverif: broken variant $b: NOT caught"; fail=1
      fi
    done
  else
    echo "proverif: not installed; skipped. ProVerif 2.x is not packaged by Debian: build it from"
    echo "  its source (OCaml: apt-get install ocaml-nox ocaml-findlib; then ./build in the source"
    echo "  tree) outside this repository, and run PROVERIF=/path/to/proverif $0"
  fi
fi
exit $fail
