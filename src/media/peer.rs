//! One str0m `Rtc` and what the worker keeps beside it: routes, timers,
//! liveness and, for a WHIP (ingress) peer, the signal channel and the
//! published sections. Sans-IO: every method takes `now`; transmits go to
//! the caller's queue and control events to the session's recipient.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use actix::Recipient;
use str0m::channel::ChannelId;
use str0m::media::{KeyframeRequestKind, MediaKind as StrMediaKind, Mid};
use str0m::rtp::Ssrc;
use str0m::{Event, IceConnectionState, Output, Rtc};
use vestibule_actors::ids::{ParticipantId, SessionId};
use vestibule_actors::media::{IngressSection, MediaEvent, PeerLoss, PublishedMedia};
use vestibule_actors::snapshot::MediaKind;

use super::metrics::BoundMetrics;
use super::sdp_meta;
use super::signal::{self, Admission, SignalMessage, SignalRateLimit};
use super::udp::SendQueue;

/// Label of the signal data channel (API.md "Signal channel").
pub const SIGNAL_LABEL: &str = "signal";
/// How long after DTLS connects a channel labelled otherwise may become the signal channel.
pub const SIGNAL_FALLBACK: Duration = Duration::from_secs(2);
/// At most one keyframe request per stream per this interval.
pub const KEYFRAME_THROTTLE: Duration = Duration::from_millis(500);

/// Worker-wide settings a peer needs.
#[derive(Debug, Clone)]
pub struct PeerLimits {
    /// `media.ice_timeout_s`.
    pub ice_timeout: Duration,
    /// `media.connect_timeout_s`.
    pub connect_timeout: Duration,
    /// `signal.max_message_bytes`.
    pub signal_max_bytes: usize,
    /// `signal.max_messages_per_s`.
    pub signal_per_s: u32,
}

/// The signal channel's selection state.
#[derive(Debug)]
enum SignalState {
    /// No channel chosen; `fallback` is the first channel opened with another label.
    Choosing { fallback: Option<ChannelId> },
    /// This channel carries signalling.
    Chosen(ChannelId),
}

/// A WHIP peer's extra state.
#[derive(Debug)]
pub struct Ingress {
    signal: SignalState,
    limiter: SignalRateLimit,
    /// Outgoing signal messages, written after the current drain.
    outbox: Vec<Vec<u8>>,
    /// Sections the publisher sends, by mid.
    published: HashMap<Mid, MediaKind>,
    /// SSRC -> is video, cached on the first packet of each stream.
    ssrc_video: HashMap<Ssrc, bool>,
    /// Keyframe requests sent per ingress mid.
    keyframes: KeyframeThrottle,
    /// NACK count last reported per ingress mid (stats are cumulative).
    nacks_seen: HashMap<Mid, u64>,
}

/// One media peer.
#[derive(Debug)]
pub struct Peer {
    /// Owning session.
    pub session: SessionId,
    /// Its public id, for logs.
    pub participant: ParticipantId,
    /// The str0m peer connection.
    pub rtc: Rtc,
    /// Our local ICE ufrag (demux key).
    pub ufrag: String,
    /// Remote addresses learned for this peer.
    pub addrs: Vec<SocketAddr>,
    /// Where control events go.
    events: Recipient<MediaEvent>,
    // Timers.
    /// str0m's next timeout.
    pub rtc_timeout: Instant,
    /// The deadline currently in the heap for this peer.
    pub scheduled: Option<Instant>,
    answered_at: Instant,
    connected_at: Option<Instant>,
    last_activity: Instant,
    limits: PeerLimits,
    /// Set once the peer is gone; the worker then removes it.
    pub lost: Option<PeerLoss>,
    /// Ingress (WHIP) state.
    pub ingress: Ingress,
}

impl Peer {
    /// A WHIP peer whose answer was just produced.
    pub fn new_ingress(
        session: SessionId,
        participant: ParticipantId,
        rtc: Rtc,
        ufrag: String,
        events: Recipient<MediaEvent>,
        limits: PeerLimits,
        now: Instant,
    ) -> Self {
        let limiter = SignalRateLimit::new(limits.signal_max_bytes, limits.signal_per_s, now);
        Self {
            session,
            participant,
            rtc,
            ufrag,
            addrs: Vec::new(),
            events,
            rtc_timeout: now,
            scheduled: None,
            answered_at: now,
            connected_at: None,
            last_activity: now,
            limits,
            lost: None,
            ingress: Ingress {
                signal: SignalState::Choosing { fallback: None },
                limiter,
                outbox: Vec::new(),
                published: HashMap::new(),
                ssrc_video: HashMap::new(),
                keyframes: KeyframeThrottle::default(),
                nacks_seen: HashMap::new(),
            },
        }
    }

