#!/usr/bin/env node
// Drives the owner's program mix and Go-live panel on Vestibule's lobby page
// (`/`: lobby.js + mix.js + app.js) in headless Chromium, step by step, so
// that a Rust test can check the RTMP output between steps.
//
//   node tests/clients/lobby_live.mjs --base http://127.0.0.1:PORT \
//       --space S --stream ID --owner-token JWT --guest-token JWT \
//       --rtmp-endpoint rtmp://127.0.0.1:1935/live --rtmp-key KEY \
//       [--chromium /usr/lib/chromium/chromium] [--viewer-token JWT] \
//       [--skip-live] [--online-timeout 30] [--timeout 600] \
//       [--web-dir DIR] [--verbose]
//
// Scenario (automatic, at start): the owner's page and the guest's page (one
// browser context each, fake 640x480 camera + fake microphone) join the
// lobby; the owner receives the guest's video; the owner clicks "Mix
// program" (a 1280x720 canvas of both tiles + a WebAudio mix, published by
// a client offer on the signal channel with `i=2 2 program`, i.e. as main)
// and the script waits until GET /space/S/stream/ID (owner's Bearer) shows
// an owner video track with purpose "main" and the guest decodes a 1280x720
// video through the server; then the owner fills in the
// Go-live panel and clicks Start (POST .../live/start) and the script waits
// until the panel's status poll (GET {Location}, every 2 s) says "online".
// --skip-live leaves out Go live (for a server without the live subsystem).
//
// stdout protocol: one JSON object per line, each with a "step":
//   {"step":"joined","ms","owner":userId,"guest":userId}
//   {"step":"mix-on","ok":true,"ms","sections":[{mid,kind,accepted}],
//    "mix":{width,height,tiles,frames,audioSources},"outbound":{frameWidth,
//    frameHeight,framesEncoded},"guestReceives":[{mid,frameWidth,frameHeight,
//    framesDecoded}],"tracks":[{userId,kind,purpose,mute}]}
//   {"step":"live-start","ok":true,"status":201,"location","request":{...}}
//   {"step":"online","ok":true,"ms":<ms from the Start click>,"live":{status JSON}}
//   {"step":"ready"}   -- the automatic part is done; commands are read now
// `tracks` is the server's view (the stream JSON's lobby membership, as the
// owner sees it); `request` describes the POST the panel sent (method, path,
// content type, whether X-Req-Token was set, the body's keys; never the key).
// A failure in the automatic part prints {"step":"error","stage","error",
// "status"?} and then the final line (below) with "ok": false, exit 1.
//
// stdin protocol: one command per line; each prints one JSON line with
// "step" = the command and "ok" (false with "error" when it failed; the
// script keeps reading commands after a failed one):
//   mix-off     owner clicks the toggle off (the mix transceivers stop; a
//               client offer); waits until the server lists no main track
//               of the owner -> {"step":"mix-off","ok","ms","tracks"}
//   mix-on      the toggle on again -> like the automatic "mix-on" step
//   guest-main  the guest publishes a clone of its camera as an extra video
//               track by a client offer with `i=2 2 guest-main` (purpose
//               main, which the server stores as guest for a non-owner)
//               -> {"step":"guest-main","ok","ms","sections","tracks"}
//   status      -> {"step":"status","ok","live":<last polled status JSON>,
//               "panel":<the panel's status line>,"tracks"}
//   viewer      opens /view.html with --viewer-token (a plain WHEP viewer)
//               and waits until it decodes video -> {"step":"viewer","ok",
//               "status":<POST /whep status>,"frameWidth","frameHeight",
//               "framesDecoded","error"?}
//   stop        owner clicks Stop (DELETE {Location}) -> {"step":"stop","ok",
//               "deleteStatus":204}; then the viewer stops, both pages
//               Leave, and the script exits after the final line.
// End of stdin counts as "stop".
// Final line: {"step":"done","ok","pageErrors":[...],"timings":{...}}; exit 0
// when every automatic step passed and no page threw (a failed command does
// not change the exit code; the caller reads its line).
// stderr: browser console errors, page errors (everything with --verbose).

import { chromium } from 'playwright-core';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

