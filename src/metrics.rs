//! The Prometheus registry and the server-level families. Every family is
//! named `vestibule_*`; labels never hold ids, users or raw paths.

use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};
use vestibule_actors::metrics::ControlMetrics;

/// All metric families of the process.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// HTTP requests by route template, method and status.
    pub http_requests: IntCounterVec,
    /// HTTP latency by route template and method.
    pub http_duration: HistogramVec,
    /// Requests refused by the per-IP rate limit.
    pub http_rate_limited: IntCounterVec,
    /// Lobbies, sessions, tracks.
    pub control: ControlMetrics,
}

impl Metrics {
    /// Creates and registers every family.
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "vestibule_http_requests_total",
                "HTTP requests by route template, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "vestibule_http_request_duration_seconds",
                "HTTP request latency",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ]),
            &["route", "method"],
        )?;
        let http_rate_limited = IntCounterVec::new(
            Opts::new(
                "vestibule_http_rate_limited_total",
                "Requests answered 429 by the per-IP limit",
            ),
            &["route"],
        )?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(http_rate_limited.clone()))?;
        let control = ControlMetrics::register(&registry)?;
        Ok(Self {
            registry,
            http_requests,
            http_duration,
            http_rate_limited,
            control,
        })
    }

    /// The registry, for subsystems that add their own families.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Prometheus text exposition of every family.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}
