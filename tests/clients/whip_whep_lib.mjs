#!/usr/bin/env node
// The npm `whip-whep` library (medooze's whip.js / whep.js, plain ES
// modules) in headless Chromium, as a third-party WHIP publisher and WHEP
// viewer for Vestibule's interop tests.
//
//   node tests/clients/whip_whep_lib.mjs --mode publish|play|restart \
//       --base http://127.0.0.1:PORT --space S --stream ID --token JWT \
//       [--seconds 3] [--restart] [--after 3] [--recvonly] [--sdp] \
//       [--timeout 40] [--verbose]
//
// Uses Debian's Chromium (never a Playwright browser download) driven by
// playwright-core, with the flags of chromium_whip.mjs. The page runs at the
// server's origin: Playwright answers `${base}/` with a stub page and
// `${base}/__whip-whep/{whip,whep}.js` with the library's files from
// node_modules (page.route; the server never sees these requests and
// serves no library files). The stub imports WHIPClient and WHEPClient.
//
// The library is used as its README shows; the script only watches it.
// What the library does (whip-whep 1.2.0):
// - publish()/view() POST the offer before ICE gathering (no candidates),
//   then trickle: each onicecandidate of the first m-line (and the end of
//   candidates) schedules `PATCH {Location}` with
//   `Content-Type: application/trickle-ice-sdpfrag`, a body
//   `a=ice-ufrag a=ice-pwd m=<kind> 9 UDP/TLS/RTP/SAVPF 0 a=mid a=candidate...
//   [a=end-of-candidates]`, the Bearer token, and `If-Match: <ETag of the
//   POST>` (WHIP only, see view() below). Non-2xx other
//   than 405/501 makes its patch() throw (an unhandled rejection, recorded
//   in pageErrors).
// - restart(): pc.restartIce(), createOffer({iceRestart: true}),
//   setLocalDescription, then `PATCH {Location}` with `If-Match: *` (the
//   bare RFC 9110 wildcard, unquoted) and a body of only
//   `a=ice-ufrag:<new>` + `a=ice-pwd:<new>`. On 200 it takes
//   the ETag, reads a=ice-ufrag/a=ice-pwd/a=candidate lines (CRLF-terminated)
//   of the response, patches them into the old remote description and sets
//   it again; any other status leaves the restart unanswered. Candidates
//   gathered after the restart are trickled once the 200 arrived. Library
//   bug: it joins the answer's candidate lines with `candidates.join()`
//   (commas), so an answer with two or more candidates (e.g. two
//   media.public_ips) makes Chrome reject the description ("Invalid SDP
//   line") and the restart never completes (restart.error).
// - view() never reads the POST's ETag: WHEP trickle carries no If-Match
//   until a restart's 200 gave it one.
// - stop() closes the peer connection first and then sends `DELETE
//   {Location}` (whose status it ignores), so the server may have ended
//   the session on the DTLS close before the DELETE arrives.
//
// Modes (each ends with the library's stop()):
//   publish: getUserMedia (fake camera + microphone), sendonly transceivers
//     (max-bundle), WHIPClient.publish(pc, whipUrl, token); wait for
//     `connected` and for the trickle to finish (end-of-candidates PATCH
//     answered, up to 5 s); hold --seconds; outbound-rtp stats.
//   play: WHEPClient.view(pc, whepUrl, token) with `pc.addTransceiver("audio")`
//     and `("video")` as its README does (sendrecv; --recvonly makes them
//     recvonly); wait for `connected`, the trickle, hold --seconds;
//     inbound-rtp stats (framesDecoded, codec, size).
//   restart: publish with --restart.
// --restart (publish or play): after the hold, the library's restart();
//   wait until the selected candidate pair uses the new local ufrag (up to
//   10 s), take stats ("restart.reconnectedStats"), hold --after, stats
//   again ("restart.after", also "stats"). "restart" also reports the
//   PATCH's answer and the stats before ("restart.before").
//
// stdout: exactly one JSON line. Success (exit 0):
//   {"mode","post":{"status","location","etag"},"offerCandidates",
//    "answerCandidates","answerUfrag","connected":true,"trickleComplete",
//    "stats":{...},"restart":{...}|null,"deleteStatus",
//    "http":[{"t","method","path","request":{"headers","body"},
//             "status","response":{"headers","body"}}...],
//    "pageErrors":[...],"timings":{...}}
// `http` is every request the page made to the server (Authorization shown
// as "Bearer <redacted>"; SDP bodies of POSTs only with --sdp, PATCH and
// error bodies always). Failure (exit 1): the same fields as far as they
// got, plus "error" and "stage". A run that got a Location DELETEs it even
// when it fails, also on the overall --timeout (default 40 + hold times).
// timings: launch, pageLoaded, pageRunDone, total in ms since the process
// started; the others (and each request's "t") in ms since the page loaded.
// stderr: `EVENT {"event":NAME,"t":ms}` lines as the run passes
// "connected", "trickled", "restartAnswered", "restarted", "holdEnd" (a test
// can read server metrics at those moments), then browser console
// errors/warnings and page errors (everything with --verbose).

