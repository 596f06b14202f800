#!/usr/bin/env bash
# The Debian packages end to end: builds them (dpkg-buildpackage -us -uc -b)
# from a copy of the tree (tracked and untracked files, not ignored ones),
# installs them with apt-get, checks what they installed (the system user and
# its directories, the systemd unit with systemd-analyze, man pages, the
# pkg-config file and the CMake package by building two small consumers of the
# device core), runs the installed agent as its service would (user otakey,
# no new privileges, no capabilities, /etc/otakey and /var/lib/otakey, SIGHUP,
# exit 2 on a bad configuration), runs the demo on the installed programs,
# and purges the packages, what apt pulled in with them and the system user,
# so the machine is left as it was. Needs root (apt-get, dpkg); exit 77 (skip)
# otherwise. Takes a few minutes.
# Usage: tests/packages_e2e.sh BUILD_DIR   (scratch in BUILD_DIR/packages_e2e;
#        KEEP=1 keeps it; DEMO_DEVICES=N devices in the demo, default 5)
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1"
work=$(cd "$1" && pwd)/packages_e2e
if [ "$(id -u)" -ne 0 ]; then
  echo "packages_e2e: SKIP: needs root (apt-get install of the packages)" >&2
  exit 77
fi
ours=(otakey-agent otakey otakey-device libotakey-device-dev)
for p in "${ours[@]}"; do
  if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "installed"; then
    echo "packages_e2e: $p is installed already; this test installs and purges the packages itself (apt-get purge ${ours[*]} first)" >&2
    exit 1
  fi
done

t_start=$(date +%s.%N)
timings=()
phase_t0=$t_start
# phase NAME: closes the running phase's timing under NAME.
phase() {
  local now
  now=$(date +%s.%N)
  timings+=("$(awk -v a="$phase_t0" -v b="$now" -v n="$1" 'BEGIN { printf "%-44s %6.1f s", n, b - a }')")
  phase_t0=$now
}
say() { printf '\n== %s\n' "$*"; }
fail() { echo "packages_e2e: FAIL: $*" >&2; exit 1; }

rm -rf "$work"
mkdir -p "$work/src" "$work/run"
chmod 0755 "$work" "$work/run"
pids=()
installed=0
user_existed=0
getent passwd otakey > /dev/null && user_existed=1
before=$work/dpkg-before

cleanup() {
  local rc=$? p new
  set +e
  for p in "${pids[@]}"; do kill "$p" 2> /dev/null; done
  wait 2> /dev/null
  [ -f "$work/run/lab/lab.env" ] && bash "$root/scripts/lab.sh" stop "$work/run/lab" 2> /dev/null
  if [ "$installed" = 1 ]; then
    say "purge"
    # What apt pulled in with the packages goes too.
    dpkg-query -W -f='${db:Status-Abbrev} ${Package}:${Architecture}\n' | awk '$1 == "ii" {print $2}' | LC_ALL=C sort > "$work/dpkg-after"
    new=$(LC_ALL=C comm -13 "$before" "$work/dpkg-after" | grep -v -E '^(otakey|otakey-agent|otakey-device|libotakey-device-dev):' || true)
    # The test's own files in the package's directories, so that the purge can remove them.
    rm -f /etc/otakey/agent.ini /etc/otakey/agent.key /etc/otakey/ca.crt /etc/otakey/bad.ini
    rm -f /var/lib/otakey/registry.db /var/lib/otakey/registry.db-wal /var/lib/otakey/registry.db-shm \
      /var/lib/otakey/batch.pk
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "${ours[@]}" $new > "$work/purge.log" 2>&1 ||
      { cat "$work/purge.log" >&2; rc=1; }
    [ -z "$new" ] || echo "purged what came with them: $new"
    if [ "$user_existed" = 0 ] && getent passwd otakey > /dev/null; then
      deluser --quiet --system otakey > /dev/null 2>&1 || userdel otakey
      getent group otakey > /dev/null && groupdel otakey
    fi
    for p in /usr/sbin/otakey-agent /usr/bin/otakey /usr/bin/otakey-device /usr/lib/otakey \
      /lib/systemd/system/otakey-agent.service /usr/include/otakey /etc/otakey /var/lib/otakey; do
      [ ! -e "$p" ] || { echo "packages_e2e: left after the purge: $p" >&2; rc=1; }
    done
    if dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' "${ours[@]}" 2> /dev/null | grep -q '^.[^n]'; then
      echo "packages_e2e: packages left after the purge" >&2
      rc=1
    fi
    getent passwd otakey > /dev/null && [ "$user_existed" = 0 ] && { echo "packages_e2e: user otakey left" >&2; rc=1; }
    [ "$rc" != 0 ] || echo "machine clean: no package, file, directory or user of otakey left"
    phase "purge"
  fi
  echo
  echo "timings:"
  printf '  %s\n' "${timings[@]}"
  awk -v a="$t_start" -v b="$(date +%s.%N)" 'BEGIN { printf "  %-44s %6.1f s\n", "total", b - a }'
  [ -n "${KEEP:-}" ] || [ "$rc" != 0 ] || rm -rf "$work"
  [ "$rc" = 0 ] && echo "packages_e2e: PASS" || echo "packages_e2e: FAIL (scratch kept in $work)" >&2
  exit $rc
}
trap cleanup EXIT

