// The lobby page: wires the form, buttons and tiles to a `Lobby` (lobby.js),
// and for the stream owner the program mix (mix.js) and the Go-live panel.
// For tests and the console: `window.__lobby` is the current Lobby,
// `window.__program` the mix state and `window.__live` the live panel state.

import { Lobby } from './lobby.js';
import { ProgramMix } from './mix.js';

const $ = (id) => document.getElementById(id);
const form = $('join-form');
const tiles = $('tiles');
const tileTemplate = $('tile-template');
let lobby = null;

const LIVE_POLL_MS = 2000;
/** The published program mix: `{mix: ProgramMix, handle}` (lobby.addTracks). */
let program = null;
let livePoll = null;
const programState = (window.__program = {
  state: 'off', // off | starting | on | stopping
  error: null,
  sections: [],
  stats: () => program?.mix.stats() ?? null,
});
const liveState = (window.__live = {});
function resetLiveState() {
  // Never the key: only what the server said.
  Object.assign(liveState, {
    state: 'idle', // idle | starting | online | offline | stopped | ended
    location: null,
    startStatus: null,
    stopStatus: null,
    lastStatus: null,
    polls: 0,
    error: null,
  });
}
resetLiveState();

// Prefill: space and stream from the query, the token from the fragment
// (`#token=...`; fragments never reach the server). Then drop the token from
// the address bar so it does not end up in the history or a screenshot.
const query = new URLSearchParams(location.search);
const fragment = new URLSearchParams(location.hash.slice(1));
$('space').value = query.get('space') ?? '';
$('stream').value = query.get('stream') ?? '';
if (fragment.get('token')) {
  $('token').value = fragment.get('token');
  history.replaceState(null, '', location.pathname + location.search);
}

function setStatus(text) {
  $('status').textContent = text;
}

function showError(err) {
  const box = $('error');
  box.hidden = !err;
  box.textContent = err ? err.message : '';
  box.dataset.kind = err?.kind ?? '';
}

function setBadge(root, name, on) {
  root.querySelector(`[data-badge="${name}"]`).hidden = !on;
}

/** One tile per remote participant, keyed by participant id (msid stream id). */
function renderParticipants(list) {
  const present = new Set(list.map((p) => p.id));
  for (const tile of tiles.querySelectorAll('.tile.remote')) {
    if (!present.has(tile.dataset.participant)) tile.remove();
  }
  for (const p of list) {
    let tile = tiles.querySelector(`.tile.remote[data-participant="${CSS.escape(p.id)}"]`);
    if (!tile) {
      tile = tileTemplate.content.firstElementChild.cloneNode(true);
      tile.classList.add('remote');
      tile.dataset.participant = p.id;
      const video = tile.querySelector('video');
      video.srcObject = p.stream;
      video.play().catch(() => {});
      tiles.append(tile);
    }
    const video = tile.querySelector('video');
    if (video.srcObject !== p.stream) video.srcObject = p.stream;
    tile.dataset.user = p.userId;
    tile.dataset.videoMuted = String(p.videoMuted);
    tile.dataset.audioMuted = String(p.audioMuted);
    tile.querySelector('.label').textContent = p.userId;
    video.setAttribute('aria-label', `${p.userId}${p.videoMuted ? ' (camera off)' : ''}`);
    setBadge(tile, 'main', p.purpose === 'main');
    setBadge(tile, 'video', p.videoMuted);
    setBadge(tile, 'audio', p.audioMuted);
  }
  $('empty').hidden = !(lobby?.state === 'joined' && list.length === 0);
}

