//! Standards interop: the npm `whip-whep` library (medooze's whip.js and
//! whep.js, plain ES modules) in headless Chromium publishes to and plays
//! from the real server, trickling its candidates with `PATCH {Location}`
//! (`application/trickle-ice-sdpfrag`) after an offer that has none, and
//! restarting ICE with `If-Match: *` (RFC 9725 §4.3.2, the RFC 9110
//! wildcard).
//!
//! The client is `tests/clients/whip_whep_lib.mjs`; it records every
//! request the library makes and the server's answer (`http`), so a failure
//! shows the exact exchange. Without Chromium or the library a test is
//! skipped loudly, except under `CI=true`. Chromium only gathers loopback
//! candidates in a loopback-only namespace: run inside `unshare -rn`.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::clients::{AUDIO_PACKETS, CLIENT_TIMEOUT, Client, VIDEO_PACKETS, assert_idle_soon};
use common::{Server, ServerSpec, metric, wait_metric};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use vestibule::client::encoded::{EncodeSpec, EncodedMedia};
use vestibule::client::{PublishOptions, Publisher};

const SDPFRAG: &str = "application/trickle-ice-sdpfrag";
const WHIP: &str = "/space/demo/stream/demo/whip";

/// One run of the library client: its JSON, its stderr, and the server's
/// video and audio packet counters read when the client passed each EVENT.
struct Run {
    json: Value,
    stderr: String,
    at: HashMap<String, (f64, f64)>,
}

impl Run {
    /// What to show when an assertion fails.
    fn report(&self, server: &Server) -> String {
        format!(
            "\nclient JSON: {}\nclient stderr:\n{}\nserver logs:\n{}",
            serde_json::to_string_pretty(&self.json).unwrap_or_default(),
            self.stderr,
            server.logs()
        )
    }

    /// Growth of the server's (video, audio) counters between two events.
    fn growth(&self, from: &str, to: &str) -> (f64, f64) {
        match (self.at.get(from), self.at.get(to)) {
            (Some(a), Some(b)) => (b.0 - a.0, b.1 - a.1),
            _ => (0.0, 0.0),
        }
    }

    /// The requests the library made with `method`, in order.
    fn requests(&self, method: &str) -> Vec<&Value> {
        self.json["http"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["method"] == method)
            .collect()
    }
}

/// The client's command line, or `None` (skipped) when Chromium or the
/// library is not installed outside CI.
fn command(server: &Server, mode: &str, token: &str, extra: &[&str]) -> Option<Vec<String>> {
    // Checks playwright-core (and fails under CI=true when missing).
    let mut args = Client::Chromium.command(server, &[])?;
    let library =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/node_modules/whip-whep");
    if !library.exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "whip-whep missing under CI=true: {} (run scripts/setup-test-deps.sh)",
            library.display()
        );
        eprintln!("SKIPPED: whip-whep not installed (run scripts/setup-test-deps.sh)");
        return None;
    }
    args.truncate(1);
    args.extend(
        [
            "tests/clients/whip_whep_lib.mjs",
            "--mode",
            mode,
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
    args.extend(extra.iter().map(|s| s.to_string()));
    Some(args)
}

/// Runs the client to its end, reading the server's packet counters at
/// every `EVENT` line it prints on stderr.
async fn run(server: &Server, args: &[String]) -> Run {
    let mut child = tokio::process::Command::new(&args[0])
        .args(&args[1..])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", args[0]));
    let mut stdout = child.stdout.take().expect("stdout");
    let stdout_task = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text).await;
        text
    });
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut stderr = String::new();
    let mut at = HashMap::new();
    let read = async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(event) = line
                .strip_prefix("EVENT ")
                .and_then(|j| serde_json::from_str::<Value>(j).ok())
            {
                let counters = (
                    metric(server, VIDEO_PACKETS).await,
                    metric(server, AUDIO_PACKETS).await,
                );
                at.insert(event["event"].as_str().unwrap_or("").to_string(), counters);
            }
            stderr.push_str(&line);
            stderr.push('\n');
        }
        child.wait().await
    };
    let status = tokio::time::timeout(CLIENT_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| panic!("{} ran longer than {CLIENT_TIMEOUT:?}", args[1]))
        .expect("wait");
    let stdout = stdout_task.await.expect("stdout task");
    let mut json: Value = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "{} printed no JSON line ({status}).\nstdout:\n{stdout}\nstderr:\n{stderr}",
                args[1]
            )
        });
    json["exitCode"] = status.code().into();
    Run { json, stderr, at }
}

