//! Live: restream a lobby's program to RTMP (API.md "Live").
//!
//! ```text
//! worker tap (src/media/tap.rs) --plain RTP, 127.0.0.1--> ffmpeg --FLV--> rtmp(s)://
//!        ^ TapEvent::Sources                                  ^ spawn / SIGINT / progress
//!        `------------------ Restream actor (restream.rs) ----'
//! ```
//!
//! Files: `destination` (endpoint/key syntax, address policy, redaction),
//! `ffmpeg` (SDP, command line, availability), `run` (one ffmpeg process),
//! `restream` (the supervising actor), `metrics`.

pub mod destination;
pub mod ffmpeg;
pub mod metrics;
pub mod restream;
pub mod run;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::LiveConfig;
use metrics::LiveMetrics;

/// What the HTTP layer needs to start restreams.
#[derive(Debug, Clone)]
pub struct LiveService {
    /// `live.*`.
    pub config: Arc<LiveConfig>,
    /// Metric families.
    pub metrics: LiveMetrics,
    /// Where SDP files go (`server.data_dir`).
    pub work_dir: PathBuf,
    /// Whether ffmpeg ran at start.
    ffmpeg: Arc<AtomicBool>,
}

impl LiveService {
    /// Probes ffmpeg once; the result stands until restart.
    pub fn new(config: LiveConfig, metrics: LiveMetrics, work_dir: PathBuf) -> Self {
        let found = ffmpeg::available(&config.ffmpeg_path);
        if !found {
            tracing::warn!(path = %config.ffmpeg_path.display(), "ffmpeg not found: live restreaming is unavailable");
        }
        Self {
            config: Arc::new(config),
            metrics,
            work_dir,
            ffmpeg: Arc::new(AtomicBool::new(found)),
        }
    }

    /// Whether restreams can run.
    pub fn is_available(&self) -> bool {
        self.ffmpeg.load(Ordering::Relaxed)
    }
}
