//! Whole-server ingest bench: starts the release `vestibule` binary on
//! 127.0.0.1, connects P str0m publishers (synthetic VP8 30 fps 1.2 KB +
//! Opus 50 pps), and reports WHIP POST -> answer time (p50/p99), server
//! CPU per received packet (from /proc/PID/stat and the server's own
//! packet counter) and memory per connected publisher (RSS growth).
//!
//! With `--subscribers S`, S more sessions (WHIP with only a signal
//! channel, then server-offer WHEP) join after the publishers and receive
//! every track: the report then adds forwarded subscriber-packets/s and
//! server CPU per forwarded packet.
//!
//! `cargo bench --bench whip_ingest -- [--publishers 20] [--subscribers 0] [--seconds 5]`
//! Figures are printed and written to target/whip_ingest.json; nothing is
//! asserted (the machines are shared and noisy: compare ratios of one run).

#[path = "support/floor.rs"]
mod floor;
#[path = "support/procfs.rs"]
mod procfs;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vestibule::auth::TokenKeys;
use vestibule::client::subscriber::Subscriber;
use vestibule::client::{PublishOptions, Publisher};

use procfs::{cpu_seconds, rss_mb};

struct Args {
    publishers: usize,
    subscribers: usize,
    seconds: u64,
    floor: bool,
}

fn args() -> Args {
    let mut a = Args {
        publishers: 20,
        subscribers: 0,
        seconds: 5,
        floor: false,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let value = argv.get(i + 1).and_then(|v| v.parse::<u64>().ok());
        match (argv[i].as_str(), value) {
            ("--publishers", Some(v)) => a.publishers = v as usize,
            ("--subscribers", Some(v)) => a.subscribers = v as usize,
            ("--floor", _) => a.floor = true,
            ("--seconds", Some(v)) => a.seconds = v,
            _ => {}
        }
        i += 1;
    }
    a
}

