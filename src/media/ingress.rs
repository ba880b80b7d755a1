//! The WHIP (ingress) role of a peer: the signal channel, the published
//! sections, keyframe requests toward the publisher, and handing received
//! RTP to the worker's fan-out.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::Recipient;
use str0m::channel::ChannelId;
use str0m::format::PayloadParams;
use str0m::media::{KeyframeRequestKind, MediaKind as StrMediaKind, Mid, Pt};
use str0m::rtp::Ssrc;
use str0m::{Event, Rtc};
use vestibule_actors::media::{IngressSection, MediaEvent, PeerLoss, PublishedMedia};
use vestibule_actors::snapshot::MediaKind;

use super::metrics::BoundMetrics;
use super::peer::{Drive, PeerLimits};
use super::sdp_meta;
use super::signal::{self, Admission, SignalMessage, SignalRateLimit};

/// Label of the signal data channel (API.md "Signal channel").
pub const SIGNAL_LABEL: &str = "signal";
/// How long after DTLS connects a channel labelled otherwise may become the signal channel.
pub const SIGNAL_FALLBACK: Duration = Duration::from_secs(2);
/// At most one keyframe request per stream per this interval.
pub const KEYFRAME_THROTTLE: Duration = Duration::from_millis(500);

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
    /// SSRC -> (mid, is video), cached on the first packet of each stream.
    ssrc_cache: HashMap<Ssrc, (Mid, bool)>,
    /// Keyframe requests sent per ingress mid.
    keyframes: KeyframeThrottle,
    /// NACK count last reported per ingress mid (stats are cumulative).
    nacks_seen: HashMap<Mid, u64>,
    /// The payload type last received per ingress mid: the source codec
    /// that egress m-lines carry.
    last_pt: HashMap<Mid, Pt>,
}

impl Ingress {
    /// Fresh state for a peer answered at `now`.
    pub fn new(limits: &PeerLimits, now: Instant) -> Self {
        Self {
            signal: SignalState::Choosing { fallback: None },
            limiter: SignalRateLimit::new(limits.signal_max_bytes, limits.signal_per_s, now),
            outbox: Vec::new(),
            published: HashMap::new(),
            ssrc_cache: HashMap::new(),
            keyframes: KeyframeThrottle::default(),
            nacks_seen: HashMap::new(),
            last_pt: HashMap::new(),
        }
    }

    /// Whether a fallback channel waits for [`SIGNAL_FALLBACK`] to pass.
    /// Only then is there a deadline: a peer without any channel (OBS,
    /// plain WHIP) must not keep a deadline in the past, or the worker
    /// would wake for it in a busy loop.
    pub fn choosing_signal(&self) -> bool {
        matches!(self.signal, SignalState::Choosing { fallback: Some(_) })
    }

    /// After [`SIGNAL_FALLBACK`]: the first other channel becomes the signal channel.
    pub fn settle_fallback(&mut self, events: &Recipient<MediaEvent>) {
        if let SignalState::Choosing { fallback: Some(id) } = self.signal {
            self.choose(id, events);
        }
    }

    fn choose(&mut self, id: ChannelId, events: &Recipient<MediaEvent>) {
        self.signal = SignalState::Chosen(id);
        events.do_send(MediaEvent::SignalOpen);
    }

    /// Whether signal messages wait to be written.
    pub fn has_outbox(&self) -> bool {
        !self.outbox.is_empty()
    }

    /// Queues a signal message; written after the current drain.
    pub fn queue_signal(&mut self, message: &SignalMessage) {
        self.outbox.push(signal::encode(message));
    }

    /// Queues an already encoded message (byte-identical re-sends).
    pub fn queue_raw(&mut self, message: Vec<u8>) {
        self.outbox.push(message);
    }

    /// Whether a signal channel is chosen (offers can be delivered).
    pub fn signal_ready(&self) -> bool {
        matches!(self.signal, SignalState::Chosen(_))
    }

    /// Writes queued signal messages (a mutation: drain afterwards).
    pub fn flush_outbox(&mut self, rtc: &mut Rtc, metrics: &BoundMetrics) {
        let SignalState::Chosen(id) = self.signal else {
            // Nothing is queued before a channel is chosen (callers wait
            // for SignalOpen), so this drops nothing real.
            self.outbox.clear();
            return;
        };
        for message in std::mem::take(&mut self.outbox) {
            let written = rtc.channel(id).map(|mut ch| ch.write(true, &message));
            if !matches!(written, Some(Ok(true))) {
                metrics.family.signal_dropped("send_failed");
            }
        }
    }