function onState(state) {
  document.body.dataset.state = state;
  const inLobby = state === 'joining' || state === 'joined' || state === 'leaving';
  for (const el of form.elements) el.disabled = inLobby;
  form.hidden = state === 'joined' || state === 'leaving';
  $('controls').hidden = state !== 'joined';
  $('self').hidden = !inLobby;
  $('empty').hidden = !(state === 'joined' && lobby.list().length === 0);
  setStatus({
    joining: 'Joining…',
    joined: `In lobby ${lobby?.spaceId}/${lobby?.streamId} as ${lobby?.userId ?? 'you'}.`,
    leaving: 'Leaving…',
    left: 'You left the lobby.',
    failed: 'Could not join.',
  }[state] ?? 'Not in a lobby.');
  if (!inLobby) $('self-video').srcObject = null;
  if (state === 'joined') {
    fillDevices();
    showOwnerTools();
  } else {
    $('owner').hidden = true;
    endOwnerTools();
  }
}

// ---- owner tools: program mix and Go live ----

/** Shows the program and live controls when our token is the stream owner's. */
async function showOwnerTools() {
  const current = lobby;
  let owner = false;
  try {
    owner = await current.isOwner();
  } catch (e) {
    console.debug('[lobby] owner check failed:', e.message);
  }
  if (current !== lobby || current.state !== 'joined') return;
  $('owner').hidden = !owner;
  updateMixButton();
  setLiveButtons();
}

/** The lobby left or failed: the mix and the status polling end with it. */
function endOwnerTools() {
  stopPolling();
  if (program) {
    program.mix.stop();
    program = null;
  }
  Object.assign(programState, { state: 'off', sections: [] });
  $('mix-preview').hidden = true;
  $('mix-preview').replaceChildren();
  updateMixButton();
  resetLiveState();
  setLiveStatus('idle', 'Not live.');
  showLiveError(null);
  setLiveButtons();
}

/** What the mix draws: our camera, then every remote tile in page order. */
function mixSources() {
  if (!lobby) return [];
  const list = [{
    video: lobby.muted.video ? null : $('self-video'),
    audio: lobby.localStream,
    label: lobby.userId ?? 'host',
  }];
  for (const tile of tiles.querySelectorAll('.tile.remote')) {
    const p = lobby.participants.get(tile.dataset.participant);
    list.push({
      video: p?.videoMuted ? null : tile.querySelector('video'),
      audio: p?.stream ?? null,
      label: tile.dataset.user ?? '',
    });
  }
  return list;
}

function setMixStatus(text) {
  $('mix-status').textContent = text;
}

function updateMixButton() {
  const button = $('mix');
  const on = programState.state === 'on' || programState.state === 'stopping';
  button.setAttribute('aria-pressed', String(on));
  button.textContent = on ? 'Stop program mix' : 'Mix program';
  button.disabled = programState.state === 'starting' || programState.state === 'stopping';
}

async function startMix() {
  const current = lobby;
  Object.assign(programState, { state: 'starting', error: null, sections: [] });
  updateMixButton();
  setMixStatus('Starting the program mix…');
  const mix = new ProgramMix({ sources: mixSources, width: 1280, height: 720, fps: 30 });
  const stream = mix.start();
  let handle;
  try {
    handle = await current.addTracks(stream, { purpose: 'main', label: 'program' });
  } catch (e) {
    mix.stop();
    Object.assign(programState, { state: 'off', error: e.message });
    setMixStatus(`The program mix could not be published: ${e.message}`);
    return;
  }
  if (current !== lobby || current.state !== 'joined') {
    mix.stop();
    return;
  }
  // A program keeps its size: let the encoder drop frames rather than
  // scale down when the CPU or the network is short.
  for (const t of handle.transceivers) {
    if (t.sender.track?.kind !== 'video') continue;
    try {
      const params = t.sender.getParameters();
      params.degradationPreference = 'maintain-resolution';
      await t.sender.setParameters(params);
    } catch (e) {
      console.debug('[lobby] degradationPreference not set:', e.message);
    }
  }
  program = { mix, handle };
  const refused = handle.sections.filter((s) => !s.accepted).map((s) => s.kind);
  Object.assign(programState, { state: 'on', sections: handle.sections });
  $('mix-preview').replaceChildren(mix.canvas);
  mix.canvas.setAttribute('aria-label', 'Program preview');
  $('mix-preview').hidden = false;
  setMixStatus(refused.length
    ? `The program mix is published, but the server refused its ${refused.join(' and ')}.`
    : `The program is the mix (${mix.width}x${mix.height}).`);
}