async fn metric_sum(base: &str, prefix: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .ok()
        .map(|r| r.text())
        .map(|f| async { f.await.unwrap_or_default() });
    let text = match text {
        Some(f) => f.await,
        None => String::new(),
    };
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn packets_received(base: &str) -> f64 {
    metric_sum(base, "vestibule_rtp_packets_received_total{").await
}

async fn bytes_forwarded(base: &str) -> f64 {
    metric_sum(base, "vestibule_rtp_bytes_forwarded_total{").await
}

async fn packets_forwarded(base: &str) -> f64 {
    metric_sum(base, "vestibule_rtp_packets_forwarded_total{").await
}

fn start_server(dir: &std::path::Path, port: u16, key: &str, sessions: usize) -> Child {
    Command::new(env!("CARGO_BIN_EXE_vestibule"))
        .arg("serve")
        .env("VESTIBULE__SERVER__HOST", "127.0.0.1")
        .env("VESTIBULE__SERVER__PORT", port.to_string())
        .env("VESTIBULE__SERVER__DATA_DIR", dir)
        .env("VESTIBULE__SECURITY__JWT__KEY", key)
        .env("VESTIBULE__MEDIA__BIND", "127.0.0.1")
        .env("VESTIBULE__MEDIA__PORT_BASE", "0")
        .env("VESTIBULE__HTTP__RATE_LIMIT_PER_IP", "0")
        .env("VESTIBULE__LOBBY__MAX_SESSIONS", (sessions + 1).to_string())
        .env(
            "VESTIBULE__LOBBY__MAX_TRACKS",
            (2 * sessions + 2).to_string(),
        )
        .env("VESTIBULE__LOG__LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start vestibule")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let dir = std::env::temp_dir().join(format!("vestibule-bench-{}", std::process::id()));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let key = "bench-key-bench-key-bench-key-bench-key";
    let mut server = start_server(&dir, port, key, args.publishers + args.subscribers);
    let pid = server.id();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if reqwest::get(format!("{base}/health")).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let keys = TokenKeys::new(key.as_bytes(), true, Duration::ZERO);
    let rss_before = rss_mb(pid);

    let mut publishers = Vec::new();
    let mut answer_ms = Vec::new();
    for n in 0..args.publishers {
        let token = keys
            .issue(
                &format!("load-{n}"),
                None,
                false,
                None,
                Duration::from_secs(3600),
            )
            .expect("token");
        let opts = PublishOptions::default();
        match Publisher::connect(&base, "/space/demo/stream/demo/whip", &token, opts).await {
            Ok(p) => {
                answer_ms.push(p.answer_time.as_secs_f64() * 1000.0);
                publishers.push(p);
            }
            Err(e) => eprintln!("publisher {n}: {e}"),
        }
    }
    for p in &publishers {
        p.wait_connected(Duration::from_secs(10)).await;
    }
    // Subscribers: a channel-only WHIP session each, then server-offer WHEP.
    let mut subscribers = Vec::new();
    let mut first_packet_ms = Vec::new();
    for n in 0..args.subscribers {
        let token = keys
            .issue(
                &format!("viewer-{n}"),
                None,
                false,
                None,
                Duration::from_secs(3600),
            )
            .expect("token");
        let viewer = PublishOptions {
            audio: false,
            video: false,
            ..PublishOptions::default()
        };
        let Ok(session) =
            Publisher::connect(&base, "/space/demo/stream/demo/whip", &token, viewer).await
        else {
            eprintln!("subscriber {n}: whip failed");
            continue;
        };
        session.wait_connected(Duration::from_secs(10)).await;
        let started = Instant::now();
        match Subscriber::connect(&base, "/space/demo/stream/demo/whep", &token).await {
            Ok(sub) => {
                let answered = started.elapsed();
                sub.wait_connected(Duration::from_secs(5)).await;
                if std::env::var("BENCH_DEBUG").is_ok() {
                    eprintln!(
                        "subscriber {n}: answered {answered:?}, connected {:?}",
                        started.elapsed()
                    );
                }
                let deadline = Instant::now() + Duration::from_secs(5);
                while sub
                    .state
                    .video_packets
                    .load(std::sync::atomic::Ordering::Relaxed)
                    == 0
                    && Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                first_packet_ms.push(started.elapsed().as_secs_f64() * 1000.0);
                subscribers.push((session, sub));
            }
            Err(e) => eprintln!("subscriber {n}: {e}"),
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (cpu0, pkts0, fwd0, t0) = (
        cpu_seconds(pid),
        packets_received(&base).await,
        packets_forwarded(&base).await,
        Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let (cpu1, pkts1, fwd1, elapsed) = (
        cpu_seconds(pid),
        packets_received(&base).await,
        packets_forwarded(&base).await,
        t0.elapsed(),
    );
    let rss_after = rss_mb(pid);
    let forwarded_bytes = bytes_forwarded(&base).await;

    answer_ms.sort_by(f64::total_cmp);
    first_packet_ms.sort_by(f64::total_cmp);
    let forwarded = fwd1 - fwd0;
    let cpu_us_per_forwarded = if forwarded > 0.0 {
        (cpu1 - cpu0) * 1e6 / forwarded
    } else {
        0.0
    };
    let packets = pkts1 - pkts0;
    let cpu_us_per_packet = if packets > 0.0 {
        (cpu1 - cpu0) * 1e6 / packets
    } else {
        0.0
    };
    let connected = publishers.len();
    let mb_per_publisher = if connected > 0 {
        (rss_after - rss_before) / connected as f64
    } else {
        0.0
    };
    let report = serde_json::json!({
        "publishers": connected,
        "packets_per_s": packets / elapsed.as_secs_f64(),
        "server_cpu_pct": (cpu1 - cpu0) * 100.0 / elapsed.as_secs_f64(),
        "server_cpu_us_per_packet": cpu_us_per_packet,
        "answer_ms": {"p50": percentile(&answer_ms, 0.5), "p99": percentile(&answer_ms, 0.99)},
        "server_rss_mb": rss_after,
        "mb_per_publisher": mb_per_publisher,
        "subscribers": subscribers.len(),
        "forwarded_pps": forwarded / elapsed.as_secs_f64(),
        "server_cpu_us_per_forwarded_packet": cpu_us_per_forwarded,
        "whep_to_first_packet_ms": {"p50": percentile(&first_packet_ms, 0.5), "p99": percentile(&first_packet_ms, 0.99)},
    });
    println!(
        "whip_ingest: {connected} publishers, {:.0} packets/s received",
        packets / elapsed.as_secs_f64()
    );
    println!("  server CPU per received packet : {cpu_us_per_packet:.2} µs");
    println!(
        "  WHIP POST -> answer            : p50 {:.2} ms, p99 {:.2} ms",
        percentile(&answer_ms, 0.5),
        percentile(&answer_ms, 0.99)
    );
    println!(
        "  memory per connected publisher : {mb_per_publisher:.3} MB (RSS {rss_before:.1} -> {rss_after:.1} MB)"
    );
    if !subscribers.is_empty() {
        println!(
            "  {} subscribers: {:.0} subscriber-packets/s forwarded, {cpu_us_per_forwarded:.2} µs server CPU per forwarded packet",
            subscribers.len(),
            forwarded / elapsed.as_secs_f64()
        );
        println!(
            "  WHEP POST -> first video packet : p50 {:.1} ms, p99 {:.1} ms",
            percentile(&first_packet_ms, 0.5),
            percentile(&first_packet_ms, 0.99)
        );
    }
    let subscriber_count = subscribers.len();
    drop(subscribers);
    drop(publishers);
    let _ = server.kill();
    let _ = server.wait();
    let mut report = report;
    if args.floor && subscriber_count > 0 && forwarded > 0.0 {
        // The same subscriber-packets (count per subscriber per second and
        // mean payload size) through the floor loop, in this process, with
        // the clients and the server gone.
        let pps = (forwarded / elapsed.as_secs_f64() / subscriber_count as f64).round() as u32;
        let payload = (forwarded_bytes / fwd1.max(1.0)).round() as usize;
        let floor = floor::run(
            subscriber_count,
            pps,
            payload.max(40),
            Duration::from_secs(args.seconds),
        );
        let floor_us = if floor.packets > 0 {
            floor.cpu_seconds * 1e6 / floor.packets as f64
        } else {
            0.0
        };
        let ratio = if floor_us > 0.0 {
            cpu_us_per_forwarded / floor_us
        } else {
            0.0
        };
        println!(
            "  floor (AES-256-GCM + sendmmsg, same packets): {floor_us:.2} µs per packet; server / floor = {ratio:.1}x"
        );
        report["floor_cpu_us_per_packet"] = floor_us.into();
        report["floor_ratio"] = ratio.into();
    }
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/whip_ingest.json");
    let _ = std::fs::write(&out, serde_json::to_vec_pretty(&report).unwrap_or_default());
    let _ = std::fs::remove_dir_all(&dir);
}