const EXECUTABLES = ['/usr/lib/chromium/chromium', '/usr/bin/chromium'];
// The flags of lobby_page.mjs (shared/notes/real-clients.md §2.2).
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  '--autoplay-policy=no-user-gesture-required',
];
const ASSETS = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/index.html': ['index.html', 'text/html; charset=utf-8'],
  '/lobby.js': ['lobby.js', 'text/javascript; charset=utf-8'],
  '/app.js': ['app.js', 'text/javascript; charset=utf-8'],
  '/mix.js': ['mix.js', 'text/javascript; charset=utf-8'],
  '/view.html': ['view.html', 'text/html; charset=utf-8'],
  '/view.js': ['view.js', 'text/javascript; charset=utf-8'],
  '/style.css': ['style.css', 'text/css; charset=utf-8'],
};
// Every getUserMedia of the pages asks for a 640x480 camera.
const CAMERA = { width: { exact: 640 }, height: { exact: 480 } };

const t0 = performance.now();
const since = (start = t0) => Math.round(performance.now() - start);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

class StepError extends Error {
  constructor(stage, message, extra = {}) {
    super(message);
    this.stage = stage;
    this.extra = extra;
  }
}

function parseCli() {
  const { values } = parseArgs({
    options: {
      base: { type: 'string' },
      space: { type: 'string' },
      stream: { type: 'string' },
      'owner-token': { type: 'string' },
      'guest-token': { type: 'string' },
      'viewer-token': { type: 'string' },
      'rtmp-endpoint': { type: 'string' },
      'rtmp-key': { type: 'string' },
      chromium: { type: 'string' },
      'skip-live': { type: 'boolean', default: false },
      'online-timeout': { type: 'string', default: '30' },
      timeout: { type: 'string', default: '600' },
      'web-dir': { type: 'string' },
      verbose: { type: 'boolean', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  const need = ['base', 'space', 'stream', 'owner-token', 'guest-token'];
  if (!values['skip-live']) need.push('rtmp-endpoint', 'rtmp-key');
  for (const k of need) if (!values[k]) throw new Error(`missing --${k}`);
  const num = (k) => {
    const n = Number(values[k]);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`--${k} must be a number > 0`);
    return Math.round(n * 1000);
  };
  const executablePath = values.chromium ?? EXECUTABLES.find((p) => existsSync(p));
  if (!executablePath || !existsSync(executablePath)) {
    throw new Error(`no Chromium at ${values.chromium ?? EXECUTABLES.join(' or ')}`);
  }
  if (values['web-dir'] && !existsSync(join(values['web-dir'], 'lobby.js'))) {
    throw new Error('--web-dir has no lobby.js');
  }
  const user = (name, token) => ({ name, token, userId: userIdOf(token) });
  return {
    base: values.base.replace(/\/+$/, ''),
    space: values.space,
    stream: values.stream,
    owner: user('owner', values['owner-token']),
    guest: user('guest', values['guest-token']),
    viewerToken: values['viewer-token'] ?? null,
    rtmpEndpoint: values['rtmp-endpoint'] ?? null,
    rtmpKey: values['rtmp-key'] ?? null,
    executablePath,
    skipLive: values['skip-live'],
    onlineMs: num('online-timeout'),
    timeoutMs: num('timeout'),
    webDir: values['web-dir'],
    verbose: values.verbose,
  };
}

function userIdOf(token) {
  try {
    return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8')).userId ?? null;
  } catch {
    return null;
  }
}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

/** Polls `probe()` until `done(value)` or `ms` pass; returns {ok, ms, value}. */
async function waitFor(probe, done, ms, every = 100) {
  const start = performance.now();
  let value;
  for (;;) {
    value = await probe();
    if (done(value)) return { ok: true, ms: since(start), value };
    if (performance.now() - start > ms) return { ok: false, ms: since(start), value };
    await sleep(every);
  }
}

// ---- in-page probes ----

const probeSnapshot = () => window.__lobby?.snapshot() ?? null;
const probeProgram = () => ({ ...window.__program, stats: window.__program?.stats() ?? null });
const probeLive = () => ({
  ...window.__live,
  panel: document.getElementById('live-status').textContent,
  panelStatus: document.getElementById('live-status').dataset.status,
  error: document.getElementById('live-error').hidden ? null : document.getElementById('live-error').textContent,
});

/** Outbound video of the owner's program mix (its transceivers on the WHIP connection). */
async function probeMixOutbound() {
  const handle = window.__lobby?.extraTracks[0];
  const t = handle?.transceivers.find((x) => x.sender.track?.kind === 'video');
  if (!t) return null;
  let out = null;
  (await t.sender.getStats()).forEach((s) => {
    if (s.type === 'outbound-rtp') {
      out = {
        mid: t.mid,
        frameWidth: s.frameWidth ?? null,
        frameHeight: s.frameHeight ?? null,
        framesEncoded: s.framesEncoded ?? 0,
        bytesSent: s.bytesSent ?? 0,
        qualityLimitationReason: s.qualityLimitationReason ?? null,
      };
    }
  });
  return out;
}

/** Every video the page's WHEP connection decodes: [{mid, frameWidth, frameHeight, framesDecoded}]. */
async function probeInboundVideo() {
  const pc = window.__lobby?.pcOut;
  if (!pc) return [];
  const out = [];
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      out.push({ mid: s.mid ?? null, frameWidth: s.frameWidth ?? null, frameHeight: s.frameHeight ?? null, framesDecoded: s.framesDecoded ?? 0 });
    }
  });
  return out;
}

