#!/usr/bin/env node
// Headless Chromium as a third-party WHIP publisher, for Vestibule's
// integration tests.
//
//   node tests/clients/chromium_whip.mjs --base http://127.0.0.1:PORT \
//       --space S --stream ID --token JWT [--seconds 3] [--codec VP8|H264] \
//       [--no-signal] [--server-page] [--sdp] [--timeout 40] \
//       [--fake-video FILE.y4m] [--fake-audio FILE.wav] [--verbose]
//
// Uses Debian's Chromium (never a Playwright browser download) driven by
// playwright-core. The page runs at the server's origin `${base}/`:
// by default Playwright answers that one navigation with a blank stub page,
// so nothing the server ships at `/` runs beside the client (--server-page
// loads the server's real page instead). Then in the page: getUserMedia
// (fake camera + microphone), RTCPeerConnection (max-bundle), sendonly
// transceivers, a `signal` data channel, non-trickle offer POSTed to
// `${base}/space/S/stream/ID/whip` with the Bearer token, answer, wait for
// `connected` and the channel to open, hold, getStats, DELETE the Location.
//
// stdout: exactly one JSON line. Success (exit 0):
//   {"status":201,"location":"...","etag":...,"xReqToken":...,"link":...,
//    "connected":true,"dcOpen":true|null,"stats":{...},
//    "signalMessages":["..."],"signalMessageKinds":["binary"|"text"],
//    "localCandidates":[...],"remoteCandidates":[...],
//    "deleteStatus":200,"timings":{...}}
// Failure (exit 1): the same fields as far as they got, plus "error" and
// "stage" (and "body" when the POST was not 201). A run that got a Location
// DELETEs it even when it fails, also on the overall --timeout (default
// 30 + --seconds). Connect and channel-open waits time out after 10 s each.
// timings: launch, pageLoaded, pageRunDone, total are ms since the process
// started; getUserMedia, offerCreated, iceGatheringComplete, answerReceived,
// connected, dcOpen, holdEnd, stats, deleteDone are ms since the in-page run
// started.
// stderr: browser console errors/warnings and page errors (everything with
// --verbose).

import { chromium } from 'playwright-core';
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';

const EXECUTABLES = ['/usr/lib/chromium/chromium', '/usr/bin/chromium'];

// Flags verified on this machine (shared/notes/real-clients.md §2.2).
// Playwright adds --headless and a fresh temporary profile itself.
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
  '--allow-loopback-in-peer-connection', // gather 127.0.0.1 host candidates
  '--disable-features=WebRtcHideLocalIpsWithMdns', // never <uuid>.local candidates
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
      base: { type: 'string' },
      space: { type: 'string' },
      stream: { type: 'string' },
      token: { type: 'string' },
      seconds: { type: 'string', default: '3' },
      codec: { type: 'string' },
      'no-signal': { type: 'boolean', default: false },
      'server-page': { type: 'boolean', default: false },
      sdp: { type: 'boolean', default: false },
      timeout: { type: 'string' },
      'fake-video': { type: 'string' },
      'fake-audio': { type: 'string' },
      verbose: { type: 'boolean', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  for (const k of ['base', 'space', 'stream', 'token']) {
    if (!values[k]) throw new Error(`missing --${k}`);
  }
  const seconds = Number(values.seconds);
  if (!Number.isFinite(seconds) || seconds < 0) throw new Error('--seconds must be a number >= 0');
  let codec = null;
  if (values.codec !== undefined) {
    codec = values.codec.toUpperCase();
    if (codec !== 'VP8' && codec !== 'H264') throw new Error('--codec must be VP8 or H264');
  }
  const timeout = values.timeout !== undefined ? Number(values.timeout) : 30 + seconds;
  if (!Number.isFinite(timeout) || timeout <= 0) throw new Error('--timeout must be a number > 0');
  const base = values.base.replace(/\/+$/, '');
  return {
    base,
    whipUrl: `${base}/space/${encodeURIComponent(values.space)}/stream/${encodeURIComponent(values.stream)}/whip`,
    token: values.token,
    seconds,
    codec,
    signal: !values['no-signal'],
    serverPage: values['server-page'],
    sdp: values.sdp,
    timeoutMs: Math.round(timeout * 1000),
    fakeVideo: values['fake-video'],
    fakeAudio: values['fake-audio'],
    verbose: values.verbose,
  };
}