async function stopMix() {
  const { mix, handle } = program;
  programState.state = 'stopping';
  updateMixButton();
  setMixStatus('Stopping the program mix…');
  try {
    await lobby.removeTracks(handle);
    setMixStatus('The program is your camera.');
  } catch (e) {
    programState.error = e.message;
    setMixStatus(`Stopping the program mix: ${e.message}`);
  } finally {
    mix.stop();
    program = null;
    Object.assign(programState, { state: 'off', sections: [] });
    $('mix-preview').hidden = true;
    $('mix-preview').replaceChildren();
  }
}

$('mix').addEventListener('click', async () => {
  if (lobby?.state !== 'joined') return;
  if (programState.state === 'off') await startMix();
  else if (programState.state === 'on') await stopMix();
  updateMixButton();
});

function setLiveStatus(status, text) {
  const line = $('live-status');
  line.dataset.status = status;
  line.textContent = text;
}

function showLiveError(err) {
  const box = $('live-error');
  box.hidden = !err;
  box.textContent = err ? err.message : '';
  box.dataset.status = err?.status ?? '';
}

const LIVE_ACTIVE = new Set(['starting', 'online', 'offline']);

function setLiveButtons(busy = false) {
  const active = LIVE_ACTIVE.has(liveState.state);
  $('live-start').disabled = busy || active;
  $('live-stop').disabled = busy || !active;
  $('rtmp-url').disabled = active;
  $('rtmp-key').disabled = active;
}

function formatBytes(n) {
  if (!Number.isFinite(n)) return null;
  const units = ['B', 'kB', 'MB', 'GB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function formatTime(t) {
  if (t === null || t === undefined || t === '') return null;
  // Seconds or milliseconds since the epoch, or an RFC 3339 string.
  const d = typeof t === 'number' ? new Date(t < 1e12 ? t * 1000 : t) : new Date(t);
  return Number.isNaN(d.getTime()) ? String(t) : d.toLocaleTimeString();
}

function describeLive(st) {
  const parts = [st.status === 'online' ? 'Live' : 'Offline'];
  if (st.source) parts.push(`program: ${st.source}`);
  if (st.rtmpHost) parts.push(`to ${st.rtmpHost}`);
  const since = formatTime(st.startedAt);
  if (since) parts.push(`since ${since}`);
  const bytes = formatBytes(st.bytesOut);
  if (bytes) parts.push(`${bytes} sent`);
  if (st.restarts) parts.push(`${st.restarts} restart${st.restarts === 1 ? '' : 's'}`);
  if (st.lastError) parts.push(`last error: ${st.lastError}`);
  return parts.join(' · ');
}

function stopPolling() {
  clearInterval(livePoll);
  livePoll = null;
}

function startPolling() {
  stopPolling();
  pollLive();
  livePoll = setInterval(pollLive, LIVE_POLL_MS);
}

async function pollLive() {
  const current = lobby;
  try {
    const st = await current.liveStatus();
    if (current !== lobby || !livePoll) return;
    liveState.lastStatus = st;
    liveState.polls++;
    liveState.state = st.status === 'online' ? 'online' : 'offline';
    setLiveStatus(liveState.state, describeLive(st));
    showLiveError(null);
  } catch (e) {
    if (current !== lobby || !livePoll) return;
    liveState.error = e.message;
    showLiveError(e);
    // Gone (404), not ours (401/403) or not available (501): stop asking.
    if ([401, 403, 404, 501].includes(e.status)) {
      stopPolling();
      liveState.state = 'ended';
      setLiveStatus('ended', 'Not live.');
      setLiveButtons();
    }
  }
}

$('live-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const liveForm = $('live-form');
  if (lobby?.state !== 'joined' || !liveForm.reportValidity()) return;
  showLiveError(null);
  setLiveButtons(true);
  setLiveStatus('starting', 'Starting…');
  try {
    const r = await lobby.startLive({ rtmpEndpoint: $('rtmp-url').value.trim(), rtmpKey: $('rtmp-key').value });
    Object.assign(liveState, { state: 'starting', location: r.location, startStatus: r.status, error: null });
    startPolling();
  } catch (e) {
    Object.assign(liveState, { state: 'idle', startStatus: e.status ?? null, error: e.message });
    setLiveStatus('idle', 'Not live.');
    showLiveError(e);
  }
  setLiveButtons();
});

