#!/usr/bin/python3
"""GStreamer webrtcbin as a third-party WHIP publisher or WHEP viewer, for
Vestibule's integration tests.

    /usr/bin/python3 tests/clients/gst_whip.py --mode publish|play \\
        --base http://127.0.0.1:PORT --space S --stream ID --token JWT \\
        [--seconds 2] [--dtls-cert gstreamer|ecdsa] [--sdp] [--timeout 40]
    /usr/bin/python3 tests/clients/gst_whip.py --check

Debian 12 ships GStreamer 1.22 without whipsink/whepsrc (gst-plugins-rs), so
this drives a bare `webrtcbin` from Python-GI (Debian's python3-gi; run it
with the system /usr/bin/python3, not a venv) and does the WHIP/WHEP HTTP
itself:

- publish: videotestsrc -> H.264 (x264enc, else openh264enc; constrained
  baseline, a keyframe a second) and audiotestsrc -> Opus, both SENDONLY on
  one max-bundle connection, POSTed to .../whip.
- play: a client-offer WHEP viewer: RECVONLY H.264 and Opus transceivers,
  POSTed to .../whep; received pads are depayloaded and decoded (avdec_h264,
  else openh264dec; opusdec) into fakesinks that count decoded frames.

The offer is POSTed once ICE gathering completes (non-trickle); webrtcbin
takes the answer's a=candidate lines from the answer itself. DTLS uses the
certificate webrtcbin generates (GStreamer's dtls elements make a
self-signed RSA-2048 one), or with --dtls-cert ecdsa a P-256 one made by the
`openssl` command. `dtlsCertificate` in the output says which key types the
run and the server used.

webrtcbin 1.22 quirks handled here:
- libnice skips loopback addresses: 127.0.0.1 is added to the ICE agent by
  hand and ICE-TCP is off. Run this next to the server on loopback, ideally
  in a `unshare -n` namespace.
- PyGObject over-releases the agent that the "ice-agent" getter returns, so
  the run keeps a reference to it.
- A PEM of our own must reach each dtlssrtpdec before it goes to READY (it
  hooks its certificate check up then), so it is set on deep-element-added;
  and webrtcbin computes a=fingerprint over every base64 line of that PEM,
  the key's too, so the offer's fingerprint lines are replaced with the
  certificate's real one.

--check prints {"ok": true|false, "missing": [...]} and exits 0 or 1: whether
the Python bindings and every element a run needs are installed.

stdout: exactly one JSON line. Success (exit 0):
  {"mode":..., "status":201, "location":"...", "connected":true,
   "connectionState":..., "iceState":..., "dtlsState":..., "dtlsClient":...,
   "codecs":{"video":"H264/90000","audio":"opus/48000/2"},
   "dtlsCertificate":{"local":"rsa"|"ec", "remote":"rsa"|"ec"},
   "localCandidates":[...], "remoteCandidates":[...],
   "packetsSent":{"video":N,"audio":N},                 (publish; payloader output)
   "receivedPads":["H264","OPUS"], "frames":{"video":N,"audio":N},
   "video":{"width":W,"height":H},                      (play; decoded frames)
   "deleteStatus":200, "timings":{...}}
Failure (exit 1): the same fields as far as they got, plus "error" and
"stage" (and "body" when the POST was not 201). "busErrors" has the
pipeline's error messages; stderr has GStreamer's ERROR log lines (GST_DEBUG
defaults to *:1), such as OpenSSL's reason for a failed DTLS handshake. A run
that got a Location DELETEs it even when it fails, also on the overall
--timeout (default 30 + --seconds). timings are ms since the process started.
"""

import argparse
import json
import sys
import threading
import time

T0 = time.monotonic()
import base64  # noqa: E402
import hashlib  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import urllib.error  # noqa: E402
import urllib.parse  # noqa: E402
import urllib.request  # noqa: E402

STAGES_TIMEOUT = 10.0  # seconds for gathering, connecting
VIDEO_PT, AUDIO_PT = 102, 111
VIDEO_CAPS = (
    f"application/x-rtp,media=video,encoding-name=H264,payload={VIDEO_PT},"
    "clock-rate=90000,packetization-mode=(string)1,profile-level-id=(string)42e01f"
)
AUDIO_CAPS = (
    f"application/x-rtp,media=audio,encoding-name=OPUS,payload={AUDIO_PT},"
    "clock-rate=48000,encoding-params=(string)2"
)


