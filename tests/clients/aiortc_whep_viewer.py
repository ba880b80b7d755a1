#!/usr/bin/env python3
"""aiortc joins a Vestibule lobby as a receive-only user and counts frames.

    python aiortc_whep_viewer.py --base http://127.0.0.1:PORT --space S \\
        --stream ID --token JWT [--plain] [--post-status-only] [--seconds 5]
        [--audio-lines 1] [--video-lines 1] [--sdp] [--timeout 40]

Lobby mode (default), a lobby user that publishes nothing:
1. WHIP: one RTCPeerConnection with only a `signal` data channel (no media
   at all: the offer has a single m=application section), POSTed to
   `.../whip` with the Bearer token; wait for `connected` and the channel.
2. WHEP, client-offer mode: a second RTCPeerConnection (max-bundle) with one
   recvonly audio and one recvonly video transceiver, its complete offer
   POSTed to `.../whep` with the Bearer token; 201 with the SDP answer.
3. Every remote track is read with `track.recv()` for --seconds (counted from
   the WHEP connection being connected): decoded video frames and audio
   frames are counted per kind, with the first and last frame's time, the
   last video frame's size and a per-second timeline.
4. DELETE the WHEP Location, then the WHIP Location (always, also after a
   failure).

--plain: a plain viewer (API.md "Plain viewers"; the token must be the
owner's, an admin's or carry `view: SPACE/STREAM`): no WHIP session and no
signal channel, step 1 is skipped; steps 2-4 as above (only the WHEP Location
is deleted; a plain viewer's m-lines carry msid stream id `program`).

--post-status-only: POST the WHEP offer, report its status, problem+json body
and Retry-After, and stop (exit 0 whatever the status; for 403/409/422/429
tests). In lobby mode the WHIP session is made first and deleted after. A 201
is not connected: its Location is deleted at once.

--audio-lines / --video-lines: how many recvonly transceivers of each kind
the WHEP offer has (default 1 each; more or 0 for 422 tests).

Offers the server may send on the signal channel are recorded, not answered
(a client-offer WHEP connection gets the tracks present at POST time).

The loopback patch of aiortc_whip.py (aioice never offers 127.0.0.1) is
applied by importing it; run next to the server on loopback, ideally in a
`unshare -n` namespace.

stdout: exactly one JSON line. Success (exit 0):
  {"mode":"lobby","whipStatus":201,"whepStatus":201,"whipLocation":"...",
   "whepLocation":"...","connected":true,"dcOpen":true,"whepConnected":true,
   "tracks":[{"kind","id","mid","streamId"}...],"frames":{"video":N,"audio":N},
   "firstFrameMs":{"video":ms,"audio":ms},"lastFrameMs":{...},
   "videoSize":[w,h],
   "timeline":[{"t":0,"video":n,"audio":n,"size":[w,h]|null},...],
   "msids":["program",...],"answerMids":[...],"answerSdp":"...",
   "signalMessages":[...],"whepDeleteStatus":200,"whipDeleteStatus":200,
   "timings":{...}}
  Plain mode: "mode":"plain" and no whip*, connected, dcOpen or
  signalMessages keys.
  timeline: one entry per second of the --seconds window, t = whole seconds
  since the WHEP connection became connected; frames decoded in that second
  per kind; size = the last video frame's [w, h] in that second or null, and
  "sizes" (every distinct size, in order) when it changed within the second.
  msids: the msid stream id of each remote track as aiortc parsed it from the
  answer (`a=msid:<stream> <track>`), in transceiver order; null for a track
  without one. answerSdp: the WHEP answer, at most 4000 characters.
--post-status-only (exit 0 once the POST was answered):
  {"mode":..., "postStatus":409, "whepStatus":409, "problem":{...}|null,
   "body":"...", "contentType":"...", "retryAfter":"5" (when present),
   "whepLocation":..., "whepDeleteStatus": (after a 201), ...}
Failure (exit 1): the same as far as it got, plus "error" and "stage" (and
"body", and "retryAfter" when present, when a POST was not 201). timings:
total is ms since the process started; the others are ms since the run
started.
"""

import argparse
import asyncio
import json
import logging
import math
import sys
import time