    /// The earliest moment this peer needs attention.
    pub fn next_deadline(&self) -> Instant {
        let mut next = self.rtc_timeout;
        match self.connected_at {
            None => next = next.min(self.answered_at + self.limits.connect_timeout),
            Some(at) => {
                next = next.min(self.last_activity + self.limits.ice_timeout);
                if matches!(self.ingress.signal, SignalState::Choosing { .. }) {
                    next = next.min(at + SIGNAL_FALLBACK);
                }
            }
        }
        next
    }

    /// Authenticated traffic arrived (STUN that passed integrity, SRTP, data).
    pub fn touch(&mut self, now: Instant) {
        self.last_activity = now;
    }

    /// Applies application deadlines and str0m's own timeout.
    pub fn on_timeout(&mut self, now: Instant, tx: &mut SendQueue, metrics: &BoundMetrics) {
        match self.connected_at {
            None if now >= self.answered_at + self.limits.connect_timeout => {
                self.lost = Some(PeerLoss::NeverConnected);
                return;
            }
            Some(_) if now >= self.last_activity + self.limits.ice_timeout => {
                self.lost = Some(PeerLoss::Vanished);
                return;
            }
            Some(at) if now >= at + SIGNAL_FALLBACK => self.settle_signal_fallback(),
            _ => {}
        }
        if self.rtc_timeout <= now && self.rtc.handle_input(str0m::Input::Timeout(now)).is_err() {
            self.lost = Some(PeerLoss::Vanished);
            return;
        }
        self.drain(now, tx, metrics);
    }

    /// Polls str0m until it wants to wait, handling its events; then writes
    /// queued signal messages (a mutation) and drains again.
    pub fn drain(&mut self, now: Instant, tx: &mut SendQueue, metrics: &BoundMetrics) {
        loop {
            self.drain_once(now, tx, metrics);
            if self.ingress.outbox.is_empty() || self.lost.is_some() {
                break;
            }
            self.flush_outbox(metrics);
        }
        if !self.rtc.is_alive() && self.lost.is_none() {
            self.lost = Some(PeerLoss::Vanished);
        }
    }

