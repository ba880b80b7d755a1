import hashlib, hmac, json, os, struct, zlib
root = os.path.join(os.path.dirname(os.path.abspath(__file__)))
for t in ("sdp_offer", "signal", "demux"):
    os.makedirs(f"{root}/{t}", exist_ok=True)
def w(t, name, data):
    if isinstance(data, str): data = data.encode()
    open(f"{root}/{t}/{name}", "wb").write(data)

FP = ("sha-256 6B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:"
      "DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08")
def transport(cand=True):
    return ("c=IN IP4 0.0.0.0\r\n"
            + ("a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host generation 0\r\n" if cand else "")
            + "a=ice-ufrag:Ab1C\r\na=ice-pwd:0123456789abcdefghijklmn\r\n"
              "a=ice-options:trickle\r\n" f"a=fingerprint:{FP}\r\na=setup:actpass\r\n")
chrome = ("v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\n"
  "i=a session description stays\r\nt=0 0\r\na=group:BUNDLE 0 1 2\r\n"
  "a=extmap-allow-mixed\r\na=msid-semantic: WMS stream\r\n"
  "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\ni=2 1 mic\r\n" + transport() +
  "a=mid:0\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n"
  "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n"
  "a=sendonly\r\na=msid:stream audio0\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n"
  "a=rtcp-fb:111 transport-cc\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n"
  "a=ssrc:1001 cname:vestibuletest\r\na=ssrc:1001 msid:stream audio0\r\n"
  "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103\r\ni=2 2 camera\r\n" + transport() +
  "a=mid:1\r\na=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n"
  "a=sendonly\r\na=msid:stream video0\r\na=rtcp-mux\r\na=rtcp-rsize\r\n"
  "a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 goog-remb\r\na=rtcp-fb:96 transport-cc\r\n"
  "a=rtcp-fb:96 ccm fir\r\na=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\n"
  "a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n"
  "a=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n"
  "a=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\n"
  "a=ssrc-group:FID 2001 2002\r\na=ssrc:2001 cname:vestibuletest\r\n"
  "a=ssrc:2001 msid:stream video0\r\na=ssrc:2002 cname:vestibuletest\r\na=ssrc:2002 msid:stream video0\r\n"
  "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n" + transport() +
  "a=mid:2\r\na=sctp-port:5000\r\na=max-message-size:262144\r\n")
w("sdp_offer", "chrome_whip_offer_with_i_lines.sdp", chrome)
# LF endings, the attribute form of the purpose, no candidates (trickle client).
lf = ("v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nt=0 0\na=group:BUNDLE a v\n"
  "m=audio 9 UDP/TLS/RTP/SAVPF 111\n" + transport(False).replace("\r\n", "\n") +
  "a=mid:a\na=x-vestibule-purpose:main\ni=1 1 x\na=sendonly\na=rtcp-mux\na=rtpmap:111 opus/48000/2\n"
  "m=video 9 UDP/TLS/RTP/SAVPF 96\ni=Camera 1\n" + transport(False).replace("\r\n", "\n") +
  "a=mid:v\na=sendonly\na=rtcp-mux\na=rtpmap:96 VP8/90000\n")
w("sdp_offer", "lf_purpose_attribute_trickle.sdp", lf)
# A server-style answer/offer: recvonly, a rejected section, end-of-candidates.
ans = ("v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=ice-lite\r\na=group:BUNDLE 0 1\r\n"
  "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" + transport() + "a=mid:0\r\na=recvonly\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=end-of-candidates\r\n"
  "m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=inactive\r\na=rtpmap:96 VP8/90000\r\n"
  "m=video 9 UDP/TLS/RTP/SAVPF 98\r\n" + transport(False) + "a=mid:2\r\na=sendrecv\r\na=rtcp-mux\r\na=rtpmap:98 VP9/90000\r\na=fmtp:98 profile-id=0\r\n")
w("sdp_offer", "answer_recvonly_rejected_section.sdp", ans)

