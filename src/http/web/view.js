// The plain viewer page (API.md "Plain viewers"): standard WHEP in
// client-offer mode with a Bearer token, one recvonly audio and one recvonly
// video m-line that carry the lobby's program. No lobby yet: 409 with
// Retry-After, so we say "not live yet" and try again.
//
// `view.html?space=S&stream=ID` with the token in the fragment (`#token=`,
// never sent to the server) or the query (`?token=`); both are dropped from
// the address bar. With all three it starts watching at once.
// `window.__viewer` is the viewer's state (and `stats()`), for tests.

const GATHER_TIMEOUT_MS = 2000;
const DEFAULT_RETRY_S = 5;

const $ = (id) => document.getElementById(id);
const form = $('watch-form');
const video = $('video');

const viewer = (window.__viewer = {
  state: 'idle', // idle | connecting | waiting | watching | failed | stopped
  status: null, // the last POST /whep status
  attempts: 0,
  location: null,
  error: null,
  stats,
});
let pc = null;
let token = '';
let generation = 0; // bumps on every watch()/stop(), so stale awaits give up
let retryTimer = null;

const query = new URLSearchParams(location.search);
const fragment = new URLSearchParams(location.hash.slice(1));
$('space').value = query.get('space') ?? '';
$('stream').value = query.get('stream') ?? '';
$('token').value = fragment.get('token') ?? query.get('token') ?? '';
if (fragment.has('token') || query.has('token')) {
  query.delete('token');
  const q = query.toString();
  history.replaceState(null, '', location.pathname + (q ? `?${q}` : ''));
}

function setState(state, text) {
  viewer.state = state;
  document.body.dataset.state = state;
  $('status').textContent = text;
  const busy = state === 'connecting' || state === 'waiting' || state === 'watching';
  for (const el of form.elements) if (el.id !== 'stop') el.disabled = busy;
  $('stop').hidden = !busy;
}

function showError(message) {
  viewer.error = message;
  const box = $('error');
  box.hidden = !message;
  box.textContent = message ?? '';
}

