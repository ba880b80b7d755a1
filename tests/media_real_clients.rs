//! Real third-party WebRTC clients (headless Chromium via playwright-core,
//! aiortc) publish over WHIP into a lobby on the real server, on 127.0.0.1.
//!
//! The clients live under `tests/clients` (`scripts/setup-test-deps.sh`
//! installs them). Without them a test is skipped loudly, except under
//! `CI=true`, where a missing client fails it. Chromium only gathers
//! loopback candidates in a loopback-only namespace: `scripts/test.sh` runs
//! the tests inside `unshare -n`.

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use common::clients::{
    AUDIO_PACKETS, Client, VIDEO_PACKETS, assert_idle_soon, lobby_page_args, metric, report,
    run_client,
};
use common::{Server, ServerSpec};
use serde_json::Value;

/// Drives `run` (a client run) to completion while reading `series` from
/// `/metrics` before it starts and every 200 ms while it runs, until every
/// series grew or the run ended (then once more). Returns the run's output
/// and each series' growth, in order.
async fn wait_metric_growth<T>(
    server: &Server,
    series: &[&str],
    run: impl Future<Output = T>,
) -> (T, Vec<f64>) {
    async fn read_all(server: &Server, series: &[&str]) -> Vec<f64> {
        let mut values = Vec::with_capacity(series.len());
        for s in series {
            values.push(metric(server, s).await);
        }
        values
    }
    let growth = |before: &[f64], now: &[f64]| -> Vec<f64> {
        now.iter().zip(before).map(|(n, b)| n - b).collect()
    };
    let before = read_all(server, series).await;
    let mut run = std::pin::pin!(run);
    let mut poll = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            out = &mut run => {
                let now = read_all(server, series).await;
                return (out, growth(&before, &now));
            }
            _ = poll.tick() => {
                let now = read_all(server, series).await;
                if now.iter().zip(&before).all(|(n, b)| n > b) {
                    return (run.await, growth(&before, &now));
                }
            }
        }
    }
}

/// Runs `client` against `server` while watching the RTP counters; `None`
/// when the client is not installed (skipped). Returns the client's JSON and
/// the growth of the video and audio packet counters.
async fn publish(server: &Server, client: Client, extra: &[&str]) -> Option<(Value, f64, f64)> {
    let args = client.command(server, extra)?;
    let started = Instant::now();
    let (json, growth) =
        wait_metric_growth(server, &[VIDEO_PACKETS, AUDIO_PACKETS], run_client(&args)).await;
    eprintln!("{client:?} run took {:?}", started.elapsed());
    Some((json, growth[0], growth[1]))
}

/// The assertions every successful publish shares: 201, connected, and
/// both kinds of RTP counted by the server while the client held.
fn assert_published(server: &Server, json: &Value, video: f64, audio: f64) {
    assert_eq!(json["status"], 201, "POST /whip{}", report(server, json));
    assert_eq!(json["connected"], true, "connected{}", report(server, json));
    assert!(
        video > 0.0,
        "video packets counted: {video}{}",
        report(server, json)
    );
    assert!(
        audio > 0.0,
        "audio packets counted: {audio}{}",
        report(server, json)
    );
}

/// The assertions on the signal channel, the resource headers, the ICE
/// pair and the DELETE, for a client run with a signal channel.
fn assert_session_details(server: &Server, json: &Value) {
    assert_eq!(
        json["dcOpen"],
        true,
        "signal channel open{}",
        report(server, json)
    );
    let location = json["location"].as_str().unwrap_or_default();
    assert!(
        location.starts_with("/space/demo/stream/demo/whip/"),
        "Location {location:?}{}",
        report(server, json)
    );
    let req_token = json["xReqToken"].as_str().unwrap_or_default();
    assert_eq!(req_token.len(), 22, "X-Req-Token{}", report(server, json));
    let remote = &json["stats"]["candidatePair"]["remote"]["address"];
    assert_eq!(
        remote,
        "127.0.0.1",
        "selected pair's remote{}",
        report(server, json)
    );
    assert_eq!(
        json["deleteStatus"],
        200,
        "DELETE Location{}",
        report(server, json)
    );
    assert_eq!(
        json["exitCode"],
        0,
        "client exit code{}",
        report(server, json)
    );
}

#[tokio::test]
async fn chromium_publishes_over_whip_with_a_signal_channel() {
    let server = Server::start(ServerSpec::default()).await;
    let Some((json, video, audio)) = publish(&server, Client::Chromium, &[]).await else {
        return;
    };
    assert_published(&server, &json, video, audio);
    assert_session_details(&server, &json);
    let sent = json["stats"]["video"]["packetsSent"].as_u64().unwrap_or(0);
    assert!(
        sent > 0,
        "video packetsSent {sent}{}",
        report(&server, &json)
    );
    assert_idle_soon(&server).await;
}

#[tokio::test]
async fn chromium_publishes_h264() {
    let server = Server::start(ServerSpec::default()).await;
    let Some((json, video, audio)) = publish(&server, Client::Chromium, &["--codec", "H264"]).await
    else {
        return;
    };
    assert_published(&server, &json, video, audio);
}

