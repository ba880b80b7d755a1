//! Data-plane metric families. Label values are resolved once per worker
//! (pre-bound counters), so the per-packet path only does atomic adds.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Why a datagram was dropped before reaching a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Not parseable as STUN, DTLS, RTP or RTCP.
    Malformed,
    /// STUN naming a ufrag no peer has.
    UnknownUfrag,
    /// Non-STUN from an address no peer has verified.
    UnknownSource,
    /// The peer's `accepts()` refused it (failed STUN integrity, wrong pair).
    Rejected,
    /// The peer failed to process it.
    PeerError,
    /// The send side could not take it (socket buffer full).
    SendBackpressure,
    /// A connectivity check for a WHEP peer whose answer has not arrived.
    Early,
}

impl DropReason {
    const ALL: [DropReason; 7] = [
        DropReason::Malformed,
        DropReason::UnknownUfrag,
        DropReason::UnknownSource,
        DropReason::Rejected,
        DropReason::PeerError,
        DropReason::SendBackpressure,
        DropReason::Early,
    ];

    fn label(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UnknownUfrag => "unknown_ufrag",
            DropReason::UnknownSource => "unknown_source",
            DropReason::Rejected => "rejected",
            DropReason::PeerError => "peer_error",
            DropReason::SendBackpressure => "send_backpressure",
            DropReason::Early => "early_check",
        }
    }
}

/// The families, registered once per process.
#[derive(Debug, Clone)]
pub struct MediaMetrics {
    rtp_packets: IntCounterVec,
    rtp_bytes: IntCounterVec,
    fwd_packets: IntCounterVec,
    fwd_bytes: IntCounterVec,
    dropped: IntCounterVec,
    /// Datagrams received on media sockets.
    pub datagrams_in: IntCounter,
    /// Datagrams sent on media sockets.
    pub datagrams_out: IntCounter,
    /// NACKs sent toward publishers (from ingress stats).
    pub nacks_sent: IntCounter,
    /// Keyframe requests sent toward publishers.
    pub keyframe_requests: IntCounter,
    /// Keyframe requests suppressed by the throttle.
    pub keyframe_requests_throttled: IntCounter,
    /// Media peers on the workers now.
    pub peers: IntGauge,
    /// Answer to ICE + DTLS connected.
    pub setup_seconds: Histogram,
    /// WHEP peers (subscribers) now.
    pub subscribers: IntGauge,
    /// Egress m-line opened to its first forwarded keyframe.
    pub first_frame_seconds: Histogram,
    /// ICE checks without PRIORITY repaired (FFmpeg 8's WHIP muxer).
    pub stun_repaired: IntCounter,
    /// ICE restarts applied (RFC 9725 PATCH with `If-Match: "*"`).
    pub ice_restarts: IntCounter,
    /// Program source switches applied to viewers and live taps, by kind.
    pub program_switches: IntCounterVec,
    signal_messages: IntCounterVec,
    signal_dropped: IntCounterVec,
}

