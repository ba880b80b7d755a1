//! The load tool: drives a WHIP/WHEP server with str0m clients on
//! loopback and measures it (issue 6). `benches/load.rs` is its command
//! line; `tests/load_smoke.rs` runs the same code for a few seconds.
//!
//! Files: `args` (command line), `target` (the server, URLs, tokens),
//! `fleet` (publishers and timed subscriber joins), `procstat` (/proc),
//! `measure` (window figures), `report` (table and JSON); the floor loop
//! is shared with `whip_ingest` from `benches/support/floor.rs`.

pub mod args;
pub mod fleet;
#[path = "../support/floor.rs"]
mod floor;
pub mod measure;
pub mod procstat;
pub mod report;
pub mod target;

use std::sync::Arc;
use std::time::Duration;

use vestibule::client::pool::ReceivePool;

use args::Args;
use fleet::Fleet;
use report::{Report, SetupFigures, Step};
use target::Target;

/// Runs the whole load (every --find-max step, then the floor).
pub async fn run(args: &Args) -> anyhow::Result<Report> {
    let mut report = Report::new(args);
    let target = Arc::new(Target::open(args).await?);
    let pool = ReceivePool::new(args.pool_threads())?;
    let mut fleet = Fleet::default();
    fleet.join_publishers(&target, args).await?;
    report.publisher_setup_ms = SetupFigures::of(&fleet.publisher_setup);
    // Let the first keyframes through before anyone subscribes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = target.pid.map_or(0.0, procstat::rss_mb);

    let mut per_lobby = args.subscribers.max(1);
    let mut knee: Option<Step> = None;
    loop {
        let joined_before = fleet.setup.len();
        fleet
            .join_subscribers(&target, args, &pool, per_lobby)
            .await;
        let setup = SetupFigures::of(&fleet.setup[joined_before..]);
        if fleet.refused > 0 {
            report.limit = Some("429".into());
            break;
        }
        if !fleet.failed.is_empty() {
            report.limit = Some("join-failed".into());
            break;
        }
        tokio::time::sleep(args.settle).await;
        let a = measure::snapshot(&fleet, &target).await;
        tokio::time::sleep(args.duration).await;
        let b = measure::snapshot(&fleet, &target).await;
        let figures = measure::figures(&a, &b, &fleet, &target, rss_before, per_lobby);
        let past = figures.past_knee();
        let step = Step {
            figures,
            setup_ms: setup,
        };
        report.steps.push(step.clone());
        if !args.find_max {
            knee = Some(step);
            break;
        }
        if let Some(why) = past {
            report.limit = Some(why.into());
            break;
        }
        knee = Some(step);
        if per_lobby >= args.max_subscribers {
            report.limit = Some("max-subscribers".into());
            break;
        }
        let next = (per_lobby as f64 * args.step_factor).ceil() as usize;
        per_lobby = next.max(per_lobby + 1).min(args.max_subscribers);
    }
    let reported = knee.clone().or_else(|| report.steps.last().cloned());
    if let Some(step) = reported {
        report.figures = step.figures;
    }
    if args.find_max {
        report.knee_subscribers = knee.map(|s| s.figures.subscribers_per_lobby);
    }
    report.setup_ms = SetupFigures::of(&fleet.setup);
    report.refused_429 = fleet.refused;
    report.join_failures = fleet.failed.iter().take(5).cloned().collect();

    drop(fleet);
    drop(pool);
    if let Ok(mut target) = Arc::try_unwrap(target) {
        target.close();
    }
    if args.floor {
        run_floor(args, &mut report);
    }
    Ok(report)
}

/// The same subscriber-packets (rate per subscriber, mean size) through
/// the SRTP + sendmmsg floor, with the clients and the server gone.
fn run_floor(args: &Args, report: &mut Report) {
    let f = &report.figures;
    if f.subscribers == 0 || f.delivered_pps <= 0.0 || f.server_cpu_us_per_packet <= 0.0 {
        return;
    }
    let pps = (f.delivered_pps / f.subscribers as f64).round().max(1.0) as u32;
    let result = floor::run(
        f.subscribers,
        pps,
        (f.payload_bytes.round() as usize).max(40),
        args.duration,
    );
    if result.packets == 0 {
        return;
    }
    let floor_us = result.cpu_seconds * 1e6 / result.packets as f64;
    report.floor_cpu_us_per_packet = Some(floor_us);
    if floor_us > 0.0 {
        report.floor_ratio = Some(f.server_cpu_us_per_packet / floor_us);
    }
}
