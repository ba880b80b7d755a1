// Vestibule lobby client: WHIP (publish + `signal` data channel), server-offer
// WHEP (receive the others) and renegotiation over the signal channel, as in
// API.md. No DOM access: the page (app.js) and tests drive a `Lobby` and
// listen through the callbacks passed to its constructor.

/** Signal channel message types (API.md "Signal channel"). */
export const SIGNAL = Object.freeze({ OFFER: 1, ANSWER: 2, MUTE: 3 });

const GATHER_TIMEOUT_MS = 5000;
const CONNECT_TIMEOUT_MS = 10000;
const WHEP_ATTEMPTS = 5;

/** An error the page shows: `kind` is auth | forbidden | full | not-found |
 *  http | media | connection | protocol. */
export class LobbyError extends Error {
  constructor(kind, message, { status = null, retryAfter = null } = {}) {
    super(message);
    this.name = 'LobbyError';
    this.kind = kind;
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

/**
 * Splits an SDP into its media sections:
 * `[{kind, port, mid, direction, msid: {stream, track} | null,
 *    info: {purpose: 'guest'|'main', muted, userId} | null}]`.
 * `info` comes from the section's `i=<purpose> <mute> <userId>` line.
 */
export function parseSections(sdp) {
  const sections = [];
  let cur = null;
  for (const line of sdp.split(/\r?\n/)) {
    if (line.startsWith('m=')) {
      const [kind, port] = line.slice(2).split(' ');
      cur = { kind, port: Number(port), mid: null, direction: 'sendrecv', msid: null, info: null };
      sections.push(cur);
    } else if (!cur) {
      continue;
    } else if (line.startsWith('i=')) {
      const m = /^i=(\d+)\s+(\d+)\s+(\S+)/.exec(line);
      if (m) cur.info = { purpose: m[1] === '2' ? 'main' : 'guest', muted: m[2] === '1', userId: m[3] };
    } else if (line.startsWith('a=mid:')) {
      cur.mid = line.slice(6).trim();
    } else if (line.startsWith('a=msid:')) {
      const [stream, track = ''] = line.slice(7).trim().split(/\s+/);
      cur.msid = { stream, track };
    } else if (/^a=(sendrecv|sendonly|recvonly|inactive)$/.test(line)) {
      cur.direction = line.slice(2);
    }
  }
  return sections;
}

/** The `userId` claim of a JWT, for display only (the server checks it). */
export function tokenUserId(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = new TextDecoder().decode(Uint8Array.from(atob(part), (c) => c.charCodeAt(0)));
    return JSON.parse(json).userId ?? null;
  } catch {
    return null;
  }
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new LobbyError('connection', `${what} timed out after ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function gathered(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  const done = new Promise((resolve) => {
    const check = () => {
      if (pc.iceGatheringState === 'complete') {
        pc.removeEventListener('icegatheringstatechange', check);
        resolve();
      }
    };
    pc.addEventListener('icegatheringstatechange', check);
  });
  // Non-trickle: if gathering hangs, send the candidates we have.
  return withTimeout(done, GATHER_TIMEOUT_MS, 'ICE gathering').catch(() => {});
}

/** Turns a non-2xx response into a LobbyError with a clear message. */
async function httpError(resp, what) {
  let problem = {};
  try {
    const body = await resp.text();
    if ((resp.headers.get('Content-Type') ?? '').includes('json')) problem = JSON.parse(body);
  } catch {}
  const status = resp.status;
  const why = problem.detail ? `${status}: ${problem.detail}` : `${status}`;
  if (status === 401) {
    return new LobbyError('auth', `The server refused the token (${why}). Check that it is valid and not expired.`, { status });
  }
  if (status === 403) return new LobbyError('forbidden', `Not allowed (${why}).`, { status });
  if (status === 404) return new LobbyError('not-found', `No such space or stream (${why}).`, { status });
  if (status === 429) {
    const retryAfter = Number(resp.headers.get('Retry-After')) || null;
    const when = retryAfter ? ` Try again in ${retryAfter} s.` : ' Try again later.';
    const full = !problem.type || String(problem.type).endsWith('lobby-full');
    return new LobbyError('full', `${full ? 'The lobby is full' : 'Too many requests'} (${why}).${when}`, { status, retryAfter });
  }
  return new LobbyError('http', `${what} failed (HTTP ${why}).`, { status });
}

/**
 * One user in one lobby.
 *
 * callbacks (all optional):
 *   onState(state)              'idle' | 'joining' | 'joined' | 'leaving' | 'left' | 'failed'
 *   onParticipants(list)        the remote participants, after every change
 *   onError(LobbyError | null)  null clears a connection error that recovered
 *   onLocalStream(MediaStream)  the published stream (also after a device switch)
 *   onLog(text)                 diagnostics
 *
 * A participant is `{id, userId, purpose, stream, tracks: [{mid, kind, muted}],
 * videoMuted, audioMuted}`; `id` is the msid stream id (participant id).
 */
export class Lobby {
  constructor({ space, stream, token, base = '', rtcConfig = {}, callbacks = {} }) {
    const root = `${base}/space/${encodeURIComponent(space)}/stream/${encodeURIComponent(stream)}`;
    this.spaceId = space;
    this.streamId = stream;
    this.whipUrl = `${root}/whip`;
    this.whepUrl = `${root}/whep`;
    this.token = token;
    this.userId = tokenUserId(token);
    this.rtcConfig = { bundlePolicy: 'max-bundle', ...rtcConfig };
    this.cb = callbacks;
    this.state = 'idle';
    this.error = null;
    this.localStream = null;
    this.muted = { audio: false, video: false };
    this.ownMids = { audio: null, video: null };
    this.participants = new Map();
    this.whepId = null;
    this.reqToken = null;
    this.pcIn = null;
    this.pcOut = null;
    this.signal = null;
    this.nextId = 1; // ids of messages we originate (mute)
    this.offersApplied = 0;
    this.offerNumber = null; // number of the last server offer answered
    this._lastAnswer = null; // {number, text} for re-sent offers
    this._queue = Promise.resolve();
    this.timings = {}; // ms since join() started, per step
  }

  _mark(step) {
    this.timings[step] = Math.round(performance.now() - this._t0);
  }

  _emit(name, ...args) {
    try {
      this.cb[name]?.(...args);
    } catch (e) {
      console.error(`lobby ${name} callback`, e);
    }
  }

  _log(text) {
    this._emit('onLog', text);
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._emit('onState', state);
  }

  _fail(err) {
    const e = err instanceof LobbyError ? err : new LobbyError('connection', String(err?.message ?? err));
    this.error = e;
    this._emit('onError', e);
    return e;
  }

  /** Headers that authenticate a request after the WHIP POST (cookie + token). */
  _sessionHeaders(extra = {}) {
    return { 'X-Req-Token': this.reqToken, ...extra };
  }

  /**
   * Publishes camera + microphone (or `stream`) and starts receiving the
   * others. Resolves once joined; rejects with a LobbyError (also reported
   * through onError).
   */
  async join({ stream = null, video = true, audio = true } = {}) {
    if (this.state !== 'idle' && this.state !== 'left' && this.state !== 'failed') {
      throw new LobbyError('protocol', `cannot join while ${this.state}`);
    }
    this._reset();
    this._t0 = performance.now();
    this.timings = {};
    this._setState('joining');
    this._emit('onError', null);
    try {
      await this._publish(stream, { video, audio });
      await this._enqueue(() => this._startWhep());
      this._mark('joined');
      this._setState('joined');
    } catch (e) {
      if (this.state !== 'joining') return; // left while joining
      const err = this._fail(e);
      await this._teardown();
      this._setState('failed');
      throw err;
    }
  }

  _reset() {
    this.participants.clear();
    this.muted = { audio: false, video: false };
    this.ownMids = { audio: null, video: null };
    this.whepId = null;
    this.reqToken = null;
    this.offersApplied = 0;
    this.offerNumber = null;
    this._lastAnswer = null;
    this.error = null;
  }

  async _publish(stream, constraints) {
    if (!stream) {
      try {
        stream = await navigator.mediaDevices.getUserMedia(constraints);
      } catch (e) {
        throw new LobbyError('media', `Camera or microphone unavailable: ${e.message || e.name}.`);
      }
    }
    this._mark('media');
    this.localStream = stream;
    this._emit('onLocalStream', stream);

    const pc = (this.pcIn = new RTCPeerConnection(this.rtcConfig));
    // The signal channel must be in the offer: create it before createOffer.
    const dc = (this.signal = pc.createDataChannel('signal'));
    dc.binaryType = 'arraybuffer';
    dc.addEventListener('message', (e) => this._onSignal(e.data));
    const dcOpen = new Promise((resolve, reject) => {
      dc.addEventListener('open', resolve, { once: true });
      dc.addEventListener('close', () => reject(new LobbyError('connection', 'The signal channel closed.')), { once: true });
    });
    dcOpen.catch(() => {});
    dc.addEventListener('close', () => {
      if (this.state === 'joined') this._fail(new LobbyError('connection', 'Connection lost: the server closed the signal channel. Leave and join again.'));
    });
    const connected = this._watch(pc, 'media upload');

    for (const track of [...stream.getAudioTracks(), ...stream.getVideoTracks()]) {
      pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
    }
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    this._mark('whipOffer');
    const offer = pc.localDescription.sdp;
    for (const s of parseSections(offer)) {
      if ((s.kind === 'audio' || s.kind === 'video') && s.mid !== null && !this.ownMids[s.kind]) {
        this.ownMids[s.kind] = s.mid;
      }
    }

    const resp = await fetch(this.whipUrl, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { Authorization: `Bearer ${this.token}`, 'Content-Type': 'application/sdp' },
      body: offer,
    });
    this._mark('whipAnswer');
    if (resp.status !== 201) throw await httpError(resp, 'Joining (WHIP)');
    this.reqToken = resp.headers.get('X-Req-Token');
    const answer = await resp.text();
    // A section the server rejected (port 0) publishes nothing to mute.
    for (const s of parseSections(answer)) {
      if (s.port === 0 && s.mid !== null) {
        for (const kind of ['audio', 'video']) if (this.ownMids[kind] === s.mid) this.ownMids[kind] = null;
      }
    }
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    await withTimeout(connected, CONNECT_TIMEOUT_MS, 'Connecting the media upload');
    this._mark('whipConnected');
    await withTimeout(dcOpen, CONNECT_TIMEOUT_MS, 'Opening the signal channel');
    this._mark('signalOpen');
    this._log(`published; own mids ${JSON.stringify(this.ownMids)}`);
  }

  /** Resolves when `pc` first connects; afterwards reports losses and recoveries. */
  _watch(pc, what) {
    return new Promise((resolve, reject) => {
      let wasConnected = false;
      pc.addEventListener('connectionstatechange', () => {
        const st = pc.connectionState;
        if (st === 'connected') {
          resolve();
          if (wasConnected && this.error?.kind === 'connection') {
            this.error = null;
            this._emit('onError', null);
          }
          wasConnected = true;
        } else if (st === 'failed' || st === 'disconnected') {
          const err = new LobbyError('connection', `Connection lost: the ${what} connection is ${st}.` +
            (st === 'failed' ? ' Leave and join again.' : ' Trying to recover…'));
          if (wasConnected && this.state === 'joined') this._fail(err);
          else if (st === 'failed') reject(err);
        }
      });
    });
  }

  _enqueue(task) {
    const run = this._queue.then(task);
    this._queue = run.catch(() => {});
    return run;
  }

  /** POST /whep with an empty body, answer the server's offer with PATCH. */
  async _startWhep() {
    let resp;
    for (let attempt = 1; ; attempt++) {
      resp = await fetch(this.whepUrl, {
        method: 'POST',
        credentials: 'same-origin',
        headers: this._sessionHeaders(),
      });
      const retry = Number(resp.headers.get('Retry-After'));
      if ((resp.status === 409 || resp.status === 503) && retry && attempt < WHEP_ATTEMPTS) {
        this._log(`POST /whep: ${resp.status}, retrying in ${retry} s`);
        await new Promise((r) => setTimeout(r, retry * 1000));
        continue;
      }
      break;
    }
    this._mark('whepOffer');
    if (resp.status !== 201) throw await httpError(resp, 'Receiving the others (WHEP)');
    const location = resp.headers.get('Location');
    this.whepId = location ? location.split('/').pop() : null;
    const patchUrl = location ? new URL(location, new URL(this.whepUrl, globalThis.location?.href)).href : this.whepUrl;
    const offer = await resp.text();

    const pc = (this.pcOut = new RTCPeerConnection(this.rtcConfig));
    const connected = this._watch(pc, 'media download');
    const answer = await this._answer(offer);
    const patch = await fetch(patchUrl, {
      method: 'PATCH',
      credentials: 'same-origin',
      headers: this._sessionHeaders({ 'Content-Type': 'application/sdp' }),
      body: answer,
    });
    this._mark('whepAnswered');
    if (patch.status !== 201 && patch.status !== 204) throw await httpError(patch, 'Answering the WHEP offer');
    this.offerNumber = Number(resp.headers.get('Vestibule-Offer-Number'));
    await withTimeout(connected, CONNECT_TIMEOUT_MS, 'Connecting the media download');
  }

  /** Applies a server offer to the WHEP connection; returns the answer SDP. */
  async _answer(offer) {
    const pc = this.pcOut;
    await pc.setRemoteDescription({ type: 'offer', sdp: offer });
    await pc.setLocalDescription(await pc.createAnswer());
    await gathered(pc);
    this.offersApplied++;
    this._updateParticipants(offer);
    return pc.localDescription.sdp;
  }

  _send(msg) {
    if (this.signal?.readyState !== 'open') return false;
    this.signal.send(JSON.stringify(msg));
    return true;
  }

  _onSignal(data) {
    let msg;
    try {
      msg = JSON.parse(typeof data === 'string' ? data : new TextDecoder().decode(data));
    } catch {
      this._log('ignored a signal message that is not JSON');
      return;
    }
    const type = Number(msg.type);
    if (type === SIGNAL.OFFER && msg.data?.whep !== undefined) {
      this._enqueue(() => this._onOffer(msg)).catch((e) => {
        if (this.state === 'joined') this._fail(new LobbyError('protocol', `Could not apply a server offer: ${e.message}`));
      });
    } else if (type === SIGNAL.MUTE) {
      this._onRemoteMute(String(msg.data?.mid), Boolean(msg.data?.mute));
    } else {
      this._log(`ignored signal message type ${msg.type}`);
    }
  }

  async _onOffer(msg) {
    if (!this.pcOut || this.state === 'leaving' || this.state === 'left') return;
    const { number, sdp, whep } = msg.data;
    if (this.whepId && whep !== this.whepId) {
      this._log(`ignored an offer for another WHEP connection`);
      return;
    }
    const offer = typeof sdp === 'string' ? sdp : sdp?.sdp;
    let text;
    if (this._lastAnswer?.number === number && this._lastAnswer.text) {
      text = this._lastAnswer.text; // a re-sent offer we already answered
    } else {
      const answer = await this._answer(offer);
      text = JSON.stringify({ id: msg.id, type: SIGNAL.ANSWER, data: { number, sdp: { type: 'answer', sdp: answer } } });
      this._lastAnswer = { number, text };
      this.offerNumber = number;
    }
    if (this.signal?.readyState === 'open') this.signal.send(text);
    this._log(`answered offer ${number}`);
  }

  /** Rebuilds the participant list from an applied server offer. */
  _updateParticipants(offer) {
    const seen = new Map();
    for (const s of parseSections(offer)) {
      if (s.port === 0 || !s.msid || !s.mid || s.msid.stream === '-') continue;
      if (s.kind !== 'audio' && s.kind !== 'video') continue;
      if (s.direction !== 'sendonly' && s.direction !== 'sendrecv') continue;
      const id = s.msid.stream;
      let p = seen.get(id);
      if (!p) {
        const old = this.participants.get(id);
        p = {
          id,
          userId: s.info?.userId ?? old?.userId ?? id,
          purpose: s.info?.purpose ?? 'guest',
          stream: old?.stream ?? new MediaStream(),
          tracks: [],
        };
        seen.set(id, p);
      }
      if (s.info?.userId) p.userId = s.info.userId;
      if (s.info?.purpose === 'main') p.purpose = 'main';
      p.tracks.push({ mid: s.mid, kind: s.kind, muted: Boolean(s.info?.muted) });
    }
    const transceivers = this.pcOut.getTransceivers();
    for (const p of seen.values()) {
      const want = new Set();
      for (const t of p.tracks) {
        const tr = transceivers.find((x) => x.mid === t.mid);
        if (tr) want.add(tr.receiver.track);
      }
      for (const track of p.stream.getTracks()) if (!want.has(track)) p.stream.removeTrack(track);
      for (const track of want) if (!p.stream.getTracks().includes(track)) p.stream.addTrack(track);
      Object.defineProperties(p, {
        videoMuted: { get: () => p.tracks.some((t) => t.kind === 'video' && t.muted), enumerable: true },
        audioMuted: { get: () => p.tracks.some((t) => t.kind === 'audio' && t.muted), enumerable: true },
      });
    }
    this.participants = seen;
    this._emit('onParticipants', this.list());
  }

  _onRemoteMute(mid, mute) {
    for (const p of this.participants.values()) {
      const t = p.tracks.find((x) => x.mid === mid);
      if (t) {
        t.muted = mute;
        this._emit('onParticipants', this.list());
        return;
      }
    }
    this._log(`mute for unknown mid ${mid}`);
  }

  /** The remote participants, in offer order. */
  list() {
    return [...this.participants.values()];
  }

  /** Plain JSON of the lobby's state (for tests and diagnostics). */
  snapshot() {
    const e = this.error;
    return {
      state: this.state,
      userId: this.userId,
      timings: { ...this.timings },
      leaveStatus: this.leaveStatus ?? null,
      error: e ? { kind: e.kind, message: e.message, status: e.status, retryAfter: e.retryAfter } : null,
      receiving: Boolean(this.pcOut),
      offersApplied: this.offersApplied,
      offerNumber: this.offerNumber,
      ownMids: { ...this.ownMids },
      muted: { ...this.muted },
      participants: this.list().map((p) => ({
        id: p.id,
        userId: p.userId,
        purpose: p.purpose,
        videoMuted: p.videoMuted,
        audioMuted: p.audioMuted,
        tracks: p.tracks.map((t) => ({ ...t })),
      })),
    };
  }

  /** Mutes or unmutes our own camera ('video') or microphone ('audio'). */
  setMuted(kind, muted) {
    this.muted[kind] = muted;
    for (const t of this.localStream?.getTracks() ?? []) if (t.kind === kind) t.enabled = !muted;
    const mid = this.ownMids[kind];
    if (mid !== null) this._send({ id: this.nextId++, type: SIGNAL.MUTE, data: { mid, mute: muted } });
  }

  /** Switches the camera ('video') or microphone ('audio') without renegotiating. */
  async switchDevice(kind, deviceId) {
    const sender = this.pcIn?.getSenders().find((s) => s.track?.kind === kind);
    if (!sender) throw new LobbyError('media', `No ${kind} is being published.`);
    let fresh;
    try {
      fresh = await navigator.mediaDevices.getUserMedia({ [kind]: { deviceId: { exact: deviceId } } });
    } catch (e) {
      throw this._fail(new LobbyError('media', `Could not open that device: ${e.message || e.name}.`));
    }
    const track = fresh.getTracks()[0];
    track.enabled = !this.muted[kind];
    const old = sender.track;
    await sender.replaceTrack(track);
    this.localStream.removeTrack(old);
    this.localStream.addTrack(track);
    old.stop();
    this._emit('onLocalStream', this.localStream);
  }

  /** The device id in use for `kind`, if known. */
  deviceId(kind) {
    const t = this.localStream?.getTracks().find((x) => x.kind === kind);
    return t?.getSettings().deviceId ?? null;
  }

  /**
   * Receive statistics per participant:
   * `{[participantId]: {userId, video: {framesDecoded, ...}, audio: {packetsReceived, ...}}}`.
   */
  async stats() {
    const out = {};
    if (!this.pcOut) return out;
    const transceivers = this.pcOut.getTransceivers();
    for (const p of this.participants.values()) {
      const entry = (out[p.id] = { userId: p.userId, video: null, audio: null });
      for (const t of p.tracks) {
        const tr = transceivers.find((x) => x.mid === t.mid);
        if (!tr) continue;
        (await tr.receiver.getStats()).forEach((s) => {
          if (s.type !== 'inbound-rtp') return;
          entry[t.kind] = {
            mid: t.mid,
            packetsReceived: s.packetsReceived ?? 0,
            bytesReceived: s.bytesReceived ?? 0,
            framesDecoded: s.framesDecoded ?? null,
            frameWidth: s.frameWidth ?? null,
            frameHeight: s.frameHeight ?? null,
          };
        });
      }
    }
    return out;
  }

  /** Leaves the lobby: DELETE /whip (cookie + X-Req-Token), then closes everything. */
  async leave({ keepalive = false } = {}) {
    if (this.state === 'idle' || this.state === 'left' || this.state === 'leaving') return null;
    this._setState('leaving');
    const status = await this._teardown(keepalive);
    this.leaveStatus = status;
    this._setState('left');
    return status;
  }

  async _teardown(keepalive = false) {
    let status = null;
    if (this.reqToken) {
      try {
        const resp = await fetch(this.whipUrl, {
          method: 'DELETE',
          credentials: 'same-origin',
          headers: this._sessionHeaders(),
          keepalive,
        });
        status = resp.status;
        if (status !== 204) this._log(`DELETE /whip answered ${status}`);
      } catch (e) {
        this._log(`DELETE /whip failed: ${e.message}`);
      }
      this.reqToken = null;
    }
    for (const pc of [this.pcOut, this.pcIn]) {
      try {
        pc?.close();
      } catch {}
    }
    this.pcIn = this.pcOut = this.signal = null;
    this.localStream?.getTracks().forEach((t) => t.stop());
    if (this.participants.size) {
      this.participants.clear();
      this._emit('onParticipants', []);
    }
    return status;
  }
}