    fn drain_once(&mut self, now: Instant, tx: &mut SendQueue, metrics: &BoundMetrics) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.rtc_timeout = t;
                    return;
                }
                Ok(Output::Transmit(t)) => tx.push(t.destination, t.contents.into()),
                Ok(Output::Event(event)) => self.on_event(event, now, metrics),
                Err(_) => {
                    self.lost = Some(PeerLoss::Vanished);
                    return;
                }
            }
        }
    }

    fn flush_outbox(&mut self, metrics: &BoundMetrics) {
        let SignalState::Chosen(id) = self.ingress.signal else {
            // Nothing can be written before a channel is chosen; callers
            // only queue after SignalOpen, so this drops nothing real.
            self.ingress.outbox.clear();
            return;
        };
        for message in std::mem::take(&mut self.ingress.outbox) {
            let written = self.rtc.channel(id).map(|mut ch| ch.write(true, &message));
            if !matches!(written, Some(Ok(true))) {
                metrics.family.signal_dropped("send_failed");
            }
        }
    }

    fn on_event(&mut self, event: Event, now: Instant, metrics: &BoundMetrics) {
        match event {
            Event::Connected if self.connected_at.is_none() => {
                self.connected_at = Some(now);
                self.last_activity = now;
                let setup = now.duration_since(self.answered_at);
                metrics.family.setup_seconds.observe(setup.as_secs_f64());
                self.events.do_send(MediaEvent::Connected { setup });
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.lost = Some(PeerLoss::Vanished);
            }
            Event::ChannelOpen(id, label) => self.on_channel_open(id, &label),
            Event::ChannelClose(id) => {
                if matches!(self.ingress.signal, SignalState::Chosen(c) if c == id) {
                    // The client closed its signal channel: it gets no more
                    // offers; the session itself lives on with its media.
                    self.ingress.signal = SignalState::Choosing { fallback: None };
                }
            }
            Event::ChannelData(data) => {
                self.last_activity = now;
                if matches!(self.ingress.signal, SignalState::Chosen(c) if c == data.id) {
                    self.on_signal_data(&data.data, now, metrics);
                } else {
                    metrics.family.signal_dropped("not_signal_channel");
                }
            }
            Event::RtpPacket(packet) => {
                self.last_activity = now;
                let ssrc = packet.header.ssrc;
                let video = match self.ingress.ssrc_video.get(&ssrc) {
                    Some(v) => *v,
                    None => {
                        let video = self
                            .kind_of_ssrc(ssrc)
                            .is_some_and(|k| k == MediaKind::Video);
                        self.ingress.ssrc_video.insert(ssrc, video);
                        video
                    }
                };
                metrics.rtp_received(video, packet.payload.len());
            }
            Event::MediaIngressStats(stats) => {
                // Stats are cumulative per stream; count the growth.
                let seen = self.ingress.nacks_seen.entry(stats.mid).or_insert(0);
                metrics
                    .family
                    .nacks_sent
                    .inc_by(stats.nacks.saturating_sub(*seen));
                *seen = stats.nacks.max(*seen);
            }
            _ => {}
        }
    }

    fn kind_of_ssrc(&mut self, ssrc: Ssrc) -> Option<MediaKind> {
        let mid = self.rtc.direct_api().stream_rx(&ssrc).map(|s| s.mid())?;
        self.ingress.published.get(&mid).copied().or_else(|| {
            self.rtc.media(mid).map(|m| match m.kind() {
                StrMediaKind::Audio => MediaKind::Audio,
                StrMediaKind::Video => MediaKind::Video,
            })
        })
    }

    /// Reconciles the published sections with an SDP answer we produced:
    /// a section is published while our side receives on it. Returns what
    /// was added and removed. Derived from the answer rather than from
    /// str0m's `MediaAdded` events, whose timing follows the connection.
    pub fn apply_answer(&mut self, answer: &str) -> (Vec<PublishedMedia>, Vec<String>) {
        let now_published = receiving_sections(answer);
        let mut added = Vec::new();
        for (mid, kind) in &now_published {
            let mid = Mid::from(mid.as_str());
            if self.ingress.published.insert(mid, *kind).is_none() {
                added.push(PublishedMedia {
                    mid: mid.to_string(),
                    kind: *kind,
                });
            }
        }
        let mut removed = Vec::new();
        self.ingress.published.retain(|mid, _| {
            let keep = now_published.iter().any(|(m, _)| *m == mid.to_string());
            if !keep {
                removed.push(mid.to_string());
            }
            keep
        });
        (added, removed)
    }

    fn on_channel_open(&mut self, id: ChannelId, label: &str) {
        match self.ingress.signal {
            SignalState::Chosen(_) => self.close_channel(id),
            SignalState::Choosing { fallback } => {
                if label == SIGNAL_LABEL {
                    if let Some(other) = fallback {
                        self.close_channel(other);
                    }
                    self.choose_signal(id);
                } else if fallback.is_none() && self.connected_at.is_some() {
                    self.ingress.signal = SignalState::Choosing { fallback: Some(id) };
                } else {
                    self.close_channel(id);
                }
            }
        }
    }

    fn settle_signal_fallback(&mut self) {
        if let SignalState::Choosing { fallback: Some(id) } = self.ingress.signal {
            self.choose_signal(id);
        }
    }

    fn choose_signal(&mut self, id: ChannelId) {
        self.ingress.signal = SignalState::Chosen(id);
        self.events.do_send(MediaEvent::SignalOpen);
    }

    fn close_channel(&mut self, id: ChannelId) {
        self.rtc.direct_api().close_data_channel(id);
    }

    fn on_signal_data(&mut self, data: &[u8], now: Instant, metrics: &BoundMetrics) {
        match self.ingress.limiter.admit(now, data.len()) {
            Admission::Accepted => {}
            Admission::Dropped { .. } => {
                metrics.family.signal_dropped("rate_or_size");
                return;
            }
            Admission::Close => {
                metrics.family.signal_dropped("rate_or_size");
                self.lost = Some(PeerLoss::Misbehaved);
                return;
            }
        }
        let message = match signal::decode(data, self.limits.signal_max_bytes) {
            Ok(m) => m,
            Err(e) => {
                metrics.family.signal_dropped(e.reason());
                return;
            }
        };
        match message {
            SignalMessage::Mute { mid, mute, .. } => {
                metrics.family.signal_message("in", "mute");
                self.events.do_send(MediaEvent::Mute { mid, mute });
            }
            SignalMessage::Offer {
                id, number, sdp, ..
            } => {
                metrics.family.signal_message("in", "offer");
                match sdp_meta::prepare_offer(&sdp) {
                    Ok(prepared) => {
                        let media_sections = prepared.media_sections();
                        let sections = ingress_sections(&prepared);
                        self.events.do_send(MediaEvent::ClientOffer {
                            id,
                            number,
                            offer: prepared.sdp,
                            sections,
                            media_sections,
                        });
                    }
                    Err(_) => metrics.family.signal_dropped("bad_offer"),
                }
            }
            SignalMessage::Answer { .. } => {
                // Answers belong to server offers for a WHEP connection,
                // which this peer has not sent.
                metrics.family.signal_dropped("unexpected_answer");
            }
        }
    }

    /// Queues a signal message; written after the current drain.
    pub fn queue_signal(&mut self, message: &SignalMessage) {
        self.ingress.outbox.push(signal::encode(message));
    }

    /// Asks the publisher for a keyframe on `mid`, at most once per
    /// [`KEYFRAME_THROTTLE`]. Returns whether a request was sent.
    pub fn request_keyframe(&mut self, mid: Mid, now: Instant, metrics: &BoundMetrics) -> bool {
        let mut api = self.rtc.direct_api();
        let Some(rx) = api.stream_rx_by_mid(mid, None) else {
            return false;
        };
        if !self.ingress.keyframes.allow(mid, now) {
            metrics.family.keyframe_requests_throttled.inc();
            return false;
        }
        rx.request_keyframe(KeyframeRequestKind::Pli);
        metrics.family.keyframe_requests.inc();
        true
    }

    /// A handle for sending this peer's events after it is removed.
    pub fn events_recipient(&self) -> Recipient<MediaEvent> {
        self.events.clone()
    }

    /// Whether the peer has reached DTLS connected.
    pub fn is_connected(&self) -> bool {
        self.connected_at.is_some()
    }
}

