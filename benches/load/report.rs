//! The result of a run: a human table on stdout and a JSON document whose
//! top-level keys are the figures of the measured step (the knee with
//! `--find-max`), followed by every step.

use serde::Serialize;

use super::args::{Args, Mode};
use super::fleet::Setup;
use super::measure::Figures;

/// p50/p99 of the setup times, ms.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SetupFigures {
    /// POST -> answer.
    pub answer_p50: f64,
    /// POST -> answer.
    pub answer_p99: f64,
    /// POST -> ICE/DTLS connected.
    pub connected_p50: f64,
    /// POST -> ICE/DTLS connected.
    pub connected_p99: f64,
    /// WHEP POST -> first keyframe.
    pub first_keyframe_p50: f64,
    /// WHEP POST -> first keyframe.
    pub first_keyframe_p99: f64,
    /// Joins timed.
    pub joins: usize,
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let i = ((values.len() as f64 - 1.0) * p).round() as usize;
    values[i.min(values.len() - 1)]
}

impl SetupFigures {
    /// Quantiles over joins (missing values, e.g. no keyframe, left out).
    pub fn of(setups: &[Setup]) -> SetupFigures {
        let mut answer: Vec<f64> = setups.iter().map(|s| s.answer_ms).collect();
        let mut connected: Vec<f64> = setups.iter().filter_map(|s| s.connected_ms).collect();
        let mut keyframe: Vec<f64> = setups.iter().filter_map(|s| s.first_keyframe_ms).collect();
        SetupFigures {
            answer_p50: percentile(&mut answer, 0.5),
            answer_p99: percentile(&mut answer, 0.99),
            connected_p50: percentile(&mut connected, 0.5),
            connected_p99: percentile(&mut connected, 0.99),
            first_keyframe_p50: percentile(&mut keyframe, 0.5),
            first_keyframe_p99: percentile(&mut keyframe, 0.99),
            joins: setups.len(),
        }
    }
}

/// One measured step.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Steady-state figures.
    #[serde(flatten)]
    pub figures: Figures,
    /// Setup times of the joins of this step.
    pub setup_ms: SetupFigures,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Mode.
    pub mode: Mode,
    /// Lobbies.
    pub lobbies: usize,
    /// Publishers per lobby.
    pub publishers: usize,
    /// Video kbit/s per publisher.
    pub video_kbps: u32,
    /// Frames per second.
    pub fps: u32,
    /// Audio published.
    pub audio: bool,
    /// Cores of the machine (server and generator share them).
    pub cores: usize,
    /// Figures of the reported step (the knee with --find-max).
    #[serde(flatten)]
    pub figures: Figures,
    /// Setup times over every subscriber join of the run.
    pub setup_ms: SetupFigures,
    /// Setup times of the publishers.
    pub publisher_setup_ms: SetupFigures,
    /// --find-max: the last step within the knee criteria (subscribers per lobby).
    pub knee_subscribers: Option<usize>,
    /// What ended --find-max: "loss", "latency", "429", "join-failed",
    /// "max-subscribers".
    pub limit: Option<String>,
    /// Joins refused with 429.
    pub refused_429: usize,
    /// Other failed joins (first reasons).
    pub join_failures: Vec<String>,
    /// Floor CPU per packet, µs (--floor).
    pub floor_cpu_us_per_packet: Option<f64>,
    /// Server CPU per packet over floor CPU per packet (--floor).
    pub floor_ratio: Option<f64>,
    /// Every step.
    pub steps: Vec<Step>,
}

impl Report {
    /// An empty report for `args`.
    pub fn new(args: &Args) -> Report {
        Report {
            mode: args.mode,
            lobbies: args.lobbies,
            publishers: args.publishers,
            video_kbps: args.video_kbps,
            fps: args.fps,
            audio: args.audio,
            cores: super::procstat::cores(),
            figures: Figures::default(),
            setup_ms: SetupFigures::default(),
            publisher_setup_ms: SetupFigures::default(),
            knee_subscribers: None,
            limit: None,
            refused_429: 0,
            join_failures: Vec::new(),
            floor_cpu_us_per_packet: None,
            floor_ratio: None,
            steps: Vec::new(),
        }
    }