function gathered(peer) {
  if (peer.iceGatheringState === 'complete') return Promise.resolve();
  // The server is ICE-lite and takes offers without candidates, so a slow
  // gathering only costs GATHER_TIMEOUT_MS, never the connection.
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, GATHER_TIMEOUT_MS);
    peer.addEventListener('icegatheringstatechange', () => {
      if (peer.iceGatheringState === 'complete') {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

async function problemDetail(resp) {
  try {
    const body = await resp.text();
    if ((resp.headers.get('Content-Type') ?? '').includes('json')) return JSON.parse(body).detail ?? null;
  } catch {}
  return null;
}

const sleep = (ms) => new Promise((resolve) => {
  retryTimer = setTimeout(resolve, ms);
});

function endpoint() {
  // The API lives beside the page (also behind a proxy path prefix).
  const base = location.pathname.replace(/\/[^/]*$/, '');
  const space = encodeURIComponent($('space').value.trim());
  const stream = encodeURIComponent($('stream').value.trim());
  return `${base}/space/${space}/stream/${stream}/whep`;
}

async function watch() {
  await stop({ quiet: true });
  const gen = ++generation;
  token = $('token').value.trim();
  showError(null);
  Object.assign(viewer, { status: null, attempts: 0, location: null });
  setState('connecting', 'Connecting…');

  const peer = (pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' }));
  peer.addTransceiver('video', { direction: 'recvonly' });
  peer.addTransceiver('audio', { direction: 'recvonly' });
  // Attached on the first track: a media element without data delays the
  // document's load event.
  const media = new MediaStream();
  peer.addEventListener('track', (e) => {
    media.addTrack(e.track);
    if (video.srcObject !== media) video.srcObject = media;
    video.play().catch(() => {});
  });
  peer.addEventListener('connectionstatechange', () => {
    if (peer !== pc) return;
    const st = peer.connectionState;
    if (st === 'connected') {
      setState('watching', `Watching ${$('space').value}/${$('stream').value}.`);
      showError(null);
    } else if (st === 'disconnected') {
      showError('The connection is interrupted. Trying to recover…');
    } else if (st === 'failed') {
      setState('failed', 'The stream stopped.');
      showError('Connection lost. Press Watch to try again.');
    }
  });
  await peer.setLocalDescription(await peer.createOffer());
  await gathered(peer);
  if (gen !== generation) return;
  const offer = peer.localDescription.sdp;
  const url = endpoint();

  let resp;
  for (;;) {
    viewer.attempts++;
    try {
      resp = await fetch(url, {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/sdp' },
        body: offer,
      });
    } catch (e) {
      if (gen !== generation) return;
      setState('failed', 'Could not reach the server.');
      showError(`Could not reach the server: ${e.message}`);
      return;
    }
    if (gen !== generation) return;
    viewer.status = resp.status;
    if (resp.status === 201) break;
    const retry = Number(resp.headers.get('Retry-After')) || (resp.status === 409 ? DEFAULT_RETRY_S : 0);
    const detail = await problemDetail(resp);
    if (gen !== generation) return;
    if (retry && (resp.status === 409 || resp.status === 429 || resp.status === 503)) {
      const what = resp.status === 409 ? 'Not live yet' : 'The server is busy';
      setState('waiting', `${what}. Trying again in ${retry} s.`);
      await sleep(retry * 1000);
      if (gen !== generation) return;
      setState('connecting', 'Connecting…');
      continue;
    }
    const why = detail ? `${resp.status}: ${detail}` : `${resp.status}`;
    const hint = {
      401: ' Check that the token is valid and not expired.',
      403: ' This token may not watch this stream.',
    }[resp.status] ?? '';
    setState('failed', 'Could not watch.');
    showError(`Watching failed (HTTP ${why}).${hint}`);
    peer.close();
    return;
  }
  const loc = resp.headers.get('Location');
  viewer.location = loc ? new URL(loc, new URL(url, location.href)).href : null;
  const answer = await resp.text();
  if (gen !== generation) return;
  try {
    await peer.setRemoteDescription({ type: 'answer', sdp: answer });
  } catch (e) {
    setState('failed', 'Could not watch.');
    showError(`The server's answer was not usable: ${e.message}`);
    await remove({ keepalive: false });
  }
}

/** DELETE the WHEP resource (Bearer), if we have one. */
async function remove({ keepalive }) {
  const loc = viewer.location;
  viewer.location = null;
  if (!loc) return null;
  try {
    const resp = await fetch(loc, { method: 'DELETE', headers: { Authorization: `Bearer ${token}` }, keepalive });
    return resp.status;
  } catch {
    return null;
  }
}

async function stop({ quiet = false, keepalive = false } = {}) {
  generation++;
  clearTimeout(retryTimer);
  const status = await remove({ keepalive });
  viewer.deleteStatus = status;
  try {
    pc?.close();
  } catch {}
  pc = null;
  video.srcObject = null;
  if (!quiet) setState('stopped', 'Stopped.');
  return status;
}

/** Receive statistics: `{video: {framesDecoded, frameWidth, frameHeight, ...}, audio: {...}}`. */
async function stats() {
  const out = { video: null, audio: null };
  if (!pc) return out;
  (await pc.getStats()).forEach((s) => {
    if (s.type !== 'inbound-rtp') return;
    out[s.kind] = {
      packetsReceived: s.packetsReceived ?? 0,
      bytesReceived: s.bytesReceived ?? 0,
      framesDecoded: s.framesDecoded ?? null,
      frameWidth: s.frameWidth ?? null,
      frameHeight: s.frameHeight ?? null,
    };
  });
  return out;
}

form.addEventListener('submit', (event) => {
  event.preventDefault();
  if (!form.reportValidity()) return;
  watch().catch((e) => {
    setState('failed', 'Could not watch.');
    showError(String(e.message ?? e));
  });
});
$('stop').addEventListener('click', () => stop());
addEventListener('pagehide', () => {
  if (viewer.location) stop({ quiet: true, keepalive: true });
});

// With space, stream and token given, start at once (after load, so the
// page counts as loaded while it waits for the stream).
if ($('space').value && $('stream').value && $('token').value) {
  if (document.readyState === 'complete') form.requestSubmit();
  else addEventListener('load', () => form.requestSubmit(), { once: true });
}