impl MediaMetrics {
    /// Creates the families and registers them.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            rtp_packets: IntCounterVec::new(
                Opts::new(
                    "vestibule_rtp_packets_received_total",
                    "RTP packets received from publishers after SRTP authentication, by kind",
                ),
                &["kind"],
            )?,
            rtp_bytes: IntCounterVec::new(
                Opts::new(
                    "vestibule_rtp_bytes_received_total",
                    "RTP payload bytes received from publishers, by kind",
                ),
                &["kind"],
            )?,
            fwd_packets: IntCounterVec::new(
                Opts::new(
                    "vestibule_rtp_packets_forwarded_total",
                    "RTP packets written to subscribers, by kind",
                ),
                &["kind"],
            )?,
            fwd_bytes: IntCounterVec::new(
                Opts::new(
                    "vestibule_rtp_bytes_forwarded_total",
                    "RTP payload bytes written to subscribers, by kind",
                ),
                &["kind"],
            )?,
            dropped: IntCounterVec::new(
                Opts::new(
                    "vestibule_datagrams_dropped_total",
                    "UDP datagrams dropped, by reason",
                ),
                &["reason"],
            )?,
            datagrams_in: IntCounter::new(
                "vestibule_datagrams_received_total",
                "UDP datagrams received",
            )?,
            datagrams_out: IntCounter::new("vestibule_datagrams_sent_total", "UDP datagrams sent")?,
            nacks_sent: IntCounter::new("vestibule_nacks_sent_total", "NACKs sent to publishers")?,
            keyframe_requests: IntCounter::new(
                "vestibule_keyframe_requests_total",
                "Keyframe requests (PLI) sent to publishers",
            )?,
            keyframe_requests_throttled: IntCounter::new(
                "vestibule_keyframe_requests_throttled_total",
                "Keyframe requests suppressed by the per-stream throttle",
            )?,
            peers: IntGauge::new(
                "vestibule_media_peers",
                "Media peers (str0m Rtc) on the workers",
            )?,
            setup_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "vestibule_peer_setup_seconds",
                    "Time from the SDP answer to ICE + DTLS connected",
                )
                .buckets(vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0]),
            )?,
            subscribers: IntGauge::new(
                "vestibule_subscribers",
                "WHEP peers (subscribers) on the workers",
            )?,
            stun_repaired: IntCounter::new(
                "vestibule_stun_repaired_total",
                "ICE checks without PRIORITY that verified and were repaired",
            )?,
            ice_restarts: IntCounter::new(
                "vestibule_ice_restarts_total",
                "ICE restarts applied by PATCH",
            )?,
            program_switches: IntCounterVec::new(
                Opts::new(
                    "vestibule_program_switches_total",
                    "Program source changes applied in a worker (viewers, live tap), by kind",
                ),
                &["kind"],
            )?,
            first_frame_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "vestibule_first_frame_seconds",
                    "From an egress m-line opening to its first forwarded keyframe",
                )
                .buckets(vec![0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0]),
            )?,
            signal_messages: IntCounterVec::new(
                Opts::new(
                    "vestibule_signal_messages_total",
                    "Signal-channel messages accepted, by direction and type",
                ),
                &["direction", "type"],
            )?,
            signal_dropped: IntCounterVec::new(
                Opts::new(
                    "vestibule_signal_dropped_total",
                    "Signal-channel messages dropped, by reason",
                ),
                &["reason"],
            )?,
        };
        registry.register(Box::new(m.rtp_packets.clone()))?;
        registry.register(Box::new(m.rtp_bytes.clone()))?;
        registry.register(Box::new(m.dropped.clone()))?;
        registry.register(Box::new(m.fwd_packets.clone()))?;
        registry.register(Box::new(m.fwd_bytes.clone()))?;
        registry.register(Box::new(m.datagrams_in.clone()))?;
        registry.register(Box::new(m.datagrams_out.clone()))?;
        registry.register(Box::new(m.nacks_sent.clone()))?;
        registry.register(Box::new(m.keyframe_requests.clone()))?;
        registry.register(Box::new(m.keyframe_requests_throttled.clone()))?;
        registry.register(Box::new(m.peers.clone()))?;
        registry.register(Box::new(m.setup_seconds.clone()))?;
        registry.register(Box::new(m.subscribers.clone()))?;
        registry.register(Box::new(m.first_frame_seconds.clone()))?;
        registry.register(Box::new(m.program_switches.clone()))?;
        registry.register(Box::new(m.ice_restarts.clone()))?;
        registry.register(Box::new(m.stun_repaired.clone()))?;
        registry.register(Box::new(m.signal_messages.clone()))?;
        registry.register(Box::new(m.signal_dropped.clone()))?;
        // Expose every labelled series from the start, so dashboards and
        // tests see zeros instead of absent series.
        for kind in ["audio", "video"] {
            m.rtp_packets.with_label_values(&[kind]);
            m.rtp_bytes.with_label_values(&[kind]);
            m.fwd_packets.with_label_values(&[kind]);
            m.fwd_bytes.with_label_values(&[kind]);
        }
        for reason in DropReason::ALL {
            m.dropped.with_label_values(&[reason.label()]);
        }
        Ok(m)
    }

    /// Pre-bound counters for one worker's hot path.
    pub fn bind(&self) -> BoundMetrics {
        BoundMetrics {
            audio_packets: self.rtp_packets.with_label_values(&["audio"]),
            video_packets: self.rtp_packets.with_label_values(&["video"]),
            audio_bytes: self.rtp_bytes.with_label_values(&["audio"]),
            video_bytes: self.rtp_bytes.with_label_values(&["video"]),
            audio_forwarded: self.fwd_packets.with_label_values(&["audio"]),
            video_forwarded: self.fwd_packets.with_label_values(&["video"]),
            audio_forwarded_bytes: self.fwd_bytes.with_label_values(&["audio"]),
            video_forwarded_bytes: self.fwd_bytes.with_label_values(&["video"]),
            dropped: DropReason::ALL.map(|r| self.dropped.with_label_values(&[r.label()])),
            family: self.clone(),
        }
    }

    /// Counts a signal-channel message.
    pub fn signal_message(&self, direction: &str, kind: &str) {
        self.signal_messages
            .with_label_values(&[direction, kind])
            .inc();
    }

    /// Counts a dropped signal-channel message.
    pub fn signal_dropped(&self, reason: &str) {
        self.signal_dropped.with_label_values(&[reason]).inc();
    }
}

/// Counters resolved for one worker.
#[derive(Debug, Clone)]
pub struct BoundMetrics {
    audio_packets: IntCounter,
    video_packets: IntCounter,
    audio_bytes: IntCounter,
    video_bytes: IntCounter,
    audio_forwarded: IntCounter,
    video_forwarded: IntCounter,
    audio_forwarded_bytes: IntCounter,
    video_forwarded_bytes: IntCounter,
    dropped: [IntCounter; 7],
    /// The families, for rare labelled counts.
    pub family: MediaMetrics,
}

impl BoundMetrics {
    /// Counts one authenticated RTP packet.
    pub fn rtp_received(&self, video: bool, payload_len: usize) {
        let (packets, bytes) = if video {
            (&self.video_packets, &self.video_bytes)
        } else {
            (&self.audio_packets, &self.audio_bytes)
        };
        packets.inc();
        bytes.inc_by(payload_len as u64);
    }

    /// Counts one packet written to a subscriber.
    pub fn rtp_forwarded(&self, video: bool, payload_len: usize) {
        let (packets, bytes) = if video {
            (&self.video_forwarded, &self.video_forwarded_bytes)
        } else {
            (&self.audio_forwarded, &self.audio_forwarded_bytes)
        };
        packets.inc();
        bytes.inc_by(payload_len as u64);
    }

    /// Counts a dropped datagram.
    pub fn dropped(&self, reason: DropReason) {
        let index = DropReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.dropped[index].inc();
    }
}