    /// Writes the JSON document.
    pub fn write_json(&self, path: &std::path::Path) -> std::io::Result<()> {
        std::fs::write(
            path,
            serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?,
        )
    }

    /// The human table.
    pub fn print(&self) {
        println!(
            "load: mode {:?}, {} lobby(s) x {} publisher(s), video {} kbit/s @ {} fps{}, {} cores",
            self.mode,
            self.lobbies,
            self.publishers,
            self.video_kbps,
            self.fps,
            if self.audio { " + audio" } else { "" },
            self.cores
        );
        println!(
            "{:>6} {:>10} {:>7} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>8} {:>8} {:>7} {:>7}",
            "subs",
            "deliv pps",
            "loss %",
            "lat p50",
            "lat p99",
            "lat max",
            "srv µs/p",
            "srv %",
            "srv thr",
            "RSS MB",
            "MB/sub",
            "gen %",
            "gen thr"
        );
        for s in &self.steps {
            let f = &s.figures;
            println!(
                "{:>6} {:>10.0} {:>7.3} {:>8.2} {:>8.2} {:>8.1} {:>8.2} {:>7.0} {:>7.0} {:>8.1} {:>8.3} {:>7.0} {:>6.0}{}",
                f.subscribers,
                f.delivered_pps,
                f.loss_pct,
                f.latency_ms.p50,
                f.latency_ms.p99,
                f.latency_ms.max,
                f.server_cpu_us_per_packet,
                f.server_cpu_pct,
                f.server_busiest_thread_pct,
                f.server_rss_mb,
                f.mb_per_subscriber,
                f.loadgen_cpu_pct,
                f.loadgen_busiest_thread_pct,
                match (f.loadgen_saturated, f.past_knee()) {
                    (true, Some(why)) => format!("  past knee ({why}); generator saturated"),
                    (true, None) => "  generator saturated".to_string(),
                    (false, Some(why)) => format!("  past knee ({why})"),
                    (false, None) => String::new(),
                }
            );
        }
        let s = &self.setup_ms;
        println!(
            "setup ({} joins): answer p50 {:.1} / p99 {:.1} ms, connected p50 {:.1} / p99 {:.1} ms, first keyframe p50 {:.1} / p99 {:.1} ms",
            s.joins,
            s.answer_p50,
            s.answer_p99,
            s.connected_p50,
            s.connected_p99,
            s.first_keyframe_p50,
            s.first_keyframe_p99
        );
        let p = &self.publisher_setup_ms;
        println!(
            "publishers: answer p50 {:.1} ms, connected p50 {:.1} ms",
            p.answer_p50, p.connected_p50
        );
        if let Some(knee) = self.knee_subscribers {
            println!(
                "knee: {knee} subscribers per lobby ({:.0} subscriber-packets/s); next step failed on {}",
                self.figures.delivered_pps,
                self.limit.as_deref().unwrap_or("?")
            );
        } else if let Some(limit) = &self.limit {
            println!("stopped by: {limit} (not a knee)");
        }
        if self.refused_429 > 0 || !self.join_failures.is_empty() {
            println!(
                "joins refused with 429: {}, failed: {} {:?}",
                self.refused_429,
                self.join_failures.len(),
                self.join_failures.iter().take(3).collect::<Vec<_>>()
            );
        }
        if let (Some(floor), Some(ratio)) = (self.floor_cpu_us_per_packet, self.floor_ratio) {
            println!(
                "floor (AES-256-GCM + sendmmsg, same packets): {floor:.2} µs per packet; server / floor = {ratio:.2}x"
            );
        }
        if self.steps.iter().any(|s| s.figures.loadgen_saturated) {
            println!(
                "warning: the load generator was saturated (a thread > 90 % of a core, or server + generator > 90 % of all cores): figures include its limits"
            );
        }
    }
}
