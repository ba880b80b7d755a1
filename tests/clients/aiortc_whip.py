#!/usr/bin/env python3
"""aiortc as a third-party WHIP publisher, for Vestibule's integration tests.

    tests/clients/.venv/bin/python tests/clients/aiortc_whip.py \\
        --base http://127.0.0.1:PORT --space S --stream ID --token JWT \\
        [--seconds 3] [--signal] [--codec VP8|H264] [--sdp] [--timeout 40]

Publishes a synthetic 320x240 30 fps video track (a moving gradient) and a
440 Hz Opus tone from one RTCPeerConnection (max-bundle, sendonly), with an
optional `signal` data channel. aiortc gathers before setLocalDescription
returns, so the POSTed offer is complete (non-trickle). Then: answer, wait for
`connected` (and the channel), hold, getStats, DELETE the Location.

aioice never offers loopback addresses, so this process patches
aioice.ice.get_host_addresses to return 127.0.0.1 only (see
shared/notes/real-clients.md §3.1): run it next to the server on loopback,
ideally in a `unshare -n` namespace.

stdout: exactly one JSON line. Success (exit 0):
  {"status":201,"location":"...","etag":...,"xReqToken":...,"link":...,
   "connected":true,"dcOpen":true|null,"packetsSent":N,"bytesSent":N,
   "stats":{"video":{...},"audio":{...},"candidatePair":{...}},
   "signalMessages":["..."],"signalMessageKinds":["binary"|"text"],
   "localCandidates":[...],"remoteCandidates":[...],
   "deleteStatus":200,"timings":{...}}
Failure (exit 1): the same fields as far as they got, plus "error" and
"stage" (and "body" when the POST was not 201). A run that got a Location
DELETEs it even when it fails, also on the overall --timeout (default
30 + --seconds). Connect and channel-open waits time out after 10 s each.
timings: total is ms since the process started; the others
(iceGatheringComplete, answerReceived, connected, dcOpen, holdEnd, stats,
deleteDone) are ms since the run started (after the imports).
HTTP uses urllib only; aiortc's warnings go to stderr.
"""

import argparse
import asyncio
import fractions
import json
import logging
import math
import sys
import time

T0 = time.monotonic()  # before the heavy imports: timings.total is process-wide
import urllib.error
import urllib.parse
import urllib.request
from array import array

import aioice.ice


def _loopback_only(use_ipv4: bool = True, use_ipv6: bool = True) -> list:
    return ["127.0.0.1"] if use_ipv4 else []


# Must happen before any RTCPeerConnection gathers.
aioice.ice.get_host_addresses = _loopback_only

