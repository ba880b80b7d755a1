//! Standards interop: SDP offers written from the public source of real
//! WHIP clients (`tests/fixtures/sdp/`, see its README for the source
//! lines) posted to the real binary, and the lobby endpoint status table
//! of API.md that the other suites do not cover yet.
//!
//! What the clients need from the answer is read from their code too:
//! FFmpeg's WHIP muxer takes the first `a=ice-ufrag`, `a=ice-pwd` and the
//! first UDP host candidate (`parse_answer`), libdatachannel (OBS) throws on
//! an answer with `a=setup:actpass`.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::{Server, ServerSpec, metric};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

const WHIP: &str = "/space/demo/stream/demo/whip";
const WHEP: &str = "/space/demo/stream/demo/whep";
const OBS: &str = "obs-30-h264-opus.sdp";
const FFMPEG: &str = "ffmpeg-8-whip.sdp";
const FFMPEG_RTX: &str = "ffmpeg-whip-rtx-dtls-active.sdp";

/// A fixture's bytes, unchanged (CRLF line ends as the clients send them).
fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sdp")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What each fixture offers and what its client needs back.
struct Expect {
    fixture: &'static str,
    opus_pt: &'static str,
    h264_pt: &'static str,
    rtx_pt: Option<&'static str>,
    /// The answer's `a=setup` for the offer's role (RFC 5763).
    answer_setup: &'static str,
}

const CLIENTS: [Expect; 3] = [
    Expect {
        fixture: OBS,
        opus_pt: "111",
        h264_pt: "96",
        rtx_pt: None,
        answer_setup: "passive",
    },
    Expect {
        fixture: FFMPEG,
        opus_pt: "111",
        h264_pt: "106",
        rtx_pt: None,
        answer_setup: "active",
    },
    Expect {
        fixture: FFMPEG_RTX,
        opus_pt: "111",
        h264_pt: "106",
        rtx_pt: Some("105"),
        answer_setup: "passive",
    },
];

/// One media section: the `m=` line split up and the lines after it.
#[derive(Debug)]
struct Section {
    kind: String,
    port: String,
    fmts: Vec<String>,
    lines: Vec<String>,
}

impl Section {
    /// Values of `a=<name>:...` lines.
    fn attrs(&self, name: &str) -> Vec<&str> {
        let prefix = format!("a={name}:");
        self.lines
            .iter()
            .filter_map(|l| l.strip_prefix(prefix.as_str()))
            .collect()
    }

    /// `a=rtpmap:<pt> <value>` -> value.
    fn rtpmap(&self, pt: &str) -> Option<&str> {
        self.attrs("rtpmap")
            .into_iter()
            .find_map(|v| v.strip_prefix(pt)?.strip_prefix(' '))
    }

    /// `a=fmtp:<pt> <value>` -> value.
    fn fmtp(&self, pt: &str) -> Option<&str> {
        self.attrs("fmtp")
            .into_iter()
            .find_map(|v| v.strip_prefix(pt)?.strip_prefix(' '))
    }

    fn has(&self, line: &str) -> bool {
        self.lines.iter().any(|l| l == line)
    }
}

/// An SDP split into session lines and media sections.
#[derive(Debug)]
struct Sdp {
    session: Vec<String>,
    sections: Vec<Section>,
}

fn parse(sdp: &str) -> Sdp {
    let mut session = Vec::new();
    let mut sections: Vec<Section> = Vec::new();
    for line in sdp.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(m) = line.strip_prefix("m=") {
            let mut parts = m.split_whitespace().map(str::to_string);
            sections.push(Section {
                kind: parts.next().unwrap_or_default(),
                port: parts.next().unwrap_or_default(),
                fmts: parts.skip(1).collect(),
                lines: Vec::new(),
            });
        } else if let Some(section) = sections.last_mut() {
            section.lines.push(line.to_string());
        } else {
            session.push(line.to_string());
        }
    }
    Sdp { session, sections }
}

/// `key=value` out of an `a=fmtp` parameter list.
fn fmtp_param<'a>(fmtp: &'a str, key: &str) -> Option<&'a str> {
    fmtp.split(';')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

