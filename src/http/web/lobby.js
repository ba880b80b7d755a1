// Vestibule lobby client: WHIP (publish + `signal` data channel), server-offer
// WHEP (receive the others) and renegotiation over the signal channel, as in
// API.md. Also client offers on the signal channel (extra published tracks,
// e.g. the owner's program mix) and the owner's live (RTMP restream) API.
// No DOM access: the page (app.js) and tests drive a `Lobby` and listen
// through the callbacks passed to its constructor.

/** Signal channel message types (API.md "Signal channel"). */
export const SIGNAL = Object.freeze({ OFFER: 1, ANSWER: 2, MUTE: 3 });

const GATHER_TIMEOUT_MS = 5000;
const CONNECT_TIMEOUT_MS = 10000;
const WHEP_ATTEMPTS = 5;
const CLIENT_OFFER_TIMEOUT_MS = 10000;

/** Purpose codes of `i=` lines (API.md "Track metadata"). */
const PURPOSE_CODE = Object.freeze({ guest: 1, main: 2 });

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

/** The claims of a JWT, for display only (the server checks them); `{}` if unreadable. */
export function tokenClaims(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = new TextDecoder().decode(Uint8Array.from(atob(part), (c) => c.charCodeAt(0)));
    const claims = JSON.parse(json);
    return claims && typeof claims === 'object' ? claims : {};
  } catch {
    return {};
  }
}

/** The `userId` claim of a JWT, for display only (the server checks it). */
export function tokenUserId(token) {
  return tokenClaims(token).userId ?? null;
}

/**
 * Writes `i=<text>` directly after the `m=` line of every media section whose
 * `a=mid` is a key of `infos` (Map mid -> text such as `2 2 program`), as
 * API.md "Track metadata" asks of an ingress offer. Other sections are left
 * as they are.
 */