    /// Handles an ingress-specific str0m event.
    pub fn on_event(
        &mut self,
        rtc: &mut Rtc,
        events: &Recipient<MediaEvent>,
        limits: &PeerLimits,
        connected: bool,
        event: Event,
        d: &mut Drive<'_>,
    ) -> Option<PeerLoss> {
        match event {
            Event::ChannelOpen(id, label) => {
                self.on_channel_open(rtc, events, connected, id, &label)
            }
            Event::ChannelClose(id) => {
                if matches!(self.signal, SignalState::Chosen(c) if c == id) {
                    // The client closed its signal channel: no more offers
                    // reach it; the session itself lives on with its media.
                    self.signal = SignalState::Choosing { fallback: None };
                }
            }
            Event::ChannelData(data) => {
                if matches!(self.signal, SignalState::Chosen(c) if c == data.id) {
                    return self.on_signal_data(events, limits, &data.data, d);
                }
                d.metrics.family.signal_dropped("not_signal_channel");
            }
            Event::RtpPacket(packet) => {
                let ssrc = packet.header.ssrc;
                let cached = match self.ssrc_cache.get(&ssrc) {
                    Some(c) => Some(*c),
                    None => self.resolve_ssrc(rtc, ssrc),
                };
                if let Some((mid, video)) = cached {
                    d.metrics.rtp_received(video, packet.payload.len());
                    let pt = packet.header.payload_type;
                    if self.last_pt.get(&mid) != Some(&pt) {
                        self.last_pt.insert(mid, pt);
                    }
                    d.forward.push((mid, packet));
                }
            }
            Event::MediaIngressStats(stats) => {
                // Stats are cumulative per stream; count the growth.
                let seen = self.nacks_seen.entry(stats.mid).or_insert(0);
                d.metrics
                    .family
                    .nacks_sent
                    .inc_by(stats.nacks.saturating_sub(*seen));
                *seen = stats.nacks.max(*seen);
            }
            _ => {}
        }
        None
    }

    fn resolve_ssrc(&mut self, rtc: &mut Rtc, ssrc: Ssrc) -> Option<(Mid, bool)> {
        let mid = rtc.direct_api().stream_rx(&ssrc).map(|s| s.mid())?;
        let kind = self.published.get(&mid).copied().or_else(|| {
            rtc.media(mid).map(|m| match m.kind() {
                StrMediaKind::Audio => MediaKind::Audio,
                StrMediaKind::Video => MediaKind::Video,
            })
        })?;
        let entry = (mid, kind == MediaKind::Video);
        self.ssrc_cache.insert(ssrc, entry);
        Some(entry)
    }

    fn on_channel_open(
        &mut self,
        rtc: &mut Rtc,
        events: &Recipient<MediaEvent>,
        connected: bool,
        id: ChannelId,
        label: &str,
    ) {
        match self.signal {
            SignalState::Chosen(_) => rtc.direct_api().close_data_channel(id),
            SignalState::Choosing { fallback } => {
                if label == SIGNAL_LABEL {
                    if let Some(other) = fallback {
                        rtc.direct_api().close_data_channel(other);
                    }
                    self.choose(id, events);
                } else if fallback.is_none() && connected {
                    self.signal = SignalState::Choosing { fallback: Some(id) };
                } else {
                    rtc.direct_api().close_data_channel(id);
                }
            }
        }
    }

