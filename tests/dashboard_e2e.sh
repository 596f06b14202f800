#!/usr/bin/env bash
# The fleet dashboard (src/agent/http/dashboard/, docs/api.md) end to end, in
# headless Chromium against a real agent with its HTTPS API over the real lab:
#  - 6 devices claim; a rotation campaign started through the API finishes;
#  - the page, opened with a read token in its URL fragment, shows 6 active
#    devices, the campaign done with 6 done and 0 failed, and a commit row in
#    its audit tail (--dump-dom); the token leaves the address bar;
#  - without a token it asks for one; a wrong token is refused, and it says so;
#  - with the page open (driven over the DevTools protocol, a small client in
#    Python's standard library), without a reload: a switch campaign to cloud 2
#    started through the API shows up and completes on the page (the counts by
#    cloud and version follow); a rotation that one device, gone, cannot
#    finish until it is revoked through the API ends with 1 failure, shown
#    with its reason (REVOKED) on demand, and the state counts follow; the
#    agent restarts, and the page's events stream resumes after the last row
#    it saw, with the row written meanwhile; its audit tail is the log's last
#    50 rows;
#  - a screenshot (1280x900) of the final page (--screenshot).
# TLS is checked, not ignored: Chromium trusts exactly the test server's key
# (--ignore-certificate-errors-spki-list with its SHA-256), and without that
# pin it refuses the page.
# Usage: tests/dashboard_e2e.sh BUILD_DIR
#   exit 77 (skipped) when Chromium is missing and cannot be installed
#   CHROMIUM=PATH: the browser to use (default: chromium in PATH)
#   SCREENSHOT=FILE copies the screenshot there (it is written to the work
#   dir, which is removed unless KEEP=1).
set -euo pipefail
umask 077
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "${1:?usage: dashboard_e2e.sh BUILD_DIR}" && pwd)
T0=$(date +%s.%N)

# Chromium first: without a browser there is nothing to test here.
# CHROMIUM=PATH: that browser (nothing is installed when it is missing).
find_chrome() {
  if [ -n "${CHROMIUM:-}" ]; then [ -x "$CHROMIUM" ] && echo "$CHROMIUM"; else command -v chromium; fi
}
chrome=$(find_chrome || true)
if [ -z "$chrome" ] && [ -z "${CHROMIUM:-}" ]; then
  echo "dashboard: Chromium is missing; installing it (scripts/deps.sh chromium)"
  bash "$root/scripts/deps.sh" chromium > /dev/null 2>&1 || true
  chrome=$(find_chrome || true)
fi
if [ -z "$chrome" ]; then
  echo "SKIPPED: dashboard_e2e needs headless Chromium (Debian's chromium), which is not installed and could not be (bash scripts/deps.sh chromium)"
  exit 77
fi

work=$(mktemp -d /tmp/otakey-dash.XXXXXX)
. "$root/scripts/fleet.sh"
. "$root/scripts/ports.sh"
chrome_pids=()
dash_cleanup() {
  local p
  # Each Chromium runs in a process group of its own (setsid): end it whole.
  for p in "${chrome_pids[@]}"; do kill -- -"$p" 2>/dev/null || true; done
  if [ -f "$work/dashboard.png" ] && [ -n "${SCREENSHOT:-}" ]; then cp "$work/dashboard.png" "$SCREENSHOT"; fi
  fleet_cleanup
}
trap dash_cleanup EXIT
fails=0; passes=0
check() { # check DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@"; then passes=$((passes + 1)); echo "ok: $what"; else fails=$((fails + 1)); echo "FAILED: $what"; fi
}
since() { printf '%.2f' "$(echo "$(date +%s.%N) - $1" | bc)"; }
timings=()

# ---- the agent, its API on a free loopback port over TLS ----
fleet_setup
n=6
# The API's certificate for 127.0.0.1, from the lab's CA.
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
  -keyout "$work/api.key" -out "$work/api.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > "$work/api.ext"
