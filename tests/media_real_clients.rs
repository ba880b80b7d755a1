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
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Server, ServerSpec};
use serde_json::Value;

const VIDEO_PACKETS: &str = "vestibule_rtp_packets_received_total{kind=\"video\"}";
const AUDIO_PACKETS: &str = "vestibule_rtp_packets_received_total{kind=\"audio\"}";
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// A third-party publisher under `tests/clients`.
#[derive(Debug, Clone, Copy)]
enum Client {
    Chromium,
    Aiortc,
}

impl Client {
    /// What must exist (relative to the crate root) for the client to run.
    fn installed_marker(self) -> &'static str {
        match self {
            Client::Chromium => "tests/clients/node_modules/playwright-core",
            Client::Aiortc => "tests/clients/.venv/bin/python",
        }
    }

    /// Program and script, relative to the crate root.
    fn program(self) -> [&'static str; 2] {
        match self {
            Client::Chromium => ["node", "tests/clients/chromium_whip.mjs"],
            Client::Aiortc => [
                "tests/clients/.venv/bin/python",
                "tests/clients/aiortc_whip.py",
            ],
        }
    }

    /// The full command line publishing into demo/demo as `dev`, or `None`
    /// (after saying so on stderr) when the client is not installed and
    /// this is not CI. Under `CI=true` a missing client fails the test.
    fn command(self, server: &Server, extra: &[&str]) -> Option<Vec<String>> {
        let marker = Path::new(env!("CARGO_MANIFEST_DIR")).join(self.installed_marker());
        if !marker.exists() {
            let hint = "run scripts/setup-test-deps.sh";
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{self:?} client missing under CI=true: {} not found ({hint})",
                marker.display()
            );
            eprintln!(
                "SKIPPED: {self:?} client not installed ({} not found; {hint})",
                marker.display()
            );
            return None;
        }
        let token = server.token("dev");
        let mut args: Vec<String> = self.program().iter().map(|s| s.to_string()).collect();
        for a in [
            "--base",
            server.base.as_str(),
            "--space",
            "demo",
            "--stream",
            "demo",
            "--token",
            token.as_str(),
            "--seconds",
            "2",
        ]
        .iter()
        .chain(extra)
        {
            args.push(a.to_string());
        }
        Some(args)
    }
}

/// Runs a client command line (program first) from the crate root and
/// returns its one JSON line, with `exitCode` and `stderr` added. Panics
/// when it does not finish within [`CLIENT_TIMEOUT`] or prints no JSON.
async fn run_client(args: &[String]) -> Value {
    let output = tokio::process::Command::new(&args[0])
        .args(&args[1..])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(CLIENT_TIMEOUT, output)
        .await
        .unwrap_or_else(|_| panic!("{} ran longer than {CLIENT_TIMEOUT:?}", args[1]))
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", args[0]));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty());
    let mut json: Value = line
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "{} printed no JSON line ({}).\nstdout:\n{stdout}\nstderr:\n{stderr}",
                args[1], output.status
            )
        });
    json["exitCode"] = output.status.code().into();
    json["stderr"] = stderr.into_owned().into();
    json
}

/// The sum of the samples of one series in `/metrics`: an exact series with
/// labels (`name{k="v"}`), or every label set of a bare `name`.
async fn metric(server: &Server, series: &str) -> f64 {
    let text = reqwest::get(server.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(s, _)| {
            *s == series || (!series.contains('{') && s.starts_with(&format!("{series}{{")))
        })
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum()
}

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

/// What to show when an assertion fails: the client's JSON and the server's logs.
fn report(server: &Server, json: &Value) -> String {
    format!(
        "\nclient JSON: {}\nserver logs:\n{}",
        serde_json::to_string_pretty(json).unwrap_or_default(),
        server.logs()
    )
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

/// Within 2 s of the client's exit the server holds no session and no peer.
async fn assert_idle_soon(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let sessions = metric(server, "vestibule_sessions").await;
        let peers = metric(server, "vestibule_media_peers").await;
        if sessions == 0.0 && peers == 0.0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "2 s after the client left: vestibule_sessions {sessions}, \
             vestibule_media_peers {peers}\nserver logs:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    let Some(mut args) = Client::Chromium.command(&server, &[]) else {
        return;
    };
    args.truncate(1);
    let tokens = ["alice", "bob", "carol"]
        .iter()
        .zip(["a", "b", "c"])
        .map(|(user, key)| format!("{key}:{}", server.token(user)))
        .collect::<Vec<_>>()
        .join(",");
    args.extend(
        [
            "tests/clients/lobby_page.mjs",
            "--base",
            &server.base,
            "--space",
            "demo",
            "--stream",
            "demo",
            "--tokens",
            &tokens,
            "--scenario",
            "three-users",
        ]
        .map(str::to_string),
    );
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
