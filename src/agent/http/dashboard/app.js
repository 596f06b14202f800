// otakey fleet dashboard (docs/api.md). Plain JavaScript, no framework.
//
// It loads the lists once (devices page by page, campaigns, the audit tail,
// clouds), then follows /v1/events (Server-Sent Events read with fetch(), since
// EventSource cannot send the Authorization header) and refreshes what an event
// concerns, at most about twice a second. Strings from the server only ever go
// into textContent or attributes: never into innerHTML.
'use strict';

(function () {
  const TOKEN_KEY = 'otakey.token';
  const AUDIT_TAIL = 50;
  const CAMPAIGNS_SHOWN = 25;
  const REFRESH_MS = 500;          // at most ~2 refreshes a second
  const STREAM_SILENCE_MS = 45000; // the server sends a comment every 15 s
  const CLOUDS_EVERY_MS = 30000;
  const DEVICE_FETCHES_MAX = 200;  // more changed devices than this: reload the list

  const S = {
    token: null,
    devices: new Map(),     // id -> {state, cloud, version}
    clouds: [],
    campaigns: [],          // newest first
    failures: new Map(),    // campaign id -> [{device, reason}] for open panels
    open: new Set(),        // campaign ids whose failures are shown
    audit: [],              // newest first
    lastSeq: 0,
    dirtyDevices: new Set(),
    reloadDevices: false,
    dirtyCampaigns: false,
    dirtyAudit: false,
    timer: null,
    flushing: false,
    lastFlush: 0,
    stream: null,           // AbortController of the events stream
    lastByte: 0,
    retries: 0,
    generation: 0,          // bumped at sign-out: late answers are dropped
  };

  const $ = (id) => document.getElementById(id);

  // el('tr', {class: 'x', 'data-seq': 3}, child, 'text', ...): a DOM element.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = String(v);
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  // ---- the token ----

  function tokenFromHash() {
    const h = location.hash.replace(/^#/, '');
    if (!h) return;
    const parts = h.split('&');
    const keep = [];
    let token = null;
    for (const p of parts) {
      if (p.startsWith('token=')) {
        try { token = decodeURIComponent(p.slice(6)); } catch (e) { token = p.slice(6); }
      } else if (p) keep.push(p);
    }
    if (token === null) return;
    // Out of the address bar (and the history) at once.
    history.replaceState(null, '', location.pathname + location.search + (keep.length ? '#' + keep.join('&') : ''));
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
  }

  class AuthError extends Error {}
  class Stale extends Error {} // an answer to a request made before a sign-out or a restart
  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(path) {
    const gen = S.generation;
    let res;
    try {
      res = await fetch(path, {
        headers: { 'Authorization': 'Bearer ' + S.token, 'Accept': 'application/json' },
        cache: 'no-store',
      });
    } catch (e) {
      throw new ApiError(0, 'the agent cannot be reached (' + e.message + ')');
    }
    if (gen !== S.generation) throw new Stale('stale');
    if (res.status === 401) throw new AuthError('the token was refused');
    if (!res.ok) {
      let msg = 'HTTP ' + res.status;
      try { const j = await res.json(); if (j && j.error) msg += ': ' + j.error; } catch (e) { /* not JSON */ }
      throw new ApiError(res.status, msg);
    }
    return res.json();
  }

  // ---- loading ----

  function keepDevice(d) {
    S.devices.set(d.id, { state: d.state, cloud: d.cloud, version: d.version });
  }

  async function loadDevices() {
    const all = new Map();
    let after = null;
    do {
      const r = await api('/v1/devices?limit=1000' + (after ? '&after=' + encodeURIComponent(after) : ''));
      for (const d of r.devices || []) all.set(d.id, { state: d.state, cloud: d.cloud, version: d.version });
      after = r.next || null;
    } while (after);
    S.devices = all;
  }

  async function loadCampaigns() {
    const r = await api('/v1/campaigns');
    S.campaigns = r.campaigns || [];
  }

  async function loadClouds() {
    const r = await api('/v1/clouds');
    S.clouds = r.clouds || [];
  }

  // The latest rows of the audit log (`tail`) and its last sequence number.
  async function loadAudit() {
    let page = await api('/v1/audit?tail=' + AUDIT_TAIL);
    let rows = page.rows || [];
    // The tail is counted from the number of rows: where the sequence has gaps
    // it can stop short of the end, and then says where to read on.
    while (page.next !== null && page.next !== undefined) {
      page = await api('/v1/audit?limit=1000&after=' + page.next);
      rows = rows.concat(page.rows || []).slice(-AUDIT_TAIL);
    }
    rows = rows.slice(-AUDIT_TAIL).reverse();
    S.audit = rows;
    for (const r of rows) if (r.seq > S.lastSeq) S.lastSeq = r.seq;
  }

  async function loadAll() {
    // The audit first: whatever changes after its last row comes as an event.
    await loadAudit();
    await Promise.all([loadDevices(), loadCampaigns(), loadClouds()]);
  }

  // ---- rendering ----

  const num = (n) => Number(n || 0).toLocaleString('en-US');

  function fmtTime(ms) {
    if (ms === null || ms === undefined) return '';
    const d = new Date(Number(ms));
    if (isNaN(d.getTime())) return String(ms);
    return d.toISOString().replace('T', ' ').slice(0, 19);
  }

  // A bar row: label, bar, count. attrs go on the count element.
  function barRow(label, count, max, cls, attrs, note) {
    const fill = el('div', { class: 'fill ' + (cls || '') });
    fill.style.width = (max > 0 ? Math.max(count > 0 ? 1 : 0, 100 * count / max) : 0) + '%';
    return el('div', { class: 'bar-row' },
      el('div', { class: 'bar-label' }, el('div', { class: 'name' }, label),
        note ? el('div', { class: 'muted note', title: note }, note) : null),
      el('div', { class: 'bar', role: 'presentation' }, fill),
      el('div', Object.assign({ class: 'bar-count', 'data-count': count }, attrs), num(count)));
  }

  function renderFleet() {
    const byState = { pending: 0, active: 0, revoked: 0 };
    const byCloud = new Map();
    const byVersion = new Map();
    for (const d of S.devices.values()) {
      byState[d.state] = (byState[d.state] || 0) + 1;
      const c = d.cloud ? String(d.cloud) : 'none';
      byCloud.set(c, (byCloud.get(c) || 0) + 1);
      const v = d.version ? String(d.version) : 'none';
      byVersion.set(v, (byVersion.get(v) || 0) + 1);
    }
    const total = S.devices.size;
    $('device-total').textContent = num(total);
    $('device-total').dataset.count = total;

    const states = ['pending', 'active', 'revoked'];
    for (const s of Object.keys(byState)) if (!states.includes(s)) states.push(s);
    $('by-state').replaceChildren(...states.map((s) =>
      barRow(s, byState[s] || 0, total, 'state-' + s, { 'data-state-count': s })));

    // Every configured cloud, with or without devices, then any other.
    const clouds = new Map(S.clouds.map((c) => [String(c.id), c]));
    const ids = [...new Set([...clouds.keys(), ...byCloud.keys()])].sort((a, b) =>
      (a === 'none') - (b === 'none') || Number(a) - Number(b));
    const cloudRows = ids.map((id) => {
      const c = clouds.get(id);
      const label = id === 'none' ? 'no cloud yet' : 'cloud ' + id;
      let note = null, health = null;
      if (c) {
        note = [c.type, c.host && c.port ? c.host + ':' + c.port : c.host, c.tls ? 'TLS' : 'no TLS']
          .filter(Boolean).join(' · ');
        const ok = c.healthy;
        const ms = Number(c.latency_ms);
        const latency = ok && c.latency_ms !== null && c.latency_ms !== undefined
          ? (ms < 1 ? ' <1 ms' : ' ' + Math.round(ms) + ' ms') : '';
        health = el('span', {
          class: 'health ' + (ok ? 'ok' : 'bad'), 'data-cloud-healthy': ok ? 'yes' : 'no',
          title: ok ? 'reachable' + latency : 'not reachable',
        }, ok ? 'up' : 'down', latency);
      } else if (id !== 'none') {
        note = 'not configured on this agent';
      }
      const row = barRow(label, byCloud.get(id) || 0, total, 'cloud', { 'data-cloud-count': id }, note);
      if (health) row.querySelector('.bar-label .name').append(' ', health);
      return row;
    });
    $('by-cloud').replaceChildren(...(cloudRows.length ? cloudRows : [el('p', { class: 'muted' }, 'No cloud.')]));

    // Versions, highest first; past ten, the rest in one row.
    const versions = [...byVersion.keys()].sort((a, b) =>
      (a === 'none') - (b === 'none') || Number(b) - Number(a));
    const shown = versions.slice(0, 10);
    const rest = versions.slice(10);
    const vrows = shown.map((v) => barRow(v === 'none' ? 'none committed' : 'v' + v, byVersion.get(v), total,
      'version', { 'data-version-count': v }));
    if (rest.length) {
      const n = rest.reduce((a, v) => a + byVersion.get(v), 0);
      vrows.push(barRow(rest.length + ' older versions', n, total, 'version', { 'data-version-count': 'older' }));
    }
    $('by-version').replaceChildren(...(vrows.length ? vrows : [el('p', { class: 'muted' }, 'No device yet.')]));
  }

  const STATE_TEXT = {
    canary: 'canary', running: 'running', paused: 'paused', aborted: 'aborted', done: 'done',
  };
  const PAUSE_TEXT = {
    operator: 'paused by an operator',
    canary_failed: 'a canary device failed',
    error_threshold: 'too many failures (max_failures reached)',
  };
  const REASON_TEXT = {
    CLOUD: 'the cloud refused the new key set',
    REVOKED: 'the device was revoked',
    BAD_VALUE: 'the agent refused the request (e.g. a cloud it does not serve)',
    BAD_STATE: 'the campaign was aborted before the device started',
  };

  function progressBar(c) {
    const total = Number(c.total) || 0;
    const done = Number(c.done) || 0, failed = Number(c.failed) || 0;
    const busy = Math.max(0, (Number(c.started) || 0) - done - failed);
    const seg = (n, cls, what) => {
      const s = el('div', { class: 'seg ' + cls, title: num(n) + ' ' + what });
      s.style.width = (total > 0 ? 100 * n / total : 0) + '%';
      return s;
    };
    const pct = total > 0 ? Math.floor(100 * (done + failed) / total) : 100;
    return el('div', { class: 'progress' },
      el('div', { class: 'bar stacked', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': total,
        'aria-valuenow': done + failed },
        seg(done, 'done', 'done'), seg(failed, 'failed', 'failed'), seg(busy, 'busy', 'in progress')),
      el('div', { class: 'progress-text' },
        el('span', { 'data-progress': 'done' }, num(done)), ' done, ',
        el('span', { class: failed ? 'bad-text' : '', 'data-progress': 'failed' }, num(failed)), ' failed, ',
        num(busy), ' in progress, ', num(Math.max(0, total - (Number(c.started) || 0))), ' waiting',
        el('span', { class: 'muted' }, ' (' + pct + '%)')));
  }

  function renderCampaigns() {
    const body = $('campaigns').tBodies[0];
    const list = S.campaigns.slice(0, CAMPAIGNS_SHOWN);
    $('campaigns-empty').hidden = S.campaigns.length > 0;
    $('campaigns').hidden = S.campaigns.length === 0;
    const more = S.campaigns.length - list.length;
    $('campaigns-more').hidden = more <= 0;
    $('campaigns-more').textContent = more > 0 ? more + ' older campaigns not shown.' : '';
    const rows = [];
    for (const c of list) {
      const id = String(c.id);
      const what = c.kind === 'switch' ? 'switch to cloud ' + c.target_cloud
        : c.kind === 'rotate' ? 'key rotation' : String(c.kind);
      const details = ['rate ' + c.rate + '/s'];
      if (c.canary) details.push('canary ' + c.canary);
      if (c.max_failures) details.push('pause at ' + c.max_failures + ' failures');
      const state = String(c.state);
      const stateCell = el('td', {},
        el('span', { class: 'badge state-' + state, 'data-campaign-state': id }, STATE_TEXT[state] || state),
        c.pause_reason ? el('div', { class: 'muted small', 'data-pause-reason': id },
          PAUSE_TEXT[c.pause_reason] || String(c.pause_reason)) : null);
      const failed = Number(c.failed) || 0;
      const isOpen = S.open.has(id);
      const button = el('button', {
        type: 'button', class: 'link', 'aria-expanded': isOpen ? 'true' : 'false',
        'aria-controls': 'failures-' + id, disabled: failed === 0,
        onclick: () => toggleFailures(id),
      }, failed === 0 ? 'No failures' : (isOpen ? 'Hide failures' : 'Show failures (' + num(failed) + ')'));
      rows.push(el('tr', {
        'data-campaign': id, 'data-state': state, 'data-pause-reason': c.pause_reason || '',
        'data-total': c.total, 'data-started': c.started, 'data-done': c.done, 'data-failed': c.failed,
      },
      el('td', {}, '#' + id),
      el('td', {}, what, el('div', { class: 'muted small' }, String(c.selector || ''), ' · ', details.join(', '))),
      el('td', { class: 'num' }, num(c.total)),
      stateCell,
      el('td', { class: 'wide' }, progressBar(c)),
      el('td', { class: 'nowrap' }, fmtTime(c.created_ms)),
      el('td', {}, button)));
      if (isOpen) rows.push(failuresRow(id));
    }
    body.replaceChildren(...rows);
  }

  function failuresRow(id) {
    const f = S.failures.get(id);
    let content;
    if (!f) content = el('p', { class: 'muted' }, 'Loading...');
    else if (f.error) content = el('p', { class: 'error' }, f.error);
    else if (!f.list.length) content = el('p', { class: 'muted' }, 'No failures.');
    else {
      content = el('table', { class: 'failures' },
        el('thead', {}, el('tr', {}, el('th', {}, 'Device'), el('th', {}, 'Reason'))),
        el('tbody', {}, ...f.list.map((x) => el('tr', { 'data-failure-device': x.device },
          el('td', { class: 'mono' }, String(x.device)),
          el('td', {}, el('code', {}, String(x.reason)), ' ', REASON_TEXT[x.reason] || '')))));
    }
    return el('tr', { class: 'detail', id: 'failures-' + id },
      el('td', { colspan: 7 }, el('h3', {}, 'Failed devices of campaign #' + id), content));
  }

  async function loadFailures(id) {
    try {
      const c = await api('/v1/campaigns/' + encodeURIComponent(id));
      S.failures.set(id, { list: c.failures || [], failed: c.failed });
    } catch (e) {
      if (e instanceof Stale) return;
      if (e instanceof AuthError) return authFailed(e);
      S.failures.set(id, { error: 'Could not load the failures: ' + e.message });
    }
  }

  async function toggleFailures(id) {
    if (S.open.has(id)) {
      S.open.delete(id);
      S.failures.delete(id);
      renderCampaigns();
      return;
    }
    S.open.add(id);
    renderCampaigns();
    await loadFailures(id);
    renderCampaigns();
  }

  function renderAudit() {
    const body = $('audit').tBodies[0];
    $('audit-empty').hidden = S.audit.length > 0;
    body.replaceChildren(...S.audit.map((r) => el('tr', { 'data-seq': r.seq, 'data-kind': r.kind },
      el('td', { class: 'num' }, String(r.seq)),
      el('td', { class: 'nowrap' }, fmtTime(r.ts_ms)),
      el('td', {}, el('span', { class: 'kind kind-' + String(r.kind) }, String(r.kind))),
      el('td', { class: 'mono' }, r.device ? String(r.device) : ''),
      el('td', { class: 'num' }, r.version === null || r.version === undefined ? '' : String(r.version)),
      el('td', {}, r.code === null || r.code === undefined ? '' : String(r.code)),
      el('td', {}, r.actor ? String(r.actor) : ''))));
    $('last-seq').textContent = S.lastSeq ? '#' + S.lastSeq : 'none';
    $('last-seq').dataset.seq = S.lastSeq;
  }

  function renderAll() {
    renderFleet();
    renderCampaigns();
    renderAudit();
  }

  // ---- live updates ----

  // Kinds that change no device record.
  const NO_DEVICE_CHANGE = new Set(['claim_refused', 'refused', 'product_created', 'campaign']);
  // Kinds that move a campaign's counts.
  const CAMPAIGN_PROGRESS = new Set(['update_issued', 'commit', 'abort', 'revoke']);

  function campaignsLive() {
    return S.campaigns.some((c) => c.state === 'canary' || c.state === 'running' || c.state === 'paused');
  }

  function onRow(row) {
    if (!row || typeof row.seq !== 'number' || row.seq <= S.lastSeq) return;
    S.lastSeq = row.seq;
    S.audit.unshift(row);
    if (S.audit.length > AUDIT_TAIL) S.audit.length = AUDIT_TAIL;
    S.dirtyAudit = true;
    if (row.device && !NO_DEVICE_CHANGE.has(row.kind)) S.dirtyDevices.add(row.device);
    // A campaign's own rows (and the requests it makes) always; device
    // outcomes while a campaign may be counting them.
    if (row.kind === 'campaign' || row.kind === 'update_requested' ||
        (CAMPAIGN_PROGRESS.has(row.kind) && campaignsLive())) S.dirtyCampaigns = true;
    scheduleFlush();
  }

  function scheduleFlush() {
    if (S.timer || S.flushing) return;
    const wait = Math.max(0, S.lastFlush + REFRESH_MS - Date.now());
    S.timer = setTimeout(flush, wait);
  }

  async function flush() {
    S.timer = null;
    S.flushing = true;
    S.lastFlush = Date.now();
    const devices = [...S.dirtyDevices];
    const reload = S.reloadDevices || devices.length > DEVICE_FETCHES_MAX;
    const campaigns = S.dirtyCampaigns;
    S.dirtyDevices.clear();
    S.reloadDevices = false;
    S.dirtyCampaigns = false;
    S.dirtyAudit = false;
    try {
      renderAudit();
      const jobs = [];
      if (reload) jobs.push(loadDevices());
      else if (devices.length) jobs.push(refreshDevices(devices));
      if (campaigns) {
        jobs.push(loadCampaigns().then(() => Promise.all([...S.open].map(loadFailures))));
      }
      await Promise.all(jobs);
      if (reload || devices.length) renderFleet();
      if (campaigns) renderCampaigns();
      setError(null);
    } catch (e) {
      if (e instanceof Stale) { S.flushing = false; return; }
      if (e instanceof AuthError) { authFailed(e); return; }
      setError('Could not refresh: ' + e.message + '. Retrying.');
      // Try again what failed.
      for (const d of devices) S.dirtyDevices.add(d);
      S.reloadDevices = S.reloadDevices || reload;
      S.dirtyCampaigns = S.dirtyCampaigns || campaigns;
      S.lastFlush = Date.now() + 2000;
    } finally {
      S.flushing = false;
    }
    if (S.dirtyDevices.size || S.reloadDevices || S.dirtyCampaigns || S.dirtyAudit) scheduleFlush();
  }

  async function refreshDevices(ids) {
    let next = 0;
    const worker = async () => {
      while (next < ids.length) {
        const id = ids[next++];
        try {
          keepDevice(await api('/v1/devices/' + encodeURIComponent(id)));
        } catch (e) {
          if (e instanceof ApiError && e.status === 404) S.devices.delete(id);
          else throw e;
        }
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
  }

  function setLive(state, text) {
    const e = $('live-status');
    e.dataset.live = state;
    e.textContent = text;
  }

  // Parses the text/event-stream body; calls onEvent({id, event, data}).
  function sseParser(onEvent) {
    let buf = '';
    let data = [], event = '', id = null;
    function line(l) {
      if (l === '') {
        if (data.length) onEvent({ id, event: event || 'message', data: data.join('\n') });
        data = []; event = ''; id = null;
        return;
      }
      if (l[0] === ':') return; // a comment: the keep-alive
      const i = l.indexOf(':');
      const field = i < 0 ? l : l.slice(0, i);
      let value = i < 0 ? '' : l.slice(i + 1);
      if (value[0] === ' ') value = value.slice(1);
      if (field === 'data') data.push(value);
      else if (field === 'event') event = value;
      else if (field === 'id') id = value;
    }
    return function (chunk, end) {
      buf += chunk;
      let start = 0;
      for (let i = 0; i < buf.length; i++) {
        const ch = buf[i];
        if (ch !== '\n' && ch !== '\r') continue;
        if (ch === '\r' && i + 1 === buf.length && !end) break; // a \r\n may be split
        line(buf.slice(start, i));
        if (ch === '\r' && buf[i + 1] === '\n') i++;
        start = i + 1;
      }
      buf = buf.slice(start);
    };
  }

  async function runStream() {
    const gen = S.generation;
    while (gen === S.generation) {
      const ctl = new AbortController();
      S.stream = ctl;
      let got = false;
      try {
        setLive('connecting', S.retries ? 'Reconnecting...' : 'Connecting...');
        const res = await fetch('/v1/events?after=' + S.lastSeq, {
          headers: { 'Authorization': 'Bearer ' + S.token, 'Accept': 'text/event-stream' },
          cache: 'no-store', signal: ctl.signal,
        });
        if (res.status === 401) { authFailed(new AuthError('the token was refused')); return; }
        if (!res.ok || !res.body) throw new Error('HTTP ' + res.status);
        setLive('live', 'Live');
        S.lastByte = Date.now();
        const reader = res.body.getReader();
        const dec = new TextDecoder();
        const feed = sseParser((ev) => {
          let row;
          try { row = JSON.parse(ev.data); } catch (e) { return; }
          if (row && typeof row.seq !== 'number' && ev.id !== null && /^\d+$/.test(ev.id)) row.seq = Number(ev.id);
          if (row && !row.kind && ev.event !== 'message') row.kind = ev.event;
          onRow(row);
        });
        for (;;) {
          const { value, done } = await reader.read();
          if (done) { feed(dec.decode(), true); break; }
          S.lastByte = Date.now();
          if (!got) { got = true; S.retries = 0; }
          feed(dec.decode(value, { stream: true }), false);
        }
      } catch (e) {
        if (gen !== S.generation) return;
      }
      if (gen !== S.generation) return;
      S.retries++;
      const wait = Math.min(15000, 1000 * Math.pow(2, Math.min(S.retries - 1, 4)));
      setLive('down', 'Disconnected, retrying in ' + Math.round(wait / 1000) + ' s');
      await new Promise((r) => setTimeout(r, wait));
    }
  }

  // A stream that went silent (no keep-alive either) is dropped and resumed.
  setInterval(() => {
    if (S.stream && $('live-status').dataset.live === 'live' && Date.now() - S.lastByte > STREAM_SILENCE_MS) {
      S.stream.abort();
    }
  }, 5000);

  // Cloud health changes without audit rows: read it now and then.
  setInterval(async () => {
    if (!S.token || document.body.dataset.loaded !== '1' || document.hidden) return;
    try { await loadClouds(); renderFleet(); } catch (e) { if (e instanceof AuthError) authFailed(e); }
  }, CLOUDS_EVERY_MS);

  // ---- start, sign in, sign out ----

  function setError(msg) {
    $('error').hidden = !msg;
    $('error').textContent = msg || '';
  }

  function showSignIn(msg) {
    $('dashboard').hidden = true;
    $('sign-out').hidden = true;
    $('sign-in').hidden = false;
    $('token-error').textContent = msg || '';
    setLive('off', 'Not connected');
    $('token-input').focus();
  }

  function stop() {
    S.generation++;
    if (S.stream) S.stream.abort();
    S.stream = null;
    if (S.timer) clearTimeout(S.timer);
    S.timer = null;
    document.body.dataset.loaded = '0';
  }

  function authFailed(e) {
    stop();
    sessionStorage.removeItem(TOKEN_KEY);
    S.token = null;
    showSignIn('The agent refused this token (' + e.message + '). Check it and try again.');
  }

  async function start() {
    stop();
    const gen = S.generation;
    S.token = sessionStorage.getItem(TOKEN_KEY);
    if (!S.token) { showSignIn(''); return; }
    $('sign-in').hidden = true;
    $('sign-out').hidden = false;
    setLive('connecting', 'Loading...');
    Object.assign(S, {
      devices: new Map(), campaigns: [], clouds: [], audit: [], lastSeq: 0, retries: 0,
      failures: new Map(), open: new Set(), dirtyDevices: new Set(), reloadDevices: false, dirtyCampaigns: false,
    });
    try {
      await loadAll();
    } catch (e) {
      if (gen !== S.generation || e instanceof Stale) return;
      if (e instanceof AuthError) { authFailed(e); return; }
      setError('Could not load the fleet: ' + e.message + '. Retrying in 5 s.');
      setLive('down', 'Not connected');
      setTimeout(() => { if (gen === S.generation) start(); }, 5000);
      return;
    }
    if (gen !== S.generation) return;
    setError(null);
    $('dashboard').hidden = false;
    renderAll();
    document.body.dataset.loaded = '1';
    runStream();
  }

  $('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = $('token-input').value.trim();
    if (!t) return;
    sessionStorage.setItem(TOKEN_KEY, t);
    $('token-input').value = '';
    start();
  });

  $('sign-out').addEventListener('click', () => {
    stop();
    sessionStorage.removeItem(TOKEN_KEY);
    S.token = null;
    showSignIn('Signed out.');
  });

  window.addEventListener('hashchange', () => {
    if (/(^#|&)token=/.test(location.hash)) { tokenFromHash(); start(); }
  });

  tokenFromHash();
  start();
})();
