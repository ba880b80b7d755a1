//! The load tool's command line. `cargo bench` passes `--bench` to every
//! bench binary, so that flag is accepted and ignored.

use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Who the subscribers are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Each subscriber a lobby session: WHIP with a signal channel, then
    /// server-offer WHEP receiving every track of the lobby.
    Lobby,
    /// Plain client-offer WHEP viewers of the program (the fan-out case).
    Viewers,
    /// Plain WHIP and client-offer WHEP to `--whip-url`/`--whep-url`, so
    /// the same load can be pointed at another WHIP/WHEP server.
    Standard,
}

/// `cargo bench --bench load -- [options]`
#[derive(Debug, Clone, Parser)]
#[command(
    name = "load",
    about = "Drives a WHIP/WHEP server with str0m clients and measures it"
)]
pub struct Args {
    /// Lobbies (streams), each with its own publishers and subscribers.
    #[arg(long, default_value_t = 1)]
    pub lobbies: usize,
    /// Publishers per lobby (the first one owns the stream: its tracks are
    /// the program).
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Subscribers per lobby (the first step with --find-max).
    #[arg(long, default_value_t = 10)]
    pub subscribers: usize,
    /// Measurement window (per step with --find-max), e.g. 30s.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Time after the last join before measuring.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub settle: Duration,
    /// Video bitrate per publisher, kbit/s (frame size = kbps / 8 / fps).
    #[arg(long, default_value_t = 1200)]
    pub video_kbps: u32,
    /// Video frames per second.
    #[arg(long, default_value_t = 30)]
    pub fps: u32,
    /// Seconds between keyframes.
    #[arg(long, default_value_t = 2.0)]
    pub keyframe_interval: f64,
    /// Publish 20 ms Opus packets too.
    #[arg(long)]
    pub audio: bool,
    /// Who the subscribers are.
    #[arg(long, value_enum, default_value_t = Mode::Viewers)]
    pub mode: Mode,
    /// WHIP URL template for --mode standard, `{stream}` replaced by the
    /// lobby's stream (default: this server's lobby URL).
    #[arg(long)]
    pub whip_url: Option<String>,
    /// WHEP URL template for --mode standard.
    #[arg(long)]
    pub whep_url: Option<String>,
    /// A running Vestibule to target instead of starting the release
    /// binary (needs --key or VESTIBULE__SECURITY__JWT__KEY to sign tokens).
    #[arg(long)]
    pub url: Option<String>,
    /// HS256 key to sign tokens for --url (default: the environment's
    /// VESTIBULE__SECURITY__JWT__KEY).
    #[arg(long)]
    pub key: Option<String>,
    /// A fixed Bearer token for every request (another server in
    /// --mode standard); no tokens are signed then.
    #[arg(long)]
    pub token: Option<String>,
    /// PID of the --url server, for its CPU and memory figures.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Media workers of the started server (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Raise subscribers until loss > 0.5 % or latency p99 > 50 ms.
    #[arg(long)]
    pub find_max: bool,
    /// Factor between --find-max steps.
    #[arg(long, default_value_t = 1.5)]
    pub step_factor: f64,
    /// Upper bound of subscribers per lobby (also the server's limits).
    #[arg(long, default_value_t = 3000)]
    pub max_subscribers: usize,
    /// Also run the SRTP + sendmmsg floor with the same packets.
    #[arg(long)]
    pub floor: bool,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// Joins started per second, e.g. 50/s.
    #[arg(long, default_value = "50/s", value_parser = parse_rate)]
    pub join_rate: f64,
    /// Threads receiving for all subscribers (0 = half the cores).
    #[arg(long, default_value_t = 0)]
    pub pool_threads: usize,
    /// Print the server's log (warn level) to stderr.
    #[arg(long)]
    pub server_log: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    pub bench: bool,
}

/// `N/s` or `N`.
fn parse_rate(s: &str) -> Result<f64, String> {
    let n = s.strip_suffix("/s").unwrap_or(s);
    match n.parse::<f64>() {
        Ok(v) if v > 0.0 => Ok(v),
        _ => Err(format!("a join rate like 50/s, not {s:?}")),
    }
}

impl Args {
    /// Bytes per video frame at the configured bitrate.
    pub fn frame_bytes(&self) -> usize {
        (self.video_kbps as usize * 1000 / 8 / self.fps.max(1) as usize).max(32)
    }

    /// Frames between keyframes.
    pub fn gop(&self) -> u32 {
        ((self.keyframe_interval * f64::from(self.fps)).round() as u32).max(1)
    }

    /// Receive pool threads.
    pub fn pool_threads(&self) -> usize {
        if self.pool_threads > 0 {
            return self.pool_threads;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / 2).max(1)
    }
}