say "source copy"
# The tree as it is, without ./build*, generated files or .git: what git
# lists (tracked, and untracked files that are not ignored) and exists.
src=$work/src/otakey
mkdir -p "$src"
(cd "$root" && git ls-files -z --cached --others --exclude-standard |
  while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
  tar --null -T - -cf -) | tar -xf - -C "$src"
echo "$(find "$src" -type f | wc -l) files in $src"
phase "source copy"

say "build dependencies"
bash "$root/scripts/deps.sh" dpkg-dev debhelper fakeroot
if ! (cd "$src" && dpkg-checkbuilddeps); then
  (cd "$src" && DEBIAN_FRONTEND=noninteractive apt-get build-dep -y -qq . > /dev/null)
fi
phase "build dependencies"

say "dpkg-buildpackage -us -uc -b"
b0=$(date +%s.%N)
if ! (cd "$src" && DEB_BUILD_OPTIONS="parallel=$(nproc)" dpkg-buildpackage -us -uc -b > "$work/build.log" 2>&1); then
  tail -40 "$work/build.log" >&2
  fail "package build (log: $work/build.log)"
fi
awk -v a="$b0" -v b="$(date +%s.%N)" 'BEGIN { printf "built in %.1f s:\n", b - a }'
(cd "$work/src" && ls -1 ./*.deb | sed 's|^\./|  |')
phase "package build"

if command -v lintian > /dev/null; then
  say "lintian (for information)"
  (cd "$work/src" && lintian --pedantic -I ./*.changes 2>&1 | grep -v 'running with root privileges' || true)
  phase "lintian"
fi

say "install"
dpkg-query -W -f='${db:Status-Abbrev} ${Package}:${Architecture}\n' | awk '$1 == "ii" {print $2}' | LC_ALL=C sort > "$before"
installed=1
debs=()
for p in "${ours[@]}"; do debs+=("$work/src/${p}_"*.deb); done
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${debs[@]}" > "$work/install.log" 2>&1 ||
  { cat "$work/install.log" >&2; fail "apt-get install"; }
dpkg-query -W -f='  ${Package} ${Version} ${db:Status-Abbrev}\n' "${ours[@]}"
phase "install"

say "what the packages installed"
for f in /usr/sbin/otakey-agent /usr/bin/otakey /usr/bin/otakey-device /usr/lib/otakey/otakey_mosquitto.so \
  /lib/systemd/system/otakey-agent.service /usr/share/doc/otakey-agent/examples/agent.ini \
  /usr/share/doc/otakey/operations.md /usr/include/otakey/device.h; do
  [ -e "$f" ] || fail "$f missing"
done
for p in otakey otakey-agent otakey-device; do
  v=$("$(command -v $p || echo /usr/sbin/$p)" --version)
  [ "$v" = "$p $(dpkg-query -W -f='${Version}' otakey)" ] || fail "$p --version says '$v'"
  echo "  $v"
done
getent passwd otakey | grep -q ':/var/lib/otakey:/usr/sbin/nologin$' || fail "system user otakey: $(getent passwd otakey)"
[ "$(stat -c '%U:%G %a' /var/lib/otakey)" = "otakey:otakey 700" ] || fail "/var/lib/otakey: $(stat -c '%U:%G %a' /var/lib/otakey)"
[ "$(stat -c '%U:%G %a' /etc/otakey)" = "root:otakey 750" ] || fail "/etc/otakey: $(stat -c '%U:%G %a' /etc/otakey)"
echo "  user $(getent passwd otakey); /var/lib/otakey otakey:otakey 0700; /etc/otakey root:otakey 0750"
for page in otakey-agent.8 otakey-agent.conf.5 otakey.1 otakey-device.1; do
  f=$(man -w "${page%.*}" 2> /dev/null | head -n1 || true)
  [ -n "$f" ] || fail "man page ${page%.*} not found"
  warn=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$f" 2>&1 > /dev/null || true)
  [ -z "$warn" ] || fail "man $page: $warn"
done
echo "  man pages: otakey-agent(8) otakey-agent.conf(5) otakey(1) otakey-device(1) render without warnings"
phase "installed files"

say "systemd unit"
if command -v systemd-analyze > /dev/null; then
  systemd-analyze verify /lib/systemd/system/otakey-agent.service || fail "systemd-analyze verify"
  echo "  systemd-analyze verify /lib/systemd/system/otakey-agent.service: OK"
  if systemd-analyze security --offline=true /lib/systemd/system/otakey-agent.service > "$work/security.txt" 2>&1; then
    echo "  $(tail -n1 "$work/security.txt" | sed 's/^→ //')"
  fi
else
  echo "  SKIP: systemd-analyze is not installed (package systemd)"
fi
phase "systemd unit"

say "the device core for integrations: pkg-config and find_package(otakey)"
echo "  pkg-config --cflags --libs otakey-device: $(pkg-config --cflags --libs otakey-device)"
echo "  version $(pkg-config --modversion otakey-device)"
mkdir -p "$work/consumer"
cat > "$work/consumer/claim.c" <<'EOC'
/* A firmware's first boot as far as the agent sees it: the device core over a
 * RAM key partition and the mbedTLS crypto backend sends its CLAIM. */
#include <otakey/common.h>
#include <otakey/crypto.h>
#include <otakey/device.h>
#include <otakey/keystore.h>
#include <otakey/port.h>
#include <otakey/proto.h>
#include <otakey/wire.h>
#include <stdio.h>
#include <string.h>

static uint8_t flash[2 * 4096];
static int rd(void *c, uint32_t off, uint8_t *b, uint32_t n) { (void)c; memcpy(b, flash + off, n); return 0; }
static int pr(void *c, uint32_t off, const uint8_t *b, uint32_t n)
{
    uint32_t i;
    (void)c;
    for (i = 0; i < n; i++)
        flash[off + i] &= b[i];
    return 0;
}
static int er(void *c, uint32_t off) { (void)c; memset(flash + off, 0xff, 4096); return 0; }
static uint32_t now(void *c) { (void)c; return 0; }

int main(void)
{
    static union { uint8_t b[OTK_CRYPTO_MBEDTLS_STATE_SIZE]; long double ld; void *p; } cstate;
    otk_crypto crypto;
    otk_port port = {OTK_PORT_VERSION, NULL, sizeof flash, 4096, 8, rd, pr, er, now, &crypto};
    otk_device_config cfg;
    otk_device dev;
    uint8_t out[OTK_MSG_MAX_LEN];
    size_t n = 0;
    otk_msg m;
    memset(flash, 0xff, sizeof flash);
    memset(&cfg, 0, sizeof cfg);
    memset(&dev, 0, sizeof dev);
    memset(cfg.device_id, 0xd0, sizeof cfg.device_id);
    cfg.batch_id[3] = 1;
    cfg.batch_id[7] = 1;
    if (otk_crypto_mbedtls_init(&crypto, cstate.b, sizeof cstate.b, NULL, NULL) != OTK_OK ||
        otk_device_init(&dev, &port, &cfg) != OTK_OK || otk_device_state(&dev) != OTK_DEV_UNCLAIMED ||
        otk_device_next(&dev, out, sizeof out, &n) != OTK_OK || otk_msg_decode(out, n, &m) != OTK_OK ||
        m.type != OTK_MSG_CLAIM || n != OTK_CLAIM_LEN) {
        fprintf(stderr, "consumer: no CLAIM\n");
        return 1;
    }
    printf("%s of %u bytes\n", otk_msg_name(m.type), (unsigned)n);
    otk_device_free(&dev);
    otk_crypto_mbedtls_free(&crypto);
    return 0;
}
EOC
cat > "$work/consumer/CMakeLists.txt" <<'EOC'
cmake_minimum_required(VERSION 3.16)
project(otakey_consumer C)
find_package(otakey 0.1 REQUIRED COMPONENTS device)
add_executable(claim claim.c)
target_link_libraries(claim PRIVATE otakey::device)
EOC
cc -std=c99 -pedantic -Wall -Wextra -Werror -o "$work/consumer/claim-pc" "$work/consumer/claim.c" \
  $(pkg-config --cflags --libs otakey-device) || fail "the pkg-config consumer does not build"
echo "  pkg-config consumer (cc -std=c99 -pedantic -Werror): $("$work/consumer/claim-pc")"
cmake -S "$work/consumer" -B "$work/consumer/build" -DCMAKE_C_FLAGS="-Wall -Wextra -Werror" \
  > "$work/consumer/cmake.log" 2>&1 || { cat "$work/consumer/cmake.log" >&2; fail "find_package(otakey)"; }
cmake --build "$work/consumer/build" >> "$work/consumer/cmake.log" 2>&1 ||
  { cat "$work/consumer/cmake.log" >&2; fail "the CMake consumer does not build"; }
echo "  CMake consumer (find_package(otakey 0.1 COMPONENTS device), otakey::device): $("$work/consumer/build/claim")"
phase "pkg-config and CMake consumers"

say "the agent as its service runs it (user otakey, /etc/otakey, /var/lib/otakey)"
# What the unit does, short of systemd (not PID 1 here): User=otakey,
# NoNewPrivileges=yes, CapabilityBoundingSet= (empty), UMask=0077, cwd /.
# (An array, not a function: started in the background, $! is then the agent.)
as_service=(setpriv --reuid=otakey --regid=otakey --init-groups --no-new-privs --bounding-set=-all
  --inh-caps=-all -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin sh -c 'umask 0077; cd /; exec "$@"' sh)
lab=$work/run/lab
OTK_MOSQUITTO_PLUGIN=/usr/lib/otakey/otakey_mosquitto.so bash "$root/scripts/lab.sh" start "$lab" dynsec > /dev/null
. "$lab/lab.env"
install -m 0640 -o root -g otakey "$LAB_CA" /etc/otakey/ca.crt
pub=$(otakey keygen /etc/otakey/agent.key)
chown otakey:otakey /etc/otakey/agent.key
batch=0000000100000001
"${as_service[@]}" otakey product create --db /var/lib/otakey/registry.db --batch $batch --name service-test \
  --pk-out /var/lib/otakey/batch.pk > /dev/null
# The package's example, filled in for the lab (broker, [cloud.1]).
awk -v port="$LAB_SERVER_PORT" -v user="$LAB_AGENT_USER" -v pw="$LAB_AGENT_PASSWORD" \
  -v cport="$LAB_CLOUD_A_PORT" -v admin="$LAB_CLOUD_ADMIN" -v apw="$LAB_CLOUD_PASSWORD" '
  /^\[/ { sec = $0 }
  sec == "[agent]" && /^broker_port =/ { $0 = "broker_port = " port }
  sec == "[agent]" && /^username =/ { $0 = "username = " user }
  sec == "[agent]" && /^password =/ { $0 = "password = " pw }
  sec == "[cloud.1]" && /^host =/ { $0 = "host = 127.0.0.1" }
  sec == "[cloud.1]" && /^port =/ { $0 = "port = " cport }
  sec == "[cloud.1]" && /^admin_user =/ { $0 = "admin_user = " admin }
  sec == "[cloud.1]" && /^admin_password =/ { $0 = "admin_password = " apw }
  { print }' /usr/share/doc/otakey-agent/examples/agent.ini > /etc/otakey/agent.ini
chown root:otakey /etc/otakey/agent.ini
chmod 0640 /etc/otakey/agent.ini
"${as_service[@]}" /usr/sbin/otakey-agent -c /etc/otakey/agent.ini 2> "$work/run/agent.log" &
agent_pid=$!
pids+=("$agent_pid")
for _ in $(seq 100); do grep -q ': running (' "$work/run/agent.log" && break; kill -0 "$agent_pid" 2> /dev/null || break; sleep 0.1; done
grep -q ': running (' "$work/run/agent.log" || { cat "$work/run/agent.log" >&2; fail "the agent did not start as user otakey"; }
echo "  agent running as $(ps -o user= -p "$agent_pid"), NoNewPrivs $(awk '/^NoNewPrivs/ {print $2}' /proc/$agent_pid/status), CapBnd $(awk '/^CapBnd/ {print $2}' /proc/$agent_pid/status)"
mkdir -p "$work/run/dev"
for i in 1 2; do
  id=$(printf 'e0e0e0e0e0e0e0e0e0e0e0e0%08x' $i)
  otakey-device --id "$id" --flash "$work/run/dev/$i.flash" --batch $batch --pk /var/lib/otakey/batch.pk \
    --agent-pub "$pub" --broker "127.0.0.1:$LAB_AGENT_PORT" --cafile "$LAB_CA" \
    --status "$work/run/dev/$i.json" --telemetry-ms 250 2> "$work/run/dev/$i.log" &
  pids+=($!)
done
for _ in $(seq 300); do
  [ "$(cat "$work"/run/dev/*.json 2> /dev/null | grep -c '"state":"ready","version":1,"cloud":1,.*"telemetry_acked":[1-9]')" = 2 ] && break
  sleep 0.1
done
[ "$(cat "$work"/run/dev/*.json 2> /dev/null | grep -c '"state":"ready","version":1,"cloud":1,.*"telemetry_acked":[1-9]')" = 2 ] ||
  { tail -5 "$work/run/agent.log" "$work"/run/dev/*.log >&2; fail "devices did not claim from the service's agent"; }
echo "  2 devices claimed from it and publish telemetry on cloud A"
mode=$(stat -c '%U:%G %a' /var/lib/otakey/registry.db)
[ "$mode" = "otakey:otakey 600" ] || fail "registry: $mode"
echo "  registry /var/lib/otakey/registry.db: $mode"
"${as_service[@]}" otakey device list --db /var/lib/otakey/registry.db | sed 's/^/  | /'
"${as_service[@]}" otakey audit verify --db /var/lib/otakey/registry.db | sed 's/^/  /'
kill -HUP "$agent_pid" # ExecReload=/bin/kill -HUP $MAINPID
for _ in $(seq 50); do grep -q 'SIGHUP: reloaded' "$work/run/agent.log" && break; sleep 0.1; done
grep -q 'SIGHUP: reloaded' "$work/run/agent.log" || fail "no reload on SIGHUP"
echo "  SIGHUP (systemctl reload): $(grep -o 'SIGHUP: reloaded.*' "$work/run/agent.log" | head -n1)"
kill "$agent_pid"
rc=0
wait "$agent_pid" || rc=$?
[ "$rc" = 0 ] || fail "the agent exited $rc on SIGTERM"
echo "  SIGTERM (systemctl stop): exit 0"
sed 's/^claim_cloud = 1$/claim_cloud = 1\nclaim_clod = 2/' /etc/otakey/agent.ini > /etc/otakey/bad.ini
chown root:otakey /etc/otakey/bad.ini
chmod 0640 /etc/otakey/bad.ini
rc=0
"${as_service[@]}" /usr/sbin/otakey-agent -c /etc/otakey/bad.ini 2> "$work/run/bad.log" || rc=$?
[ "$rc" = 2 ] || fail "a bad configuration exits $rc, not 2 (RestartPreventExitStatus=2)"
echo "  a bad configuration: exit 2 (the unit does not restart it): $(head -n1 "$work/run/bad.log")"
phase "agent as the service user"

say "the demo on the installed programs"
for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done
wait 2> /dev/null || true
pids=()
bash "$root/scripts/lab.sh" stop "$lab"
(cd "$src" && OTAKEY_BIN=/usr/bin OTAKEY_SBIN=/usr/sbin OTAKEY_PLUGIN=/usr/lib/otakey/otakey_mosquitto.so \
  bash scripts/demo.sh "${DEMO_DEVICES:-5}") || fail "the demo on the installed programs"
phase "demo on the installed programs"