T0 = time.monotonic()
import urllib.parse  # noqa: E402

# Applies the aioice loopback patch before any peer connection gathers.
from aiortc_whip import candidates_of, http  # noqa: E402

from aiortc import (  # noqa: E402
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError  # noqa: E402
from aiortc.sdp import SessionDescription  # noqa: E402

WHIP_KEYS = (
    "whipStatus", "whipLocation", "whipDeleteStatus", "connected", "dcOpen",
    "signalMessages",
)
ANSWER_SDP_MAX = 4000


def since() -> int:
    return round((time.monotonic() - T0) * 1000)


def state_future(loop, pc, r, key, ms, at=None):
    """A future set when `pc` connects, failed when it fails or closes.

    `at`, a dict, gets at[key] = time.monotonic() of the connection."""
    fut = loop.create_future()
    fut.add_done_callback(lambda f: f.cancelled() or f.exception())

    @pc.on("connectionstatechange")
    def on_state():
        st = pc.connectionState
        if st == "connected" and not fut.done():
            r["timings"][key] = ms()
            if at is not None:
                at[key] = time.monotonic()
            fut.set_result(None)
        elif st in ("failed", "closed") and not fut.done():
            fut.set_exception(RuntimeError(f"{key}: connectionState {st}"))

    return fut


async def wait(fut, seconds, what):
    try:
        await asyncio.wait_for(asyncio.shield(fut), seconds)
    except asyncio.TimeoutError:
        raise RuntimeError(f"{what} timed out after {seconds * 1000:.0f} ms") from None


def remote_msids(pc, answer: str) -> list:
    """(mid, kind, stream id, track id) of each receiving transceiver, as
    aiortc parsed the answer's `a=msid:` lines."""
    try:
        parsed = SessionDescription.parse(answer)
    except Exception:
        parsed = None
    by_mid = {m.rtp.muxId: m for m in parsed.media} if parsed else {}
    out = []
    for t in pc.getTransceivers():
        if t.receiver is None or t.receiver.track is None:
            continue
        media = by_mid.get(t.mid)
        stream = track = None
        if media is not None and media.msid:
            bits = media.msid.split()
            stream = bits[0] if bits else None
            track = bits[1] if len(bits) > 1 else None
        out.append({"mid": t.mid, "kind": t.kind, "streamId": stream,
                    "trackId": track, "track": t.receiver.track})
    return out


def build_timeline(events, anchor, seconds) -> list:
    """Per-second bins over [anchor, anchor + seconds)."""
    n = max(1, math.ceil(seconds))
    bins = [{"t": i, "video": 0, "audio": 0, "size": None} for i in range(n)]
    sizes = [[] for _ in range(n)]
    for at, kind, size in events:
        i = int(at - anchor) if at >= anchor else 0
        if i >= n:
            continue
        bins[i][kind] += 1
        if size is not None:
            bins[i]["size"] = size
            if not sizes[i] or sizes[i][-1] != size:
                sizes[i].append(size)
    for b, s in zip(bins, sizes):
        if len(set(map(tuple, s))) > 1:
            b["sizes"] = s
    return bins


async def run(opts, r: dict) -> None:
    loop = asyncio.get_running_loop()
    auth = {"Authorization": f"Bearer {opts.token}"}
    base = "{}/space/{}/stream/{}".format(
        opts.base.rstrip("/"),
        urllib.parse.quote(opts.space, safe=""),
        urllib.parse.quote(opts.stream, safe=""),
    )
    whip_url, whep_url = f"{base}/whip", f"{base}/whep"
    config = RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    pc_in = None if opts.plain else RTCPeerConnection(config)
    pc_out = RTCPeerConnection(config)
    whip_delete = whep_delete = None
    readers = []
    events = []  # (monotonic, kind, [w, h] or None) per decoded frame
    at = {}
    start = time.monotonic()
    stage = "whep offer" if opts.plain else "whip offer"

    def ms() -> int:
        return round((time.monotonic() - start) * 1000)

    async def post(url, sdp, prefix, status_only=False):
        try:
            status, headers, body = await asyncio.to_thread(
                http, "POST", url, {**auth, "Content-Type": "application/sdp"}, sdp.encode()
            )
        except Exception as e:  # no HTTP answer at all (urllib's 10 s timeout, refused)
            raise RuntimeError(f"POST {prefix} got no answer: {e}") from None
        r[f"{prefix}Status"] = status
        location = headers.get("Location")
        r[f"{prefix}Location"] = location
        if headers.get("Retry-After") is not None:
            r["retryAfter"] = headers.get("Retry-After")
        absolute = urllib.parse.urljoin(url, location) if location else None
        if status_only:
            r["postStatus"] = status
            r["contentType"] = headers.get("Content-Type")
            r["body"] = body[:4000]
            try:
                r["problem"] = json.loads(body) if body else None
            except ValueError:
                r["problem"] = None
            return absolute, body
        if status != 201:
            r["body"] = body[:4000]
            raise RuntimeError(f"POST {prefix} answered {status}")
        return absolute, body

    try:
        # 1. WHIP with only the signal channel (lobby mode).
        if not opts.plain:
            connected = state_future(loop, pc_in, r, "connected", ms)
            dc = pc_in.createDataChannel("signal")
            dc_open = loop.create_future()
            dc_open.add_done_callback(lambda f: f.cancelled() or f.exception())

            @dc.on("open")
            def on_open():
                r["timings"]["dcOpen"] = ms()
                if not dc_open.done():
                    dc_open.set_result(None)

            @dc.on("message")
            def on_message(m):
                text = m if isinstance(m, str) else bytes(m).decode("utf-8", "replace")
                try:
                    msg = json.loads(text)
                    r["signalMessages"].append({"type": msg.get("type"), "id": msg.get("id")})
                except ValueError:
                    r["signalMessages"].append({"raw": text[:200]})

            await pc_in.setLocalDescription(await pc_in.createOffer())
            offer = pc_in.localDescription.sdp
            if opts.sdp:
                r["whipOffer"] = offer
            stage = "whip post"
            whip_delete, answer = await post(whip_url, offer, "whip")
            r["timings"]["whipAnswered"] = ms()
            if opts.sdp:
                r["whipAnswer"] = answer
            stage = "whip setRemoteDescription"
            await pc_in.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            stage = "whip connect"
            await wait(connected, 10, "WHIP connectionState connected")
            r["connected"] = True
            stage = "dcOpen"
            await wait(dc_open, 10, "signal channel open")
            r["dcOpen"] = True

        # 2. WHEP, client-offer mode.
        stage = "whep offer"
        whep_connected = state_future(loop, pc_out, r, "whepConnected", ms, at)
        frames = r["frames"]
        first = r["firstFrameMs"]
        last = r["lastFrameMs"]

        async def read(track):
            kind = track.kind
            while True:
                try:
                    frame = await track.recv()
                except MediaStreamError:
                    return
                now = time.monotonic()
                frames[kind] += 1
                t = round((now - start) * 1000)
                if kind not in first:
                    first[kind] = t
                last[kind] = t
                size = None
                if kind == "video":
                    size = [frame.width, frame.height]
                    r["videoSize"] = size
                events.append((now, kind, size))

        @pc_out.on("track")
        def on_track(track):
            r["tracks"].append({"kind": track.kind, "id": track.id})
            readers.append(asyncio.ensure_future(read(track)))

        for _ in range(opts.audio_lines):
            pc_out.addTransceiver("audio", direction="recvonly")
        for _ in range(opts.video_lines):
            pc_out.addTransceiver("video", direction="recvonly")
        await pc_out.setLocalDescription(await pc_out.createOffer())
        offer = pc_out.localDescription.sdp
        r["localCandidates"] = candidates_of(offer)
        if opts.sdp:
            r["whepOffer"] = offer
        stage = "whep post"
        whep_delete, answer = await post(whep_url, offer, "whep", opts.post_status_only)
        r["timings"]["whepAnswered"] = ms()
        if opts.post_status_only:
            return  # the finally deletes whatever was created
        r["answerSdp"] = answer[:ANSWER_SDP_MAX]
        r["remoteCandidates"] = candidates_of(answer)
        r["answerMids"] = [
            line[len("a=mid:") :] for line in answer.splitlines() if line.startswith("a=mid:")
        ]
        if opts.sdp:
            r["whepAnswer"] = answer
        stage = "whep setRemoteDescription"
        await pc_out.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        described = remote_msids(pc_out, answer)
        r["msids"] = [d["streamId"] for d in described]
        for entry in r["tracks"]:
            for d in described:
                if d["track"].id == entry["id"] and d["kind"] == entry["kind"]:
                    entry["mid"] = d["mid"]
                    entry["streamId"] = d["streamId"]
                    entry["msidTrackId"] = d["trackId"]
        stage = "whep connect"
        await wait(whep_connected, 10, "WHEP connectionState connected")
        r["whepConnected"] = True

        # 3. Receive.
        stage = "receive"
        anchor = at.get("whepConnected", time.monotonic())
        try:
            await asyncio.sleep(max(0.0, anchor + opts.seconds - time.monotonic()))
        finally:
            r["timeline"] = build_timeline(events, anchor, opts.seconds)
        r["timings"]["receiveEnd"] = ms()
        for pc, name in ((pc_in, "WHIP"), (pc_out, "WHEP")):
            if pc is not None and pc.connectionState != "connected":
                raise RuntimeError(f"{name} connectionState {pc.connectionState} after receiving")
    except Exception as e:
        r["error"] = str(e) or type(e).__name__
        r["stage"] = stage
    finally:
        if "whepConnected" in at and not r.get("timeline"):
            r["timeline"] = build_timeline(events, at["whepConnected"], opts.seconds)
        for key, url in (("whepDeleteStatus", whep_delete), ("whipDeleteStatus", whip_delete)):
            if url:
                try:
                    status, _, _ = await asyncio.to_thread(http, "DELETE", url, dict(auth))
                    r[key] = status
                except Exception as e:
                    r[key.replace("Status", "Error")] = str(e)
        r["timings"]["deleteDone"] = ms()
        await pc_out.close()
        if pc_in is not None:
            await pc_in.close()
        for t in readers:
            t.cancel()
        await asyncio.gather(*readers, return_exceptions=True)


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def lines(value: str) -> int:
    n = int(value)
    if not 0 <= n <= 16:
        raise ValueError(value)
    return n


def main() -> int:
    ap = Parser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", required=True)
    ap.add_argument("--space", required=True)
    ap.add_argument("--stream", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--plain", action="store_true",
                    help="plain viewer: WHEP only, no WHIP session or signal channel")
    ap.add_argument("--post-status-only", action="store_true",
                    help="POST the WHEP offer, report status/body/Retry-After, exit 0")
    ap.add_argument("--audio-lines", type=lines, default=1,
                    help="recvonly audio transceivers in the WHEP offer (0-16)")
    ap.add_argument("--video-lines", type=lines, default=1,
                    help="recvonly video transceivers in the WHEP offer (0-16)")
    ap.add_argument("--sdp", action="store_true", help="include offers and answers")
    ap.add_argument("--timeout", type=float, help="overall seconds (default 30 + --seconds)")
    try:
        opts = ap.parse_args()
        if opts.audio_lines + opts.video_lines == 0:
            raise UsageError("the WHEP offer needs at least one m-line")
        if opts.seconds < 0:
            raise UsageError("--seconds must not be negative")
    except UsageError as e:
        print(json.dumps({"error": f"usage: {e}", "stage": "args"}), flush=True)
        return 1
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    r = {
        "mode": "plain" if opts.plain else "lobby",
        "whipStatus": None, "whepStatus": None, "whipLocation": None, "whepLocation": None,
        "connected": False, "dcOpen": False, "whepConnected": False,
        "tracks": [], "frames": {"video": 0, "audio": 0}, "firstFrameMs": {},
        "lastFrameMs": {}, "videoSize": None, "timeline": [], "msids": [],
        "answerMids": [], "answerSdp": None, "signalMessages": [],
        "localCandidates": [], "remoteCandidates": [],
        "whepDeleteStatus": None, "whipDeleteStatus": None, "timings": {},
    }
    if opts.plain:
        for k in WHIP_KEYS:
            del r[k]
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
