//! Steady-state figures of one window: the difference of two snapshots of
//! every subscriber's counters and of the processes' CPU time.

use std::time::Instant;

use serde::Serialize;
use vestibule::client::stats::ReceiveTotals;

use super::fleet::Fleet;
use super::procstat;
use super::target::Target;

/// Above this loss the step is past the knee (percent).
pub const KNEE_LOSS_PCT: f64 = 0.5;
/// Above this latency p99 the step is past the knee (ms).
pub const KNEE_P99_MS: f64 = 50.0;
/// A generator thread busier than this (percent of a core) cannot keep up.
const SATURATED_THREAD_PCT: f64 = 90.0;
/// Server plus generator above this share of all cores: they compete.
const SATURATED_MACHINE_PCT: f64 = 90.0;

/// Counters at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    at: Instant,
    totals: ReceiveTotals,
    server_cpu: Option<f64>,
    server_threads: Vec<(u32, f64)>,
    loadgen_cpu: f64,
    loadgen_threads: Vec<(u32, f64)>,
    server_forwarded: f64,
    udp_drops: u64,
}

/// Takes a snapshot of every subscriber and both processes.
pub async fn snapshot(fleet: &Fleet, target: &Target) -> Snapshot {
    let mut totals = ReceiveTotals::default();
    for m in &fleet.members {
        if let Ok(stats) = m.whep.state.stats.lock() {
            totals.merge(&stats.totals());
        }
    }
    Snapshot {
        at: Instant::now(),
        totals,
        server_cpu: target.pid.map(procstat::cpu_seconds),
        server_threads: target
            .pid
            .map(procstat::thread_cpu_seconds)
            .unwrap_or_default(),
        loadgen_cpu: procstat::self_cpu_seconds(),
        loadgen_threads: procstat::thread_cpu_seconds(std::process::id()),
        server_forwarded: target.metric("vestibule_rtp_packets_forwarded_total").await,
        udp_drops: procstat::udp_rcvbuf_errors(),
    }
}

/// Latency quantiles, ms.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

/// The figures of one window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Figures {
    /// Subscribers per lobby during the window.
    pub subscribers_per_lobby: usize,
    /// Subscribers in all lobbies.
    pub subscribers: usize,
    /// Subscriber peers that died before the window ended.
    pub subscribers_ended: usize,
    /// Subscribers that never received a keyframe.
    pub subscribers_without_keyframe: usize,
    /// Window length, s.
    pub seconds: f64,
    /// Subscriber-packets/s received by the clients.
    pub delivered_pps: f64,
    /// Subscriber-packets/s the server says it forwarded (Vestibule only).
    pub server_forwarded_pps: f64,
    /// Datagrams the kernel dropped for full receive buffers (any socket
    /// of this network namespace) during the window.
    pub udp_rcvbuf_drops: u64,
    /// Mean RTP payload bytes delivered per packet.
    pub payload_bytes: f64,
    /// Sequence gaps after each stream's first keyframe, percent.
    pub loss_pct: f64,
    /// Send stamp -> receive, ms.
    pub latency_ms: Latency,
    /// Latency samples (stamped packets) in the window.
    pub latency_samples: u64,
    /// Server CPU, percent of one core.
    pub server_cpu_pct: f64,
    /// The server's busiest thread (a media worker: a lobby lives on
    /// one), percent of one core.
    pub server_busiest_thread_pct: f64,
    /// Server CPU per delivered subscriber-packet, µs.
    pub server_cpu_us_per_packet: f64,
    /// Server RSS at the end of the window, MB.
    pub server_rss_mb: f64,
    /// Server RSS growth since before the first subscriber, per subscriber, MB.
    pub mb_per_subscriber: f64,
    /// Load generator CPU, percent of one core.
    pub loadgen_cpu_pct: f64,
    /// Its busiest thread, percent of one core.
    pub loadgen_busiest_thread_pct: f64,
    /// The generator could not keep up, or the machine was full: the
    /// figures then measure the machine as much as the server.
    pub loadgen_saturated: bool,
}

impl Figures {
    /// Past the knee: too much loss or latency.
    pub fn past_knee(&self) -> Option<&'static str> {
        if self.loss_pct > KNEE_LOSS_PCT {
            Some("loss")
        } else if self.latency_ms.p99 > KNEE_P99_MS {
            Some("latency")
        } else {
            None
        }
    }
}

/// The figures between two snapshots.
pub fn figures(
    a: &Snapshot,
    b: &Snapshot,
    fleet: &Fleet,
    target: &Target,
    rss_before: f64,
    per_lobby: usize,
) -> Figures {
    let seconds = b.at.duration_since(a.at).as_secs_f64().max(1e-9);
    let window = b.totals.since(&a.totals);
    let delivered = window.received as f64;
    let server_cpu = match (a.server_cpu, b.server_cpu) {
        (Some(x), Some(y)) => y - x,
        _ => 0.0,
    };
    let rss = target.pid.map_or(0.0, procstat::rss_mb);
    let subscribers = fleet.members.len();
    let loadgen_cpu_pct = (b.loadgen_cpu - a.loadgen_cpu) * 100.0 / seconds;
    let server_cpu_pct = server_cpu * 100.0 / seconds;
    let busiest = procstat::busiest_thread_pct(&a.loadgen_threads, &b.loadgen_threads, seconds);
    let machine_pct = (loadgen_cpu_pct + server_cpu_pct) / procstat::cores() as f64;
    let q = |p: f64| window.latency.quantile(p) as f64 / 1000.0;
    Figures {
        subscribers_per_lobby: per_lobby,
        subscribers,
        subscribers_ended: fleet
            .members
            .iter()
            .filter(|m| {
                m.whep
                    .state
                    .ended
                    .load(std::sync::atomic::Ordering::Acquire)
            })
            .count(),
        subscribers_without_keyframe: fleet
            .members
            .iter()
            .filter(|m| {
                m.whep
                    .state
                    .stats
                    .lock()
                    .is_ok_and(|s| s.first_keyframe_at.is_none())
            })
            .count(),
        seconds,
        delivered_pps: delivered / seconds,
        server_forwarded_pps: (b.server_forwarded - a.server_forwarded) / seconds,
        udp_rcvbuf_drops: b.udp_drops.saturating_sub(a.udp_drops),
        payload_bytes: if delivered > 0.0 {
            window.bytes as f64 / delivered
        } else {
            0.0
        },
        loss_pct: window.loss_pct(),
        latency_ms: Latency {
            p50: q(0.5),
            p99: q(0.99),
            max: window.latency.max as f64 / 1000.0,
        },
        latency_samples: window.latency.count(),
        server_cpu_pct,
        server_busiest_thread_pct: procstat::busiest_thread_pct(
            &a.server_threads,
            &b.server_threads,
            seconds,
        ),
        server_cpu_us_per_packet: if delivered > 0.0 {
            server_cpu * 1e6 / delivered
        } else {
            0.0
        },
        server_rss_mb: rss,
        mb_per_subscriber: if subscribers > 0 {
            (rss - rss_before) / subscribers as f64
        } else {
            0.0
        },
        loadgen_cpu_pct,
        loadgen_busiest_thread_pct: busiest,
        loadgen_saturated: busiest > SATURATED_THREAD_PCT || machine_pct > SATURATED_MACHINE_PCT,
    }
}
