// The lobby page: wires the form, buttons and tiles to a `Lobby` (lobby.js).
// `window.__lobby` is the current Lobby, for tests and the console.

import { Lobby } from './lobby.js';

const $ = (id) => document.getElementById(id);
const form = $('join-form');
const tiles = $('tiles');
const tileTemplate = $('tile-template');
let lobby = null;

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
  if (state === 'joined') fillDevices();
}

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