# Signal channel messages (API.md "Signal channel").
msgs = {
  "offer_object_sdp.json": {"id": 7, "type": 1, "data": {"number": 3, "sdp": {"type": "offer", "sdp": chrome}}},
  "server_offer_whep.json": {"id": 1, "type": 1, "data": {"number": 1, "sdp": {"type": "offer", "sdp": ans}, "whep": "whep-3f2a"}},
  "answer_bare_string.json": {"id": 1, "type": 2, "data": {"number": 1, "sdp": lf}},
  "mute.json": {"id": 4, "type": 3, "data": {"mid": "1", "mute": True}},
  "mute_string_type_no_id.json": {"type": "3", "data": {"mid": "a", "mute": False, "extra": [1, 2, {"x": None}]}},
  "answer_string_number_escapes.json": {"id": "12", "type": "2", "data": {"number": "2", "sdp": {"type": "offer", "sdp": "v=0\r\ns=\u00e9\u0001\ud83e\udd80\r\n"}}},
}
for name, m in msgs.items():
    w("signal", name, json.dumps(m, ensure_ascii=(name.startswith("answer_string"))))
w("signal", "bad_type.json", '{"id":1,"type":9,"data":{}}')

# STUN binding request, USERNAME "vest:Ab1C", PRIORITY, ICE-CONTROLLING,
# USE-CANDIDATE, MESSAGE-INTEGRITY (key = local ice-pwd) and FINGERPRINT.
def attr(t, v):
    pad = (4 - len(v) % 4) % 4
    return struct.pack("!HH", t, len(v)) + v + b"\0" * pad
tid = bytes(range(1, 13))
attrs = (attr(0x0006, b"vest:Ab1C") + attr(0x0024, struct.pack("!I", 1853817087))
         + attr(0x802A, bytes(8)) + attr(0x0025, b""))
def header(length): return struct.pack("!HHI", 0x0001, length, 0x2112A442) + tid
key = b"localpasswordlocalpassword"
mi_len = len(attrs) + 24
mac = hmac.new(key, header(mi_len) + attrs, hashlib.sha1).digest()
attrs += attr(0x0008, mac)
fp_len = len(attrs) + 8
crc = (zlib.crc32(header(fp_len) + attrs) ^ 0x5354554E) & 0xffffffff
attrs += attr(0x8028, struct.pack("!I", crc))
w("demux", "stun_binding_request.bin", header(len(attrs)) + attrs)
# STUN binding success response with XOR-MAPPED-ADDRESS.
xma = struct.pack("!BBH", 0, 1, 5000 ^ 0x2112) + bytes(a ^ b for a, b in zip(bytes([127,0,0,1]), struct.pack("!I", 0x2112A442)))
rattrs = attr(0x0020, xma)
rmac = hmac.new(b"remotepassword", struct.pack("!HHI", 0x0101, len(rattrs) + 24, 0x2112A442) + tid + rattrs, hashlib.sha1).digest()
rattrs += attr(0x0008, rmac)
resp = struct.pack("!HHI", 0x0101, len(rattrs), 0x2112A442) + tid + rattrs
w("demux", "stun_binding_success.bin", resp)
# RTP: V=2, X=1 (one-byte header ext, audio level), PT 111, opus payload.
ext = struct.pack("!HH", 0xBEDE, 1) + bytes([0x10, 0x7f, 0, 0])
rtp = struct.pack("!BBHII", 0x90, 111, 4242, 960 * 7, 1001) + ext + bytes(40)
w("demux", "rtp_opus.bin", rtp)
# RTCP compound: receiver report + PLI.
rr = struct.pack("!BBHI", 0x81, 201, 7, 1) + struct.pack("!IIIIII", 1001, 0, 4242, 0, 0, 0)
pli = struct.pack("!BBHII", 0x81, 206, 2, 1, 2001)
w("demux", "rtcp_rr_pli.bin", rr + pli)
# DTLS 1.2 record header of a ClientHello (content type 22).
w("demux", "dtls_client_hello_prefix.bin", bytes([22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]))
