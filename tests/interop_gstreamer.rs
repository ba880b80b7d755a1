//! Standards interop with a client we did not write: GStreamer's
//! `webrtcbin` (Debian 12, GStreamer 1.22), driven by
//! `tests/clients/gst_whip.py`, publishes H.264 + Opus over WHIP into the
//! demo lobby, and plays the program over client-offer WHEP as a plain
//! viewer, decoding what our own str0m publisher sends.
//!
//! GStreamer's own DTLS certificate is a self-signed RSA-2048 one. The
//! server answers `a=setup:passive`, so GStreamer is the DTLS client, and
//! str0m 0.25's DTLS (dimpl 0.9) asks for an ECDSA client certificate only:
//! GStreamer then sends none and the server aborts the handshake. So the
//! publish and play tests give webrtcbin a P-256 certificate
//! (`--dtls-cert ecdsa`), and `gstreamer_publishes_with_its_own_rsa_certificate`
//! (ignored until the server takes RSA) is the one with GStreamer's own.
//!
//! `scripts/setup-test-deps.sh` installs GStreamer and python3-gi. Without
//! them the tests are skipped loudly, except under `CI=true`, where they
//! fail. libnice only offers 127.0.0.1 because the script adds it by hand;
//! run the tests in a loopback-only namespace (`scripts/test.sh` does).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::clients::{
    AUDIO_PACKETS, Client, VIDEO_PACKETS, assert_idle_soon, metric, report, run_client,
};
use common::{Server, ServerSpec, wait_metric};
use serde_json::Value;
use vestibule::client::encoded::{EncodeSpec, EncodedMedia};
use vestibule::client::{PublishOptions, Publisher};

const WHIP: &str = "/space/demo/stream/demo/whip";
const WHEP: &str = "/space/demo/stream/demo/whep";

/// GStreamer's DTLS certificate: its own RSA one, or a P-256 one.
#[derive(Debug, Clone, Copy)]
enum Cert {
    Rsa,
    Ecdsa,
}

impl Cert {
    fn arg(self) -> &'static str {
        match self {
            Cert::Rsa => "gstreamer",
            Cert::Ecdsa => "ecdsa",
        }
    }

    /// What `gst_whip.py` reports as `dtlsCertificate.local`.
    fn key_type(self) -> &'static str {
        match self {
            Cert::Rsa => "rsa",
            Cert::Ecdsa => "ec",
        }
    }
}

/// The GStreamer client's command line in `mode` for demo/demo with `cert`,
/// holding 3 s, with `token` instead of the dev user's; `None` when
/// GStreamer is not installed (skipped; a failure under CI).
fn gst(server: &Server, mode: &str, cert: Cert, token: Option<&str>) -> Option<Vec<String>> {
    let mut args = Client::Gstreamer.command(
        server,
        &["--mode", mode, "--seconds", "3", "--dtls-cert", cert.arg()],
    )?;
    if let Some(token) = token {
        let at = args.iter().position(|a| a == "--token").expect("--token") + 1;
        args[at] = token.to_string();
    }
    Some(args)
}

/// A token for `user` that may watch demo/demo as a plain viewer.
fn view_token(server: &Server, user: &str) -> String {
    server
        .keys()
        .issue(
            user,
            None,
            false,
            Some("demo/demo"),
            Duration::from_secs(3600),
        )
        .expect("token")
}

fn str_of<'a>(json: &'a Value, pointer: &str) -> &'a str {
    json.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn u64_of(json: &Value, pointer: &str) -> u64 {
    json.pointer(pointer).and_then(Value::as_u64).unwrap_or(0)
}

/// What every successful GStreamer run shares: 201 with a Location under
/// `endpoint`, ICE and DTLS connected with `cert` (the server's 127.0.0.1
/// candidate taken from the answer), H.264 + Opus answered, DELETE 200.
fn assert_session(server: &Server, json: &Value, endpoint: &str, cert: Cert) {
    let why = || report(server, json);
    assert_eq!(json["status"], 201, "POST {endpoint}{}", why());
    let location = str_of(json, "/location");
    assert!(
        location.starts_with(&format!("{endpoint}/")),
        "Location {location:?}{}",
        why()
    );
    assert_eq!(json["connected"], true, "connected{}", why());
    assert_eq!(json["dtlsState"], "connected", "DTLS state{}", why());
    assert_eq!(
        json["dtlsCertificate"]["local"],
        cert.key_type(),
        "GStreamer's DTLS certificate{}",
        why()
    );
    let remote = json["remoteCandidates"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        remote.iter().any(|c| c["address"] == "127.0.0.1"),
        "the answer offers 127.0.0.1{}",
        why()
    );
    assert_eq!(
        str_of(json, "/codecs/video").to_ascii_uppercase(),
        "H264/90000",
        "video codec answered{}",
        why()
    );
    assert!(
        str_of(json, "/codecs/audio")
            .to_ascii_lowercase()
            .starts_with("opus/48000"),
        "audio codec answered{}",
        why()
    );
    assert_eq!(json["deleteStatus"], 200, "DELETE Location{}", why());
    assert_eq!(json["exitCode"], 0, "client exit code{}", why());
}