/// The trickle-ICE PATCHes the library sent (everything but an ICE
/// restart) were all answered 204 with the right headers, the last one
/// carried `a=end-of-candidates`, and at least one carried a candidate.
/// `if_match` is the ETag each must have carried (`None`: no If-Match).
fn assert_trickled(server: &Server, run: &Run, patches: &[&Value], if_match: Option<&str>) {
    let report = || run.report(server);
    assert!(!patches.is_empty(), "no trickle PATCH was sent{}", report());
    for p in patches {
        let body = p["request"]["body"].as_str().unwrap_or("");
        assert_eq!(
            p["request"]["headers"]["content-type"],
            SDPFRAG,
            "{p}{}",
            report()
        );
        assert_eq!(
            p["request"]["headers"]["if-match"].as_str(),
            if_match,
            "trickle If-Match: {p}{}",
            report()
        );
        assert!(body.starts_with("a=ice-ufrag:"), "sdpfrag body: {p}");
        assert_eq!(p["status"], 204, "trickle PATCH answered: {p}{}", report());
    }
    assert!(
        patches.iter().any(|p| p["request"]["body"]
            .as_str()
            .unwrap_or("")
            .contains("a=candidate:")),
        "a candidate was trickled{}",
        report()
    );
    let last = patches.last().expect("a PATCH")["request"]["body"]
        .as_str()
        .unwrap_or("");
    assert!(
        last.contains("a=end-of-candidates"),
        "last PATCH: {last}{}",
        report()
    );
    assert_eq!(run.json["trickleComplete"], true, "{}", report());
}

/// What every run shares: exit 0, POST 201 with a Location and an offer
/// without candidates (so the trickle is what carried them), connected,
/// no page errors (the library's PATCH failures show there), and the
/// library's DELETE answered 200, or 404 when the server had already ended
/// the resource on the DTLS close that stop() sends first (API.md: an ended
/// session's resource URLs answer 404); the callers then check the server
/// let go of it.
fn assert_common(server: &Server, run: &Run) {
    let json = &run.json;
    let report = || run.report(server);
    assert_eq!(json["exitCode"], 0, "client failed{}", report());
    assert_eq!(json["post"]["status"], 201, "POST{}", report());
    assert!(json["post"]["location"].is_string(), "Location{}", report());
    assert_eq!(
        json["offerCandidates"],
        0,
        "the library posts before gathering{}",
        report()
    );
    assert_eq!(json["connected"], true, "{}", report());
    assert_eq!(json["pageErrors"], serde_json::json!([]), "{}", report());
    let delete = json["deleteStatus"].as_u64();
    assert!(
        matches!(delete, Some(200 | 404)),
        "DELETE {{Location}}: {delete:?}{}",
        report()
    );
}

#[tokio::test]
async fn the_library_publishes_with_trickle_ice() {
    let server = Server::start(ServerSpec::default()).await;
    let token = server.token("dev");
    let Some(args) = command(&server, "publish", &token, &["--seconds", "3"]) else {
        return;
    };
    let run = run(&server, &args).await;
    assert_common(&server, &run);
    let etag = run.json["post"]["etag"].as_str();
    assert!(etag.is_some(), "POST ETag{}", run.report(&server));
    assert_trickled(&server, &run, &run.requests("PATCH"), etag);
    let (video, audio) = run.growth("connected", "holdEnd");
    assert!(
        video > 20.0,
        "video packets counted while held: {video}{}",
        run.report(&server)
    );
    assert!(
        audio > 20.0,
        "audio packets counted while held: {audio}{}",
        run.report(&server)
    );
    assert_idle_soon(&server).await;
}

