#!/usr/bin/env python3
"""aiortc joins a Vestibule lobby as a receive-only user and counts frames.

    python aiortc_whep_viewer.py --base http://127.0.0.1:PORT --space S \\
        --stream ID --token JWT [--seconds 5] [--sdp] [--timeout 40]

1. WHIP: one RTCPeerConnection with only a `signal` data channel (no media
   at all: the offer has a single m=application section), POSTed to
   `.../whip` with the Bearer token; wait for `connected` and the channel.
2. WHEP, client-offer mode: a second RTCPeerConnection (max-bundle) with one
   recvonly audio and one recvonly video transceiver, its complete offer
   POSTed to `.../whep` with the Bearer token; 201 with the SDP answer.
3. Every remote track is read with `track.recv()` for --seconds (counted from
   the WHEP connection being connected): decoded video frames and audio
   frames are counted per kind, with the first frame's time and the last
   video frame's size.
4. DELETE the WHEP Location, then the WHIP Location (always, also after a
   failure).

Offers the server may send on the signal channel are recorded, not answered
(a client-offer WHEP connection gets the tracks present at POST time).

The loopback patch of aiortc_whip.py (aioice never offers 127.0.0.1) is
applied by importing it; run next to the server on loopback, ideally in a
`unshare -n` namespace.

stdout: exactly one JSON line. Success (exit 0):
  {"whipStatus":201,"whepStatus":201,"whipLocation":"...","whepLocation":"...",
   "connected":true,"dcOpen":true,"whepConnected":true,
   "tracks":[{"kind","id"}...],"frames":{"video":N,"audio":N},
   "firstFrameMs":{"video":ms,"audio":ms},"videoSize":[w,h],
   "answerMids":[...],"signalMessages":[...],
   "whepDeleteStatus":200,"whipDeleteStatus":200,"timings":{...}}
Failure (exit 1): the same as far as it got, plus "error" and "stage" (and
"body" when a POST was not 201). timings: total is ms since the process
started; the others are ms since the run started.
"""

import argparse
import asyncio
import json
import logging
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


def since() -> int:
    return round((time.monotonic() - T0) * 1000)


def state_future(loop, pc, r, key, ms):
    """A future set when `pc` connects, failed when it fails or closes."""
    fut = loop.create_future()
    fut.add_done_callback(lambda f: f.cancelled() or f.exception())

    @pc.on("connectionstatechange")
    def on_state():
        st = pc.connectionState
        if st == "connected" and not fut.done():
            r["timings"][key] = ms()
            fut.set_result(None)
        elif st in ("failed", "closed") and not fut.done():
            fut.set_exception(RuntimeError(f"{key}: connectionState {st}"))

    return fut


async def wait(fut, seconds, what):
    try:
        await asyncio.wait_for(asyncio.shield(fut), seconds)
    except asyncio.TimeoutError:
        raise RuntimeError(f"{what} timed out after {seconds * 1000:.0f} ms") from None


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
    pc_in, pc_out = RTCPeerConnection(config), RTCPeerConnection(config)
    whip_delete = whep_delete = None
    readers = []
    start = time.monotonic()
    stage = "whip offer"

    def ms() -> int:
        return round((time.monotonic() - start) * 1000)

    async def post(url, sdp, prefix):
        status, headers, body = await asyncio.to_thread(
            http, "POST", url, {**auth, "Content-Type": "application/sdp"}, sdp.encode()
        )
        r[f"{prefix}Status"] = status
        r[f"{prefix}Location"] = headers.get("Location")
        location = headers.get("Location")
        if status != 201:
            r["body"] = body[:4000]
            raise RuntimeError(f"POST {prefix} answered {status}")
        return urllib.parse.urljoin(url, location) if location else None, body

    try:
        # 1. WHIP with only the signal channel.
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
        whep_connected = state_future(loop, pc_out, r, "whepConnected", ms)
        frames = r["frames"]
        first = r["firstFrameMs"]

        async def read(track):
            kind = track.kind
            while True:
                try:
                    frame = await track.recv()
                except MediaStreamError:
                    return
                frames[kind] += 1
                if kind not in first:
                    first[kind] = ms()
                if kind == "video":
                    r["videoSize"] = [frame.width, frame.height]

        @pc_out.on("track")
        def on_track(track):
            r["tracks"].append({"kind": track.kind, "id": track.id})
            readers.append(asyncio.ensure_future(read(track)))

        pc_out.addTransceiver("audio", direction="recvonly")
        pc_out.addTransceiver("video", direction="recvonly")
        await pc_out.setLocalDescription(await pc_out.createOffer())
        offer = pc_out.localDescription.sdp
        r["localCandidates"] = candidates_of(offer)
        if opts.sdp:
            r["whepOffer"] = offer
        stage = "whep post"
        whep_delete, answer = await post(whep_url, offer, "whep")
        r["timings"]["whepAnswered"] = ms()
        r["remoteCandidates"] = candidates_of(answer)
        r["answerMids"] = [
            line[len("a=mid:") :] for line in answer.splitlines() if line.startswith("a=mid:")
        ]
        if opts.sdp:
            r["whepAnswer"] = answer
        stage = "whep setRemoteDescription"
        await pc_out.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        stage = "whep connect"
        await wait(whep_connected, 10, "WHEP connectionState connected")
        r["whepConnected"] = True

        # 3. Receive.
        stage = "receive"
        await asyncio.sleep(opts.seconds)
        r["timings"]["receiveEnd"] = ms()
        for pc, name in ((pc_in, "WHIP"), (pc_out, "WHEP")):
            if pc.connectionState != "connected":
                raise RuntimeError(f"{name} connectionState {pc.connectionState} after receiving")
    except Exception as e:
        r["error"] = str(e) or type(e).__name__
        r["stage"] = stage
    finally:
        for key, url in (("whepDeleteStatus", whep_delete), ("whipDeleteStatus", whip_delete)):
            if url:
                try:
                    status, _, _ = await asyncio.to_thread(http, "DELETE", url, dict(auth))
                    r[key] = status
                except Exception as e:
                    r[key.replace("Status", "Error")] = str(e)
        r["timings"]["deleteDone"] = ms()
        await pc_out.close()
        await pc_in.close()
        for t in readers:
            t.cancel()
        await asyncio.gather(*readers, return_exceptions=True)


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
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--sdp", action="store_true", help="include offers and answers")
    ap.add_argument("--timeout", type=float, help="overall seconds (default 30 + --seconds)")
    try:
        opts = ap.parse_args()
    except UsageError as e:
        print(json.dumps({"error": f"usage: {e}", "stage": "args"}), flush=True)
        return 1
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    r = {
        "whipStatus": None, "whepStatus": None, "whipLocation": None, "whepLocation": None,
        "connected": False, "dcOpen": False, "whepConnected": False,
        "tracks": [], "frames": {"video": 0, "audio": 0}, "firstFrameMs": {},
        "videoSize": None, "answerMids": [], "signalMessages": [],
        "localCandidates": [], "remoteCandidates": [],
        "whepDeleteStatus": None, "whipDeleteStatus": None, "timings": {},
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
