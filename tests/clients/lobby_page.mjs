#!/usr/bin/env node
// Drives Vestibule's own lobby page (`/`, lobby.js + app.js) in headless
// Chromium: one browser context per user, fake camera + microphone, and a
// scripted scenario.
//
//   node tests/clients/lobby_page.mjs --base http://127.0.0.1:PORT \
//       --space S --stream ID --tokens a:JWT,b:JWT,c:JWT \
//       [--scenario three-users|bad-token|lobby-full|devices|connection-lost|two-users-loss] \
//       [--timeout 90] [--loss-seconds 4] \
//       [--screenshot FILE.png] [--web-dir DIR] [--verbose]
//
// Each user opens `${base}/?space=S&stream=ID#token=JWT`, clicks Join, and is
// then observed through `window.__lobby` (the page's Lobby: snapshot(),
// stats()) and the tiles' data attributes (data-participant, data-user,
// data-video-muted). The name before each token's colon names the user in
// the output; the expected tile label is the token's `userId` claim.
//
// Scenarios:
//   three-users (needs 3 tokens): A and B join; each decodes the other's
//     video (inbound-rtp framesDecoded > 0) and receives audio (packetsReceived
//     > 0); C joins and A and B decode C (C receives A and B); every page's
//     tile labels equal the others' userIds; C clicks Leave and A and B have
//     no tile for C within 5 s; A mutes its camera and B's tile for A shows
//     the muted badge within 3 s; A unmutes and the badge goes within 3 s.
//   bad-token (1 token, deliberately invalid): Join shows the 401 error.
//   lobby-full (n tokens, server with lobby.max_sessions = n - 1): the last
//     user's Join shows the 429 error with its Retry-After.
//   devices (2 tokens): A and B join; A picks another microphone in the
//     select (RTCRtpSender.replaceTrack, no renegotiation) and B keeps
//     receiving A's audio.
//   two-users-loss (2 tokens; the caller impairs the network, e.g. netem
//     loss 3% on lo): A and B join; B decodes A's video; then B's inbound-rtp
//     video from A is sampled (framesDecoded, nackCount, packetsLost,
//     packetsReceived, ...) --loss-seconds (default 4) apart, into
//     "loss": {"first": {...}, "second": {...}}. Checks: framesDecoded rose
//     between the samples, and nackCount > 0 by the second sample (polled up
//     to 10 s more, so a low loss rate still shows).
//   connection-lost (1 token): joins, prints "joined" on stderr, then waits
//     up to 60 s for the connection-lost error (the caller stops the server
//     or cuts the network).
//
// --screenshot: in three-users, a PNG of A's page once A and B see each
// other. --web-dir: serve the page's files (index.html, lobby.js, app.js,
// mix.js, view.html, view.js, style.css) from DIR instead of the server (to
// try page changes without a rebuild).
//
// stdout: one JSON line {"scenario","ok":true,"users":{name:userId},
// "checks":[{"name","ok","ms",...}],"timings":{...}}; every check's `ms` is
// the time that check waited. Failure (exit 1): the same plus "error" and
// "stage". timings: launch and total in ms since the process started, the
// scenario's steps in ms since the scenario started.
// stderr: browser console errors and page errors (everything with --verbose).

import { chromium } from 'playwright-core';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const EXECUTABLES = ['/usr/lib/chromium/chromium', '/usr/bin/chromium'];
// The flags of chromium_whip.mjs (shared/notes/real-clients.md §2.2), plus
// autoplay without a gesture so every tile plays.
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

const t0 = performance.now();
const since = () => Math.round(performance.now() - t0);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

class StageError extends Error {
  constructor(stage, message) {
    super(message);
    this.stage = stage;
  }
}