#[tokio::test]
async fn aiortc_publishes_over_whip() {
    let server = Server::start(ServerSpec::default()).await;
    let Some((json, video, audio)) = publish(&server, Client::Aiortc, &["--signal"]).await else {
        return;
    };
    assert_published(&server, &json, video, audio);
    assert_session_details(&server, &json);
    let sent = json["packetsSent"].as_u64().unwrap_or(0);
    assert!(sent > 0, "packetsSent {sent}{}", report(&server, &json));
    assert_idle_soon(&server).await;
}

/// The lobby web page in three Chromium contexts (tests/clients/lobby_page.mjs):
/// A and B decode each other; C joins and both decode C; tile labels are
/// the userIds; C leaves and its tiles go; A mutes and B's tile shows it.
#[tokio::test]
async fn three_users_meet_on_the_lobby_page() {
    let server = Server::start(ServerSpec::default()).await;
    let Some(args) = lobby_page_args(
        &server,
        &[("a", "alice"), ("b", "bob"), ("c", "carol")],
        "three-users",
    ) else {
        return;
    };
    let json = run_client(&args).await;
    assert_eq!(json["ok"], true, "{}", report(&server, &json));
    let checks = json["checks"].as_array().cloned().unwrap_or_default();
    assert!(checks.len() >= 6, "every step was checked: {json}");
    assert!(checks.iter().all(|c| c["ok"] == true), "{json}");
    assert_eq!(
        json["labels"].as_object().map(|l| l.is_empty()),
        Some(false),
        "{json}"
    );
    assert_idle_soon(&server).await;
}

/// A Chromium publisher (chromium_whip.mjs, `dev`, 8 s) in demo/demo and
/// aiortc as another lobby user (tests/clients/aiortc_whep_viewer.py): WHIP
/// with only a `signal` data channel, then client-offer WHEP with recvonly
/// audio + video; aiortc decodes the publisher's video and audio.
#[tokio::test]
async fn aiortc_views_a_chromium_publisher_over_whep() {
    let server = Server::start(ServerSpec::default()).await;
    let Some(publisher) = Client::Chromium.command(&server, &["--seconds", "8"]) else {
        return;
    };
    let Some(mut viewer) = Client::Aiortc.command(&server, &[]) else {
        return;
    };
    viewer.truncate(1);
    let token = server.token("viewer");
    viewer.extend(
        [
            "tests/clients/aiortc_whep_viewer.py",
            "--base",
            &server.base,
            "--space",
            "demo",
            "--stream",
            "demo",
            "--token",
            &token,
            "--seconds",
            "4",
        ]
        .map(str::to_string),
    );
    let started = Instant::now();
    let view = async {
        // Wait until the publisher's video reaches the server.
        let deadline = Instant::now() + Duration::from_secs(20);
        while metric(&server, VIDEO_PACKETS).await == 0.0 {
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!("publisher's video arrived after {:?}", started.elapsed());
        Some(run_client(&viewer).await)
    };
    let (published, viewed) = tokio::join!(run_client(&publisher), view);
    eprintln!("both clients done after {:?}", started.elapsed());
    let Some(viewed) = viewed else {
        panic!(
            "no video from the publisher within 20 s{}",
            report(&server, &published)
        );
    };
    eprintln!(
        "viewer: frames {} first frame ms {} timings {}; keyframe requests {} (throttled {})",
        viewed["frames"],
        viewed["firstFrameMs"],
        viewed["timings"],
        metric(&server, "vestibule_keyframe_requests_total").await,
        metric(&server, "vestibule_keyframe_requests_throttled_total").await,
    );
    assert_eq!(viewed["whipStatus"], 201, "{}", report(&server, &viewed));
    assert_eq!(viewed["whepStatus"], 201, "{}", report(&server, &viewed));
    assert_eq!(viewed["dcOpen"], true, "{}", report(&server, &viewed));
    assert_eq!(
        viewed["whepConnected"],
        true,
        "{}",
        report(&server, &viewed)
    );
    let video = viewed["frames"]["video"].as_u64().unwrap_or(0);
    let audio = viewed["frames"]["audio"].as_u64().unwrap_or(0);
    assert!(
        video > 10,
        "video frames {video}{}",
        report(&server, &viewed)
    );
    assert!(
        audio > 10,
        "audio frames {audio}{}",
        report(&server, &viewed)
    );
    assert_eq!(viewed["exitCode"], 0, "{}", report(&server, &viewed));
    assert_eq!(
        viewed["whepDeleteStatus"],
        200,
        "{}",
        report(&server, &viewed)
    );
    assert_eq!(
        viewed["whipDeleteStatus"],
        200,
        "{}",
        report(&server, &viewed)
    );
    assert_eq!(
        published["connected"],
        true,
        "{}",
        report(&server, &published)
    );
    assert_eq!(published["exitCode"], 0, "{}", report(&server, &published));
    assert_idle_soon(&server).await;
}