/// The lobby owner publishing red 320x240 H.264 at 15 fps and a tone.
async fn owner(server: &Server, dir: &Path) -> Option<Publisher> {
    let media = match EncodedMedia::generate(dir, &EncodeSpec::default()) {
        Ok(m) => Arc::new(m),
        Err(e) => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "ffmpeg: {e}");
            eprintln!("SKIPPED: {e}");
            return None;
        }
    };
    let opts = PublishOptions {
        media: Some(media),
        ..PublishOptions::default()
    };
    let publisher = Publisher::connect(&server.base, WHIP, &server.token("dev"), opts)
        .await
        .expect("201");
    assert!(publisher.wait_connected(Duration::from_secs(5)).await);
    Some(publisher)
}

fn viewer_server() -> ServerSpec {
    ServerSpec::default()
        .env("VESTIBULE__LOBBY__ALLOW_VIEWERS", "true")
        .env("VESTIBULE__LOBBY__MAX_VIEWERS", "2")
}

/// A plain viewer's token for demo/demo.
fn view_token(server: &Server) -> String {
    server
        .keys()
        .issue(
            "watcher",
            None,
            false,
            Some("demo/demo"),
            Duration::from_secs(3600),
        )
        .expect("token")
}

/// Video frames the viewer decoded between two of its stats snapshots.
fn decoded_between(from: &Value, to: &Value) -> u64 {
    let frames = |s: &Value| s["video"]["framesDecoded"].as_u64().unwrap_or(0);
    frames(to).saturating_sub(frames(from))
}

#[tokio::test]
async fn the_library_plays_the_program_as_a_plain_viewer() {
    let server = Server::start(viewer_server()).await;
    let Some(args) = command(&server, "play", &view_token(&server), &["--seconds", "4"]) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(_owner) = owner(&server, dir.path()).await else {
        return;
    };
    let run = run(&server, &args).await;
    assert_common(&server, &run);
    let report = || run.report(&server);
    // whep.js never reads the POST's ETag, so its PATCHes carry no If-Match.
    assert_trickled(&server, &run, &run.requests("PATCH"), None);
    let video = &run.json["stats"]["video"];
    assert_eq!(video["codec"], "video/H264", "{}", report());
    // 4 s of 15 fps.
    assert!(video["framesDecoded"].as_u64() > Some(30), "{}", report());
    assert_eq!(video["frameWidth"], 320, "{}", report());
    assert!(
        run.json["stats"]["audio"]["packetsReceived"].as_u64() > Some(50),
        "{}",
        report()
    );
    let viewers = wait_metric(&server, "vestibule_viewers", Duration::from_secs(3), |v| {
        v == 0.0
    })
    .await;
    assert_eq!(viewers, 0.0, "the DELETE ended the viewer{}", report());
}

/// The library's ICE restart went through (RFC 9725 §4.3.2): it sent its
/// new credentials with `If-Match: *`; the server answered 200 with an
/// sdpfrag of new credentials and a candidate and a new ETag; the library
/// applied it; Chrome's selected pair moved to the new generation, and the
/// server sends on it (the controlled agent must use the pair the
/// controlling one nominated, RFC 8445 §8.1.1). Returns the restart PATCH's
/// index among the PATCHes and the new ETag.
fn assert_restarted(server: &Server, run: &Run) -> (usize, Option<String>) {
    let json = &run.json;
    let report = || run.report(server);
    let restart = &json["restart"];
    let patches = run.requests("PATCH");
    let index = patches
        .iter()
        .position(|p| p["request"]["headers"]["if-match"] == "*")
        .unwrap_or_else(|| panic!("no PATCH with If-Match: *{}", report()));
    let patch = patches[index];
    // What the library sent: only the new credentials.
    let new_ufrag = restart["localUfragAfter"].as_str().expect("new ufrag");
    assert_ne!(restart["localUfragBefore"].as_str(), Some(new_ufrag));
    assert_eq!(patch["request"]["headers"]["content-type"], SDPFRAG);
    let sent = patch["request"]["body"].as_str().unwrap_or("");
    assert!(
        sent.starts_with(&format!("a=ice-ufrag:{new_ufrag}\r\n")),
        "{patch}"
    );
    // What the server must answer.
    assert_eq!(
        patch["status"],
        200,
        "ICE restart PATCH: {patch}{}",
        report()
    );
    assert_eq!(
        patch["response"]["headers"]["content-type"],
        SDPFRAG,
        "{}",
        report()
    );
    let new_etag = patch["response"]["headers"]["etag"].as_str();
    assert!(new_etag.is_some(), "ETag of the restart: {patch}");
    assert_ne!(new_etag, json["post"]["etag"].as_str(), "a new ETag");
    let body = patch["response"]["body"].as_str().unwrap_or("");
    let server_ufrag = body
        .lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .unwrap_or_else(|| panic!("no a=ice-ufrag in {body:?}"))
        .trim();
    assert!(body.contains("a=ice-pwd:"), "{body:?}");
    assert!(body.contains("a=candidate:"), "{body:?}");
    assert_ne!(
        json["answerUfrag"].as_str(),
        Some(server_ufrag),
        "the server's ufrag changed{}",
        report()
    );
    // The library took it: no error, its remote description carries the
    // server's new ufrag, the offer/answer state is stable again.
    assert_eq!(restart["error"], Value::Null, "{}", report());
    assert_eq!(
        restart["remoteUfragAfter"].as_str(),
        Some(server_ufrag),
        "{}",
        report()
    );
    assert_eq!(restart["signalingState"], "stable", "{}", report());
    // ICE came back on the new generation...
    assert_eq!(restart["reconnected"], true, "{}", report());
    // ...and the server sends on it: without a new nomination it keeps
    // sending to the old generation's address, which only works while the
    // client still listens there (never after a network change).
    let pair = &restart["after"]["candidatePair"];
    assert_eq!(
        pair["local"]["usernameFragment"].as_str(),
        Some(new_ufrag),
        "{}",
        report()
    );
    assert!(
        pair["bytesReceived"].as_u64() > Some(0),
        "the server sends to the new candidate pair: {pair}{}",
        report()
    );
    (index, new_etag.map(str::to_string))
}