import av  # noqa: E402
from aiortc import (  # noqa: E402
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import (  # noqa: E402
    AUDIO_PTIME,
    MediaStreamError,
    MediaStreamTrack,
    VideoStreamTrack,
)

def since() -> int:
    return round((time.monotonic() - T0) * 1000)


class GradientVideoTrack(VideoStreamTrack):
    """320x240 yuv420p frames, a horizontal luma gradient that moves."""

    def __init__(self, width: int = 320, height: int = 240):
        super().__init__()
        self.width, self.height = width, height
        self.frames = 0

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        shift = (self.frames * 4) & 0xFF
        y = frame.planes[0]
        row = bytes(((x + shift) & 0xFF) for x in range(self.width))
        row += bytes(y.line_size - self.width)
        y.update(row * self.height)
        for i, val in ((1, (self.frames * 2) & 0xFF), (2, 128)):
            p = frame.planes[i]
            p.update(bytes([val]) * p.buffer_size)
        frame.pts, frame.time_base = pts, time_base
        self.frames += 1
        return frame


class ToneAudioTrack(MediaStreamTrack):
    """20 ms frames of a 440 Hz sine, 48 kHz mono s16."""

    kind = "audio"

    def __init__(self, freq: float = 440.0, rate: int = 48000):
        super().__init__()
        self.rate = rate
        self.samples = int(AUDIO_PTIME * rate)
        # One second of samples; 440 Hz fits a whole number of periods.
        self.table = array(
            "h", (int(8000 * math.sin(2 * math.pi * freq * n / rate)) for n in range(rate))
        )
        self.frames = 0
        self._start = None
        self._timestamp = 0

    async def recv(self):
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.time()
        else:
            self._timestamp += self.samples
            wait = self._start + self._timestamp / self.rate - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
        off = self._timestamp % self.rate
        chunk = self.table[off : off + self.samples]
        frame = av.AudioFrame(format="s16", layout="mono", samples=self.samples)
        frame.planes[0].update(chunk.tobytes())
        frame.pts = self._timestamp
        frame.sample_rate = self.rate
        frame.time_base = fractions.Fraction(1, self.rate)
        self.frames += 1
        return frame


def http(method: str, url: str, headers: dict, body: bytes = None, timeout: float = 10.0):
    """Returns (status, headers, body text). Never raises for HTTP statuses."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode("utf-8", "replace")


def candidates_of(sdp: str) -> list:
    seen = {}
    for line in sdp.splitlines():
        if not line.startswith("a=candidate:"):
            continue
        f = line[len("a=candidate:") :].split()
        c = {"protocol": f[2].lower(), "address": f[4], "port": int(f[5]), "type": f[7]}
        seen[(c["protocol"], c["address"], c["port"], c["type"])] = c
    return list(seen.values())


def selected_pair(pc) -> dict:
    """The nominated ICE pair (aiortc has no candidate-pair stats)."""
    try:
        for t in pc.getTransceivers():
            conn = t.sender.transport.transport._connection
            pair = conn._nominated.get(1)
            if pair is None:
                continue
            lc, rc = pair.local_candidate, pair.remote_candidate
            return {
                "local": {"address": lc.host, "port": lc.port,
                          "protocol": lc.transport.lower(), "candidateType": lc.type},
                "remote": {"address": rc.host, "port": rc.port,
                           "protocol": rc.transport.lower(), "candidateType": rc.type},
            }
    except Exception as e:  # private API: report, don't fail the run
        return {"error": str(e)}
    return None


async def run(opts, r: dict) -> None:
    loop = asyncio.get_running_loop()
    stage = "offer"
    auth = {"Authorization": f"Bearer {opts.token}"}
    whip_url = "{}/space/{}/stream/{}/whip".format(
        opts.base.rstrip("/"),
        urllib.parse.quote(opts.space, safe=""),
        urllib.parse.quote(opts.stream, safe=""),
    )
    pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    video, audio = GradientVideoTrack(), ToneAudioTrack()
    delete_url = None
    start = time.monotonic()

    def ms() -> int:
        return round((time.monotonic() - start) * 1000)

    try:
        pc.addTransceiver(audio, direction="sendonly")
        vt = pc.addTransceiver(video, direction="sendonly")
        if opts.codec:
            caps = RTCRtpSender.getCapabilities("video").codecs
            want = [c for c in caps if c.mimeType.lower() == f"video/{opts.codec}".lower()]
            rtx = [c for c in caps if c.mimeType.lower() == "video/rtx"]
            vt.setCodecPreferences(want + rtx)

        connected = loop.create_future()
        # Mark a stored exception as seen when nobody awaits it (early failure).
        connected.add_done_callback(lambda f: f.cancelled() or f.exception())

        @pc.on("connectionstatechange")
        def on_state():
            st = pc.connectionState
            if st == "connected" and not connected.done():
                r["timings"]["connected"] = ms()
                connected.set_result(None)
            elif st in ("failed", "closed") and not connected.done():
                connected.set_exception(RuntimeError(f"connectionState {st}"))

        dc_open = None
        if opts.signal:
            dc = pc.createDataChannel("signal")
            dc_open = loop.create_future()
            dc_open.add_done_callback(lambda f: f.cancelled() or f.exception())

            @dc.on("open")
            def on_open():
                r["timings"]["dcOpen"] = ms()
                if not dc_open.done():
                    dc_open.set_result(None)

            @dc.on("message")
            def on_message(m):
                if isinstance(m, str):
                    r["signalMessages"].append(m)
                    r["signalMessageKinds"].append("text")
                else:
                    r["signalMessages"].append(bytes(m).decode("utf-8", "replace"))
                    r["signalMessageKinds"].append("binary")

        await pc.setLocalDescription(await pc.createOffer())  # gathers (no trickle)
        r["timings"]["iceGatheringComplete"] = ms()
        offer = pc.localDescription.sdp
        r["localCandidates"] = candidates_of(offer)
        if opts.sdp:
            r["offer"] = offer

        stage = "post"
        status, headers, body = await asyncio.to_thread(
            http, "POST", whip_url, {**auth, "Content-Type": "application/sdp"}, offer.encode()
        )
        r["timings"]["answerReceived"] = ms()
        r["status"] = status
        r["location"] = headers.get("Location")
        r["etag"] = headers.get("ETag")
        r["xReqToken"] = headers.get("X-Req-Token")
        r["link"] = headers.get("Link")
        if r["location"]:
            delete_url = urllib.parse.urljoin(whip_url, r["location"])
        if status != 201:
            r["body"] = body[:4000]
            r["contentType"] = headers.get("Content-Type")
            raise RuntimeError(f"POST answered {status}")
        if opts.sdp:
            r["answer"] = body
        r["remoteCandidates"] = candidates_of(body)

        stage = "setRemoteDescription"
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))

        stage = "connect"
        try:
            await asyncio.wait_for(asyncio.shield(connected), 10)
        except asyncio.TimeoutError:
            raise RuntimeError("connectionState connected timed out after 10000 ms") from None
        r["connected"] = True

        if dc_open is not None:
            stage = "dcOpen"
            try:
                await asyncio.wait_for(asyncio.shield(dc_open), 10)
            except asyncio.TimeoutError:
                raise RuntimeError("signal channel open timed out after 10000 ms") from None
            r["dcOpen"] = True

        stage = "hold"
        await asyncio.sleep(opts.seconds)
        r["timings"]["holdEnd"] = ms()
        if pc.connectionState != "connected":
            raise RuntimeError(f"connectionState {pc.connectionState} after hold")

        stage = "stats"
        report = await pc.getStats()
        stats = {"video": None, "audio": None, "candidatePair": selected_pair(pc)}
        for s in report.values():
            if s.type == "outbound-rtp" and s.kind in ("video", "audio"):
                stats[s.kind] = {"ssrc": s.ssrc, "packetsSent": s.packetsSent, "bytesSent": s.bytesSent}
        for t in pc.getTransceivers():
            kind = t.kind
            if stats.get(kind) is None:
                continue
            stats[kind]["mid"] = t.mid
            codecs = getattr(t, "_codecs", None)
            if codecs:
                c = codecs[0]
                stats[kind]["codec"] = {"mimeType": c.mimeType, "payloadType": c.payloadType}
        if stats["video"] is not None:
            stats["video"]["framesGenerated"] = video.frames
            stats["video"]["frameWidth"], stats["video"]["frameHeight"] = video.width, video.height
        if stats["audio"] is not None:
            stats["audio"]["framesGenerated"] = audio.frames
        r["stats"] = stats
        r["packetsSent"] = sum((stats[k] or {}).get("packetsSent", 0) for k in ("video", "audio"))
        r["bytesSent"] = sum((stats[k] or {}).get("bytesSent", 0) for k in ("video", "audio"))
        r["timings"]["stats"] = ms()
    except Exception as e:
        r["error"] = str(e) or type(e).__name__
        r["stage"] = stage
    finally:
        # Always DELETE a resource we were given, even after a failure.
        if delete_url:
            try:
                status, _, _ = await asyncio.to_thread(http, "DELETE", delete_url, dict(auth))
                r["deleteStatus"] = status
                r["timings"]["deleteDone"] = ms()
            except Exception as e:
                r["deleteError"] = str(e)
        await pc.close()


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def main() -> int:
    ap = Parser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", required=True)
    ap.add_argument("--space", required=True)
    ap.add_argument("--stream", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--signal", action="store_true", help="open a 'signal' data channel")
    ap.add_argument("--codec", type=str.upper, choices=["VP8", "H264"])
    ap.add_argument("--sdp", action="store_true", help="include offer and answer SDP")
    ap.add_argument("--timeout", type=float, help="overall seconds (default 30 + --seconds)")
    try:
        opts = ap.parse_args()
    except UsageError as e:
        print(json.dumps({"error": f"usage: {e}", "stage": "args"}), flush=True)
        return 1
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    r = {
        "status": None, "location": None, "etag": None, "xReqToken": None, "link": None,
        "connected": False, "dcOpen": False if opts.signal else None,
        "packetsSent": None, "bytesSent": None, "stats": None,
        "signalMessages": [], "signalMessageKinds": [],
        "localCandidates": [], "remoteCandidates": [],
        "deleteStatus": None, "timings": {},
    }
    timeout = opts.timeout if opts.timeout else 30 + opts.seconds

    async def guarded():
        try:
            await asyncio.wait_for(run(opts, r), timeout)
        except asyncio.TimeoutError:
            r["error"] = f"overall timeout after {round(timeout * 1000)} ms"
            r["stage"] = "timeout"

    asyncio.run(guarded())
    r["timings"]["total"] = since()
    if "error" in r:
        err = r.pop("error")
        print(json.dumps({"error": err, **r}), flush=True)
        return 1
    print(json.dumps(r), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