import { chromium } from 'playwright-core';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const EXECUTABLES = ['/usr/lib/chromium/chromium', '/usr/bin/chromium'];
const LIBRARY_DIR = join(dirname(fileURLToPath(import.meta.url)), 'node_modules', 'whip-whep');
const LIBRARY_PATH = '/__whip-whep/';

// Flags verified on this machine (shared/notes/real-clients.md §2.2).
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

const t0 = performance.now();
const since = () => Math.round(performance.now() - t0);

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function fail(message, extra = {}) {
  emit({ error: message, ...extra });
  process.exitCode = 1;
}

function parseCli() {
  const { values } = parseArgs({
    options: {
      mode: { type: 'string' },
      base: { type: 'string' },
      space: { type: 'string' },
      stream: { type: 'string' },
      token: { type: 'string' },
      seconds: { type: 'string', default: '3' },
      after: { type: 'string', default: '3' },
      recvonly: { type: 'boolean', default: false },
      restart: { type: 'boolean', default: false },
      sdp: { type: 'boolean', default: false },
      timeout: { type: 'string' },
      verbose: { type: 'boolean', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  for (const k of ['mode', 'base', 'space', 'stream', 'token']) {
    if (!values[k]) throw new Error(`missing --${k}`);
  }
  if (!['publish', 'play', 'restart'].includes(values.mode)) {
    throw new Error('--mode must be publish, play or restart');
  }
  const number = (name) => {
    const n = Number(values[name]);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a number >= 0`);
    return n;
  };
  const seconds = number('seconds');
  const after = number('after');
  const timeout = values.timeout !== undefined ? Number(values.timeout) : 40 + seconds + after;
  if (!Number.isFinite(timeout) || timeout <= 0) throw new Error('--timeout must be a number > 0');
  const base = values.base.replace(/\/+$/, '');
  const endpoint = `${base}/space/${encodeURIComponent(values.space)}/stream/${encodeURIComponent(values.stream)}`;
  return {
    mode: values.mode,
    base,
    url: `${endpoint}/${values.mode === 'play' ? 'whep' : 'whip'}`,
    token: values.token,
    seconds,
    after,
    recvonly: values.recvonly,
    restart: values.restart || values.mode === 'restart',
    sdp: values.sdp,
    timeoutMs: Math.round(timeout * 1000),
    verbose: values.verbose,
  };
}

// The in-page harness, served as a module after the library's imports
// (`(${pageHarness})(WHIPClient, WHEPClient)`). It defines window.__run.
function pageHarness(WHIPClient, WHEPClient) {
  const start = performance.now();
  const ms = () => Math.round(performance.now() - start);
  const sleep = (millis) => new Promise((res) => setTimeout(res, millis));
  const r = {
    mode: null,
    post: null,
    offerCandidates: null,
    answerCandidates: null,
    answerUfrag: null,
    connected: false,
    trickleComplete: false,
    stats: null,
    restart: null,
    deleteStatus: null,
    http: [],
    pageErrors: [],
    timings: {},
  };
  window.__result = r;
  let showSdp = false;

  const event = (name) => {
    r.timings[name] = ms();
    return window.__vestibuleEvent?.(name, r.timings[name]);
  };
  const candidateLines = (sdp) => sdp.split(/\r?\n/).filter((l) => l.startsWith('a=candidate:'));
  const ufragOf = (sdp) => sdp.match(/a=ice-ufrag:(\S+)/)?.[1] ?? null;

  // Every request the library makes, with the server's answer.
  const pick = (headers, names) => {
    const out = {};
    for (const n of names) {
      const v = headers.get(n);
      if (v !== null) out[n] = n === 'authorization' ? v.replace(/^(Bearer) .*/, '$1 <redacted>') : v;
    }
    return out;
  };
  const realFetch = window.fetch.bind(window);
  window.fetch = async (input, init = {}) => {
    const method = (init.method ?? 'GET').toUpperCase();
    const url = new URL(String(input), location.href);
    const headers = new Headers(init.headers ?? {});
    const entry = {
      t: ms(),
      method,
      path: url.pathname,
      request: { headers: pick(headers, ['content-type', 'if-match', 'authorization']) },
      status: null,
      response: null,
    };
    if (typeof init.body === 'string') {
      entry.request.body = method === 'POST' && !showSdp
        ? `<${init.body.length} bytes, ${candidateLines(init.body).length} candidates>`
        : init.body;
    }
    r.http.push(entry);
    try {
      const resp = await realFetch(input, init);
      entry.status = resp.status;
      entry.response = {
        headers: pick(resp.headers, ['content-type', 'etag', 'location', 'retry-after']),
      };
      const text = await resp.clone().text();
      if (text) {
        entry.response.body = method === 'POST' && resp.ok && !showSdp
          ? `<${text.length} bytes, ${candidateLines(text).length} candidates>`
          : text.slice(0, 4000);
      }
      return resp;
    } catch (e) {
      entry.error = String(e?.message ?? e);
      throw e;
    }
  };
  window.addEventListener('unhandledrejection', (e) => {
    r.pageErrors.push({ t: ms(), error: String(e.reason?.message ?? e.reason) });
  });
  window.addEventListener('error', (e) => r.pageErrors.push({ t: ms(), error: String(e.message) }));

  const withTimeout = (promise, millis, what) =>
    new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${what} timed out after ${millis} ms`)), millis);
      promise.then(
        (v) => { clearTimeout(t); resolve(v); },
        (e) => { clearTimeout(t); reject(e); },
      );
    });
  // Resolves when `pred()` holds, polling every 50 ms; false after `millis`.
  const until = async (pred, millis) => {
    const deadline = performance.now() + millis;
    for (;;) {
      if (await pred()) return true;
      if (performance.now() > deadline) return false;
      await sleep(50);
    }
  };

  // The selected candidate pair and the RTP streams the run is about
  // (outbound when publishing, inbound when playing), from getStats.
  const snapshot = async (pc, rtp) => {
    const report = await pc.getStats();
    const byId = new Map();
    report.forEach((s) => byId.set(s.id, s));
    const codecOf = (s) => byId.get(s.codecId)?.mimeType ?? null;
    const out = { video: null, audio: null, transport: null, candidatePair: null };
    let pairId = null;
    report.forEach((s) => {
      if (s.type === 'transport') {
        pairId = s.selectedCandidatePairId ?? pairId;
        out.transport = {
          iceState: s.iceState ?? null,
          dtlsState: s.dtlsState ?? null,
          iceLocalUsernameFragment: s.iceLocalUsernameFragment ?? null,
          selectedCandidatePairChanges: s.selectedCandidatePairChanges ?? null,
        };
      } else if (s.type !== rtp || (s.kind !== 'video' && s.kind !== 'audio')) {
        // not what this run sends or receives
      } else if (s.type === 'outbound-rtp') {
        out[s.kind] = { packetsSent: s.packetsSent, bytesSent: s.bytesSent, codec: codecOf(s) };
        if (s.kind === 'video') {
          Object.assign(out.video, {
            framesEncoded: s.framesEncoded,
            frameWidth: s.frameWidth,
            frameHeight: s.frameHeight,
          });
        }
      } else {
        out[s.kind] = { packetsReceived: s.packetsReceived, bytesReceived: s.bytesReceived, codec: codecOf(s) };
        if (s.kind === 'video') {
          Object.assign(out.video, {
            framesDecoded: s.framesDecoded,
            keyFramesDecoded: s.keyFramesDecoded,
            frameWidth: s.frameWidth,
            frameHeight: s.frameHeight,
            decoderImplementation: s.decoderImplementation,
          });
        } else {
          out.audio.totalSamplesReceived = s.totalSamplesReceived;
        }
      }
    });
    const pair = pairId && byId.get(pairId);
    if (pair) {
      const cand = (id) => {
        const c = byId.get(id);
        return c
          ? {
            address: c.address ?? c.ip,
            port: c.port,
            protocol: c.protocol,
            candidateType: c.candidateType,
            usernameFragment: c.usernameFragment ?? null,
          }
          : null;
      };
      out.candidatePair = {
        id: pair.id,
        state: pair.state,
        nominated: pair.nominated,
        local: cand(pair.localCandidateId),
        remote: cand(pair.remoteCandidateId),
        requestsSent: pair.requestsSent,
        responsesReceived: pair.responsesReceived,
        bytesSent: pair.bytesSent,
        bytesReceived: pair.bytesReceived,
      };
    }
    return out;
  };

  // Trickle done: the PATCH carrying a=end-of-candidates got its answer.
  const trickled = () =>
    r.http.some((e) => e.method === 'PATCH' && e.status !== null &&
      /a=end-of-candidates/.test(e.request.body ?? ''));

  window.__run = async (p) => {
    r.mode = p.mode;
    showSdp = p.sdp;
    let stage = 'setup';
    let pc = null;
    let stream = null;
    let client = null;
    try {
      const connectedP = (peer) =>
        new Promise((resolve, reject) => {
          const check = () => {
            if (peer.connectionState === 'connected') resolve();
            else if (['failed', 'closed'].includes(peer.connectionState)) {
              reject(new Error(`connectionState ${peer.connectionState}`));
            }
          };
          // addEventListener: the library owns pc.onconnectionstatechange.
          peer.addEventListener('connectionstatechange', check);
          check();
        });

      pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
      const connected = connectedP(pc);
      connected.catch(() => {});
      const onOffer = (sdp) => {
        r.offerCandidates = candidateLines(sdp).length;
        if (p.sdp) r.offer = sdp;
        return sdp;
      };
      const onAnswer = (sdp) => {
        r.answerCandidates = candidateLines(sdp).length;
        r.answerUfrag = ufragOf(sdp);
        if (p.sdp) r.answer = sdp;
        return sdp;
      };

      if (p.mode === 'play') {
        stage = 'view';
        const kind = p.recvonly ? { direction: 'recvonly' } : undefined;
        pc.addTransceiver('audio', kind);
        pc.addTransceiver('video', kind);
        pc.ontrack = (e) => {
          const v = document.querySelector('video');
          v.srcObject = e.streams[0] ?? new MediaStream([e.track]);
          v.play().catch(() => {});
        };
        client = new WHEPClient();
        client.onOffer = onOffer;
        client.onAnswer = onAnswer;
        await client.view(pc, p.url, p.token);
      } else {
        stage = 'getUserMedia';
        stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
        r.timings.getUserMedia = ms();
        for (const track of stream.getTracks()) {
          pc.addTransceiver(track, { direction: 'sendonly' });
        }
        stage = 'publish';
        client = new WHIPClient();
        client.onOffer = onOffer;
        client.onAnswer = onAnswer;
        await client.publish(pc, p.url, p.token);
      }
      const post = r.http.find((e) => e.method === 'POST');
      r.post = post
        ? { status: post.status, location: post.response?.headers.location ?? null, etag: post.response?.headers.etag ?? null }
        : null;
      r.timings.answerSet = ms();

      stage = 'connect';
      await withTimeout(connected, p.connectTimeoutMs, 'connectionState connected');
      r.connected = true;
      await event('connected');

      stage = 'trickle';
      r.trickleComplete = await until(trickled, 5000);
      await event('trickled');

      stage = 'hold';
      await sleep(p.seconds * 1000);
      const rtp = p.mode === 'play' ? 'inbound-rtp' : 'outbound-rtp';
      r.stats = await snapshot(pc, rtp);

      if (p.restart) {
        stage = 'restart';
        const before = r.stats;
        const rs = (r.restart = {
          localUfragBefore: client.iceUsername,
          localUfragAfter: null,
          patchStatus: null,
          patchEtag: null,
          remoteUfragAfter: null,
          reconnected: false,
          reconnectedStats: null,
          connectionStates: [],
          before,
          after: null,
          error: null,
        });
        pc.addEventListener('connectionstatechange', () =>
          rs.connectionStates.push({ t: ms(), state: pc.connectionState }));
        const from = r.http.length;
        r.timings.restartCalled = ms();
        try {
          await client.restart();
        } catch (e) {
          rs.error = String(e?.message ?? e);
        }
        r.timings.restartReturned = ms();
        rs.localUfragAfter = client.iceUsername;
        const patch = r.http.slice(from).find((e) => e.method === 'PATCH');
        rs.patchStatus = patch?.status ?? null;
        rs.patchEtag = patch?.response?.headers.etag ?? null;
        rs.remoteUfragAfter = ufragOf(pc.remoteDescription?.sdp ?? '');
        rs.signalingState = pc.signalingState;
        await event('restartAnswered');
        // ICE restarted for real: the selected pair's local candidate
        // carries the new ufrag and the connection is up.
        rs.reconnected = await until(async () => {
          const s = await snapshot(pc, rtp);
          return pc.connectionState === 'connected' &&
            s.candidatePair?.state === 'succeeded' &&
            s.candidatePair.local?.usernameFragment === rs.localUfragAfter &&
            rs.localUfragAfter !== rs.localUfragBefore;
        }, 10000);
        rs.reconnectedStats = await snapshot(pc, rtp);
        await event('restarted');
        stage = 'holdAfterRestart';
        await sleep(p.after * 1000);
        rs.after = await snapshot(pc, rtp);
        r.stats = rs.after;
      }
      await event('holdEnd');
      if (pc.connectionState !== 'connected') {
        throw new Error(`connectionState ${pc.connectionState} after hold`);
      }
    } catch (e) {
      r.error = String(e?.message ?? e);
      r.stage = stage;
    }

    // Teardown through the library (DELETE of the Location), also after a
    // failure once a Location exists.
    if (client?.resourceURL) {
      const from = r.http.length;
      try {
        await client.stop();
      } catch (e) {
        r.deleteError = String(e?.message ?? e);
      }
      r.deleteStatus = r.http.slice(from).find((e) => e.method === 'DELETE')?.status ?? null;
      r.timings.deleteDone = ms();
    } else {
      try { pc?.close(); } catch {}
    }
    stream?.getTracks().forEach((t) => t.stop());
    return r;
  };
  window.__ready = true;
}