// ---- the driver ----

class Driver {
  constructor(opts) {
    this.opts = opts;
    this.browser = null;
    this.pages = {};
    this.pageErrors = [];
    this.timings = {};
    this.liveRequests = [];
  }

  async launch() {
    this.browser = await chromium.launch({
      executablePath: this.opts.executablePath,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: 15000,
    });
    this.timings.launch = since();
  }

  async openPage(name, path) {
    const { opts } = this;
    const context = await this.browser.newContext();
    if (opts.webDir) {
      await context.route((url) => url.origin === new URL(opts.base).origin && url.pathname in ASSETS, (route) => {
        const [file, contentType] = ASSETS[new URL(route.request().url()).pathname];
        route.fulfill({ status: 200, contentType, body: readFileSync(join(opts.webDir, file)) });
      });
    }
    await context.addInitScript((camera) => {
      const md = navigator.mediaDevices;
      if (!md?.getUserMedia) return;
      const original = md.getUserMedia.bind(md);
      md.getUserMedia = (c = {}) => {
        if (c.video === true) c = { ...c, video: camera };
        else if (c.video && typeof c.video === 'object' && !c.video.deviceId) c = { ...c, video: { ...camera, ...c.video } };
        return original(c);
      };
    }, CAMERA);
    const page = await context.newPage();
    page.on('console', (msg) => {
      const type = msg.type();
      if (opts.verbose || type === 'error' || type === 'warning') {
        process.stderr.write(`[${name} ${type}] ${msg.text()}\n`);
      }
    });
    page.on('pageerror', (err) => {
      this.pageErrors.push({ page: name, message: err.message });
      process.stderr.write(`[${name} pageerror] ${err.message}\n`);
    });
    await page.goto(`${opts.base}${path}`, { waitUntil: 'load', timeout: 10000 });
    this.pages[name] = page;
    return page;
  }

  async openLobbyPage(user) {
    const q = new URLSearchParams({ space: this.opts.space, stream: this.opts.stream });
    const page = await this.openPage(user.name, `/?${q}#token=${encodeURIComponent(user.token)}`);
    await page.waitForFunction(() => document.getElementById('token').value !== '', null, { timeout: 5000 });
    return page;
  }

  async join(user) {
    const page = this.pages[user.name];
    await page.click('#join');
    const r = await waitFor(() => page.evaluate(probeSnapshot), (s) => s?.state === 'joined' || s?.state === 'failed', 20000);
    if (r.value?.state !== 'joined') {
      throw new StepError(`join ${user.name}`, `${user.name} did not join: ${JSON.stringify(r.value?.error ?? r.value?.state ?? null)}`);
    }
  }

  /** The stream's lobby membership as the owner sees it (GET with the owner's Bearer). */
  async serverTracks() {
    const { opts } = this;
    const url = `${opts.base}/space/${encodeURIComponent(opts.space)}/stream/${encodeURIComponent(opts.stream)}`;
    const resp = await fetch(url, { headers: { Authorization: `Bearer ${opts.owner.token}` } });
    if (resp.status !== 200) return { error: `GET stream: ${resp.status}` };
    const body = await resp.json();
    const tracks = [];
    for (const p of body.lobby?.participants ?? []) {
      for (const t of p.tracks ?? []) {
        tracks.push({ userId: p.userId, kind: t.kind, purpose: t.purpose, mute: t.mute });
      }
    }
    return tracks;
  }

