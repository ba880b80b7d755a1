//! Third-party WebRTC clients under `tests/clients` (headless Chromium via
//! playwright-core, aiortc, GStreamer webrtcbin), run as child processes
//! against a [`Server`].

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Server;

pub const VIDEO_PACKETS: &str = "vestibule_rtp_packets_received_total{kind=\"video\"}";
pub const AUDIO_PACKETS: &str = "vestibule_rtp_packets_received_total{kind=\"audio\"}";
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// A third-party publisher under `tests/clients`.
#[derive(Debug, Clone, Copy)]
pub enum Client {
    Chromium,
    Aiortc,
    /// GStreamer's `webrtcbin` driven by `tests/clients/gst_whip.py`
    /// (Debian's GStreamer + python3-gi; needs `--mode publish|play`).
    Gstreamer,
}

impl Client {
    /// What must exist (relative to the crate root) for the client to run.
    pub fn installed_marker(self) -> &'static str {
        match self {
            Client::Chromium => "tests/clients/node_modules/playwright-core",
            Client::Aiortc => "tests/clients/.venv/bin/python",
            Client::Gstreamer => "tests/clients/gst_whip.py",
        }
    }

    /// Why the client cannot run here, or `None` when it can: its marker
    /// is missing, or (GStreamer) `gst_whip.py --check` names the Python
    /// bindings or elements that are not installed.
    pub fn missing(self) -> Option<String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let marker = root.join(self.installed_marker());
        if !marker.exists() {
            return Some(format!("{} not found", marker.display()));
        }
        if let Client::Gstreamer = self {
            let [program, script] = self.program();
            let out = std::process::Command::new(program)
                .args([script, "--check"])
                .current_dir(root)
                .stdin(Stdio::null())
                .output();
            return match out {
                Ok(out) if out.status.success() => None,
                Ok(out) => Some(format!(
                    "{script} --check: {}",
                    String::from_utf8_lossy(&out.stdout).trim()
                )),
                Err(e) => Some(format!("cannot run {program}: {e}")),
            };
        }
        None
    }

    /// Program and script, relative to the crate root.
    pub fn program(self) -> [&'static str; 2] {
        match self {
            Client::Chromium => ["node", "tests/clients/chromium_whip.mjs"],
            Client::Aiortc => [
                "tests/clients/.venv/bin/python",
                "tests/clients/aiortc_whip.py",
            ],
            // Debian's interpreter: python3-gi is installed for it only.
            Client::Gstreamer => ["/usr/bin/python3", "tests/clients/gst_whip.py"],
        }
    }

    /// The full command line publishing into demo/demo as `dev`, or `None`
    /// (after saying so on stderr) when the client is not installed and
    /// this is not CI. Under `CI=true` a missing client fails the test.
    pub fn command(self, server: &Server, extra: &[&str]) -> Option<Vec<String>> {
        if let Some(why) = self.missing() {
            let hint = "run scripts/setup-test-deps.sh";
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{self:?} client missing under CI=true: {why} ({hint})"
            );
            eprintln!("SKIPPED: {self:?} client not installed ({why}; {hint})");
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
pub async fn run_client(args: &[String]) -> Value {
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
pub async fn metric(server: &Server, series: &str) -> f64 {
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

/// What to show when an assertion fails: the client's JSON and the server's logs.
pub fn report(server: &Server, json: &Value) -> String {
    format!(
        "\nclient JSON: {}\nserver logs:\n{}",
        serde_json::to_string_pretty(json).unwrap_or_default(),
        server.logs()
    )
}

/// Within 2 s of the client's exit the server holds no session and no peer.
pub async fn assert_idle_soon(server: &Server) {
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

/// The command line driving the lobby page (`tests/clients/lobby_page.mjs`)
/// in demo/demo with one browser context per `(name, userId)` user, or
/// `None` when Chromium is not installed (skipped, see [`Client::command`]).
pub fn lobby_page_args(
    server: &Server,
    users: &[(&str, &str)],
    scenario: &str,
) -> Option<Vec<String>> {
    let mut args = Client::Chromium.command(server, &[])?;
    args.truncate(1);
    let tokens = users
        .iter()
        .map(|(name, user)| format!("{name}:{}", server.token(user)))
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
            scenario,
        ]
        .map(str::to_string),
    );
    Some(args)
}