function parseCli() {
  const { values } = parseArgs({
    options: {
      base: { type: 'string' },
      space: { type: 'string' },
      stream: { type: 'string' },
      tokens: { type: 'string' },
      scenario: { type: 'string', default: 'three-users' },
      timeout: { type: 'string', default: '90' },
      'loss-seconds': { type: 'string', default: '4' },
      screenshot: { type: 'string' },
      'web-dir': { type: 'string' },
      verbose: { type: 'boolean', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  for (const k of ['base', 'space', 'stream', 'tokens']) {
    if (!values[k]) throw new Error(`missing --${k}`);
  }
  const users = values.tokens.split(',').map((pair) => {
    const i = pair.indexOf(':');
    if (i < 1) throw new Error('--tokens must be name:JWT,name:JWT,...');
    const token = pair.slice(i + 1);
    return { name: pair.slice(0, i), token, userId: userIdOf(token) };
  });
  const need = { 'three-users': 3, 'bad-token': 1, 'lobby-full': 2, 'connection-lost': 1, devices: 2, 'two-users-loss': 2 }[values.scenario];
  if (!need) throw new Error(`--scenario must be one of: three-users, bad-token, lobby-full, connection-lost, devices, two-users-loss`);
  if (users.length < need) throw new Error(`--scenario ${values.scenario} needs ${need} tokens`);
  const timeout = Number(values.timeout);
  if (!Number.isFinite(timeout) || timeout <= 0) throw new Error('--timeout must be a number > 0');
  if (values['web-dir'] && !existsSync(join(values['web-dir'], 'lobby.js'))) {
    throw new Error('--web-dir has no lobby.js');
  }
  return {
    base: values.base.replace(/\/+$/, ''),
    space: values.space,
    stream: values.stream,
    users,
    scenario: values.scenario,
    timeoutMs: Math.round(timeout * 1000),
    lossSeconds: Number(values['loss-seconds']) || 4,
    screenshot: values.screenshot,
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

// ---- in-page probes (serialised into the page) ----

const probeSnapshot = () => window.__lobby?.snapshot() ?? null;

async function probeStats() {
  return window.__lobby ? window.__lobby.stats() : {};
}

function probeTiles() {
  return [...document.querySelectorAll('#tiles .tile.remote')].map((t) => ({
    participant: t.dataset.participant,
    user: t.dataset.user,
    label: t.querySelector('.label').textContent,
    videoMuted: t.dataset.videoMuted === 'true',
    videoBadge: !t.querySelector('[data-badge="video"]').hidden,
    playing: t.querySelector('video').readyState >= 2,
  }));
}

function probeError() {
  const box = document.getElementById('error');
  return box.hidden ? null : { kind: box.dataset.kind, text: box.textContent };
}

// ---- the driver ----

async function main() {
  let opts;
  try {
    opts = parseCli();
  } catch (e) {
    emit({ error: `usage: ${e.message}`, stage: 'args' });
    process.exitCode = 1;
    return;
  }
  const executablePath = EXECUTABLES.find((p) => existsSync(p));
  if (!executablePath) {
    emit({ error: `no Chromium at ${EXECUTABLES.join(' or ')}`, stage: 'launch' });
    process.exitCode = 1;
    return;
  }

  const out = {
    scenario: opts.scenario,
    ok: false,
    users: Object.fromEntries(opts.users.map((u) => [u.name, u.userId])),
    checks: [],
    timings: {},
  };
  let browser = null;
  let finished = false;
  const finish = async (err) => {
    if (finished) return;
    finished = true;
    if (err) {
      out.error = String(err.message ?? err).split('\n')[0];
      out.stage = err.stage ?? 'browser';
      out.pageErrors = await pageErrors(ctx.pages).catch(() => undefined);
    } else {
      out.ok = true;
    }
    out.timings.total = since();
    emit(out);
    process.exitCode = err ? 1 : 0;
  };
  const ctx = { opts, out, pages: {}, start: 0 };

  const watchdog = setTimeout(async () => {
    setTimeout(() => process.exit(1), 5000).unref();
    await finish(new StageError('timeout', `overall timeout after ${opts.timeoutMs} ms`));
    await browser?.close().catch(() => {});
    process.exit(1);
  }, opts.timeoutMs);

  try {
    const args = [...CHROMIUM_ARGS];
    browser = await chromium.launch({ executablePath, headless: true, args, timeout: 15000 });
    out.timings.launch = since();
    ctx.browser = browser;
    ctx.start = performance.now();
    await SCENARIOS[opts.scenario](ctx);
    await finish(null);
  } catch (e) {
    await finish(e);
  } finally {
    clearTimeout(watchdog);
    if (browser) await browser.close().catch(() => {});
  }
}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

const elapsed = (ctx) => Math.round(performance.now() - ctx.start);

async function pageErrors(pages) {
  const res = {};
  for (const [name, page] of Object.entries(pages)) {
    const e = await Promise.race([page.evaluate(probeError), sleep(1000).then(() => undefined)]).catch(() => undefined);
    if (e) res[name] = e;
  }
  return Object.keys(res).length ? res : undefined;
}

/** Opens a user's page in its own context (own cookies, own fake devices). */
async function openPage(ctx, user) {
  const { opts } = ctx;
  const context = await ctx.browser.newContext();
  if (opts.webDir) {
    await context.route((url) => url.origin === new URL(opts.base).origin && url.pathname in ASSETS, (route) => {
      const [file, contentType] = ASSETS[new URL(route.request().url()).pathname];
      route.fulfill({ status: 200, contentType, body: readFileSync(join(opts.webDir, file)) });
    });
  }
  const page = await context.newPage();
  page.on('console', (msg) => {
    const type = msg.type();
    if (opts.verbose || type === 'error' || type === 'warning') {
      process.stderr.write(`[${user.name} ${type}] ${msg.text()}\n`);
    }
  });
  page.on('pageerror', (err) => process.stderr.write(`[${user.name} pageerror] ${err.message}\n`));
  const q = new URLSearchParams({ space: opts.space, stream: opts.stream });
  await page.goto(`${opts.base}/?${q}#token=${encodeURIComponent(user.token)}`, { waitUntil: 'load', timeout: 10000 });
  await page.waitForFunction(() => document.getElementById('token').value !== '', null, { timeout: 5000 });
  ctx.pages[user.name] = page;
  return page;
}

/** Polls `probe(page)` until `done(value)` or `ms` pass (counted from
 *  `started`, default now); returns {ok, ms, value}. */
async function waitFor(probe, done, ms, every = 50, started = performance.now()) {
  let value;
  for (;;) {
    value = await probe();
    if (done(value)) return { ok: true, ms: Math.round(performance.now() - started), value };
    if (performance.now() - started > ms) return { ok: false, ms: Math.round(performance.now() - started), value };
    await sleep(every);
  }
}

function check(ctx, name, result, extra = {}) {
  const entry = { name, ok: result.ok, ms: result.ms, at: elapsed(ctx), ...extra };
  ctx.out.checks.push(entry);
  if (!result.ok) throw new StageError(name, `${name} failed after ${result.ms} ms: ${JSON.stringify(extra.detail ?? result.value ?? null).slice(0, 600)}`);
  return entry;
}

/** Clicks Join and waits for `joined` (or a failure). */
async function joinUser(ctx, user) {
  const page = ctx.pages[user.name];
  await page.click('#join');
  const r = await waitFor(() => page.evaluate(probeSnapshot), (s) => s?.state === 'joined' || s?.state === 'failed', 20000);
  const ok = r.value?.state === 'joined';
  check(ctx, `join ${user.name}`, { ok, ms: r.ms }, ok ? { steps: r.value.timings } : { detail: r.value?.error ?? r.value });
  ctx.out.timings[`joined_${user.name}`] = elapsed(ctx);
}

/** Waits until `viewer` decodes video and receives audio from every user in `from`. */
async function waitMedia(ctx, viewer, from, ms = 15000) {
  const page = ctx.pages[viewer.name];
  const want = from.map((u) => u.userId);
  const r = await waitFor(
    () => page.evaluate(probeStats),
    (stats) => want.every((id) => Object.values(stats).some((p) =>
      p.userId === id && p.video?.framesDecoded > 0 && p.audio?.packetsReceived > 0)),
    ms,
    100,
  );
  const got = Object.fromEntries(Object.values(r.value ?? {}).map((p) => [p.userId, {
    framesDecoded: p.video?.framesDecoded ?? null,
    audioPackets: p.audio?.packetsReceived ?? null,
  }]));
  return check(ctx, `${viewer.name} receives ${from.map((u) => u.name).join('+')}`, r, { detail: got });
}

async function tileLabels(ctx, user) {
  return (await ctx.pages[user.name].evaluate(probeTiles)).map((t) => t.label).sort();
}

const SCENARIOS = {
  async 'three-users'(ctx) {
    const [a, b, c] = ctx.opts.users;
    const { out } = ctx;
    for (const u of [a, b, c]) await openPage(ctx, u);
    out.timings.pagesOpen = elapsed(ctx);

    await joinUser(ctx, a);
    await joinUser(ctx, b);
    await Promise.all([waitMedia(ctx, a, [b]), waitMedia(ctx, b, [a])]);
    out.timings.abMedia = elapsed(ctx);
    if (ctx.opts.screenshot) {
      const page = ctx.pages[a.name];
      await waitFor(() => page.evaluate(probeTiles), (t) => t.length === 1 && t[0].playing, 3000);
      await sleep(500);
      await page.setViewportSize({ width: 1000, height: 620 });
      await page.screenshot({ path: ctx.opts.screenshot, fullPage: true });
      out.screenshot = ctx.opts.screenshot;
    }

    await joinUser(ctx, c);
    await Promise.all([waitMedia(ctx, a, [c]), waitMedia(ctx, b, [c]), waitMedia(ctx, c, [a, b])]);
    out.timings.cMedia = elapsed(ctx);

    const labels = {};
    for (const [viewer, others] of [[a, [b, c]], [b, [a, c]], [c, [a, b]]]) {
      labels[viewer.name] = await tileLabels(ctx, viewer);
      const want = others.map((u) => u.userId).sort();
      check(ctx, `${viewer.name} tile labels`, { ok: JSON.stringify(labels[viewer.name]) === JSON.stringify(want), ms: 0 },
        { labels: labels[viewer.name], want });
    }
    out.labels = labels;

    const leaveClicked = performance.now();
    await ctx.pages[c.name].click('#leave');
    const left = await waitFor(() => ctx.pages[c.name].evaluate(probeSnapshot), (s) => s?.state === 'left', 5000, 50, leaveClicked);
    check(ctx, 'c leaves', left, { detail: left.value?.state, deleteStatus: left.value?.leaveStatus });
    for (const viewer of [a, b]) {
      const page = ctx.pages[viewer.name];
      const r = await waitFor(() => page.evaluate(probeTiles), (tiles) => !tiles.some((t) => t.user === c.userId), 5000, 50, leaveClicked);
      check(ctx, `${viewer.name} drops ${c.name}`, r, { detail: r.value?.map((t) => t.user) });
    }
    out.timings.cGone = elapsed(ctx);

    const tileOfA = (tiles) => tiles.find((t) => t.user === a.userId);
    const pageB = ctx.pages[b.name];
    let clicked = performance.now();
    await ctx.pages[a.name].click('#mute-video');
    const muted = await waitFor(() => pageB.evaluate(probeTiles), (t) => tileOfA(t)?.videoMuted && tileOfA(t)?.videoBadge, 3000, 50, clicked);
    check(ctx, `${b.name} sees ${a.name} muted`, muted, { detail: tileOfA(muted.value ?? []) ?? null });
    clicked = performance.now();
    await ctx.pages[a.name].click('#mute-video');
    const unmuted = await waitFor(() => pageB.evaluate(probeTiles), (t) => tileOfA(t) && !tileOfA(t).videoMuted && !tileOfA(t).videoBadge, 3000, 50, clicked);
    check(ctx, `${b.name} sees ${a.name} unmuted`, unmuted, { detail: tileOfA(unmuted.value ?? []) ?? null });
    out.timings.muteDone = elapsed(ctx);

    // Leave cleanly (Leave button: DELETE /whip with cookie + X-Req-Token).
    for (const u of [a, b]) await ctx.pages[u.name].click('#leave');
    const gone = await waitFor(
      () => Promise.all([a, b].map((u) => ctx.pages[u.name].evaluate(probeSnapshot))),
      (s) => s.every((x) => x?.state === 'left'),
      5000,
    );
    check(ctx, 'a and b leave', gone, { detail: gone.value?.map((s) => s?.state) });
  },

  async 'bad-token'(ctx) {
    const [u] = ctx.opts.users;
    const page = await openPage(ctx, u);
    await page.click('#join');
    const r = await waitFor(() => page.evaluate(probeError), (e) => e !== null, 10000);
    check(ctx, '401 shown', { ok: r.ok && r.value.kind === 'auth' && /401/.test(r.value.text), ms: r.ms }, { detail: r.value });
    ctx.out.message = r.value?.text;
  },

  async devices(ctx) {
    const [a, b] = ctx.opts.users;
    for (const u of [a, b]) await openPage(ctx, u);
    await joinUser(ctx, a);
    await joinUser(ctx, b);
    await waitMedia(ctx, b, [a]);
    const pageA = ctx.pages[a.name];
    // Switch A's microphone through the select (RTCRtpSender.replaceTrack).
    const options = await pageA.$$eval('#microphone option', (os) => os.map((o) => ({ value: o.value, selected: o.selected })));
    const other = options.find((o) => !o.selected);
    if (!other) throw new StageError('devices', `only ${options.length} microphone(s)`);
    const before = await pageA.evaluate(() => window.__lobby.pcIn.getSenders().find((s) => s.track?.kind === 'audio').track.id);
    await pageA.selectOption('#microphone', other.value);
    const switched = await waitFor(
      () => pageA.evaluate(() => window.__lobby.pcIn.getSenders().find((s) => s.track?.kind === 'audio').track.id),
      (id) => id !== before, 5000);
    check(ctx, `${a.name} switches microphone`, switched);
    const audioOf = async () => Object.values(await ctx.pages[b.name].evaluate(probeStats))
      .find((p) => p.userId === a.userId)?.audio?.packetsReceived ?? 0;
    const start = await audioOf();
    const flowing = await waitFor(audioOf, (n) => n > start + 25, 5000, 100);
    check(ctx, `${b.name} still receives ${a.name}'s audio`, flowing, { detail: { start, now: flowing.value } });
    for (const u of [a, b]) await ctx.pages[u.name].click('#leave');
  },

  async 'two-users-loss'(ctx) {
    const [a, b] = ctx.opts.users;
    const { out } = ctx;
    for (const u of [a, b]) await openPage(ctx, u);
    await joinUser(ctx, a);
    await joinUser(ctx, b);
    await waitMedia(ctx, b, [a], 20000);
    out.timings.abMedia = elapsed(ctx);
    const pageB = ctx.pages[b.name];
    // B's inbound-rtp for A's video, read straight from the receiving peer
    // connection (the page's stats() has no nackCount).
    const sample = () => pageB.evaluate(async (userId) => {
      const lobby = window.__lobby;
      const p = [...lobby.participants.values()].find((x) => x.userId === userId);
      const t = p?.tracks.find((x) => x.kind === 'video');
      const tr = t && lobby.pcOut?.getTransceivers().find((x) => x.mid === t.mid);
      if (!tr) return null;
      let res = null;
      (await tr.receiver.getStats()).forEach((s) => {
        if (s.type !== 'inbound-rtp') return;
        res = {
          mid: t.mid,
          framesDecoded: s.framesDecoded ?? 0,
          framesDropped: s.framesDropped ?? 0,
          keyFramesDecoded: s.keyFramesDecoded ?? 0,
          packetsReceived: s.packetsReceived ?? 0,
          packetsLost: s.packetsLost ?? 0,
          nackCount: s.nackCount ?? 0,
          pliCount: s.pliCount ?? 0,
          firCount: s.firCount ?? 0,
          retransmittedPacketsReceived: s.retransmittedPacketsReceived ?? null,
          freezeCount: s.freezeCount ?? null,
          frameWidth: s.frameWidth ?? null,
          frameHeight: s.frameHeight ?? null,
        };
      });
      return res;
    }, a.userId);
    const first = await sample();
    const hold = performance.now();
    await sleep(ctx.opts.lossSeconds * 1000);
    let second = await sample();
    out.loss = { first, second };
    const rose = second && first && second.framesDecoded > first.framesDecoded;
    check(ctx, `${b.name} keeps decoding ${a.name}`, { ok: Boolean(rose), ms: Math.round(performance.now() - hold) },
      { detail: { first: first?.framesDecoded, second: second?.framesDecoded } });
    const nacked = await waitFor(sample, (s) => s?.nackCount > 0, 10000, 200);
    out.loss.last = nacked.value;
    check(ctx, `${b.name} sends NACKs`, nacked, { detail: nacked.value });
    for (const u of [a, b]) await ctx.pages[u.name].click('#leave');
    const gone = await waitFor(
      () => Promise.all([a, b].map((u) => ctx.pages[u.name].evaluate(probeSnapshot))),
      (s) => s.every((x) => x?.state === 'left'),
      5000,
    );
    check(ctx, 'a and b leave', gone, { detail: gone.value?.map((s) => s?.state) });
  },

  async 'connection-lost'(ctx) {
    const [u] = ctx.opts.users;
    const page = await openPage(ctx, u);
    await joinUser(ctx, u);
    process.stderr.write('joined; waiting for the connection to be lost\n');
    const r = await waitFor(() => page.evaluate(probeError), (e) => e !== null, 60000, 200);
    check(ctx, 'connection loss shown', { ok: r.ok && r.value.kind === 'connection', ms: r.ms }, { detail: r.value });
    ctx.out.message = r.value?.text;
  },

  async 'lobby-full'(ctx) {
    const users = ctx.opts.users;
    const last = users[users.length - 1];
    for (const u of users) await openPage(ctx, u);
    for (const u of users.slice(0, -1)) await joinUser(ctx, u);
    const page = ctx.pages[last.name];
    await page.click('#join');
    const r = await waitFor(() => page.evaluate(probeError), (e) => e !== null, 10000);
    check(ctx, '429 shown', { ok: r.ok && r.value.kind === 'full' && /429/.test(r.value.text), ms: r.ms }, { detail: r.value });
    ctx.out.message = r.value?.text;
    for (const u of users.slice(0, -1)) await ctx.pages[u.name].click('#leave');
    await sleep(300);
  },
};

await main();
