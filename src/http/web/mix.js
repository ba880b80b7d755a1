// The owner's program mix: every tile's video drawn into one canvas (a grid,
// each picture letterboxed into its cell) plus a WebAudio mix of every audio
// track, as one MediaStream that lobby.js publishes as main (program) tracks.
// The page (app.js) says what to mix through `sources()`.

const LABEL_FONT = '600 22px system-ui, sans-serif';

/**
 * `new ProgramMix({sources, width, height, fps})`; `sources()` returns
 * `[{video: HTMLVideoElement | null, audio: MediaStream | null, label}]` and
 * is called on every frame, so tiles that come and go are followed.
 */
export class ProgramMix {
  constructor({ sources, width = 1280, height = 720, fps = 30 }) {
    this.sources = sources;
    this.width = width;
    this.height = height;
    this.fps = fps;
    this.canvas = null;
    this.stream = null;
    this.frames = 0;
    this.tiles = 0;
    this._timer = null;
    this._audio = null; // {ctx, dest, nodes: Map<trackId, {node, track}>}
  }

  /** Starts drawing and mixing; returns the mix stream (one video + one audio track). */
  start() {
    if (this.stream) return this.stream;
    const canvas = (this.canvas = document.createElement('canvas'));
    canvas.width = this.width;
    canvas.height = this.height;
    this._g = canvas.getContext('2d', { alpha: false });
    this._draw();
    // A timer rather than requestAnimationFrame: rAF stops in a hidden tab,
    // and the program must keep running while the owner looks elsewhere.
    this._timer = setInterval(() => this._tick(), 1000 / this.fps);
    const [video] = canvas.captureStream(this.fps).getVideoTracks();

    const ctx = new AudioContext({ latencyHint: 'interactive' });
    ctx.resume().catch(() => {});
    const dest = ctx.createMediaStreamDestination();
    this._audio = { ctx, dest, nodes: new Map() };
    this._syncAudio();
    this.stream = new MediaStream([...dest.stream.getAudioTracks(), video]);
    return this.stream;
  }

  /** Stops drawing and mixing and ends the mix tracks. */
  stop() {
    clearInterval(this._timer);
    this._timer = null;
    if (this._audio) {
      for (const { node } of this._audio.nodes.values()) node.disconnect();
      this._audio.ctx.close().catch(() => {});
      this._audio = null;
    }
    this.stream?.getTracks().forEach((t) => t.stop());
    this.stream = null;
  }

  /** Plain JSON for tests and diagnostics. */
  stats() {
    return {
      running: Boolean(this.stream),
      width: this.width,
      height: this.height,
      frames: this.frames,
      tiles: this.tiles,
      audioSources: this._audio?.nodes.size ?? 0,
      audioState: this._audio?.ctx.state ?? null,
    };
  }

  _tick() {
    let sources = [];
    try {
      sources = this.sources() ?? [];
    } catch (e) {
      console.error('program mix sources', e);
    }
    this._draw(sources);
    this._syncAudio(sources);
  }

  _draw(sources = []) {
    const g = this._g;
    const { width: W, height: H } = this;
    g.fillStyle = '#000';
    g.fillRect(0, 0, W, H);
    const tiles = sources.filter((s) => s.video && s.video.readyState >= 2 && s.video.videoWidth > 0);
    this.tiles = tiles.length;
    this.frames++;
    if (!tiles.length) return;
    const cols = Math.ceil(Math.sqrt(tiles.length));
    const rows = Math.ceil(tiles.length / cols);
    const cw = W / cols;
    const ch = H / rows;
    tiles.forEach((tile, i) => {
      const row = Math.floor(i / cols);
      // Centre a last row that is not full.
      const inRow = row === rows - 1 ? tiles.length - row * cols : cols;
      const x0 = (W - inRow * cw) / 2 + (i % cols) * cw;
      const y0 = row * ch;
      const { videoWidth: vw, videoHeight: vh } = tile.video;
      const scale = Math.min(cw / vw, ch / vh);
      const dw = vw * scale;
      const dh = vh * scale;
      const x = x0 + (cw - dw) / 2;
      const y = y0 + (ch - dh) / 2;
      g.drawImage(tile.video, x, y, dw, dh);
      if (tile.label) {
        g.font = LABEL_FONT;
        const w = g.measureText(tile.label).width;
        g.fillStyle = 'rgb(0 0 0 / 55%)';
        g.fillRect(x, y + dh - 34, w + 20, 34);
        g.fillStyle = '#fff';
        g.fillText(tile.label, x + 10, y + dh - 10);
      }
    });
  }

  /** Connects every live audio track of the sources to the mix, once each. */
  _syncAudio(sources = []) {
    const audio = this._audio;
    if (!audio) return;
    const want = new Map();
    for (const s of sources) {
      for (const track of s.audio?.getAudioTracks() ?? []) {
        if (track.readyState === 'live') want.set(track.id, track);
      }
    }
    for (const [id, { node }] of audio.nodes) {
      if (!want.has(id)) {
        node.disconnect();
        audio.nodes.delete(id);
      }
    }
    for (const [id, track] of want) {
      if (audio.nodes.has(id)) continue;
      const node = audio.ctx.createMediaStreamSource(new MediaStream([track]));
      node.connect(audio.dest);
      audio.nodes.set(id, { node, track });
    }
  }
}
