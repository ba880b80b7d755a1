//! Smoke run of the load tool (issue 6, "Tests"): one publisher and five
//! subscribers for a few seconds, in each subscriber mode. It fails only
//! if nothing is delivered or loss exceeds 1 % on loopback; the figures
//! are printed (`--nocapture`), never asserted.
//!
//! Why the bench's modules are compiled into this test (`#[path]`) rather
//! than run as a program: `cargo bench` would build the release profile
//! of everything (minutes) inside the test suite, and Cargo gives tests
//! the path of binaries but not of bench executables. Compiling the same
//! source runs exactly the tool's code against the debug `vestibule`
//! that the other integration tests use, at the cost of one more compile
//! of a few hundred lines.

#[allow(
    dead_code,
    reason = "the smoke test uses the run, not every option of the command line"
)]
#[path = "../benches/load/mod.rs"]
mod load;

use std::time::Duration;

use clap::Parser as _;
use load::args::{Args, Mode};

#[test]
fn the_issue_command_line_parses() {
    let a = Args::try_parse_from([
        "load",
        "--bench",
        "--lobbies",
        "2",
        "--publishers",
        "4",
        "--subscribers",
        "50",
        "--duration",
        "30s",
        "--video-kbps",
        "1200",
        "--fps",
        "30",
        "--audio",
        "--mode",
        "lobby",
        "--find-max",
        "--floor",
        "--json",
        "x.json",
        "--join-rate",
        "20/s",
    ])
    .expect("parses");
    assert_eq!(a.mode, Mode::Lobby);
    assert_eq!(a.duration, Duration::from_secs(30));
    assert_eq!(a.join_rate, 20.0);
    assert_eq!(a.frame_bytes(), 5000);
    assert_eq!(a.gop(), 60);
}

#[test]
fn proc_stat_lines_parse_with_spaces_in_the_name() {
    let stat = "42 (a b) S 1 2 3 4 5 6 7 8 9 10 250 150 0 0";
    assert!((load::procstat::stat_cpu_seconds(stat) - 4.0).abs() < 1e-9);
    assert!(load::procstat::rss_mb(std::process::id()) > 0.0);
}

async fn smoke(mode: &str) {
    let args = Args::try_parse_from([
        "load",
        "--mode",
        mode,
        "--publishers",
        "1",
        "--subscribers",
        "5",
        "--max-subscribers",
        "5",
        "--audio",
        "--duration",
        "3s",
        "--settle",
        "1s",
        "--join-rate",
        "20/s",
    ])
    .expect("arguments");
    let report = load::run(&args).await.expect("the load run");
    report.print();
    let f = &report.figures;
    assert_eq!(report.refused_429, 0, "{:?}", report.join_failures);
    assert!(
        report.join_failures.is_empty(),
        "{:?}",
        report.join_failures
    );
    assert!(f.delivered_pps > 0.0, "nothing delivered: {f:?}");
    assert!(
        f.loss_pct <= 1.0,
        "loss {:.2} % on loopback: {f:?}",
        f.loss_pct
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_receive_the_program_without_loss() {
    smoke("viewers").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lobby_sessions_receive_every_track_without_loss() {
    smoke("lobby").await;
}
