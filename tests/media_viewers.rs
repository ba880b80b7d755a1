//! Plain viewers (API.md "Plain viewers"): aiortc watches the program over
//! client-offer WHEP without a WHIP session, and keeps decoding, without
//! any renegotiation, when the owner's main track changes.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::clients::{Client, run_client};
use common::{Server, ServerSpec, metric, wait_metric};
use serde_json::Value;
use std::sync::atomic::Ordering;
use vestibule::client::encoded::{EncodeSpec, EncodedMedia};

use vestibule::client::subscriber::Subscriber;
use vestibule::client::{PublishOptions, Publisher};

const WHIP: &str = "/space/demo/stream/demo/whip";

fn viewer_server() -> ServerSpec {
    ServerSpec::default()
        .env("VESTIBULE__LOBBY__ALLOW_VIEWERS", "true")
        .env("VESTIBULE__LOBBY__MAX_VIEWERS", "2")
}

/// The aiortc plain viewer's command line, or `None` when aiortc is not
/// installed (outside CI).
fn viewer(server: &Server, token: &str, extra: &[&str]) -> Option<Vec<String>> {
    let mut cmd = Client::Aiortc.command(server, &[])?;
    cmd.truncate(1);
    cmd.extend(
        [
            "tests/clients/aiortc_whep_viewer.py",
            "--plain",
            "--base",
            &server.base,
            "--space",
            "demo",
            "--stream",
            "demo",
            "--token",
            token,
        ]
        .map(str::to_string),
    );
    cmd.extend(extra.iter().map(|s| s.to_string()));
    Some(cmd)
}

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

/// The owner publishing red H.264 + a tone as a main track.
async fn owner(server: &Server, dir: &std::path::Path) -> Option<Publisher> {
    let media = match EncodedMedia::generate(dir, &EncodeSpec::default()) {
        Ok(m) => Arc::new(m),
        Err(e) => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "ffmpeg: {e}");
            eprintln!("skipped: {e}");
            return None;
        }
    };
    let opts = PublishOptions {
        media: Some(media),
        info: Some((2, 2)),
        ..PublishOptions::default()
    };
    let publisher = Publisher::connect(&server.base, WHIP, &server.token("dev"), opts)
        .await
        .expect("201");
    assert!(publisher.wait_connected(Duration::from_secs(5)).await);
    Some(publisher)
}

fn frames_in(timeline: &Value, from: u64) -> u64 {
    timeline
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["t"].as_u64() >= Some(from))
        .map(|e| e["video"].as_u64().unwrap_or(0))
        .sum()
}

#[tokio::test]
async fn a_plain_viewer_keeps_watching_across_a_program_switch() {
    let server = Server::start(viewer_server()).await;
    let token = view_token(&server, "watcher");
    let Some(cmd) = viewer(&server, &token, &["--seconds", "9"]) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(publisher) = owner(&server, dir.path()).await else {
        return;
    };
    // Our own str0m viewer sees the numbering as sent: a switch must not
    // show as a jump in sequence numbers or RTP time.
    let numbered = Subscriber::connect_client_offer(
        &server.base,
        "/space/demo/stream/demo/whep",
        &view_token(&server, "counter"),
    )
    .await
    .expect("201");
    assert!(numbered.wait_connected(Duration::from_secs(5)).await);
    let switch = async {
        // Let the viewer connect and decode the first source for a while.
        wait_metric(&server, "vestibule_viewers", Duration::from_secs(10), |v| {
            v >= 1.0
        })
        .await;
        tokio::time::sleep(Duration::from_secs(4)).await;
        let before = metric(&server, "vestibule_program_switches_total{kind=\"video\"}").await;
        publisher.add_video().await.expect("client offer");
        let after = wait_metric(
            &server,
            "vestibule_program_switches_total{kind=\"video\"}",
            Duration::from_secs(3),
            |v| v > before,
        )
        .await;
        assert!(after > before, "the program switched to the new main track");
        numbered.state.video_packets.load(Ordering::Relaxed)
    };
    let (viewed, at_switch) = tokio::join!(run_client(&cmd), switch);
    let numbered_total = numbered.state.video_packets.load(Ordering::Relaxed);
    assert!(at_switch > 20, "video before the switch: {at_switch}");
    assert!(
        numbered_total > at_switch + 20,
        "video after the switch: {numbered_total}"
    );
    assert_eq!(
        numbered.state.video_jumps.load(Ordering::Relaxed),
        0,
        "sequence numbers and RTP time continue across the switch"
    );
    let report = serde_json::to_string(&viewed).unwrap_or_default();
    assert_eq!(viewed["whepStatus"], 201, "{report}");
    assert_eq!(viewed["whepDeleteStatus"], 200, "{report}");
    assert_eq!(
        viewed["msids"],
        serde_json::json!(["program", "program"]),
        "{report}"
    );
    let timeline = &viewed["timeline"];
    assert!(frames_in(timeline, 0) > 20, "video decoded: {timeline}");
    // The switch happens about 4-5 s after connecting; the last seconds
    // must still decode (rebased numbers and time, a keyframe first).
    assert!(
        frames_in(timeline, 7) >= 10,
        "video after the switch: {timeline}"
    );
    assert!(viewed["frames"]["audio"].as_u64() > Some(100), "{report}");
    assert_eq!(
        metric(&server, "vestibule_renegotiations_total").await,
        0.0,
        "never renegotiated"
    );
    let deleted = reqwest::Client::new()
        .delete(server.url(&numbered.location))
        .bearer_auth(view_token(&server, "counter"))
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status().as_u16(), 200);
    wait_metric(&server, "vestibule_viewers", Duration::from_secs(3), |v| {
        v == 0.0
    })
    .await;
    assert_eq!(metric(&server, "vestibule_viewers").await, 0.0);
}