  ownerMain(tracks) {
    return Array.isArray(tracks) &&
      tracks.some((t) => t.userId === this.opts.owner.userId && t.kind === 'video' && t.purpose === 'main');
  }

  async mixOn() {
    const start = performance.now();
    const page = this.pages.owner;
    const prog = await page.evaluate(probeProgram);
    if (prog.state !== 'off') throw new StepError('mix-on', `the mix is ${prog.state}`);
    await page.click('#mix');
    const r = await waitFor(() => page.evaluate(probeProgram), (p) => p.state === 'on' || (p.state === 'off' && p.error), 15000);
    if (r.value.state !== 'on') throw new StepError('mix-on', `the mix did not start: ${r.value.error ?? r.value.state}`);
    // Both tiles drawn, and the mix video encoded at 1280x720.
    const tiles = await waitFor(() => page.evaluate(probeProgram), (p) => p.stats?.tiles >= 2, 5000);
    const outbound = await waitFor(() => page.evaluate(probeMixOutbound), (o) => o?.framesEncoded > 0 && o.frameWidth > 0, 10000);
    const server = await waitFor(() => this.serverTracks(), (t) => this.ownerMain(t), 5000, 200);
    // Through the server: the guest decodes a 1280x720 video (the mix).
    const guest = await waitFor(
      () => this.pages.guest.evaluate(probeInboundVideo),
      (v) => v.some((x) => x.frameWidth === 1280 && x.frameHeight === 720 && x.framesDecoded > 0),
      15000,
      200,
    );
    const ok = server.ok && tiles.ok && outbound.ok && guest.ok;
    const error = !server.ok ? 'the server lists no main video of the owner'
      : !tiles.ok ? 'the mix draws fewer than 2 tiles'
        : !outbound.ok ? 'the mix video is not being encoded'
          : 'the guest decodes no 1280x720 video';
    return {
      ok,
      ms: since(start),
      sections: r.value.sections,
      mix: tiles.value.stats,
      outbound: outbound.value,
      guestReceives: guest.value,
      tracks: server.value,
      ...(ok ? {} : { error }),
    };
  }

  async mixOff() {
    const start = performance.now();
    const page = this.pages.owner;
    const prog = await page.evaluate(probeProgram);
    if (prog.state !== 'on') return { ok: false, error: `the mix is ${prog.state}` };
    const before = (await page.evaluate(probeSnapshot)).clientOfferNumber;
    await page.click('#mix');
    const r = await waitFor(() => page.evaluate(probeProgram), (p) => p.state === 'off', 15000);
    const snap = await page.evaluate(probeSnapshot);
    const server = await waitFor(() => this.serverTracks(), (t) => Array.isArray(t) && !t.some((x) => x.userId === this.opts.owner.userId && x.purpose === 'main'), 5000, 200);
    const ok = r.ok && !r.value.error && snap.clientOfferNumber > before && server.ok;
    return {
      ok,
      ms: since(start),
      clientOfferNumber: snap.clientOfferNumber,
      tracks: server.value,
      ...(ok ? {} : { error: r.value.error ?? (server.ok ? 'no client offer was answered' : 'the server still lists a main track of the owner') }),
    };
  }

  async guestMain() {
    const start = performance.now();
    const res = await this.pages.guest.evaluate(async () => {
      const lobby = window.__lobby;
      const camera = lobby.localStream?.getVideoTracks()[0];
      if (!camera) return { error: 'the guest has no camera track' };
      const stream = new MediaStream([camera.clone()]);
      try {
        const handle = await lobby.addTracks(stream, { purpose: 'main', label: 'guest-main' });
        return { sections: handle.sections };
      } catch (e) {
        return { error: e.message };
      }
    });
    if (res.error) return { ok: false, ms: since(start), error: res.error };
    const guestId = this.opts.guest.userId;
    const server = await waitFor(
      () => this.serverTracks(),
      (t) => Array.isArray(t) && t.filter((x) => x.userId === guestId && x.kind === 'video').length >= 2,
      5000,
      200,
    );
    const ok = server.ok && res.sections.every((s) => s.accepted);
    return {
      ok,
      ms: since(start),
      sections: res.sections,
      tracks: server.value,
      ...(ok ? {} : { error: server.ok ? 'the server refused a section' : 'the server lists no second video of the guest' }),
    };
  }