/// The first UDP host candidate read the way FFmpeg 8's `parse_answer`
/// does: from the first `udp` in an `a=candidate:` line that also says
/// `host`, `sscanf("%16s %d %128s %d typ host")`.
fn ffmpeg_candidate(answer: &str) -> Option<(String, u16)> {
    let line = answer
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("a=candidate:"))
        .find(|l| l.to_ascii_lowercase().contains("udp") && l.contains("host"))?;
    let at = line.to_ascii_lowercase().find("udp")?;
    let fields: Vec<&str> = line[at..].split_whitespace().collect();
    match fields.as_slice() {
        [proto, prio, host, port, "typ", "host", ..]
            if proto.eq_ignore_ascii_case("udp") && prio.parse::<i32>().is_ok() =>
        {
            Some((host.to_string(), port.parse().ok()?))
        }
        _ => None,
    }
}

async fn post_offer(server: &Server, user: &str, offer: String) -> reqwest::Response {
    reqwest::Client::new()
        .post(server.url(WHIP))
        .bearer_auth(server.token(user))
        .header("Content-Type", "application/sdp")
        .body(offer)
        .send()
        .await
        .expect("post")
}

fn location(headers: &HeaderMap) -> String {
    headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("Location")
        .to_string()
}

/// Posts `expect.fixture`, checks everything its client needs from the
/// answer (except the profile-level-id: see its own test), then DELETEs the
/// resource with the Bearer token.
async fn fixture_is_answered(expect: &Expect) {
    let server = Server::start(ServerSpec::default()).await;
    let offer = fixture(expect.fixture);
    let r = post_offer(&server, "dev", offer.clone()).await;
    let name = expect.fixture;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{name}: {:?}",
        r.text().await
    );
    assert!(
        r.headers()["content-type"]
            .to_str()
            .is_ok_and(|t| t.starts_with("application/sdp")),
        "{name}"
    );
    let resource = location(r.headers());
    let answer = r.text().await.expect("answer");
    let sdp = parse(&answer);
    let offered = parse(&offer);

    assert!(
        sdp.session.iter().any(|l| l == "a=ice-lite"),
        "{name}: ice-lite\n{answer}"
    );
    assert!(
        sdp.session
            .iter()
            .any(|l| l.starts_with("a=msid-semantic:")),
        "{name}: msid-semantic\n{answer}"
    );
    assert!(
        !sdp.sections.iter().any(|s| s.kind == "application"),
        "{name}: no data channel was offered, none answered\n{answer}"
    );
    let kinds: Vec<&str> = sdp.sections.iter().map(|s| s.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["audio", "video"],
        "{name}: one of each, in offer order"
    );
    for (section, offered) in sdp.sections.iter().zip(&offered.sections) {
        let kind = &section.kind;
        assert_ne!(section.port, "0", "{name}: {kind} accepted\n{answer}");
        assert_eq!(
            section.attrs("mid"),
            offered.attrs("mid"),
            "{name}: {kind} mid"
        );
        assert_eq!(
            section.attrs("setup"),
            [expect.answer_setup],
            "{name}: {kind} DTLS role for the offer's a=setup:{:?}",
            offered.attrs("setup")
        );
        assert!(section.has("a=recvonly"), "{name}: {kind} recvonly");
        assert_eq!(section.attrs("ice-ufrag").len(), 1, "{name}: {kind} ufrag");
        assert_eq!(section.attrs("ice-pwd").len(), 1, "{name}: {kind} pwd");
        assert!(
            section
                .attrs("fingerprint")
                .iter()
                .any(|f| f.starts_with("sha-256 ")),
            "{name}: {kind} sha-256 fingerprint"
        );
        assert!(
            section.has("a=end-of-candidates"),
            "{name}: {kind} end-of-candidates\n{answer}"
        );
        let candidates = section.attrs("candidate");
        assert!(
            candidates
                .iter()
                .all(|c| c.to_ascii_lowercase().contains(" udp ") && c.contains(" typ host")),
            "{name}: {kind} UDP host candidates only: {candidates:?}"
        );
        assert!(
            candidates.iter().any(|c| c.contains(" 127.0.0.1 ")),
            "{name}: {kind} a candidate on 127.0.0.1: {candidates:?}"
        );
    }

    let audio = &sdp.sections[0];
    assert_eq!(
        audio.fmts.first().map(String::as_str),
        Some(expect.opus_pt),
        "{name}: Opus answered on the offered payload type\n{answer}"
    );
    assert_eq!(audio.rtpmap(expect.opus_pt), Some("opus/48000/2"), "{name}");

    let video = &sdp.sections[1];
    assert_eq!(
        video.fmts.first().map(String::as_str),
        Some(expect.h264_pt),
        "{name}: H264 answered on the offered payload type\n{answer}"
    );
    assert_eq!(video.rtpmap(expect.h264_pt), Some("H264/90000"), "{name}");
    let fmtp = video.fmtp(expect.h264_pt).unwrap_or_default();
    assert_eq!(
        fmtp_param(fmtp, "packetization-mode"),
        Some("1"),
        "{name}: {fmtp}"
    );
    if let Some(rtx) = expect.rtx_pt {
        assert!(video.fmts.iter().any(|f| f == rtx), "{name}: RTX kept");
        assert_eq!(video.rtpmap(rtx), Some("rtx/90000"), "{name}");
        assert_eq!(
            video.fmtp(rtx),
            Some(format!("apt={}", expect.h264_pt).as_str()),
            "{name}"
        );
    }

    // FFmpeg connects to the one candidate its parser picks: it must be
    // one the server listens on.
    let (host, port) = ffmpeg_candidate(&answer)
        .unwrap_or_else(|| panic!("{name}: FFmpeg finds no UDP host candidate\n{answer}"));
    assert!(
        audio
            .attrs("candidate")
            .iter()
            .any(|c| c.contains(&format!(" {host} {port} typ host"))),
        "{name}: FFmpeg's pick {host}:{port} is an answered candidate"
    );

    let deleted = reqwest::Client::new()
        .delete(server.url(&resource))
        .bearer_auth(server.token("dev"))
        .send()
        .await
        .expect("delete");
    assert_eq!(
        deleted.status(),
        StatusCode::OK,
        "{name}: DELETE of the resource"
    );
}