openssl x509 -req -in "$work/api.csr" -CA "$LAB_CA" -CAkey "$LAB_DIR/ca.key" -CAcreateserial \
  -CAserial "$work/api.srl" -days 2 -extfile "$work/api.ext" -out "$work/api.crt" 2>/dev/null
# Chromium's pin: the SHA-256 of the server's public key (SubjectPublicKeyInfo), base64.
spki=$(openssl x509 -in "$work/api.crt" -noout -pubkey | openssl pkey -pubin -outform DER |
  openssl dgst -sha256 -binary | base64)
# Tokens: an operator's for curl, a read token for the page.
# new_token NAME ROLE: prints a token, recorded in the tokens file.
new_token() {
  local out tok
  if "$bin/otakey" token create --help 2>&1 | grep -q '^usage: otakey token create'; then
    out=$("$bin/otakey" token create --tokens "$work/api.tokens" --name "$1" --role "$2" 2>> "$work/token.err")
    # The token: 64 hex digits (src/agent/http/api.h), printed once.
    tok=$(grep -oE '(^|[^0-9a-f])[0-9a-f]{64}([^0-9a-f]|$)' <<< "$out" | grep -oE '[0-9a-f]{64}' | head -n1)
  else
    tok=$(openssl rand -hex 32)
    printf '%s %s %s\n' "$1" "$2" "$(printf '%s' "$tok" | sha256sum | cut -d' ' -f1)" >> "$work/api.tokens"
  fi
  echo "$tok"
}
op_token=$(new_token ops operator)
read_token=$(new_token viewer read)
chmod 600 "$work/api.tokens"
cp "$work/agent.ini" "$work/agent-base.ini"
api_up=0
for attempt in 1 2 3; do
  api_port=$(free_port dashboard)
  cp "$work/agent-base.ini" "$work/agent.ini"
  printf '\n[api]\nlisten = 127.0.0.1:%s\ntls = 1\ncertfile = %s\nkeyfile = %s\ntokens = %s\n' \
    "$api_port" "$work/api.crt" "$work/api.key" "$work/api.tokens" >> "$work/agent.ini"
  start_agent
  for _ in $(seq 100); do
    if curl -sf --cacert "$LAB_CA" "https://127.0.0.1:$api_port/healthz" > /dev/null 2>&1; then api_up=1; break; fi
    kill -0 "$agent_pid" 2>/dev/null || break
    sleep 0.1
  done
  [ $api_up = 1 ] && break
  kill "$agent_pid" 2>/dev/null || true; wait "$agent_pid" 2>/dev/null || true
done
base=https://127.0.0.1:$api_port
timings+=("lab, certificates, tokens and the agent's API up: $(since "$T0") s")
check "the agent serves its API over TLS on 127.0.0.1:$api_port (the lab CA's certificate)" test $api_up = 1
if [ $api_up != 1 ]; then tail -5 "$work/agent.log"; echo "$passes passed, $fails failed"; exit 1; fi

# api METHOD PATH [BODY]: the HTTP status; the body in $work/resp.json.
api() {
  local args=(-sS -o "$work/resp.json" -w '%{http_code}' --cacert "$LAB_CA" -X "$1"
    -H "Authorization: Bearer $op_token")
  [ $# -lt 3 ] || args+=(-H 'Content-Type: application/json' --data "$3")
  curl "${args[@]}" "$base$2" 2>> "$work/curl.err" || echo 000
}
# jq-less JSON: jget FILE PYTHON-EXPR-ON-j
jget() { python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }
# campaign_wait ID: until the campaign has ended (60 s at most); its JSON in $work/campaign-ID.json.
campaign_wait() {
  local s
  for _ in $(seq 600); do
    if [ "$(api GET "/v1/campaigns/$1")" = 200 ]; then
      cp "$work/resp.json" "$work/campaign-$1.json"
      s=$(jget "$work/campaign-$1.json" 'j["state"]')
      case $s in done|aborted) return 0 ;; esac
    fi
    sleep 0.1
  done
  return 1
}
# campaign_start BODY: the new campaign's id (empty when refused).
campaign_start() {
  local code
  code=$(api POST /v1/campaigns "$1")
  if [ "$code" = 201 ]; then jget "$work/resp.json" 'j["id"]'; else
    echo "campaign POST $1: HTTP $code $(cat "$work/resp.json")" >&2; fi
}