$('live-stop').addEventListener('click', async () => {
  if (!lobby) return;
  stopPolling();
  setLiveButtons(true);
  try {
    liveState.stopStatus = await lobby.stopLive();
    liveState.state = 'stopped';
    setLiveStatus('stopped', 'Stopped. Not live.');
    showLiveError(null);
  } catch (e) {
    Object.assign(liveState, { stopStatus: e.status ?? null, error: e.message });
    showLiveError(e);
    if (e.status === 404) {
      liveState.state = 'ended';
      setLiveStatus('ended', 'Not live.');
    } else {
      startPolling();
    }
  }
  setLiveButtons();
});

function updateMuteButtons() {
  for (const [kind, id, what] of [['video', 'mute-video', 'camera'], ['audio', 'mute-audio', 'microphone']]) {
    const muted = Boolean(lobby?.muted[kind]);
    const button = $(id);
    button.setAttribute('aria-pressed', String(muted));
    button.textContent = `${muted ? 'Unmute' : 'Mute'} ${what}`;
    setBadge($('self'), kind, muted);
  }
}

async function fillDevices() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  for (const [kind, id] of [['video', 'camera'], ['audio', 'microphone']]) {
    const select = $(id);
    const current = lobby?.deviceId(kind);
    select.replaceChildren(...devices
      .filter((d) => d.kind === `${kind}input`)
      .map((d, i) => new Option(d.label || `${id} ${i + 1}`, d.deviceId, false, d.deviceId === current)));
    select.disabled = select.options.length < 2;
  }
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  if (!form.reportValidity()) return;
  showError(null);
  lobby = new Lobby({
    // The API lives beside the page (also behind a proxy path prefix).
    base: location.pathname.replace(/\/[^/]*$/, ''),
    space: $('space').value.trim(),
    stream: $('stream').value.trim(),
    token: $('token').value.trim(),
    callbacks: {
      onState,
      onParticipants: renderParticipants,
      onError: showError,
      onLocalStream: (stream) => {
        $('self-video').srcObject = stream;
      },
      onLog: (text) => console.debug('[lobby]', text),
    },
  });
  window.__lobby = lobby;
  $('self-label').textContent = `You (${lobby.userId ?? 'unknown user'})`;
  updateMuteButtons();
  try {
    await lobby.join();
  } catch {
    // Shown through onError.
  }
});

for (const [kind, id] of [['video', 'mute-video'], ['audio', 'mute-audio']]) {
  $(id).addEventListener('click', () => {
    lobby?.setMuted(kind, !lobby.muted[kind]);
    updateMuteButtons();
  });
}

for (const [kind, id] of [['video', 'camera'], ['audio', 'microphone']]) {
  $(id).addEventListener('change', async (event) => {
    try {
      await lobby?.switchDevice(kind, event.target.value);
    } catch {
      fillDevices(); // shown through onError; reselect the device in use
    }
  });
}

$('leave').addEventListener('click', () => lobby?.leave());
addEventListener('pagehide', () => lobby?.leave({ keepalive: true }));
