#!/usr/bin/env bash
# Model checking of the atomic update (formal/atomic.pml) with spin:
# the model must verify with no error, and each deliberately broken
# variant must be caught. Then the ProVerif model (formal/otakey.pv) and its
# broken variants if a proverif binary is on PATH (or PROVERIF=/path/to/it);
# without one, that part is skipped with a message.
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
# The ProVerif model. Its query block lists the reachability queries first
# (lines "event(Reach(...));"), each of which must come out false, i.e.
# reachable, so that no true result holds only because its events never
# happen; then the properties, each after a comment "[NAME]", each of which
# must come out true.
# Broken variants, made from the model with sed so that each is the shipped
# model but for one change; each must make the property named with it false.
# They leave out the reachability queries (those are about the shipped
# model). PV_JOBS (default 2) ProVerif runs go at a time.
pv_variants="resend-claim-set no-ecdh no-pop pop-not-bound no-transcript-binding version-reuse reclaim-claimed
  revoked-goes-on"
broken_pv() {
  case "$1" in
    resend-claim-set) # every claim of an id gets the same set: no fresh secrets per claim
      sed -e 's/^    new ak\[\]: key; new pw\[\]: bitstring; *(\* fresh for every claim \*)$/    let ak = claimak(id) in let pw = claimpw(id) in/' \
          -e 's/^free PK: key\..*$/&\nfun claimak(bitstring): key [private].\nfun claimpw(bitstring): bitstring [private]./' ;;
    no-ecdh) # the response keys do not use the ephemeral ECDH
      sed -e 's/kdf(th, r, extra, ea)/kdf(th, nil, extra, ea)/' -e 's/kdf(th, kemdec(ed, ea), /kdf(th, nil, /' ;;
    no-pop) # the agent does not check the proof of possession of D_pub
      sed -e '/^    if verify(dpub, popmsg(body), pop) then$/d' ;;
    pop-not-bound) # the pop signs type, id and D_pub, not the rest of its request (N_d, E_d, version)
      sed -e 's/^letfun popmsg(body: bitstring) = (L_POP, body)\.$/letfun popmsg(body: bitstring) =\
    let (t: bitstring, i: bitstring, x: bitstring, n: bitstring, e: G, p: spkey) = body in (L_POP, t, i, p)./' ;;
    no-transcript-binding) # th is in neither the response's key, its aad nor its signature
      sed -e 's/(L_RESP, th, hdr, ct)/(L_RESP, hdr, ct)/' -e 's/kdf(th, /kdf(nil, /' -e 's/(th, hdr)/(nil, hdr)/' ;;
    version-reuse) # an update's version is committed + 1 instead of highest issued + 1
      sed -e '/^let AgentUpdateLast(/,/^letfun claimcheck(/ s/let v = issued + 1 in/let v = cur + 1 in/' ;;
    reclaim-claimed) # the agent still takes claims of an id it has committed (no ALREADY_CLAIMED)
      sed -e 's/^        AgentUpdateLast(skA, skCA, id, kind, v, ak, cr, v, AG_CLAIM_UPD_COMMIT, AG_CLAIM_UPD_ABORT))$/        ( AgentUpdateLast(skA, skCA, id, kind, v, ak, cr, v, AG_CLAIM_UPD_COMMIT, AG_CLAIM_UPD_ABORT)\
        | in(c, (req3: bitstring, m3: bitstring)); AgentSupersede(skA, skCA, id, kind, req3, m3, v) ))/' ;;
    revoked-goes-on) # a revoked record still answers its device's update request
      sed -e 's/^    if x = (REVOKE, id) then Revoked(id, kind)$/    if x = (REVOKE, id) then (Revoked(id, kind)\
        | AgentUpdateLast(skA, skCA, id, kind, cur, akc, crc, issued, AG_UPD2_COMMIT, AG_UPD2_ABORT))/' ;;
  esac < formal/otakey.pv | sed -e '/^    event(Reach(/d'
}
pv_target() { # the property each variant must make false
  case "$1" in
    resend-claim-set|no-ecdh) echo S1 ;;
    no-pop|pop-not-bound) echo P1 ;;
    no-transcript-binding) echo A1 ;;
    version-reuse) echo V1 ;;
    reclaim-claimed) echo K1 ;;
    revoked-goes-on) echo R1 ;;
  esac
}
run_pv() { # NAME FILE: output, status and seconds in $work/NAME.{log,rc,secs}
  local t0=$SECONDS rc=0
  timeout "${PV_TIMEOUT:-900}" "$pv" "$2" > "$work/$1.log" 2>&1 || rc=$?
  echo "$rc" > "$work/$1.rc"
  echo $((SECONDS - t0)) > "$work/$1.secs"
}
# pv_results NAME: "TAG true|false|unproved" per property of run NAME, in
# order (the names from the model, the results from ProVerif's RESULT lines
# but those on reachability and the "RESULT (...)" details that follow a
# false injective query).
pv_results() {
  grep '^RESULT' "$work/$1.log" | grep -v '^RESULT (' | grep -v '^RESULT not event(Reach(' |
    sed -e 's/.* is \(true\|false\)\.$/\1/' -e 's/.* cannot be proved\.$/unproved/' > "$work/$1.res" || true
  sed -n 's/^ *(\* \[\([A-Z][A-Z0-9]*\)\].*/\1/p' formal/otakey.pv | paste -d' ' - "$work/$1.res"
}
if [ -f formal/otakey.pv ]; then
  if [ -n "$pv" ]; then
    t0=$SECONDS
    run_pv model formal/otakey.pv &
    sed -e '/^    event(Reach(/d' formal/otakey.pv > "$work/unreached.pv"
    for b in $pv_variants; do
      broken_pv "$b" > "$work/$b.pv"
      if cmp -s "$work/$b.pv" "$work/unreached.pv"; then echo "proverif: broken variant $b: no change made"; fail=1; continue; fi
      while [ "$(jobs -rp | wc -l)" -ge "${PV_JOBS:-2}" ]; do wait -n || true; done
      run_pv "$b" "$work/$b.pv" &
    done
    wait
    reach=$(grep -c '^    event(Reach(' formal/otakey.pv || true)
    reached=$(grep -c '^RESULT not event(Reach(.*) is false\.$' "$work/model.log" || true)
    pv_results model > "$work/model.props"
    props=$(wc -l < "$work/model.props")
    held=$(grep -c ' true$' "$work/model.props" || true)
    if [ "$(cat "$work/model.rc")" != 0 ] || ! grep -q '^Verification summary' "$work/model.log"; then
      echo "proverif: the model did not run to its end (status $(cat "$work/model.rc"))"; tail -5 "$work/model.log"; fail=1
    elif [ "$(grep '^RESULT' "$work/model.log" | grep -vc '^RESULT (')" != $((reach + props)) ] || [ "$props" = 0 ]; then
      echo "proverif: UNEXPECTED: the model's results do not match its queries"; grep '^RESULT' "$work/model.log"; fail=1
    else
      grep '^RESULT not event(Reach(' "$work/model.log" | grep -v ' is false\.$' | sed 's/^/proverif: UNREACHED: /' || true
      grep -v ' true$' "$work/model.props" | sed 's/^/proverif: NOT PROVED: /' || true
      [ "$held" = "$props" ] && [ "$reached" = "$reach" ] || fail=1
      echo "proverif: model: $reached of $reach reachability queries reachable; $held of $props properties" \
           "true ($(tr '\n' ' ' < "$work/model.props" | sed 's/ true//g; s/ $//')); secrecy assumptions:" \
           "$(grep -c '^ok, secrecy assumption verified' "$work/model.log") verified; $(cat "$work/model.secs")s"
    fi
    for b in $pv_variants; do
      [ -f "$work/$b.rc" ] || continue
      pv_results "$b" > "$work/$b.props"
      falses=$(grep ' false$' "$work/$b.props" | cut -d' ' -f1 | tr '\n' ' ' | sed 's/ $//' || true)
      if grep -qx "$(pv_target "$b") false" "$work/$b.props"; then
        echo "proverif: broken variant $b: caught by $(pv_target "$b") (false: $falses; $(cat "$work/$b.secs")s)"
      else
        echo "proverif: broken variant $b: NOT caught by $(pv_target "$b") (status $(cat "$work/$b.rc"); false: ${falses:-none})"
        fail=1
      fi
    done
    echo "proverif: $((SECONDS - t0))s in all"
  else
    echo "proverif: not installed; skipped. ProVerif 2.x is not packaged by Debian: build it from"
    echo "  its source (OCaml: apt-get install ocaml-nox ocaml-findlib; then ./build in the source"
    echo "  tree) outside this repository, and run PROVERIF=/path/to/proverif $0"
  fi
fi
exit $fail
