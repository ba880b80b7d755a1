//! Control-plane metrics: lobbies, sessions and tracks.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

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
    /// Signal-channel requests the control plane ignored, by reason.
    pub signal_ignored: IntCounterVec,
    /// Tracks refused because the lobby had `lobby.max_tracks`.
    pub tracks_refused: IntCounter,
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
        };
        registry.register(Box::new(metrics.sessions_connected.clone()))?;
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