#[tokio::test]
async fn the_library_restarts_ice_and_keeps_publishing() {
    let server = Server::start(ServerSpec::default()).await;
    let token = server.token("dev");
    let Some(args) = command(
        &server,
        "restart",
        &token,
        &["--seconds", "2", "--after", "3"],
    ) else {
        return;
    };
    let run = run(&server, &args).await;
    let report = || run.report(&server);
    let (index, new_etag) = assert_restarted(&server, &run);
    assert_common(&server, &run);
    // Trickle before the restart used the POST's ETag, after it the new one.
    let patches = run.requests("PATCH");
    assert_trickled(
        &server,
        &run,
        &patches[..index],
        run.json["post"]["etag"].as_str(),
    );
    assert_trickled(&server, &run, &patches[index + 1..], new_etag.as_deref());
    // The server kept counting after the restart.
    let (video, audio) = run.growth("restarted", "holdEnd");
    assert!(
        video > 20.0,
        "video packets after the restart: {video}{}",
        report()
    );
    assert!(
        audio > 20.0,
        "audio packets after the restart: {audio}{}",
        report()
    );
    assert_idle_soon(&server).await;
}

#[tokio::test]
async fn the_library_restarts_ice_while_playing() {
    let server = Server::start(viewer_server()).await;
    let Some(args) = command(
        &server,
        "play",
        &view_token(&server),
        &["--restart", "--seconds", "2", "--after", "3"],
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(_owner) = owner(&server, dir.path()).await else {
        return;
    };
    let run = run(&server, &args).await;
    let report = || run.report(&server);
    let (index, new_etag) = assert_restarted(&server, &run);
    assert_common(&server, &run);
    // whep.js has no ETag before the restart (it never reads the POST's),
    // then the restart's.
    let patches = run.requests("PATCH");
    assert_trickled(&server, &run, &patches[..index], None);
    assert_trickled(&server, &run, &patches[index + 1..], new_etag.as_deref());
    // Chrome kept decoding H.264 after the restart: 3 s of 15 fps.
    let restart = &run.json["restart"];
    let after = decoded_between(&restart["reconnectedStats"], &restart["after"]);
    assert!(
        after > 25,
        "frames decoded after the restart: {after}{}",
        report()
    );
    assert_eq!(
        restart["after"]["video"]["codec"],
        "video/H264",
        "{}",
        report()
    );
    let viewers = wait_metric(&server, "vestibule_viewers", Duration::from_secs(3), |v| {
        v == 0.0
    })
    .await;
    assert_eq!(viewers, 0.0, "the DELETE ended the viewer{}", report());
}