  async goLive() {
    const { opts } = this;
    const page = this.pages.owner;
    await page.waitForSelector('#owner:not([hidden])', { timeout: 5000 }).catch(() => {
      throw new StepError('live-start', 'the Go-live panel is not shown to the owner');
    });
    page.on('request', (req) => {
      const url = new URL(req.url());
      if (!/\/live(\/|$)/.test(url.pathname)) return;
      let bodyKeys = null;
      try {
        bodyKeys = Object.keys(JSON.parse(req.postData() ?? 'null') ?? {});
      } catch {}
      const h = req.headers();
      this.liveRequests.push({
        method: req.method(),
        path: url.pathname,
        contentType: h['content-type'] ?? null,
        xReqToken: Boolean(h['x-req-token']),
        authorization: Boolean(h.authorization),
        bodyKeys,
      });
    });
    await page.fill('#rtmp-url', opts.rtmpEndpoint);
    await page.fill('#rtmp-key', opts.rtmpKey);
    const clicked = performance.now();
    await page.click('#live-start');
    const started = await waitFor(() => page.evaluate(probeLive), (l) => l.startStatus !== null || l.error, 15000);
    const request = this.liveRequests.find((r) => r.method === 'POST') ?? null;
    const l = started.value;
    if (l.startStatus !== 201) {
      throw new StepError('live-start', l.error ?? `no answer to POST live/start in ${started.ms} ms`, { status: l.startStatus, request });
    }
    emit({ step: 'live-start', ok: true, ms: since(clicked), status: l.startStatus, location: l.location, request });
    const online = await waitFor(() => page.evaluate(probeLive), (x) => x.state === 'online' || x.state === 'ended', opts.onlineMs, 100);
    if (online.value.state !== 'online') {
      throw new StepError('online', `not online after ${online.ms} ms: ${online.value.error ?? online.value.panel}`, {
        live: online.value.lastStatus,
        requests: this.liveRequests.slice(-3),
      });
    }
    this.timings.online = since();
    emit({ step: 'online', ok: true, ms: since(clicked), live: online.value.lastStatus });
  }

  async status() {
    const l = await this.pages.owner.evaluate(probeLive);
    return { ok: true, live: l.lastStatus, state: l.state, panel: l.panel, error: l.error, tracks: await this.serverTracks() };
  }

  async viewer() {
    const { opts } = this;
    if (!opts.viewerToken) return { ok: false, error: 'no --viewer-token' };
    if (this.pages.viewer) return { ok: false, error: 'the viewer is already open' };
    const start = performance.now();
    const q = new URLSearchParams({ space: opts.space, stream: opts.stream });
    const page = await this.openPage('viewer', `/view.html?${q}#token=${encodeURIComponent(opts.viewerToken)}`);
    const r = await waitFor(
      () => page.evaluate(async () => ({ ...window.__viewer, stats: await window.__viewer.stats() })),
      (v) => v.state === 'failed' || (v.state === 'watching' && v.stats.video?.framesDecoded > 0),
      20000,
      200,
    );
    const v = r.value;
    const ok = v.state === 'watching' && v.stats.video?.framesDecoded > 0;
    return {
      ok,
      ms: since(start),
      status: v.status,
      state: v.state,
      frameWidth: v.stats.video?.frameWidth ?? null,
      frameHeight: v.stats.video?.frameHeight ?? null,
      framesDecoded: v.stats.video?.framesDecoded ?? null,
      audioPackets: v.stats.audio?.packetsReceived ?? null,
      ...(ok ? {} : { error: v.error ?? `viewer ${v.state}` }),
    };
  }

  async stop() {
    const res = { ok: true };
    const page = this.pages.owner;
    if (!this.opts.skipLive && page) {
      const l = await page.evaluate(probeLive);
      if (['starting', 'online', 'offline'].includes(l.state)) {
        await page.click('#live-stop');
        const r = await waitFor(() => page.evaluate(probeLive), (x) => x.stopStatus !== null, 10000);
        res.deleteStatus = r.value.stopStatus;
        res.ok = r.value.stopStatus === 204;
        if (!res.ok) res.error = r.value.error ?? 'no answer to DELETE';
      } else {
        res.ok = false;
        res.error = `not live (${l.state})`;
      }
    }
    if (this.pages.viewer) {
      res.viewerDeleteStatus = await this.pages.viewer.evaluate(async () => {
        document.getElementById('stop').click();
        for (let i = 0; i < 50 && window.__viewer.deleteStatus === undefined; i++) await new Promise((r) => setTimeout(r, 100));
        return window.__viewer.deleteStatus ?? null;
      });
    }
    for (const name of ['guest', 'owner']) {
      const p = this.pages[name];
      if (!p) continue;
      await p.click('#leave').catch(() => {});
    }
    const left = await waitFor(
      () => Promise.all(['guest', 'owner'].map((n) => this.pages[n]?.evaluate(probeSnapshot))),
      (s) => s.every((x) => !x || x.state === 'left'),
      5000,
    );
    res.leaveStatus = left.value.map((s) => s?.leaveStatus ?? null);
    return res;
  }