t=$(date +%s.%N)
dev_pid=()
# A device that misses an offer (the broker found it between connections:
# held as asleep) gets its update at its next poll: every 10 s here, so a
# campaign's wait below covers one.
POLL_MS=10000
for i in $(seq $n); do start_device "$(device_id "$i")"; dev_pid[$i]=$!; done
t0=$(date +%s.%N)
check "$n devices claim" wait_all claim '"state":"ready","version":1,' $n
timings+=("claims: $(since "$t") s")

t=$(date +%s.%N)
c1=$(campaign_start '{"kind": "rotate", "selector": "all", "rate": 100}')
check "a rotation campaign starts through the API (201)" test -n "$c1"
campaign_wait "$c1" || true
check "... and finishes: done, $n done, 0 failed" \
  test "$(jget "$work/campaign-$c1.json" '(j["state"], j["done"], j["failed"])' 2>&1)" = "('done', $n, 0)"
wait_all rotation '"state":"ready","version":2,' $n > /dev/null || true
timings+=("campaign $c1 through the API: $(since "$t") s")

# ---- Chromium ----
# chrome_run NAME ARGS...: a headless Chromium with a profile (and HOME) of its
# own, trusting the API's key only, with nothing fetched from elsewhere.
chrome_flags() {
  printf '%s\n' --headless --no-sandbox --disable-gpu --user-data-dir="$work/chrome-$1" \
    --no-first-run --no-default-browser-check --disable-extensions --disable-sync \
    --disable-background-networking --disable-component-update --disable-default-apps \
    --disable-domain-reliability --no-pings --metrics-recording-only --mute-audio \
    --window-size=1280,900
}
chrome_run() {
  local name=$1; shift
  mkdir -p "$work/home-$name"
  local flags; mapfile -t flags < <(chrome_flags "$name")
  HOME=$work/home-$name timeout -k 5 90 "$chrome" "${flags[@]}" "$@" 2>> "$work/chrome-$name.log"
}
page="$base/#token=$read_token"

# The DOM as rendered, queried with Python's HTML parser.
cat > "$work/domq.py" <<'EOF'
# domq.py FILE ATTR=VALUE [ATTR2]: the text (or ATTR2's value) of the first
# element whose ATTR is VALUE; domq.py FILE count ATTR=VALUE: how many there are.
import sys
from html.parser import HTMLParser
VOID = {'area', 'base', 'br', 'col', 'embed', 'hr', 'img', 'input', 'link', 'meta', 'source', 'track', 'wbr'}
class P(HTMLParser):
    def __init__(self):
        super().__init__(); self.stack = []; self.all = []
    def handle_starttag(self, tag, attrs):
        e = {'tag': tag, 'attrs': dict(attrs), 'text': []}
        self.all.append(e)
        if tag not in VOID: self.stack.append(e)
    def handle_endtag(self, tag):
        while self.stack:
            if self.stack.pop()['tag'] == tag: break
    def handle_data(self, d):
        for e in self.stack: e['text'].append(d)
p = P(); p.feed(open(sys.argv[1], encoding='utf-8').read())
args = sys.argv[2:]
count = args[0] == 'count'
if count: args = args[1:]
k, v = args[0].split('=', 1)
hits = [e for e in p.all if e['attrs'].get(k) == v]
if count: print(len(hits)); sys.exit(0)
if not hits: print('(none)'); sys.exit(1)
e = hits[0]
print(e['attrs'].get(args[1], '(none)') if len(args) > 1 else ''.join(e['text']).strip())
EOF
domq() { python3 "$work/domq.py" "$@"; }