// Runs inside the page. Must be self-contained (it is serialised).
async function pageRun(p) {
  const start = performance.now();
  const ms = () => Math.round(performance.now() - start);
  const r = {
    status: null,
    location: null,
    etag: null,
    xReqToken: null,
    link: null,
    connected: false,
    dcOpen: p.signal ? false : null,
    stats: null,
    signalMessages: [],
    signalMessageKinds: [],
    localCandidates: [],
    remoteCandidates: [],
    deleteStatus: null,
    timings: {},
  };
  // Visible to the node side, which reads it if the overall timeout fires.
  window.__whipRun = r;
  let stage = 'getUserMedia';
  let pc = null;
  let stream = null;
  let deleteUrl = null;
  const auth = { Authorization: `Bearer ${p.token}` };
  // Distinct candidates of an SDP (aiortc-style answers repeat them per m-section).
  const candidatesOf = (sdp) => {
    const seen = new Map();
    for (const l of sdp.split(/\r?\n/)) {
      if (!l.startsWith('a=candidate:')) continue;
      const f = l.slice('a=candidate:'.length).split(' ');
      const c = { protocol: f[2]?.toLowerCase(), address: f[4], port: Number(f[5]), type: f[7] };
      seen.set(`${c.protocol} ${c.address} ${c.port} ${c.type}`, c);
    }
    return [...seen.values()];
  };
  const withTimeout = (promise, millis, what) =>
    new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${what} timed out after ${millis} ms`)), millis);
      promise.then(
        (v) => { clearTimeout(t); resolve(v); },
        (e) => { clearTimeout(t); reject(e); },
      );
    });

  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
    r.timings.getUserMedia = ms();

    stage = 'offer';
    pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    // Audio first, then video: the m-line order Chromium uses with a
    // getUserMedia stream (real-clients.md §2.4).
    const tracks = [...stream.getAudioTracks(), ...stream.getVideoTracks()];
    for (const track of tracks) {
      const tr = pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
      if (track.kind === 'video' && p.codec) {
        const caps = RTCRtpSender.getCapabilities('video').codecs;
        const want = `video/${p.codec}`.toLowerCase();
        const primary = caps.filter((c) => c.mimeType.toLowerCase() === want);
        // H264: packetization-mode=1 first (the mode Vestibule accepts).
        primary.sort((a, b) =>
          Number(/packetization-mode=1/.test(b.sdpFmtpLine ?? '')) -
          Number(/packetization-mode=1/.test(a.sdpFmtpLine ?? '')));
        const helpers = caps.filter((c) => /^video\/(rtx|red|ulpfec)$/i.test(c.mimeType));
        if (primary.length === 0) throw new Error(`browser cannot send ${p.codec}`);
        tr.setCodecPreferences([...primary, ...helpers]);
      }
    }

    const connectedP = new Promise((resolve, reject) => {
      pc.addEventListener('connectionstatechange', () => {
        if (pc.connectionState === 'connected') {
          r.timings.connected ??= ms();
          resolve();
        } else if (pc.connectionState === 'failed' || pc.connectionState === 'closed') {
          reject(new Error(`connectionState ${pc.connectionState}`));
        }
      });
    });
    connectedP.catch(() => {});

    let dcOpenP = Promise.resolve();
    let dc = null;
    if (p.signal) {
      dc = pc.createDataChannel('signal');
      dc.binaryType = 'arraybuffer';
      const decoder = new TextDecoder('utf-8');
      dc.addEventListener('message', (e) => {
        if (typeof e.data === 'string') {
          r.signalMessages.push(e.data);
          r.signalMessageKinds.push('text');
        } else {
          r.signalMessages.push(decoder.decode(e.data));
          r.signalMessageKinds.push('binary');
        }
      });
      dcOpenP = new Promise((resolve, reject) => {
        dc.addEventListener('open', () => {
          r.timings.dcOpen ??= ms();
          resolve();
        });
        dc.addEventListener('close', () => reject(new Error('signal channel closed before opening')));
      });
      dcOpenP.catch(() => {});
    }

    const gatheredP = new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') return resolve();
      pc.addEventListener('icegatheringstatechange', () => {
        if (pc.iceGatheringState === 'complete') resolve();
      });
    });
    await pc.setLocalDescription(await pc.createOffer());
    r.timings.offerCreated = ms();

    stage = 'iceGathering';
    // Non-trickle WHIP: send a complete offer. If gathering hangs, send what
    // we have rather than nothing (recorded in timings.gatheringTimedOut).
    try {
      await withTimeout(gatheredP, p.gatherTimeoutMs, 'ICE gathering');
    } catch {
      r.timings.gatheringTimedOut = true;
    }
    r.timings.iceGatheringComplete = ms();
    const offer = pc.localDescription.sdp;
    r.localCandidates = candidatesOf(offer);
    if (p.sdp) r.offer = offer;

    stage = 'post';
    const resp = await fetch(p.whipUrl, {
      method: 'POST',
      headers: { ...auth, 'Content-Type': 'application/sdp' },
      body: offer,
    });
    const body = await resp.text();
    r.timings.answerReceived = ms();
    r.status = resp.status;
    r.location = resp.headers.get('Location');
    r.etag = resp.headers.get('ETag');
    r.xReqToken = resp.headers.get('X-Req-Token');
    r.link = resp.headers.get('Link');
    if (r.location) deleteUrl = r.deleteUrl = new URL(r.location, p.whipUrl).href;
    if (resp.status !== 201) {
      r.body = body.slice(0, 4000);
      r.contentType = resp.headers.get('Content-Type');
      throw new Error(`POST answered ${resp.status}`);
    }
    if (p.sdp) r.answer = body;
    r.remoteCandidates = candidatesOf(body);

    stage = 'setRemoteDescription';
    await pc.setRemoteDescription({ type: 'answer', sdp: body });

    stage = 'connect';
    await withTimeout(connectedP, p.connectTimeoutMs, 'connectionState connected');
    r.connected = true;

    if (dc) {
      stage = 'dcOpen';
      await withTimeout(dcOpenP, p.connectTimeoutMs, 'signal channel open');
      r.dcOpen = true;
    }

    stage = 'hold';
    await new Promise((res) => setTimeout(res, p.seconds * 1000));
    r.timings.holdEnd = ms();
    if (pc.connectionState !== 'connected') {
      throw new Error(`connectionState ${pc.connectionState} after hold`);
    }

    stage = 'stats';
    const report = await pc.getStats();
    const byId = new Map();
    report.forEach((s) => byId.set(s.id, s));
    const codecOf = (s) => {
      const c = s.codecId && byId.get(s.codecId);
      return c ? { mimeType: c.mimeType, payloadType: c.payloadType, sdpFmtpLine: c.sdpFmtpLine ?? null } : null;
    };
    const cand = (id) => {
      const c = id && byId.get(id);
      return c
        ? { address: c.address ?? c.ip, port: c.port, protocol: c.protocol, candidateType: c.candidateType }
        : null;
    };
    const stats = { video: null, audio: null, candidatePair: null, dataChannel: null };
    let pairId = null;
    report.forEach((s) => {
      if (s.type === 'outbound-rtp' && (s.kind === 'video' || s.kind === 'audio')) {
        const o = {
          mid: s.mid ?? null,
          ssrc: s.ssrc,
          packetsSent: s.packetsSent,
          bytesSent: s.bytesSent,
          codec: codecOf(s),
        };
        if (s.kind === 'video') {
          Object.assign(o, {
            framesEncoded: s.framesEncoded,
            framesSent: s.framesSent,
            keyFramesEncoded: s.keyFramesEncoded,
            frameWidth: s.frameWidth,
            frameHeight: s.frameHeight,
            framesPerSecond: s.framesPerSecond,
            encoderImplementation: s.encoderImplementation,
            pliCount: s.pliCount,
            firCount: s.firCount,
            nackCount: s.nackCount,
          });
        }
        stats[s.kind] = o;
      } else if (s.type === 'transport' && s.selectedCandidatePairId) {
        pairId = s.selectedCandidatePairId;
      } else if (s.type === 'data-channel') {
        stats.dataChannel = {
          label: s.label,
          state: s.state,
          messagesSent: s.messagesSent,
          messagesReceived: s.messagesReceived,
        };
      }
    });
    if (!pairId) {
      report.forEach((s) => {
        if (!pairId && s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pairId = s.id;
      });
    }
    const pair = pairId && byId.get(pairId);
    if (pair) {
      stats.candidatePair = {
        state: pair.state,
        nominated: pair.nominated,
        local: cand(pair.localCandidateId),
        remote: cand(pair.remoteCandidateId),
        currentRoundTripTime: pair.currentRoundTripTime ?? null,
        bytesSent: pair.bytesSent,
        bytesReceived: pair.bytesReceived,
      };
    }
    r.stats = stats;
    r.timings.stats = ms();
  } catch (e) {
    r.error = String(e?.message ?? e);
    r.stage = stage;
  }

  // Teardown: always DELETE a resource we were given, even after a failure,
  // so a failed run leaves no session behind.
  if (deleteUrl) {
    try {
      delete r.deleteUrl; // from here on the page owns the DELETE
      const d = await fetch(deleteUrl, { method: 'DELETE', headers: auth });
      r.deleteStatus = d.status;
      r.timings.deleteDone = ms();
    } catch (e) {
      r.deleteError = String(e?.message ?? e);
    }
  }
  try { pc?.close(); } catch {}
  stream?.getTracks().forEach((t) => t.stop());
  return r;
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

  const args = [...CHROMIUM_ARGS];
  if (opts.fakeVideo) args.push(`--use-file-for-fake-video-capture=${opts.fakeVideo}`);
  if (opts.fakeAudio) args.push(`--use-file-for-fake-audio-capture=${opts.fakeAudio}`);

  let browser = null;
  let page = null;
  let finished = false;
  const timings = {};
  const watchdog = setTimeout(async () => {
    if (finished) return;
    finished = true;
    // Hard stop in case the browser is wedged (Playwright kills its child
    // on exit).
    setTimeout(() => process.exit(1), 5000).unref();
    // Report how far the page got, and DELETE a resource it was given
    // (the page's own teardown never ran).
    let partial = {};
    try {
      partial = (await Promise.race([
        page?.evaluate(() => window.__whipRun ?? null),
        new Promise((res) => setTimeout(res, 1000)),
      ])) ?? {};
    } catch {}
    const { deleteUrl, ...rest } = partial;
    if (deleteUrl) {
      try {
        const d = await fetch(deleteUrl, {
          method: 'DELETE',
          headers: { Authorization: `Bearer ${opts.token}` },
          signal: AbortSignal.timeout(2000),
        });
        rest.deleteStatus = d.status;
      } catch (e) {
        rest.deleteError = String(e?.message ?? e);
      }
    }
    rest.timings = { ...timings, ...(rest.timings ?? {}), total: since() };
    fail(`overall timeout after ${opts.timeoutMs} ms`, { ...rest, stage: 'timeout' });
    await browser?.close().catch(() => {});
    process.exit(1);
  }, opts.timeoutMs);

  try {
    browser = await chromium.launch({ executablePath, headless: true, args, timeout: 15000 });
    timings.launch = since();
    page = await browser.newPage();
    page.on('console', (msg) => {
      const type = msg.type();
      if (opts.verbose || type === 'error' || type === 'warning') {
        process.stderr.write(`[browser ${type}] ${msg.text()}\n`);
      }
    });
    page.on('pageerror', (err) => process.stderr.write(`[browser pageerror] ${err.message}\n`));

    const pageUrl = `${opts.base}/`;
    if (!opts.serverPage) {
      await page.route(pageUrl, (route) =>
        route.fulfill({
          status: 200,
          contentType: 'text/html; charset=utf-8',
          body: '<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,">' +
            '<title>vestibule test client</title>',
        }));
    }
    await page.goto(pageUrl, { waitUntil: 'load', timeout: 10000 });
    if (!opts.serverPage) await page.unroute(pageUrl);
    timings.pageLoaded = since();

    const r = await page.evaluate(pageRun, {
      whipUrl: opts.whipUrl,
      token: opts.token,
      seconds: opts.seconds,
      codec: opts.codec,
      signal: opts.signal,
      sdp: opts.sdp,
      gatherTimeoutMs: 5000,
      connectTimeoutMs: 10000,
    });
    timings.pageRunDone = since();
    // In-page timings are ms since the start of the in-page run;
    // launch/pageLoaded/pageRunDone/total are ms since the process started.
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