#[tokio::test]
async fn obs_30_offer_is_answered() {
    fixture_is_answered(&CLIENTS[0]).await;
}

#[tokio::test]
async fn ffmpeg_8_offer_is_answered_with_the_server_as_dtls_client() {
    fixture_is_answered(&CLIENTS[1]).await;
}

#[tokio::test]
async fn ffmpeg_rtx_dtls_active_offer_is_answered() {
    fixture_is_answered(&CLIENTS[2]).await;
}

/// API.md "Codecs": H264 of any profile, "the answer keeps the
/// publisher's" profile-level-id.
#[tokio::test]
async fn answers_keep_the_publishers_h264_profile_level_id() {
    let server = Server::start(ServerSpec::default()).await;
    let mut mismatches = Vec::new();
    for (i, expect) in CLIENTS.iter().enumerate() {
        let offer = fixture(expect.fixture);
        let offered = parse(&offer).sections[1]
            .fmtp(expect.h264_pt)
            .and_then(|f| fmtp_param(f, "profile-level-id"))
            .expect("offered profile-level-id")
            .to_ascii_lowercase();
        let r = post_offer(&server, &format!("user{i}"), offer).await;
        assert_eq!(r.status(), StatusCode::CREATED, "{}", expect.fixture);
        let answer = r.text().await.expect("answer");
        let answered = parse(&answer).sections[1]
            .fmtp(expect.h264_pt)
            .and_then(|f| fmtp_param(f, "profile-level-id"))
            .map(str::to_ascii_lowercase);
        if answered.as_deref() != Some(offered.as_str()) {
            mismatches.push(format!(
                "{}: offered profile-level-id={offered}, answered {answered:?}",
                expect.fixture
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

// ---- Offers the server must tolerate (API.md "Codecs"). media_failures.rs
// ---- covers str0m-made offers without candidates, with setup:active or
// ---- passive, with sha-256 + sha-1 fingerprints, and PCMU-only audio.

#[tokio::test]
async fn an_obs_offer_that_trickles_all_its_candidates_is_answered() {
    // libdatachannel reads the description before gathering ends: no
    // candidate, port 9 and c=IN IP4 0.0.0.0 in every section.
    let offer = fixture(OBS)
        .replace(
            "a=candidate:1 1 UDP 2122317823 192.168.1.23 54609 typ host\r\n",
            "",
        )
        .replace(" 54609 UDP/TLS", " 9 UDP/TLS")
        .replace("c=IN IP4 192.168.1.23", "c=IN IP4 0.0.0.0");
    assert!(!offer.contains("a=candidate") && !offer.contains("54609"));
    let server = Server::start(ServerSpec::default()).await;
    let r = post_offer(&server, "dev", offer).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let answer = r.text().await.expect("answer");
    assert!(ffmpeg_candidate(&answer).is_some(), "{answer}");
    assert!(answer.contains("a=end-of-candidates"), "{answer}");
}

#[tokio::test]
async fn red_and_ulpfec_in_an_offer_leave_opus_and_h264_chosen() {
    // Chrome-style redundancy formats next to OBS's codecs.
    let offer = fixture(OBS)
        .replace(
            "m=audio 54609 UDP/TLS/RTP/SAVPF 111\r\n",
            "m=audio 54609 UDP/TLS/RTP/SAVPF 111 63\r\n",
        )
        .replace(
            "useinbandfec=1\r\n",
            "useinbandfec=1\r\na=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\n",
        )
        .replace(
            "m=video 54609 UDP/TLS/RTP/SAVPF 96\r\n",
            "m=video 54609 UDP/TLS/RTP/SAVPF 96 97 98\r\n",
        )
        .replace(
            "level-asymmetry-allowed=1\r\n",
            "level-asymmetry-allowed=1\r\na=rtpmap:97 red/90000\r\na=rtpmap:98 ulpfec/90000\r\n",
        );
    assert!(offer.contains("a=rtpmap:63 red/48000/2") && offer.contains("ulpfec/90000"));
    let server = Server::start(ServerSpec::default()).await;
    let r = post_offer(&server, "dev", offer).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let answer = r.text().await.expect("answer");
    let sdp = parse(&answer);
    assert_eq!(sdp.sections.len(), 2, "{answer}");
    assert_eq!(
        sdp.sections[0].fmts.first().map(String::as_str),
        Some("111")
    );
    assert_eq!(sdp.sections[0].rtpmap("111"), Some("opus/48000/2"));
    assert_eq!(sdp.sections[1].fmts.first().map(String::as_str), Some("96"));
    assert_eq!(sdp.sections[1].rtpmap("96"), Some("H264/90000"));
}

#[tokio::test]
async fn several_fingerprints_with_the_sha_256_one_not_first_are_accepted() {
    // RFC 8122 allows one fingerprint per hash function; a parser that
    // takes the first line would pick sha-512 here.
    let offer = fixture(FFMPEG);
    let sha256 = offer
        .lines()
        .find(|l| l.starts_with("a=fingerprint:sha-256 "))
        .expect("fingerprint")
        .trim_end_matches('\r')
        .to_string();
    let sha512 = "a=fingerprint:sha-512 C1:40:B7:4A:12:12:02:E2:9B:E6:7F:24:62:14:4D:B2:78:E8:\
                  A8:70:48:62:6A:92:DE:20:73:7A:CD:B7:5B:F5:43:B7:6D:B5:9A:E9:4F:68:D9:2D:32:72:\
                  E8:4B:AA:FD:47:04:8F:DB:0A:72:47:D4:CD:EF:E5:A0:67:A6:F7:65";
    let sha1 = "a=fingerprint:sha-1 9B:12:16:5B:11:0E:2E:81:9E:82:04:5F:2C:E8:05:AC:97:F3:F6:E3";
    let offer = offer.replace(&sha256, &format!("{sha512}\r\n{sha256}\r\n{sha1}"));
    assert_eq!(offer.matches("a=fingerprint:").count(), 6);
    let server = Server::start(ServerSpec::default()).await;
    let r = post_offer(&server, "dev", offer).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let answer = r.text().await.expect("answer");
    assert!(
        parse(&answer)
            .sections
            .iter()
            .all(|s| s.attrs("setup") == ["active"]),
        "{answer}"
    );
}

/// A 422 problem whose detail names `kind`, and nothing left behind.
async fn assert_no_acceptable_codec(server: &Server, offer: String, kind: &str) {
    let r = post_offer(server, "dev", offer).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = r.json().await.expect("problem");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("codec") && d.contains(kind)),
        "{body}"
    );
    assert_eq!(
        metric(server, "vestibule_sessions").await,
        0.0,
        "no partial answer"
    );
    assert_eq!(metric(server, "vestibule_media_peers").await, 0.0);
}

#[tokio::test]
async fn obs_with_an_av1_encoder_gets_422() {
    // whip-output.cpp: addAV1Codec(96) when the OBS encoder is AV1;
    // media.codecs has no AV1.
    let offer = fixture(OBS)
        .replace("a=rtpmap:96 H264/90000", "a=rtpmap:96 AV1/90000")
        .replace(
            "a=fmtp:96 profile-level-id=42e01f;packetization-mode=1;level-asymmetry-allowed=1\r\n",
            "",
        );
    assert!(!offer.contains("H264"));
    let server = Server::start(ServerSpec::default()).await;
    assert_no_acceptable_codec(&server, offer, "video").await;
}

#[tokio::test]
async fn media_codecs_without_h264_or_without_opus_refuse_the_obs_offer() {
    let no_h264 =
        Server::start(ServerSpec::default().env("VESTIBULE__MEDIA__CODECS", "opus,vp8,vp9")).await;
    assert_no_acceptable_codec(&no_h264, fixture(OBS), "video").await;
    let no_opus =
        Server::start(ServerSpec::default().env("VESTIBULE__MEDIA__CODECS", "vp8,vp9,h264")).await;
    assert_no_acceptable_codec(&no_opus, fixture(OBS), "audio").await;
}

// ---- ICE: what the clients send after the answer.

/// CRC-32 (IEEE, reflected), for the STUN FINGERPRINT attribute.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A STUN Binding request as FFmpeg 8.0's `ice_create_request` writes it:
/// USERNAME, USE-CANDIDATE, MESSAGE-INTEGRITY, FINGERPRINT; `priority`
/// adds the PRIORITY attribute that RFC 8445 requires and FFmpeg 8.0 omits.
fn binding_request(username: &str, password: &str, priority: Option<u32>) -> Vec<u8> {
    use aws_lc_rs::hmac;
    let mut attrs = Vec::new();
    let user = username.as_bytes();
    attrs.extend_from_slice(&0x0006u16.to_be_bytes());
    attrs.extend_from_slice(&(user.len() as u16).to_be_bytes());
    attrs.extend_from_slice(user);
    attrs.resize(attrs.len() + (4 - user.len() % 4) % 4, 0);
    if let Some(p) = priority {
        attrs.extend_from_slice(&0x0024u16.to_be_bytes());
        attrs.extend_from_slice(&4u16.to_be_bytes());
        attrs.extend_from_slice(&p.to_be_bytes());
    }
    attrs.extend_from_slice(&0x0025u16.to_be_bytes());
    attrs.extend_from_slice(&0u16.to_be_bytes());
    let transaction: [u8; 12] = rand::random();
    let header = |len: usize| {
        let mut h = Vec::with_capacity(20);
        h.extend_from_slice(&0x0001u16.to_be_bytes());
        h.extend_from_slice(&(len as u16).to_be_bytes());
        h.extend_from_slice(&0x2112_A442u32.to_be_bytes());
        h.extend_from_slice(&transaction);
        h
    };
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, password.as_bytes());
    let signed = [header(attrs.len() + 24), attrs.clone()].concat();
    let tag = hmac::sign(&key, &signed);
    attrs.extend_from_slice(&0x0008u16.to_be_bytes());
    attrs.extend_from_slice(&20u16.to_be_bytes());
    attrs.extend_from_slice(tag.as_ref());
    let crc = crc32(&[header(attrs.len() + 8), attrs.clone()].concat()) ^ 0x5354_554E;
    attrs.extend_from_slice(&0x8028u16.to_be_bytes());
    attrs.extend_from_slice(&4u16.to_be_bytes());
    attrs.extend_from_slice(&crc.to_be_bytes());
    [header(attrs.len()), attrs].concat()
}

/// Sends `request` (three tries) and returns the STUN message type of the reply.
fn stun_exchange(to: (String, u16), request: &[u8]) -> Option<u16> {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut buf = [0u8; 1500];
    for _ in 0..3 {
        socket
            .send_to(request, (to.0.as_str(), to.1))
            .expect("send");
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            if let Ok(n) = socket.recv(&mut buf)
                && n >= 20
            {
                return Some(u16::from_be_bytes([buf[0], buf[1]]));
            }
        }
    }
    None
}

#[tokio::test]
async fn ffmpeg_8_binding_requests_without_priority_are_answered() {
    let server = Server::start(ServerSpec::default()).await;
    let offer = fixture(FFMPEG);
    let offered = parse(&offer);
    let ffmpeg_ufrag = offered.sections[0].attrs("ice-ufrag")[0].to_string();
    let r = post_offer(&server, "dev", offer).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let answer = parse(&r.text().await.expect("answer"));
    let ufrag = answer.sections[0].attrs("ice-ufrag")[0].to_string();
    let pwd = answer.sections[0].attrs("ice-pwd")[0].to_string();
    let candidate = answer.sections[0]
        .attrs("candidate")
        .into_iter()
        .find(|c| c.contains(" 127.0.0.1 "))
        .and_then(|c| ffmpeg_candidate(&format!("a=candidate:{c}")))
        .expect("a candidate on 127.0.0.1");
    let username = format!("{ufrag}:{ffmpeg_ufrag}");

    let malformed = "vestibule_datagrams_dropped_total{reason=\"malformed\"}";
    let before = metric(&server, malformed).await;
    let as_ffmpeg_8 = binding_request(&username, &pwd, None);
    let ffmpeg_reply = tokio::task::spawn_blocking({
        let to = candidate.clone();
        move || stun_exchange(to, &as_ffmpeg_8)
    })
    .await
    .expect("exchange");
    let dropped = metric(&server, malformed).await - before;
    // Control: the same request with PRIORITY (what browsers, libjuice and
    // later FFmpeg send) proves the request is built right.
    let with_priority = binding_request(&username, &pwd, Some(0x6E7F_00FF));
    let control = tokio::task::spawn_blocking({
        let to = candidate.clone();
        move || stun_exchange(to, &with_priority)
    })
    .await
    .expect("exchange");
    assert_eq!(
        control,
        Some(0x0101),
        "binding success for the control request"
    );
    assert_eq!(
        ffmpeg_reply,
        Some(0x0101),
        "FFmpeg 8.0 sends no PRIORITY attribute; the server dropped {dropped} of its \
         requests as malformed and FFmpeg's ICE would time out"
    );
}

// ---- Lobby endpoint status table (API.md). http_auth.rs covers GET /whip,
// ---- HEAD /whep without auth, OPTIONS on /whip and on a made-up WHIP
// ---- resource, PUT /whip; media_whip.rs the Link headers of a WHIP 201
// ---- (config file) and none on OPTIONS /whip.

const ICE_SERVERS: &str = "[media]\nice_servers = [\n  { urls = \"stun:stun.example.org:3478\" },\n  { urls = \"turn:turn.example.org:3478?transport=udp\", username = \"u1\", credential = \"p1\" },\n]\n";

/// A standard WHEP client offer: recvonly Opus + H264, one host candidate.
fn recvonly_offer() -> String {
    use str0m::media::{Direction, MediaKind};
    let mut rtc = str0m::RtcConfig::new()
        .clear_codecs()
        .enable_opus(true, false)
        .enable_h264(true)
        .build(Instant::now());
    let addr = "127.0.0.1:9".parse().expect("addr");
    rtc.add_local_candidate(str0m::Candidate::host(addr, "udp").expect("candidate"));
    let mut change = rtc.sdp_api();
    change.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    change.apply().expect("offer").0.to_sdp_string()
}

fn no_link(headers: &HeaderMap, what: &str) {
    assert!(
        headers.get("link").is_none(),
        "{what}: ICE servers only on a POST 201: {:?}",
        headers.get_all("link")
    );
}

#[tokio::test]
async fn whep_endpoint_and_live_resources_follow_the_status_table() {
    let server = Server::start(ServerSpec {
        config_file: Some(ICE_SERVERS.into()),
        ..ServerSpec::default()
    })
    .await;
    let c = reqwest::Client::new();
    let obs = post_offer(&server, "dev", fixture(OBS)).await;
    assert_eq!(obs.status(), StatusCode::CREATED);
    assert_eq!(
        obs.headers().get_all("link").iter().count(),
        2,
        "the configured ICE servers reach a WHIP 201"
    );
    let whip_resource = location(obs.headers());
    let ffmpeg = post_offer(&server, "bob", fixture(FFMPEG)).await;
    assert_eq!(ffmpeg.status(), StatusCode::CREATED);
    let bob_whip = location(ffmpeg.headers());
    let whep = c
        .post(server.url(WHEP))
        .bearer_auth(server.token("bob"))
        .header("Content-Type", "application/sdp")
        .body(recvonly_offer())
        .send()
        .await
        .expect("post whep");
    assert_eq!(
        whep.status(),
        StatusCode::CREATED,
        "{:?}",
        whep.text().await
    );
    let whep_resource = location(whep.headers());

    let endpoint = [("WHEP endpoint", WHEP.to_string(), true)];
    let resources = [
        ("WHIP resource", whip_resource.clone(), false),
        ("WHEP resource", whep_resource.clone(), false),
    ];
    for (what, path, is_endpoint) in endpoint.iter().chain(&resources) {
        let get = c.get(server.url(path)).send().await.expect("get");
        assert_eq!(get.status(), StatusCode::NO_CONTENT, "GET {what}");
        no_link(get.headers(), what);
        assert!(
            get.bytes().await.expect("body").is_empty(),
            "GET {what}: no body"
        );

        let options = c
            .request(reqwest::Method::OPTIONS, server.url(path))
            .send()
            .await
            .expect("options");
        assert_eq!(options.status(), StatusCode::OK, "OPTIONS {what}");
        no_link(options.headers(), what);
        let h = options.headers();
        if *is_endpoint {
            assert_eq!(h["accept-post"], "application/sdp", "OPTIONS {what}");
        } else {
            assert_eq!(
                h["accept-patch"], "application/sdp, application/trickle-ice-sdpfrag",
                "OPTIONS {what}"
            );
        }

        let put = c.put(server.url(path)).send().await.expect("put");
        assert_eq!(put.status(), StatusCode::METHOD_NOT_ALLOWED, "PUT {what}");
        no_link(put.headers(), what);
        let allow = put.headers()["allow"].to_str().expect("ascii").to_string();
        let methods: Vec<&str> = allow.split(',').map(str::trim).collect();
        assert!(!methods.contains(&"PUT"), "PUT {what}: Allow {allow}");
        let needed: &[&str] = if *is_endpoint {
            &["POST", "OPTIONS"]
        } else {
            &["PATCH", "DELETE", "OPTIONS"]
        };
        for m in needed {
            assert!(methods.contains(m), "PUT {what}: Allow {allow} lacks {m}");
        }
    }

    let av1 = fixture(OBS).replace("a=rtpmap:96 H264/90000", "a=rtpmap:96 AV1/90000");
    let refused = post_offer(&server, "carol", av1).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    no_link(refused.headers(), "a refused WHIP POST");
    let anonymous = c
        .post(server.url(WHIP))
        .header("Content-Type", "application/sdp")
        .body(fixture(OBS))
        .send()
        .await
        .expect("post");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    no_link(anonymous.headers(), "an unauthenticated WHIP POST");

    for (what, path, user) in [
        ("WHEP resource", &whep_resource, "bob"),
        ("WHIP resource", &bob_whip, "bob"),
        ("WHIP resource", &whip_resource, "dev"),
    ] {
        let deleted = c
            .delete(server.url(path))
            .bearer_auth(server.token(user))
            .send()
            .await
            .expect("delete");
        assert_eq!(deleted.status(), StatusCode::OK, "DELETE {what}");
        no_link(deleted.headers(), what);
    }
}

#[tokio::test]
async fn ice_servers_from_the_environment_become_link_headers() {
    // API.md: every key can be set as VESTIBULE__SECTION__KEY; config.rs
    // lists media.ice_servers among the comma-separated list keys.
    let server = Server::start(ServerSpec::default().env(
        "VESTIBULE__MEDIA__ICE_SERVERS",
        "stun:stun.example.org:3478",
    ))
    .await;
    let r = post_offer(&server, "dev", fixture(OBS)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let links: Vec<&str> = r
        .headers()
        .get_all("link")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert_eq!(links, ["<stun:stun.example.org:3478>; rel=\"ice-server\""]);
}