# 1. The page as loaded: --dump-dom after the loads (virtual time).
t=$(date +%s.%N)
chrome_run dom --ignore-certificate-errors-spki-list="$spki" --virtual-time-budget=15000 --dump-dom \
  "$page" > "$work/page.html" || true
timings+=("chromium --dump-dom: $(since "$t") s")
dom="$work/page.html"
check "the page loaded the fleet (data-loaded=1)" test "$(grep -o '<body[^>]*>' "$dom" | grep -c 'data-loaded="1"')" = 1
check "active devices: $n" test "$(domq "$dom" data-state-count=active)" = $n
check "pending and revoked devices: 0" \
  test "$(domq "$dom" data-state-count=pending)/$(domq "$dom" data-state-count=revoked)" = 0/0
check "devices in all: $n" test "$(domq "$dom" id=device-total)" = $n
check "all $n on cloud 1 and on key version 2" \
  test "$(domq "$dom" data-cloud-count=1)/$(domq "$dom" data-version-count=2)" = "$n/$n"
check "campaign $c1 is shown done" test "$(domq "$dom" "data-campaign=$c1" data-state)" = done
check "... with $n done and 0 failed of $n" test "$(domq "$dom" "data-campaign=$c1" data-done)/$(domq "$dom" \
  "data-campaign=$c1" data-failed)/$(domq "$dom" "data-campaign=$c1" data-total)" = "$n/0/$n"
check "the audit tail holds commit rows" test "$(domq "$dom" count data-kind=commit)" -ge 1
check "the audit tail holds at most 50 rows" test "$(grep -o '<tr data-seq=' "$dom" | wc -l)" -le 50
check "the cloud list comes from /v1/clouds (cloud 2, configured, no devices)" \
  test "$(domq "$dom" data-cloud-count=2)" = 0
check "the read token is nowhere in the page" bash -c "! grep -q '$read_token' '$dom'"

# 2. Without a token, a wrong token, and without the pin.
t=$(date +%s.%N)
chrome_run notoken --ignore-certificate-errors-spki-list="$spki" --virtual-time-budget=5000 --dump-dom \
  "$base/" > "$work/notoken.html" || true
check "without a token the page asks for one (the form, no data)" bash -c \
  "grep -q 'id=\"token-form\"' '$work/notoken.html' && ! grep -q '<section id=\"sign-in\"[^>]*hidden' '$work/notoken.html' &&
   grep -q '<div id=\"dashboard\" hidden' '$work/notoken.html'"
chrome_run badtoken --ignore-certificate-errors-spki-list="$spki" --virtual-time-budget=5000 --dump-dom \
  "$base/#token=0000$read_token" > "$work/badtoken.html" || true
check "a wrong token is refused: the form says so" bash -c \
  "grep -q 'refused this token' '$work/badtoken.html' && grep -q '<div id=\"dashboard\" hidden' '$work/badtoken.html'"
chrome_run nopin --virtual-time-budget=5000 --dump-dom "$page" > "$work/nopin.html" || true
check "without the pin Chromium refuses the server's certificate (TLS is checked)" \
  bash -c "! grep -q 'id=\"token-form\"' '$work/nopin.html' && grep -q 'ERR_CERT_AUTHORITY_INVALID' '$work/chrome-nopin.log'"
timings+=("no token, a wrong token, no pin (3 Chromium runs): $(since "$t") s")

# 3. Live: the page stays open, driven over the DevTools protocol.
cat > "$work/cdp.py" <<'EOF'
# cdp.py PROFILE eval EXPR | wait SECONDS EXPR (until EXPR is truthy)
# A minimal DevTools-protocol client (Python's standard library only) for the
# page of the Chromium started with --remote-debugging-port=0 --user-data-dir=PROFILE.
import base64, json, os, socket, struct, sys, time, urllib.request

