//! Control-plane metrics: lobbies, sessions and tracks.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Gauges and counters the actors keep up to date.
#[derive(Debug, Clone)]
pub struct ControlMetrics {
    /// Lobbies open now.
    pub lobbies: IntGauge,
    /// Lobbies ever created.
    pub lobbies_created: IntCounter,
    /// Sessions in lobbies now.
    pub sessions: IntGauge,
    /// Sessions ended, by reason.
    pub sessions_ended: IntCounterVec,
    /// Published tracks now, by kind.
    pub tracks: IntGaugeVec,
    /// Tracks ever published, by kind.
    pub tracks_published: IntCounterVec,
    /// Sessions whose WHIP peer completed ICE and DTLS, now.
    pub sessions_connected: IntGauge,
    /// Plain WHEP viewers now.
    pub viewers: IntGauge,
    /// Signal-channel requests the control plane ignored, by reason.
    pub signal_ignored: IntCounterVec,
    /// Tracks refused because the lobby had `lobby.max_tracks`.
    pub tracks_refused: IntCounter,
    /// Server offers sent on signal channels (renegotiations).
    pub renegotiations: IntCounter,
    /// Time to build and send one renegotiation offer.
    pub renegotiation_seconds: Histogram,
    /// Unanswered offers re-sent.
    pub offers_resent: IntCounter,
    /// WHEP connections closed because an offer was never answered.
    pub offers_abandoned: IntCounter,
}

impl ControlMetrics {
    /// Creates the families and registers them in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self {
            lobbies: IntGauge::new("vestibule_lobbies", "Lobbies open now")?,
            lobbies_created: IntCounter::new("vestibule_lobbies_created_total", "Lobbies created")?,
            sessions: IntGauge::new("vestibule_sessions", "Lobby sessions now")?,
            sessions_ended: IntCounterVec::new(
                Opts::new(
                    "vestibule_sessions_ended_total",
                    "Lobby sessions ended, by reason",
                ),
                &["reason"],
            )?,
            tracks: IntGaugeVec::new(
                Opts::new("vestibule_tracks", "Published tracks now"),
                &["kind"],
            )?,
            tracks_published: IntCounterVec::new(
                Opts::new("vestibule_tracks_published_total", "Tracks published"),
                &["kind"],
            )?,
            sessions_connected: IntGauge::new(
                "vestibule_sessions_connected",
                "Sessions whose WHIP peer is connected (ICE + DTLS) now",
            )?,
            viewers: IntGauge::new(
                "vestibule_viewers",
                "Plain WHEP viewers of lobby programs now",
            )?,
            signal_ignored: IntCounterVec::new(
                Opts::new(
                    "vestibule_signal_ignored_total",
                    "Signal-channel requests ignored by the control plane, by reason",
                ),
                &["reason"],
            )?,
            tracks_refused: IntCounter::new(
                "vestibule_tracks_refused_total",
                "Tracks not published because the lobby was full",
            )?,
            renegotiations: IntCounter::new(
                "vestibule_renegotiations_total",
                "Server offers sent on signal channels",
            )?,
            renegotiation_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "vestibule_renegotiation_seconds",
                    "Time to build and send one renegotiation offer",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                ]),
            )?,
            offers_resent: IntCounter::new(
                "vestibule_offers_resent_total",
                "Unanswered server offers re-sent",
            )?,
            offers_abandoned: IntCounter::new(
                "vestibule_offers_abandoned_total",
                "WHEP connections closed because an offer was never answered",
            )?,
        };
        registry.register(Box::new(metrics.renegotiations.clone()))?;
        registry.register(Box::new(metrics.renegotiation_seconds.clone()))?;
        registry.register(Box::new(metrics.offers_resent.clone()))?;
        registry.register(Box::new(metrics.offers_abandoned.clone()))?;
        registry.register(Box::new(metrics.sessions_connected.clone()))?;
        registry.register(Box::new(metrics.viewers.clone()))?;
        registry.register(Box::new(metrics.signal_ignored.clone()))?;
        registry.register(Box::new(metrics.tracks_refused.clone()))?;
        registry.register(Box::new(metrics.lobbies.clone()))?;
        registry.register(Box::new(metrics.lobbies_created.clone()))?;
        registry.register(Box::new(metrics.sessions.clone()))?;
        registry.register(Box::new(metrics.sessions_ended.clone()))?;
        registry.register(Box::new(metrics.tracks.clone()))?;
        registry.register(Box::new(metrics.tracks_published.clone()))?;
        for kind in ["audio", "video"] {
            metrics.tracks.with_label_values(&[kind]).set(0);
        }
        Ok(metrics)
    }

    /// Unregistered metrics, for unit tests.
    pub fn unregistered() -> Self {
        Self::register(&Registry::new()).unwrap_or_else(|e| panic!("metric names are static: {e}"))
    }
}