/// At most one keyframe request per stream per [`KEYFRAME_THROTTLE`]: a
/// storm of subscriber PLIs must not become a storm toward the publisher.
#[derive(Debug, Default)]
pub struct KeyframeThrottle {
    last: HashMap<Mid, Instant>,
}

impl KeyframeThrottle {
    /// Whether a request for `mid` may go out now (and records it if so).
    pub fn allow(&mut self, mid: Mid, now: Instant) -> bool {
        match self.last.get(&mid) {
            Some(last) if now.saturating_duration_since(*last) < KEYFRAME_THROTTLE => false,
            _ => {
                self.last.insert(mid, now);
                true
            }
        }
    }
}

/// The audio/video sections of an answer on which we receive: enabled
/// (port not 0) and `recvonly` or `sendrecv` from our side.
pub fn receiving_sections(answer: &str) -> Vec<(String, MediaKind)> {
    let mut out = Vec::new();
    // (kind, enabled, mid, receiving) of the section being read.
    let mut section: Option<(MediaKind, bool, Option<String>, bool)> = None;
    let mut finish = |section: Option<(MediaKind, bool, Option<String>, bool)>| {
        if let Some((kind, true, Some(mid), true)) = section {
            out.push((mid, kind));
        }
    };
    for line in answer.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            finish(section.take());
            let mut parts = m.split_whitespace();
            let kind = match parts.next() {
                Some("audio") => Some(MediaKind::Audio),
                Some("video") => Some(MediaKind::Video),
                _ => None,
            };
            let enabled = parts.next().is_some_and(|port| port != "0");
            section = kind.map(|k| (k, enabled, None, false));
        } else if let Some(s) = section.as_mut() {
            if let Some(mid) = line.strip_prefix("a=mid:") {
                s.2 = Some(mid.to_string());
            } else if line == "a=recvonly" || line == "a=sendrecv" {
                s.3 = true;
            }
        }
    }
    finish(section);
    out
}

/// Control-plane metadata of the offered sections.
pub fn ingress_sections(prepared: &sdp_meta::PreparedOffer) -> Vec<IngressSection> {
    prepared
        .sections
        .iter()
        .filter_map(|s| {
            Some(IngressSection {
                mid: s.mid.clone()?,
                purpose: s.purpose,
                mute: s.mute,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyframe_requests_are_throttled_per_stream() {
        let mut t = KeyframeThrottle::default();
        let start = Instant::now();
        let (a, b) = (Mid::from("0"), Mid::from("1"));
        assert!(t.allow(a, start));
        assert!(!t.allow(a, start + Duration::from_millis(100)));
        assert!(t.allow(b, start + Duration::from_millis(100)), "per stream");
        assert!(!t.allow(a, start + Duration::from_millis(499)));
        assert!(t.allow(a, start + Duration::from_millis(500)));
        // A storm of 100 requests over one second lets at most 2-3 through.
        let mut t = KeyframeThrottle::default();
        let sent = (0..100)
            .filter(|i| t.allow(a, start + Duration::from_millis(i * 10)))
            .count();
        assert_eq!(sent, 2);
    }

    #[test]
    fn receiving_sections_reads_direction_port_and_mid() {
        let answer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=recvonly\r\n\
                      m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=recvonly\r\n\
                      m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=inactive\r\n\
                      m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:3\r\n\
                      m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:4\r\na=sendrecv\r\n";
        assert_eq!(
            receiving_sections(answer),
            vec![
                ("0".to_string(), MediaKind::Audio),
                ("4".to_string(), MediaKind::Video)
            ]
        );
    }
}