const STUB_PAGE =
  '<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,">' +
  '<title>whip-whep interop client</title><video muted playsinline></video>' +
  `<script type="module" src="${LIBRARY_PATH}harness.js"></script>`;

function harnessModule() {
  return `import { WHIPClient } from './whip.js';\n` +
    `import { WHEPClient } from './whep.js';\n` +
    `(${pageHarness.toString()})(WHIPClient, WHEPClient);\n`;
}

async function main() {
  let opts;
  try {
    opts = parseCli();
  } catch (e) {
    fail(`usage: ${e.message}`, { stage: 'args' });
    return;
  }
  const executablePath = EXECUTABLES.find((p) => existsSync(p));
  if (!executablePath) {
    fail(`no Chromium at ${EXECUTABLES.join(' or ')} (apt-get install chromium)`, { stage: 'launch' });
    return;
  }
  let library;
  try {
    library = {
      'whip.js': readFileSync(join(LIBRARY_DIR, 'whip.js'), 'utf8'),
      'whep.js': readFileSync(join(LIBRARY_DIR, 'whep.js'), 'utf8'),
      'harness.js': harnessModule(),
    };
  } catch (e) {
    fail(`whip-whep not installed (${e.message}); run npm ci in tests/clients`, { stage: 'launch' });
    return;
  }

  let browser = null;
  let page = null;
  let finished = false;
  const timings = {};
  const watchdog = setTimeout(async () => {
    if (finished) return;
    finished = true;
    setTimeout(() => process.exit(1), 5000).unref();
    // Report how far the page got, and DELETE a resource it was given.
    let partial = {};
    try {
      partial = (await Promise.race([
        page?.evaluate(() => window.__result ?? null),
        new Promise((res) => setTimeout(res, 1000)),
      ])) ?? {};
    } catch {}
    const location = partial.post?.location;
    if (location) {
      try {
        const d = await fetch(new URL(location, opts.url), {
          method: 'DELETE',
          headers: { Authorization: `Bearer ${opts.token}` },
          signal: AbortSignal.timeout(2000),
        });
        partial.deleteStatus = d.status;
      } catch (e) {
        partial.deleteError = String(e?.message ?? e);
      }
    }
    partial.timings = { ...timings, ...(partial.timings ?? {}), total: since() };
    fail(`overall timeout after ${opts.timeoutMs} ms`, { ...partial, stage: 'timeout' });
    await browser?.close().catch(() => {});
    process.exit(1);
  }, opts.timeoutMs);

  try {
    browser = await chromium.launch({ executablePath, headless: true, args: CHROMIUM_ARGS, timeout: 15000 });
    timings.launch = since();
    page = await browser.newPage();
    page.on('console', (msg) => {
      const type = msg.type();
      if (opts.verbose || type === 'error' || type === 'warning') {
        process.stderr.write(`[browser ${type}] ${msg.text()}\n`);
      }
    });
    page.on('pageerror', (err) => process.stderr.write(`[browser pageerror] ${err.message}\n`));
    await page.exposeFunction('__vestibuleEvent', (name, t) => {
      process.stderr.write(`EVENT ${JSON.stringify({ event: name, t })}\n`);
    });
    // The stub page and the library files; everything else (the WHIP/WHEP
    // requests) goes to the server.
    const pageUrl = `${opts.base}/`;
    await page.route(pageUrl, (route) =>
      route.fulfill({ status: 200, contentType: 'text/html; charset=utf-8', body: STUB_PAGE }));
    await page.route(`${opts.base}${LIBRARY_PATH}*`, (route) => {
      const name = new URL(route.request().url()).pathname.slice(LIBRARY_PATH.length);
      if (!Object.hasOwn(library, name)) return route.fulfill({ status: 404, body: 'not found' });
      return route.fulfill({ status: 200, contentType: 'text/javascript; charset=utf-8', body: library[name] });
    });
    await page.goto(pageUrl, { waitUntil: 'load', timeout: 10000 });
    await page.waitForFunction(() => window.__ready === true, null, { timeout: 10000 });
    timings.pageLoaded = since();

    const r = await page.evaluate((p) => window.__run(p), {
      mode: opts.mode,
      url: opts.url,
      token: opts.token,
      seconds: opts.seconds,
      after: opts.after,
      recvonly: opts.recvonly,
      restart: opts.restart,
      sdp: opts.sdp,
      connectTimeoutMs: 10000,
    });
    timings.pageRunDone = since();
    r.timings = { ...timings, ...r.timings };
    await browser.close();
    browser = null;
    r.timings.total = since();
    if (finished) return;
    finished = true;
    if (r.error) {
      const { error, ...rest } = r;
      fail(error, rest);
    } else {
      emit(r);
    }
  } catch (e) {
    if (!finished) {
      finished = true;
      fail(String(e?.message ?? e).split('\n')[0], { stage: 'browser', timings });
    }
  } finally {
    clearTimeout(watchdog);
    if (browser) await browser.close().catch(() => {});
  }
}

await main();