def since() -> int:
    return round((time.monotonic() - T0) * 1000)


def load_gst():
    """Imports the bindings; raises ImportError/ValueError when missing."""
    # GStreamer's ERROR-level log lines (stderr) carry the reasons that bus
    # messages lack, such as OpenSSL's for a failed DTLS handshake.
    os.environ.setdefault("GST_DEBUG", "*:1")
    os.environ.setdefault("GST_DEBUG_NO_COLOR", "1")
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstWebRTC", "1.0")
    gi.require_version("GstSdp", "1.0")
    from gi.repository import Gst, GstSdp, GstWebRTC

    Gst.init(None)
    return Gst, GstSdp, GstWebRTC


def first_element(Gst, names):
    return next((n for n in names if Gst.ElementFactory.find(n) is not None), None)


REQUIRED = [
    ["webrtcbin"], ["nicesrc"], ["dtlssrtpenc"], ["srtpenc"], ["rtpbin"],
    ["videotestsrc"], ["audiotestsrc"], ["videoconvert"], ["audioconvert"],
    ["audioresample"], ["x264enc", "openh264enc"], ["opusenc"], ["rtph264pay"],
    ["rtpopuspay"], ["rtph264depay"], ["rtpopusdepay"],
    ["avdec_h264", "openh264dec"], ["opusdec"], ["fakesink"], ["queue"],
]


def check() -> int:
    try:
        Gst, _, _ = load_gst()
    except (ImportError, ValueError) as e:
        print(json.dumps({"ok": False, "missing": [f"python bindings: {e}"]}), flush=True)
        return 1
    missing = ["|".join(alts) for alts in REQUIRED if first_element(Gst, alts) is None]
    if shutil.which("openssl") is None:
        missing.append("the openssl command (--dtls-cert ecdsa)")
    print(json.dumps({"ok": not missing, "missing": missing,
                      "version": Gst.version_string()}), flush=True)
    return 0 if not missing else 1