export function addTrackInfo(sdp, infos) {
  const eol = sdp.includes('\r\n') ? '\r\n' : '\n';
  const out = [];
  let pending = null; // [index of the section's m= line in out, mid]
  const flush = () => {
    if (pending && infos.has(pending[1])) out.splice(pending[0] + 1, 0, `i=${infos.get(pending[1])}`);
    pending = null;
  };
  for (const line of sdp.split(/\r?\n/)) {
    if (line.startsWith('m=')) {
      flush();
      pending = [out.length, null];
    } else if (pending && pending[1] === null && line.startsWith('a=mid:')) {
      pending[1] = line.slice(6).trim();
    }
    out.push(line);
  }
  flush();
  return out.join(eol);
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

/** The problem+json body of an error response (RFC 9457), `{}` if none. */
async function readProblem(resp) {
  try {
    const body = await resp.text();
    if ((resp.headers.get('Content-Type') ?? '').includes('json')) return JSON.parse(body) ?? {};
  } catch {}
  return {};
}

/** Turns a non-2xx response into a LobbyError with a clear message. */
async function httpError(resp, what) {
  const problem = await readProblem(resp);
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

/** A LobbyError for a live (restream) request: the status and the server's
 *  `detail`, which never holds the stream key (API.md: redacted). */
async function liveError(resp, what) {
  const problem = await readProblem(resp);
  const status = resp.status;
  const retryAfter = Number(resp.headers.get('Retry-After')) || null;
  const why = problem.detail ? `${status}: ${problem.detail}` : `${status}`;
  const kind = { 401: 'auth', 403: 'forbidden', 404: 'not-found', 429: 'full' }[status] ?? 'http';
  const when = retryAfter ? ` Try again in ${retryAfter} s.` : '';
  return new LobbyError(kind, `${what} failed (HTTP ${why}).${when}`, { status, retryAfter });
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
    this.streamBase = root;
    this.whipUrl = `${root}/whip`;
    this.whepUrl = `${root}/whep`;
    this.token = token;
    this.claims = tokenClaims(token);
    this.userId = this.claims.userId ?? null;
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
    this.nextId = 1; // ids of messages we originate (mute, client offers)
    this.clientOfferNumber = 0; // number of our last client offer
    this._pendingAnswer = null; // {number, resolve, reject} of the outstanding client offer
    this.extraTracks = []; // tracks added by client offers: [{purpose, label, transceivers, mids}]
    this._inQueue = Promise.resolve(); // client offers, one at a time
    this.liveUrl = null; // Location of our live output
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
    this.nextId = 1;
    this.clientOfferNumber = 0;
    this._pendingAnswer = null;
    this.extraTracks = [];
    this.liveUrl = null;
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
    } else if (type === SIGNAL.ANSWER) {
      this._onClientAnswer(msg);
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

  /** The server's answer (type 2) to our outstanding client offer. */
  _onClientAnswer(msg) {
    const pending = this._pendingAnswer;
    const number = Number(msg.data?.number);
    if (!pending || number !== pending.number) {
      this._log(`ignored an answer with number ${msg.data?.number}`);
      return;
    }
    this._pendingAnswer = null;
    const sdp = msg.data?.sdp;
    const text = typeof sdp === 'string' ? sdp : sdp?.sdp;
    if (typeof text !== 'string') pending.reject(new LobbyError('protocol', 'The server answered without an SDP.'));
    else pending.resolve(text);
  }

  /**
   * Renegotiates the WHIP connection by a client offer on the signal channel
   * (API.md "Signal channel", type 1 client->server). `mutate(pc)` changes
   * the transceivers; `infoFor(transceiver)` returns the `i=` text for a
   * media section that this offer adds (or null). Sends the offer with the
   * next number, applies the type-2 answer with the same number and returns
   * the answer's sections for the new mids. On a timeout or an error the
   * local offer is rolled back and `undo()` runs.
   */
  _clientOffer(what, mutate, { infoFor = () => null, undo = () => {} } = {}) {
    const run = this._inQueue.then(async () => {
      const pc = this.pcIn;
      if (!pc || this.state !== 'joined' || this.signal?.readyState !== 'open') {
        throw new LobbyError('protocol', `${what}: not in a lobby.`);
      }
      const before = new Set(pc.getTransceivers().map((t) => t.mid).filter((m) => m !== null));
      mutate(pc);
      let offered = false;
      try {
        await pc.setLocalDescription(await pc.createOffer());
        offered = true;
        const infos = new Map();
        const fresh = [];
        for (const t of pc.getTransceivers()) {
          if (t.mid === null || before.has(t.mid)) continue;
          fresh.push(t.mid);
          const info = infoFor(t);
          if (info) infos.set(t.mid, info);
        }
        const sdp = addTrackInfo(pc.localDescription.sdp, infos);
        const number = ++this.clientOfferNumber;
        const answered = new Promise((resolve, reject) => {
          this._pendingAnswer = { number, resolve, reject };
        });
        if (!this._send({ id: this.nextId++, type: SIGNAL.OFFER, data: { number, sdp: { type: 'offer', sdp } } })) {
          throw new LobbyError('connection', `${what}: the signal channel is closed.`);
        }
        this._log(`sent client offer ${number} (new mids ${JSON.stringify(fresh)})`);
        const answer = await withTimeout(answered, CLIENT_OFFER_TIMEOUT_MS, `${what} (waiting for the server's answer)`);
        await pc.setRemoteDescription({ type: 'answer', sdp: answer });
        this._log(`applied the answer to client offer ${number}`);
        return parseSections(answer)
          .filter((s) => fresh.includes(s.mid))
          .map((s) => ({ mid: s.mid, kind: s.kind, accepted: s.port !== 0 }));
      } catch (e) {
        this._pendingAnswer = null;
        if (offered && pc.signalingState === 'have-local-offer') {
          await pc.setLocalDescription({ type: 'rollback' }).catch(() => {});
        }
        try {
          undo();
        } catch {}
        throw e instanceof LobbyError ? e : new LobbyError('protocol', `${what} failed: ${e.message ?? e}`);
      }
    });
    this._inQueue = run.catch(() => {});
    return run;
  }

  /**
   * Publishes the tracks of `stream` in addition to the camera, by a client
   * offer: each as a new sendonly m-line carrying `i=<purpose> 2 <label>`
   * (purpose 'main' = program source, 2; 'guest' = 1; the server stores
   * main only for the stream owner). Resolves with a handle for
   * removeTracks(): `{purpose, label, mids, sections: [{mid, kind, accepted}]}`.
   */
  async addTracks(stream, { purpose = 'main', label = 'program' } = {}) {
    const code = PURPOSE_CODE[purpose];
    if (!code) throw new LobbyError('protocol', `unknown purpose ${purpose}`);
    if (!/^\S+$/.test(label)) throw new LobbyError('protocol', 'a track label is one word');
    let added = [];
    const tracks = [...stream.getAudioTracks(), ...stream.getVideoTracks()];
    const sections = await this._clientOffer(
      'Publishing extra tracks',
      (pc) => {
        added = tracks.map((track) => pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] }));
      },
      {
        infoFor: (t) => (added.includes(t) ? `${code} 2 ${label}` : null),
        undo: () => added.forEach((t) => t.stop()),
      },
    );
    const handle = { purpose, label, transceivers: added, mids: added.map((t) => t.mid), sections };
    this.extraTracks.push(handle);
    return handle;
  }

  /** Stops publishing the tracks of an addTracks() handle, by a client offer. */
  async removeTracks(handle) {
    const i = this.extraTracks.indexOf(handle);
    if (i < 0) return;
    this.extraTracks.splice(i, 1);
    await this._clientOffer('Removing extra tracks', () => {
      for (const t of handle.transceivers) if (!t.stopped && t.currentDirection !== 'stopped') t.stop();
    });
  }

  /**
   * The stream's JSON (GET with our Bearer token): `{space, stream, owner,
   * ownerHome?, title, lobbyOpen, live, lobby?}`.
   */
  async streamInfo() {
    const resp = await fetch(this.streamBase, { headers: { Authorization: `Bearer ${this.token}` } });
    if (resp.status !== 200) throw await httpError(resp, 'Reading the stream');
    return resp.json();
  }

  /** Whether our token names the stream's owner (the server decides; this picks the UI). */
  async isOwner() {
    const info = await this.streamInfo();
    return info.owner === this.userId && (info.ownerHome ?? null) === (this.claims.home ?? null);
  }

  /**
   * Starts restreaming the program to RTMP (owner only): `POST
   * {streamBase}/live/start` with our session cookie + X-Req-Token.
   * Resolves with `{status, resource, location}`; rejects with a LobbyError
   * carrying the status and the server's detail. The key goes only into
   * the request body.
   */
  async startLive({ rtmpEndpoint, rtmpKey }) {
    if (!this.reqToken) throw new LobbyError('protocol', 'Going live needs a lobby session: join first.');
    const resp = await fetch(`${this.streamBase}/live/start`, {
      method: 'POST',
      credentials: 'same-origin',
      headers: this._sessionHeaders({ 'Content-Type': 'application/json' }),
      body: JSON.stringify({ rtmpEndpoint, rtmpKey }),
    });
    if (resp.status !== 201) throw await liveError(resp, 'Going live');
    let body = {};
    try {
      body = await resp.json();
    } catch {}
    const resource = typeof body.resource === 'string' ? body.resource : null;
    this.liveUrl = resp.headers.get('Location') ??
      (resource ? `${this.streamBase}/live/${encodeURIComponent(resource)}` : `${this.streamBase}/live`);
    return { status: resp.status, resource, location: this.liveUrl };
  }

  /** `GET {Location}` of our live output: `{status, source, rtmpHost, startedAt, bytesOut, restarts, lastError}`. */
  async liveStatus() {
    if (!this.reqToken) throw new LobbyError('protocol', 'Not in a lobby.');
    const resp = await fetch(this.liveUrl ?? `${this.streamBase}/live`, {
      credentials: 'same-origin',
      headers: this._sessionHeaders(),
    });
    if (resp.status !== 200) throw await liveError(resp, 'Reading the live status');
    return resp.json();
  }

  /** `DELETE {Location}` of our live output; resolves with the status (204). */
  async stopLive() {
    if (!this.reqToken) throw new LobbyError('protocol', 'Not in a lobby.');
    const resp = await fetch(this.liveUrl ?? `${this.streamBase}/live`, {
      method: 'DELETE',
      credentials: 'same-origin',
      headers: this._sessionHeaders(),
    });
    if (resp.status !== 204 && resp.status !== 200) throw await liveError(resp, 'Stopping the live output');
    this.liveUrl = null;
    return resp.status;
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
      clientOfferNumber: this.clientOfferNumber,
      extraTracks: this.extraTracks.map((h) => ({ purpose: h.purpose, label: h.label, mids: [...h.mids], sections: h.sections })),
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
    this._pendingAnswer?.reject(new LobbyError('connection', 'Left the lobby.'));
    this._pendingAnswer = null;
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