def page_ws(profile):
    for _ in range(200):
        try:
            port = open(os.path.join(profile, 'DevToolsActivePort')).read().split()[0]
            targets = json.load(urllib.request.urlopen('http://127.0.0.1:%s/json/list' % port, timeout=5))
            pages = [t for t in targets if t.get('type') == 'page']
            if pages: return pages[0]['webSocketDebuggerUrl']
        except (OSError, ValueError, IndexError):
            pass
        time.sleep(0.1)
    sys.exit('cdp: no page to drive')

class WS:
    def __init__(self, url):
        hostport, path = url[len('ws://'):].split('/', 1)
        host, port = hostport.rsplit(':', 1)
        self.s = socket.create_connection((host, int(port)), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall(('GET /%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
                        'Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n' % (path, hostport, key)).encode())
        head = b''
        while not head.endswith(b'\r\n\r\n'):
            c = self.s.recv(1)
            if not c: sys.exit('cdp: connection closed during the handshake')
            head += c
        if b' 101 ' not in head.split(b'\r\n')[0]: sys.exit('cdp: handshake refused: %r' % head[:200])
        self.next_id = 0
    def exact(self, n):
        b = bytearray()
        while len(b) < n:
            c = self.s.recv(n - len(b))
            if not c: sys.exit('cdp: connection closed')
            b += c
        return bytes(b)
    def send(self, opcode, data):
        n = len(data); h = bytearray([0x80 | opcode])
        if n < 126: h.append(0x80 | n)
        elif n < 65536: h += bytes([0x80 | 126]) + struct.pack('>H', n)
        else: h += bytes([0x80 | 127]) + struct.pack('>Q', n)
        mask = os.urandom(4)
        self.s.sendall(bytes(h) + mask + bytes(b ^ mask[i & 3] for i, b in enumerate(data)))
    def recv(self):
        msg = b''
        while True:
            b0, b1 = self.exact(2)
            n = b1 & 0x7f
            if n == 126: n = struct.unpack('>H', self.exact(2))[0]
            elif n == 127: n = struct.unpack('>Q', self.exact(8))[0]
            mask = self.exact(4) if b1 & 0x80 else None
            data = self.exact(n)
            if mask: data = bytes(b ^ mask[i & 3] for i, b in enumerate(data))
            op = b0 & 0x0f
            if op == 9: self.send(10, data); continue
            if op == 8: sys.exit('cdp: closed by the browser')
            msg += data
            if b0 & 0x80: return json.loads(msg)
    def call(self, method, **params):
        self.next_id += 1
        self.send(1, json.dumps({'id': self.next_id, 'method': method, 'params': params}).encode())
        while True:
            m = self.recv()
            if m.get('id') == self.next_id:
                if 'error' in m: sys.exit('cdp: %s: %s' % (method, m['error']))
                return m['result']

def evaluate(ws, expr):
    r = ws.call('Runtime.evaluate', expression=expr, returnByValue=True, awaitPromise=True)
    if 'exceptionDetails' in r: return {'exception': r['exceptionDetails'].get('text')}
    return r['result'].get('value')

ws = WS(page_ws(sys.argv[1]))
cmd = sys.argv[2]
if cmd == 'eval':
    print(json.dumps(evaluate(ws, sys.argv[3])))
elif cmd == 'wait':
    deadline = time.time() + float(sys.argv[3]); v = None
    while time.time() < deadline:
        v = evaluate(ws, sys.argv[4])
        if v and not (isinstance(v, dict) and 'exception' in v): sys.exit(0)
        time.sleep(0.05)
    print('timed out; last value: %s' % json.dumps(v)); sys.exit(1)
EOF
prof=$work/chrome-live
mkdir -p "$work/home-live"
mapfile -t flags < <(chrome_flags live)
HOME=$work/home-live setsid "$chrome" "${flags[@]}" --ignore-certificate-errors-spki-list="$spki" \
  --remote-debugging-port=0 "$page" 2>> "$work/chrome-live.log" &
chrome_pids+=($!)
cdp() { timeout -k 5 120 python3 "$work/cdp.py" "$prof" "$@"; }
# q ATTR=VALUE [ATTR2]: a JS expression for the text (or ATTR2) of that element, or null.
q() {
  local k=${1%%=*} v=${1#*=}
  if [ $# -gt 1 ]; then
    echo "(document.querySelector('[$k=\"$v\"]') || {getAttribute: () => null}).getAttribute('$2')"
  else
    echo "(document.querySelector('[$k=\"$v\"]') || {}).textContent || null"
  fi
}
t=$(date +%s.%N)
check "the live page loads and follows the events stream" \
  cdp wait 30 "document.body.dataset.loaded === '1' && document.getElementById('live-status').dataset.live === 'live'"
timings+=("live page loaded and streaming: $(since "$t") s")
check "the token left the address bar (kept in sessionStorage)" \
  test "$(cdp eval "[location.href.includes('token'), sessionStorage.getItem('otakey.token') === '$read_token']")" = '[false, true]'
cdp eval "window.otkSameDocument = 'yes'" > /dev/null

# A switch of every device to cloud 2 while the page is open.
t=$(date +%s.%N)
c2=$(campaign_start '{"kind": "switch", "target_cloud": 2, "selector": "all", "rate": 100}')
check "a second campaign (switch to cloud 2) starts through the API" test -n "$c2"
check "the page shows campaign $c2 appear" cdp wait 20 "$(q "data-campaign=$c2" data-state)"
shown=$(since "$t")
check "... and finish on the page: done, $n done, 0 failed" cdp wait 60 \
  "$(q "data-campaign=$c2" data-state) === 'done' && $(q "data-campaign=$c2" data-done) === '$n' && $(q "data-campaign=$c2" data-failed) === '0'"
live=$(since "$t")
campaign_wait "$c2" || true
check "... as the API has it" test "$(jget "$work/campaign-$c2.json" '(j["state"], j["done"], j["failed"])')" = "('done', $n, 0)"
check "the counts follow: $n devices on cloud 2, none left on cloud 1" cdp wait 20 \
  "$(q data-cloud-count=2) === '$n' && $(q data-cloud-count=1) === '0' && $(q data-state-count=active) === '$n'"
check "... and on key version 3" cdp wait 20 "$(q data-version-count=3) === '$n'"
check "the audit tail shows the switch's commits (version 3)" cdp wait 30 \
  "[...document.querySelectorAll('tr[data-kind=\"commit\"]')].filter((r) => r.children[4].textContent === '3').length >= $n"
timings+=("campaign $c2 on the open page: shown after $shown s, done there after $live s")

# A device that went away: a rotation cannot finish it until an operator
# revokes it through the API; the page shows the failure, with its reason, on demand.
t=$(date +%s.%N)
idn=$(device_id $n)
kill "${dev_pid[$n]}"; wait "${dev_pid[$n]}" 2>/dev/null || true
c3=$(campaign_start '{"kind": "rotate", "selector": "all", "rate": 100}')
check "a third campaign (rotation) starts, with device $n gone" test -n "$c3"
check "the page shows it running: $((n - 1)) done, 1 device left" cdp wait 90 \
  "$(q "data-campaign=$c3" data-state) === 'running' && $(q "data-campaign=$c3" data-done) === '$((n - 1))' && $(q "data-campaign=$c3" data-failed) === '0'"
check "device $n is revoked through the API (200)" test "$(api POST "/v1/devices/$idn/revoke")" = 200
check "the page shows the campaign done with 1 failed" cdp wait 30 \
  "$(q "data-campaign=$c3" data-state) === 'done' && $(q "data-campaign=$c3" data-done) === '$((n - 1))' && $(q "data-campaign=$c3" data-failed) === '1'"
check "... and the device counts: $((n - 1)) active, 1 revoked" cdp wait 20 \
  "$(q data-state-count=active) === '$((n - 1))' && $(q data-state-count=revoked) === '1'"
cdp eval "document.querySelector('tr[data-campaign=\"$c3\"] button').click()" > /dev/null
check "its failures, on demand: device $n, reason REVOKED" cdp wait 30 \
  "[...document.querySelectorAll('#failures-$c3 tr[data-failure-device]')].map((r) => r.dataset.failureDevice + ' ' + r.textContent.includes('REVOKED')).join() === '$idn true'"
timings+=("campaign $c3, the revocation and the failures on the open page: $(since "$t") s")

# The agent restarts: the page's stream drops, and resumes after the last row
# it saw, losing nothing written meanwhile (a product made with the CLI).
t=$(date +%s.%N)
kill "$agent_pid"; wait "$agent_pid" 2>/dev/null || true
check "the page says when the events stream dropped" cdp wait 20 \
  "document.getElementById('live-status').dataset.live !== 'live'"
"$bin/otakey" product create --db "$work/registry.db" --batch 0000000200000002 --name 'second <batch>' \
  --pk-out "$work/batch2.pk" > /dev/null
start_agent
for _ in $(seq 100); do curl -sf --cacert "$LAB_CA" "$base/healthz" > /dev/null 2>&1 && break; sleep 0.1; done
check "it resumes after the restart, with the row written meanwhile (product_created)" cdp wait 30 \
  "document.getElementById('live-status').dataset.live === 'live' && !!document.querySelector('#audit tr[data-kind=\"product_created\"]')"
timings+=("the agent's restart, until the page streams again: $(since "$t") s")

# The events stream lost nothing: the page's last sequence is the log's.
# (The page's tail, newest first, is the log's last 50 rows.) The log is read
# again until the page shows its tail: a row written after one reading (the
# restarted agent's) reaches the page too.
tail_shown() {
  api GET '/v1/audit?limit=1000' > /dev/null
  tail50=$(jget "$work/resp.json" '",".join(str(r["seq"]) for r in reversed(j["rows"][-50:]))')
  cdp wait 5 "[...document.querySelectorAll('#audit tr[data-seq]')].map((r) => r.dataset.seq).join(',') === '$tail50'" > /dev/null
}
check "the page's audit tail is the log's last 50 rows, as streamed" wait_for 60 tail_shown
echo "   (the log's rows #${tail50%%,*} back to #${tail50##*,})"
check "all of it without a reload" test "$(cdp eval 'window.otkSameDocument')" = '"yes"'
check "the page reported no error" test "$(cdp eval "document.getElementById('error').hidden")" = true

# 4. A screenshot of the final page.
t=$(date +%s.%N)
chrome_run shot --ignore-certificate-errors-spki-list="$spki" --virtual-time-budget=15000 \
  --screenshot="$work/dashboard.png" "$page" > /dev/null || true
check "a screenshot of the dashboard (1280x900 PNG)" bash -c \
  "[ \"\$(python3 -c 'import struct,sys; d=open(sys.argv[1],\"rb\").read(24); print(\"%dx%d\" % struct.unpack(\">II\", d[16:24]) if d[:8] == b\"\\x89PNG\\r\\n\\x1a\\n\" else \"\")' '$work/dashboard.png' 2>/dev/null)\" = 1280x900 ]"
timings+=("screenshot: $(since "$t") s")
echo "screenshot: $work/dashboard.png${SCREENSHOT:+ (copied to $SCREENSHOT)}${KEEP:+ (kept)}"

for x in "${timings[@]}"; do echo "timing: $x"; done
echo "timing: in all $(since "$T0") s"
echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