def http(method: str, url: str, headers: dict, body: bytes = None, timeout: float = 10.0):
    """Returns (status, headers, body text). Never raises for HTTP statuses."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode("utf-8", "replace")


def candidates_of(sdp: str) -> list:
    """The distinct a=candidate lines of an SDP, parsed."""
    seen = {}
    for line in sdp.splitlines():
        if not line.startswith("a=candidate:"):
            continue
        f = line[len("a=candidate:"):].split()
        c = {"protocol": f[2].lower(), "address": f[4], "port": int(f[5]), "type": f[7]}
        seen[(c["protocol"], c["address"], c["port"], c["type"])] = c
    return list(seen.values())


def codecs_of(sdp: str) -> dict:
    """The first rtpmap of the first audio and video m-line (answer order)."""
    out, kind, pts = {}, None, []
    for line in sdp.splitlines():
        if line.startswith("m="):
            f = line[2:].split()
            kind, pts = f[0], f[3:]
        elif line.startswith("a=rtpmap:") and kind in ("audio", "video") and kind not in out:
            pt, enc = line[len("a=rtpmap:"):].split(" ", 1)
            if pts and pt == pts[0]:
                out[kind] = enc
    return out


def first_der(pem):
    """The DER bytes of the first certificate in a PEM text, or None."""
    if not pem or "-----BEGIN CERTIFICATE-----" not in pem:
        return None
    body = pem.split("-----BEGIN CERTIFICATE-----", 1)[1].split("-----END CERTIFICATE-----", 1)[0]
    try:
        return base64.b64decode("".join(body.split()))
    except ValueError:
        return None


def fingerprint(pem):
    """The SDP form (sha-256, upper-case hex with colons) of a PEM certificate."""
    der = first_der(pem)
    if der is None:
        return None
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def key_type(pem) -> str:
    """The key type of a PEM certificate by its OID: rsa, ec or other."""
    der = first_der(pem)
    if der is None:
        return None
    if bytes.fromhex("06092a864886f70d010101") in der:  # rsaEncryption
        return "rsa"
    if bytes.fromhex("06072a8648ce3d0201") in der:  # id-ecPublicKey
        return "ec"
    return "other"


def ecdsa_pem() -> str:
    """A fresh self-signed P-256 certificate and its key, PEM, by `openssl`."""
    out = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", "-", "-out", "-", "-subj", "/CN=gst-whip", "-days", "2"],
        check=True, capture_output=True, text=True, timeout=20,
    )
    return out.stdout


class Failure(Exception):
    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage = stage


class Run:
    def __init__(self, opts, r: dict):
        self.opts, self.r = opts, r
        self.Gst, self.GstSdp, self.GstWebRTC = load_gst()
        self.pipe = None
        self.webrtc = None
        self.lock = threading.Lock()
        self.negotiation_needed = threading.Event()
        self.gathered = threading.Event()
        self.connected = threading.Event()
        self.failed = None
        self.counts = {"video": 0, "audio": 0}
        self.video_size = None
        self.auth = {"Authorization": f"Bearer {opts.token}"}
        self.endpoint = "{}/space/{}/stream/{}/{}".format(
            opts.base.rstrip("/"),
            urllib.parse.quote(opts.space, safe=""),
            urllib.parse.quote(opts.stream, safe=""),
            "whip" if opts.mode == "publish" else "whep",
        )
        self.delete_url = None

    # --- pipeline -------------------------------------------------------

    def build(self):
        Gst = self.Gst
        if self.opts.mode == "publish":
            enc = first_element(Gst, ["x264enc", "openh264enc"])
            if enc is None:
                raise Failure("pipeline", "no H.264 encoder (x264enc or openh264enc)")
            self.r["encoder"] = enc
            encoder = (
                "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bitrate=600"
                if enc == "x264enc"
                else "openh264enc gop-size=30 bitrate=600000 complexity=low"
            )
            desc = (
                "webrtcbin name=w bundle-policy=max-bundle "
                "videotestsrc is-live=true pattern=ball ! "
                "video/x-raw,width=320,height=240,framerate=30/1 ! videoconvert ! queue ! "
                f"{encoder} ! video/x-h264,profile=constrained-baseline ! "
                f"rtph264pay name=vpay pt={VIDEO_PT} config-interval=-1 "
                "aggregate-mode=zero-latency ! "
                f"application/x-rtp,media=video,encoding-name=H264,payload={VIDEO_PT} ! w. "
                "audiotestsrc is-live=true wave=sine freq=440 ! audioconvert ! audioresample ! "
                "queue ! opusenc ! "
                f"rtpopuspay name=apay pt={AUDIO_PT} ! "
                f"application/x-rtp,media=audio,encoding-name=OPUS,payload={AUDIO_PT} ! w."
            )
            self.pipe = Gst.parse_launch(desc)
            self.webrtc = self.pipe.get_by_name("w")
            for name, kind in (("vpay", "video"), ("apay", "audio")):
                pad = self.pipe.get_by_name(name).get_static_pad("src")
                pad.add_probe(
                    Gst.PadProbeType.BUFFER | Gst.PadProbeType.BUFFER_LIST, self.count_probe, kind
                )
        else:
            self.pipe = Gst.Pipeline.new("play")
            self.webrtc = Gst.ElementFactory.make("webrtcbin", "w")
            self.webrtc.set_property("bundle-policy", "max-bundle")
            self.pipe.add(self.webrtc)
            self.webrtc.connect("pad-added", self.on_pad_added)
        if self.opts.dtls_cert == "ecdsa":
            # dtlsdec connects its certificate check to the connection of
            # the PEM it has on going to READY, so the PEM must be set as
            # soon as webrtcbin adds a dtlssrtpdec, not later.
            self.pem = ecdsa_pem()

            def on_element(_bin, _sub, element):
                factory = element.get_factory()
                if factory is not None and factory.get_name() == "dtlssrtpdec":
                    element.set_property("pem", self.pem)

            self.pipe.connect("deep-element-added", on_element)

        # PyGObject drops a reference it never took on the agent that this
        # getter returns (GStreamer-CRITICAL "ref_count > 0" and a NULL
        # agent later), so keep it referenced for the life of the run.
        self.ice = self.webrtc.get_property("ice-agent")
        self.ice.emit("add-local-ip-address", "127.0.0.1")
        self.ice.set_property("ice-tcp", False)
        self.webrtc.connect("on-negotiation-needed", lambda *_: self.negotiation_needed.set())
        self.webrtc.connect("notify::ice-gathering-state", self.on_gathering)
        self.webrtc.connect("notify::connection-state", self.on_connection_state)
        self.webrtc.connect("notify::ice-connection-state", self.on_ice_state)

        W = self.GstWebRTC
        if self.opts.mode == "publish":
            self.pipe.set_state(Gst.State.READY)
            for i in (0, 1):
                t = self.webrtc.emit("get-transceiver", i)
                t.set_property("direction", W.WebRTCRTPTransceiverDirection.SENDONLY)
        else:
            for caps in (VIDEO_CAPS, AUDIO_CAPS):
                self.webrtc.emit(
                    "add-transceiver",
                    W.WebRTCRTPTransceiverDirection.RECVONLY,
                    Gst.Caps.from_string(caps),
                )
        if self.pipe.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            raise Failure("pipeline", "pipeline refused to go to PLAYING")

    def count_probe(self, pad, info, kind):
        """Counts RTP packets out of a payloader (single buffers and lists)."""
        n = 1
        if info.type & self.Gst.PadProbeType.BUFFER_LIST:
            n = info.get_buffer_list().length()
        with self.lock:
            self.counts[kind] += n
        return self.Gst.PadProbeReturn.OK

    def on_pad_added(self, webrtc, pad):
        """A received RTP pad: depayload, decode and count."""
        Gst = self.Gst
        if pad.get_direction() != Gst.PadDirection.SRC:
            return
        caps = pad.get_current_caps() or pad.query_caps(None)
        s = caps.get_structure(0)
        enc = (s.get_string("encoding-name") or "").upper()
        if enc == "H264":
            kind = "video"
            dec = first_element(Gst, ["avdec_h264", "openh264dec"])
            desc = f"queue ! rtph264depay ! h264parse ! {dec} ! videoconvert ! fakesink name=sink"
            self.r["decoder"] = dec
        elif enc == "OPUS":
            kind = "audio"
            desc = "queue ! rtpopusdepay ! opusdec ! fakesink name=sink"
        else:
            kind = None
            desc = "fakesink"
        self.r["receivedPads"].append(enc or s.get_name())
        bin_ = Gst.parse_bin_from_description(desc, True)
        if kind is not None:
            sink = bin_.get_by_name("sink")
            sink.set_property("signal-handoffs", True)
            sink.set_property("sync", False)
            sink.connect("handoff", self.on_handoff, kind)
        self.pipe.add(bin_)
        bin_.sync_state_with_parent()
        pad.link(bin_.get_static_pad("sink"))

    def on_handoff(self, sink, buf, pad, kind):
        with self.lock:
            self.counts[kind] += 1
            if kind == "video" and self.video_size is None:
                caps = pad.get_current_caps()
                if caps is not None:
                    st = caps.get_structure(0)
                    self.video_size = {
                        "width": st.get_value("width"),
                        "height": st.get_value("height"),
                    }
                    self.r["timings"]["firstFrame"] = since()

    def on_gathering(self, webrtc, _pspec):
        st = webrtc.get_property("ice-gathering-state")
        if st == self.GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            self.r["timings"].setdefault("iceGatheringComplete", since())
            self.gathered.set()

    def on_ice_state(self, webrtc, _pspec):
        st = webrtc.get_property("ice-connection-state")
        self.r["iceState"] = st.value_nick
        if st.value_nick in ("connected", "completed"):
            self.r["timings"].setdefault("iceConnected", since())

    def on_connection_state(self, webrtc, _pspec):
        st = webrtc.get_property("connection-state")
        self.r["connectionState"] = st.value_nick
        if st == self.GstWebRTC.WebRTCPeerConnectionState.CONNECTED:
            self.r["timings"].setdefault("connected", since())
            self.connected.set()
        elif st == self.GstWebRTC.WebRTCPeerConnectionState.FAILED:
            self.failed = "connectionState failed"
            self.connected.set()

    # --- helpers --------------------------------------------------------

    def bus_error(self):
        """The first ERROR message on the bus, as text, or None."""
        bus = self.pipe.get_bus()
        while True:
            msg = bus.pop_filtered(self.Gst.MessageType.ERROR | self.Gst.MessageType.WARNING)
            if msg is None:
                return None
            if msg.type == self.Gst.MessageType.ERROR:
                err, dbg = msg.parse_error()
                text = f"{msg.src.get_name()}: {err.message} ({dbg})"
                self.r["busErrors"].append(text)
                return text
            warn, dbg = msg.parse_warning()
            self.r["warnings"].append(f"{msg.src.get_name()}: {warn.message}")

    def wait(self, event: threading.Event, stage: str, what: str):
        deadline = time.monotonic() + STAGES_TIMEOUT
        while not event.wait(0.05):
            err = self.bus_error()
            if err:
                raise Failure(stage, err)
            if time.monotonic() > deadline:
                raise Failure(stage, f"{what} timed out after {round(STAGES_TIMEOUT * 1000)} ms")

    def promise(self, signal: str, *args):
        p = self.Gst.Promise.new()
        self.webrtc.emit(signal, *args, p)
        if p.wait() != self.Gst.PromiseResult.REPLIED:
            raise RuntimeError(f"{signal}: no reply")
        return p.get_reply()

    def dtls_transport(self):
        t = self.webrtc.emit("get-transceiver", 0)
        return t.get_property("sender").get_property("transport") if t else None

    # --- the run --------------------------------------------------------

    def run(self):
        r, Gst, W, GstSdp = self.r, self.Gst, self.GstWebRTC, self.GstSdp
        stage = "pipeline"
        try:
            self.build()

            stage = "offer"
            self.wait(self.negotiation_needed, stage, "on-negotiation-needed")
            reply = self.promise("create-offer", None)
            offer = reply.get_value("offer") if reply is not None else None
            if offer is None:
                err = None
                if reply is not None and reply.has_field("error"):
                    err = reply.get_value("error")
                raise RuntimeError(f"create-offer failed: {err.message if err else 'no offer'}")
            self.promise("set-local-description", offer)
            self.wait(self.gathered, stage, "ICE gathering")
            sdp = self.webrtc.get_property("local-description").sdp.as_text()
            r["localCandidates"] = candidates_of(sdp)
            if self.opts.dtls_cert == "ecdsa":
                # webrtcbin 1.22 hashes every base64 line of the PEM, the
                # private key's too, so its a=fingerprint is wrong for a PEM
                # that carries a key: put the certificate's own in its place.
                good = f"a=fingerprint:sha-256 {fingerprint(self.pem)}"
                sdp = "\r\n".join(
                    good if l.startswith("a=fingerprint:") else l for l in sdp.split("\r\n")
                )
            if self.opts.sdp:
                r["offer"] = sdp

            stage = "post"
            status, headers, body = http(
                "POST", self.endpoint, {**self.auth, "Content-Type": "application/sdp"},
                sdp.encode(),
            )
            r["timings"]["answerReceived"] = since()
            r["status"] = status
            r["location"] = headers.get("Location")
            if r["location"]:
                self.delete_url = urllib.parse.urljoin(self.endpoint, r["location"])
            if status != 201:
                r["body"] = body[:4000]
                raise RuntimeError(f"POST answered {status}")
            if self.opts.sdp:
                r["answer"] = body
            r["codecs"] = codecs_of(body)
            r["remoteCandidates"] = candidates_of(body)

            stage = "setRemoteDescription"
            res, msg = GstSdp.SDPMessage.new_from_text(body)
            if res != GstSdp.SDPResult.OK:
                raise RuntimeError(f"answer SDP does not parse: {res.value_nick}")
            answer = W.WebRTCSessionDescription.new(W.WebRTCSDPType.ANSWER, msg)
            reply = self.promise("set-remote-description", answer)
            if reply is not None and reply.has_field("error"):
                raise RuntimeError(f"set-remote-description: {reply.get_value('error').message}")
            # webrtcbin takes the answer's a=candidate lines from the remote
            # description itself (verified: the ICE-lite server never sends
            # checks, so nothing else could connect), so none are added.

            stage = "connect"
            self.wait(self.connected, stage, "connection-state connected")
            if self.failed:
                raise RuntimeError(self.failed)
            r["connected"] = True

            stage = "hold"
            end = time.monotonic() + self.opts.seconds
            while time.monotonic() < end:
                err = self.bus_error()
                if err:
                    raise RuntimeError(err)
                if self.failed:
                    raise RuntimeError(self.failed)
                time.sleep(0.05)
            r["timings"]["holdEnd"] = since()
            state = self.webrtc.get_property("connection-state")
            if state != W.WebRTCPeerConnectionState.CONNECTED:
                raise RuntimeError(f"connection-state {state.value_nick} after hold")
        except Failure as e:
            r["error"], r["stage"] = str(e), e.stage
        except Exception as e:
            r["error"], r["stage"] = str(e) or type(e).__name__, stage
        finally:
            if self.webrtc is not None:
                self.bus_error()  # collects what came in after a failure
                dtls = self.dtls_transport()
                if dtls is not None:
                    r["dtlsState"] = dtls.get_property("state").value_nick
                    r["dtlsClient"] = dtls.get_property("client")
                    r["dtlsCertificate"] = {
                        "local": key_type(dtls.get_property("certificate")),
                        "remote": key_type(dtls.get_property("remote-certificate")),
                    }
            if self.delete_url:
                try:
                    status, _, _ = http("DELETE", self.delete_url, dict(self.auth))
                    r["deleteStatus"] = status
                    r["timings"]["deleteDone"] = since()
                except Exception as e:
                    r["deleteError"] = str(e)
            if self.pipe is not None:
                self.pipe.set_state(Gst.State.NULL)
            # Counted last: the pipeline ran until the DELETE, and the server
            # counts what arrived until then.
            with self.lock:
                counts = dict(self.counts)
                size = self.video_size
            if self.opts.mode == "publish":
                r["packetsSent"] = counts
            else:
                r["frames"] = counts
                r["video"] = size


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def main() -> int:
    ap = Parser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="report what is missing and exit")
    ap.add_argument("--mode", choices=["publish", "play"])
    ap.add_argument("--base")
    ap.add_argument("--space")
    ap.add_argument("--stream")
    ap.add_argument("--token")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--dtls-cert", choices=["gstreamer", "ecdsa"], default="gstreamer",
                    help="webrtcbin's own RSA certificate (default) or a P-256 one")
    ap.add_argument("--sdp", action="store_true", help="include offer and answer SDP")
    ap.add_argument("--timeout", type=float, help="overall seconds (default 30 + --seconds)")
    try:
        opts = ap.parse_args()
        if opts.check:
            return check()
        for name in ("mode", "base", "space", "stream", "token"):
            if getattr(opts, name) is None:
                raise UsageError(f"--{name} is required")
    except UsageError as e:
        print(json.dumps({"error": f"usage: {e}", "stage": "args"}), flush=True)
        return 1

    r = {
        "mode": opts.mode, "status": None, "location": None, "connected": False,
        "connectionState": None, "iceState": None, "dtlsState": None, "dtlsClient": None,
        "codecs": None, "dtlsCertificate": None, "localCandidates": [],
        "remoteCandidates": [], "receivedPads": [], "warnings": [], "busErrors": [],
        "deleteStatus": None, "timings": {},
    }
    try:
        run = Run(opts, r)
    except (ImportError, ValueError) as e:
        print(json.dumps({"error": f"GStreamer bindings: {e}", "stage": "import", **r}), flush=True)
        return 1
    timeout = opts.timeout if opts.timeout else 30 + opts.seconds
    worker = threading.Thread(target=run.run, daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        r["error"] = f"overall timeout after {round(timeout * 1000)} ms"
        r["stage"] = "timeout"
        if run.delete_url and r["deleteStatus"] is None:
            try:
                r["deleteStatus"], _, _ = http("DELETE", run.delete_url, dict(run.auth))
            except Exception as e:
                r["deleteError"] = str(e)
    r["timings"]["total"] = since()
    out = dict(r)
    if "error" in out:
        err = out.pop("error")
        print(json.dumps({"error": err, **out}), flush=True)
        return 1
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