    fn on_signal_data(
        &mut self,
        events: &Recipient<MediaEvent>,
        limits: &PeerLimits,
        data: &[u8],
        d: &Drive<'_>,
    ) -> Option<PeerLoss> {
        let metrics = d.metrics;
        match self.limiter.admit(d.now, data.len()) {
            Admission::Accepted => {}
            Admission::Dropped { .. } => {
                metrics.family.signal_dropped("rate_or_size");
                return None;
            }
            Admission::Close => {
                metrics.family.signal_dropped("rate_or_size");
                return Some(PeerLoss::Misbehaved);
            }
        }
        let message = match signal::decode(data, limits.signal_max_bytes) {
            Ok(m) => m,
            Err(e) => {
                metrics.family.signal_dropped(e.reason());
                return None;
            }
        };
        match message {
            SignalMessage::Mute { mid, mute, .. } => {
                metrics.family.signal_message("in", "mute");
                events.do_send(MediaEvent::Mute { mid, mute });
            }
            SignalMessage::Offer {
                id, number, sdp, ..
            } => {
                metrics.family.signal_message("in", "offer");
                match sdp_meta::prepare_offer(&sdp) {
                    Ok(prepared) => {
                        let media_sections = prepared.media_sections();
                        let sections = ingress_sections(&prepared);
                        events.do_send(MediaEvent::ClientOffer {
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
            SignalMessage::Answer { number, sdp, .. } => {
                // An answer to a server offer for this session's WHEP
                // connection; the session checks the number.
                metrics.family.signal_message("in", "answer");
                events.do_send(MediaEvent::EgressAnswer { number, sdp });
            }
        }
        None
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
            if self.published.insert(mid, *kind).is_none() {
                added.push(PublishedMedia {
                    mid: mid.to_string(),
                    kind: *kind,
                });
            }
        }
        let mut removed = Vec::new();
        self.published.retain(|mid, _| {
            let keep = now_published.iter().any(|(m, _)| *m == mid.to_string());
            if !keep {
                removed.push(mid.to_string());
            }
            keep
        });
        (added, removed)
    }

    /// When a deferred keyframe request is due.
    pub fn next_keyframe_due(&self) -> Option<Instant> {
        self.keyframes.next_due()
    }

    /// Sends the deferred keyframe requests that are due; whether any went out.
    pub fn fire_deferred_keyframes(
        &mut self,
        rtc: &mut Rtc,
        now: Instant,
        metrics: &BoundMetrics,
    ) -> bool {
        let due = self.keyframes.take_due(now);
        for mid in &due {
            if let Some(rx) = rtc.direct_api().stream_rx_by_mid(*mid, None) {
                rx.request_keyframe(KeyframeRequestKind::Pli);
                metrics.family.keyframe_requests.inc();
            }
        }
        !due.is_empty()
    }

    /// The codec the publisher sends on `mid`, once a packet arrived.
    pub fn source_codec(&self, rtc: &Rtc, mid: Mid) -> Option<PayloadParams> {
        let pt = self.last_pt.get(&mid)?;
        rtc.codec_config()
            .params()
            .iter()
            .find(|p| p.pt() == *pt)
            .copied()
    }

    /// Asks the publisher for a keyframe on `mid`, at most once per
    /// [`KEYFRAME_THROTTLE`]. Returns whether a request was sent.
    pub fn request_keyframe(
        &mut self,
        rtc: &mut Rtc,
        mid: Mid,
        now: Instant,
        metrics: &BoundMetrics,
    ) -> bool {
        let mut api = rtc.direct_api();
        let Some(rx) = api.stream_rx_by_mid(mid, None) else {
            return false;
        };
        if !self.keyframes.allow(mid, now) {
            metrics.family.keyframe_requests_throttled.inc();
            return false;
        }
        rx.request_keyframe(KeyframeRequestKind::Pli);
        metrics.family.keyframe_requests.inc();
        true
    }
}

/// At most one keyframe request per stream per [`KEYFRAME_THROTTLE`]: a
/// storm of subscriber PLIs must not become a storm toward the publisher.
/// A request inside the window is deferred to its end rather than dropped,
/// so a subscriber joining right after another still gets its keyframe
/// within the window instead of waiting for the publisher's next GOP.
#[derive(Debug, Default)]
pub struct KeyframeThrottle {
    last: HashMap<Mid, Instant>,
    deferred: Vec<Mid>,
}

impl KeyframeThrottle {
    /// Whether a request for `mid` may go out now (and records it if so);
    /// otherwise it is deferred to the end of the window.
    pub fn allow(&mut self, mid: Mid, now: Instant) -> bool {
        match self.last.get(&mid) {
            Some(last) if now.saturating_duration_since(*last) < KEYFRAME_THROTTLE => {
                if !self.deferred.contains(&mid) {
                    self.deferred.push(mid);
                }
                false
            }
            _ => {
                self.last.insert(mid, now);
                self.deferred.retain(|m| *m != mid);
                true
            }
        }
    }

    /// When the earliest deferred request may go out.
    pub fn next_due(&self) -> Option<Instant> {
        self.deferred
            .iter()
            .filter_map(|m| self.last.get(m).map(|t| *t + KEYFRAME_THROTTLE))
            .min()
    }

    /// Deferred requests whose window ended by `now` (now recorded as sent).
    pub fn take_due(&mut self, now: Instant) -> Vec<Mid> {
        let due: Vec<Mid> = self
            .deferred
            .iter()
            .copied()
            .filter(|m| {
                self.last
                    .get(m)
                    .is_none_or(|t| now.saturating_duration_since(*t) >= KEYFRAME_THROTTLE)
            })
            .collect();
        for mid in &due {
            self.last.insert(*mid, now);
        }
        self.deferred.retain(|m| !due.contains(m));
        due
    }
}

/// The audio/video sections of an answer on which we receive: enabled
/// (port not 0) and `recvonly` or `sendrecv` from our side.
pub fn receiving_sections(answer: &str) -> Vec<(String, MediaKind)> {
    sdp_meta::sections_in_direction(answer, &["a=recvonly", "a=sendrecv"])
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

    #[test]
    fn throttled_requests_are_deferred_to_the_end_of_the_window() {
        let mut t = KeyframeThrottle::default();
        let start = Instant::now();
        let mid = Mid::from("0");
        assert!(t.allow(mid, start));
        assert!(!t.allow(mid, start + Duration::from_millis(100)));
        assert!(
            !t.allow(mid, start + Duration::from_millis(200)),
            "deferred once"
        );
        assert_eq!(t.next_due(), Some(start + KEYFRAME_THROTTLE));
        assert!(t.take_due(start + Duration::from_millis(499)).is_empty());
        assert_eq!(t.take_due(start + KEYFRAME_THROTTLE), vec![mid]);
        assert_eq!(t.next_due(), None);
        assert!(
            !t.allow(mid, start + Duration::from_millis(600)),
            "the deferred one counts as sent"
        );
    }
}