/// GStreamer publishes with `cert` for 3 s: the server answers H.264 +
/// Opus, counts both kinds of RTP, and is idle after the DELETE.
async fn publish(cert: Cert) {
    let server = Server::start(ServerSpec::default()).await;
    let Some(args) = gst(&server, "publish", cert, None) else {
        return;
    };
    let video_before = metric(&server, VIDEO_PACKETS).await;
    let audio_before = metric(&server, AUDIO_PACKETS).await;
    let json = run_client(&args).await;
    let video = metric(&server, VIDEO_PACKETS).await - video_before;
    let audio = metric(&server, AUDIO_PACKETS).await - audio_before;
    eprintln!("GStreamer publish: the server counted {video} video, {audio} audio packets");
    assert_session(&server, &json, WHIP, cert);
    // 3 s at 30 fps is at least 90 video packets and Opus sends 50 a
    // second; half of that leaves room for a slow start under load.
    assert!(
        video >= 45.0,
        "video packets counted by the server: {video}{}",
        report(&server, &json)
    );
    assert!(
        audio >= 75.0,
        "audio packets counted by the server: {audio}{}",
        report(&server, &json)
    );
    // What the server counted, GStreamer sent (its payloader's output,
    // which includes what it made before DTLS was up).
    for kind in ["video", "audio"] {
        let sent = u64_of(&json, &format!("/packetsSent/{kind}")) as f64;
        let counted = if kind == "video" { video } else { audio };
        assert!(
            counted <= sent,
            "counted {counted} {kind} packets, GStreamer sent {sent}{}",
            report(&server, &json)
        );
    }
    assert_idle_soon(&server).await;
}

#[tokio::test]
async fn gstreamer_publishes_h264_and_opus_over_whip() {
    publish(Cert::Ecdsa).await;
}

/// The same with GStreamer's default certificate. Fails today: GStreamer
/// reports "dtls1_read_bytes:sslv3 alert handshake failure ... SSL alert
/// number 40", the server logs nothing about it and keeps the session until
/// `media.connect_timeout_s` ends it as `never_connected`.
#[tokio::test]
#[ignore = "server bug: str0m 0.25 (dimpl 0.9) DTLS takes only ECDSA client certificates"]
async fn gstreamer_publishes_with_its_own_rsa_certificate() {
    publish(Cert::Rsa).await;
}

#[tokio::test]
async fn gstreamer_plays_the_program_as_a_plain_viewer() {
    let server =
        Server::start(ServerSpec::default().env("VESTIBULE__LOBBY__ALLOW_VIEWERS", "true")).await;
    let token = view_token(&server, "gst-viewer");
    let Some(args) = gst(&server, "play", Cert::Ecdsa, Some(&token)) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let media = match EncodedMedia::generate(dir.path(), &EncodeSpec::default()) {
        Ok(m) => Arc::new(m),
        Err(e) => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "ffmpeg: {e}");
            eprintln!("SKIPPED: cannot encode the publisher's media: {e}");
            return;
        }
    };
    let opts = PublishOptions {
        media: Some(media),
        ..PublishOptions::default()
    };
    let dev = server.token("dev");
    let mut publisher = Publisher::connect(&server.base, WHIP, &dev, opts)
        .await
        .expect("publisher 201");
    assert!(
        publisher.wait_connected(Duration::from_secs(5)).await,
        "publisher connected\nserver logs:\n{}",
        server.logs()
    );

    let json = run_client(&args).await;
    eprintln!(
        "GStreamer play: decoded {} video, {} audio frames",
        json["frames"]["video"], json["frames"]["audio"]
    );
    assert_session(&server, &json, WHEP, Cert::Ecdsa);
    assert_eq!(
        json["receivedPads"].as_array().map(Vec::len),
        Some(2),
        "one received track per kind{}",
        report(&server, &json)
    );
    // EncodeSpec::default() is 320x240 at 15 fps with a keyframe a second:
    // 3 s of holding decode at least 20 frames even when the first
    // keyframe comes a second late.
    let frames = u64_of(&json, "/frames/video");
    assert!(
        frames >= 20,
        "video frames decoded by GStreamer: {frames}{}",
        report(&server, &json)
    );
    assert_eq!(
        (
            u64_of(&json, "/video/width"),
            u64_of(&json, "/video/height")
        ),
        (320, 240),
        "decoded picture size{}",
        report(&server, &json)
    );
    let audio = u64_of(&json, "/frames/audio");
    assert!(
        audio >= 50,
        "audio frames decoded by GStreamer: {audio}{}",
        report(&server, &json)
    );
    // The DELETE ended the viewer; the publisher is still there.
    let viewers = wait_metric(&server, "vestibule_viewers", Duration::from_secs(3), |v| {
        v == 0.0
    })
    .await;
    assert_eq!(viewers, 0.0, "viewers after DELETE\n{}", server.logs());
    assert!(
        !publisher
            .state
            .ended
            .load(std::sync::atomic::Ordering::Acquire),
        "the publisher outlived the viewer"
    );
    assert_eq!(publisher.delete(&dev).await.expect("delete"), 200);
    assert_idle_soon(&server).await;
}