  async close() {
    await this.browser?.close().catch(() => {});
  }
}

const COMMANDS = {
  'mix-off': (d) => d.mixOff(),
  'mix-on': (d) => d.mixOn(),
  'guest-main': (d) => d.guestMain(),
  status: (d) => d.status(),
  viewer: (d) => d.viewer(),
};

async function main() {
  let opts;
  try {
    opts = parseCli();
  } catch (e) {
    emit({ step: 'error', stage: 'args', error: `usage: ${e.message}` });
    emit({ step: 'done', ok: false });
    process.exitCode = 1;
    return;
  }
  const driver = new Driver(opts);
  let failed = null;
  let done = false;
  const finish = async (ok) => {
    if (done) return;
    done = true;
    driver.timings.total = since();
    emit({ step: 'done', ok: ok && driver.pageErrors.length === 0, pageErrors: driver.pageErrors, timings: driver.timings });
    process.exitCode = ok && driver.pageErrors.length === 0 ? 0 : 1;
  };
  const watchdog = setTimeout(async () => {
    setTimeout(() => process.exit(1), 5000).unref();
    emit({ step: 'error', stage: 'timeout', error: `overall timeout after ${opts.timeoutMs} ms` });
    await finish(false);
    await driver.close();
    process.exit(1);
  }, opts.timeoutMs);

  try {
    await driver.launch();
    await driver.openLobbyPage(opts.owner);
    await driver.openLobbyPage(opts.guest);
    const joinStart = performance.now();
    await driver.join(opts.owner);
    await driver.join(opts.guest);
    emit({ step: 'joined', ok: true, ms: since(joinStart), owner: opts.owner.userId, guest: opts.guest.userId });
    // The owner must see the guest before mixing, so the mix has two tiles.
    const seen = await waitFor(
      () => driver.pages.owner.evaluate(async () => (window.__lobby ? window.__lobby.stats() : {})),
      (stats) => Object.values(stats).some((p) => p.video?.framesDecoded > 0),
      20000,
    );
    if (!seen.ok) throw new StepError('owner receives guest', 'the owner decodes no video from the guest');
    const mix = await driver.mixOn();
    emit({ step: 'mix-on', ...mix });
    if (!mix.ok) throw new StepError('mix-on', mix.error);
    if (!opts.skipLive) await driver.goLive();
  } catch (e) {
    failed = e;
    emit({ step: 'error', stage: e.stage ?? 'browser', error: String(e.message ?? e).split('\n')[0], ...(e.extra ?? {}) });
  }

  if (!failed) {
    emit({ step: 'ready' });
    const rl = createInterface({ input: process.stdin, terminal: false });
    let stopped = false;
    for await (const raw of rl) {
      const cmd = raw.trim();
      if (!cmd) continue;
      if (cmd === 'stop') {
        stopped = true;
        break;
      }
      const run = COMMANDS[cmd];
      if (!run) {
        emit({ step: cmd, ok: false, error: `unknown command (${['stop', ...Object.keys(COMMANDS)].join(', ')})` });
        continue;
      }
      try {
        emit({ step: cmd, ...(await run(driver)) });
      } catch (e) {
        emit({ step: cmd, ok: false, error: String(e.message ?? e).split('\n')[0] });
      }
    }
    rl.close();
    try {
      emit({ step: 'stop', ...(await driver.stop()), ...(stopped ? {} : { reason: 'end of stdin' }) });
    } catch (e) {
      emit({ step: 'stop', ok: false, error: String(e.message ?? e).split('\n')[0] });
    }
  }
  clearTimeout(watchdog);
  await finish(!failed);
  await driver.close();
  // stdin may still hold the event loop open after a failure.
  process.exit(process.exitCode ?? 0);
}

await main();
