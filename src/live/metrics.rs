//! Live restream metric families.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

/// Every live family.
#[derive(Debug, Clone)]
pub struct LiveMetrics {
    /// Restreams by status (`online`, `offline`).
    pub lives: IntGaugeVec,
    /// Restreams started by `POST /live/start`.
    pub starts: IntCounter,
    /// ffmpeg runs by video mode (`copy`, `x264`, `none` for audio only).
    pub runs: IntCounterVec,
    /// Runs restarted after a failure.
    pub restarts: IntCounter,
    /// FLV bytes pushed.
    pub bytes_out: IntCounter,
    /// ffmpeg exits by reason (`stopped`, `switched`, `no_source`, `failed`, `killed`, `spawn_failed`).
    pub exits: IntCounterVec,
    /// Destinations refused at a (re)connect.
    pub refused: IntCounter,
    /// Time from start (or restart) to the first pushed bytes.
    pub time_to_online: Histogram,
}

impl LiveMetrics {
    /// Creates and registers the families.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            lives: IntGaugeVec::new(
                Opts::new("vestibule_lives", "Live restreams by status"),
                &["status"],
            )?,
            starts: IntCounter::new("vestibule_live_starts_total", "Live restreams started")?,
            runs: IntCounterVec::new(
                Opts::new(
                    "vestibule_live_runs_total",
                    "ffmpeg runs by video mode (copy, x264, none)",
                ),
                &["mode"],
            )?,
            restarts: IntCounter::new(
                "vestibule_live_restarts_total",
                "ffmpeg runs restarted after a failure",
            )?,
            bytes_out: IntCounter::new(
                "vestibule_live_bytes_out_total",
                "FLV bytes pushed to RTMP endpoints",
            )?,
            exits: IntCounterVec::new(
                Opts::new(
                    "vestibule_live_ffmpeg_exits_total",
                    "ffmpeg exits by reason",
                ),
                &["reason"],
            )?,
            refused: IntCounter::new(
                "vestibule_live_destination_refused_total",
                "RTMP destinations refused by the destination checks at a (re)connect",
            )?,
            time_to_online: Histogram::with_opts(
                HistogramOpts::new(
                    "vestibule_live_time_to_online_seconds",
                    "Time from an ffmpeg start to its first pushed bytes",
                )
                .buckets(vec![0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0]),
            )?,
        };
        registry.register(Box::new(m.lives.clone()))?;
        registry.register(Box::new(m.starts.clone()))?;
        registry.register(Box::new(m.runs.clone()))?;
        registry.register(Box::new(m.restarts.clone()))?;
        registry.register(Box::new(m.bytes_out.clone()))?;
        registry.register(Box::new(m.exits.clone()))?;
        registry.register(Box::new(m.refused.clone()))?;
        registry.register(Box::new(m.time_to_online.clone()))?;
        for status in ["online", "offline"] {
            m.lives.with_label_values(&[status]).set(0);
        }
        Ok(m)
    }
}