#[tokio::test]
async fn plain_viewer_requests_are_checked() {
    let server = Server::start(viewer_server()).await;
    let token = view_token(&server, "watcher");
    let status_only = |token: String, extra: &'static [&'static str]| {
        let server = &server;
        async move {
            let mut args = vec!["--post-status-only"];
            args.extend_from_slice(extra);
            let cmd = viewer(server, &token, &args)?;
            Some(run_client(&cmd).await)
        }
    };
    // No lobby yet: 409 with Retry-After.
    let Some(r) = status_only(token.clone(), &[]).await else {
        return;
    };
    assert_eq!(
        (r["postStatus"].as_u64(), r["retryAfter"].as_str()),
        (Some(409), Some("5")),
        "{r}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(_publisher) = owner(&server, dir.path()).await else {
        return;
    };
    // Without the view claim (and not the owner or an admin): 403.
    let r = status_only(server.token("stranger"), &[])
        .await
        .expect("client");
    assert_eq!(r["postStatus"], 403, "{r}");
    // Two video m-lines: 422.
    let r = status_only(token.clone(), &["--video-lines", "2"])
        .await
        .expect("client");
    assert_eq!(r["postStatus"], 422, "{r}");
    // Within lobby.max_viewers (2), then 429.
    let mut held = Vec::new();
    for _ in 0..2 {
        let resp = post_offer(&server, &token).await;
        assert_eq!(resp.0, 201, "{}", resp.1);
        held.push(resp);
    }
    let over = post_offer(&server, &token).await;
    assert_eq!(over.0, 429, "{}", over.1);
    // Viewers may be turned off.
    let closed = Server::start(ServerSpec::default()).await;
    let _p = owner(&closed, dir.path()).await;
    let resp = post_offer(&closed, &view_token(&closed, "watcher")).await;
    assert_eq!(resp.0, 404, "viewers disabled: no such session: {}", resp.1);
}

/// A minimal recvonly offer from a str0m peer (no media flows).
async fn post_offer(server: &Server, token: &str) -> (u16, String) {
    use str0m::media::{Direction, MediaKind};
    let mut rtc = str0m::Rtc::new(std::time::Instant::now());
    let mut change = rtc.sdp_api();
    change.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, _pending) = change.apply().expect("offer");
    let resp = reqwest::Client::new()
        .post(server.url("/space/demo/stream/demo/whep"))
        .bearer_auth(token)
        .header("content-type", "application/sdp")
        .body(offer.to_sdp_string())
        .send()
        .await
        .expect("post");
    (
        resp.status().as_u16(),
        resp.text().await.unwrap_or_default(),
    )
}
