//! One str0m `Rtc` and what the worker keeps beside it: routes, timers,
//! liveness, and its role (WHIP ingress or WHEP egress). Sans-IO: time comes
//! in through [`Drive`]; transmits go to its send queue, received RTP to its
//! forward buffer, control events to the session's recipient.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use actix::Recipient;
use str0m::media::Mid;
use str0m::rtp::RtpPacket;
use str0m::{Event, IceConnectionState, Output, Rtc};
use vestibule_actors::ids::{ParticipantId, SessionId};
use vestibule_actors::media::{MediaEvent, PeerLoss};

use super::egress::Egress;
use super::ingress::{Ingress, SIGNAL_FALLBACK};
use super::metrics::BoundMetrics;
use super::udp::SendQueue;

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

/// What one drive of a peer produces besides its own state changes.
#[derive(Debug)]
pub struct Drive<'a> {
    /// The time of this wake-up.
    pub now: Instant,
    /// Datagrams to send.
    pub tx: &'a mut SendQueue,
    /// Worker counters.
    pub metrics: &'a BoundMetrics,
    /// RTP received by an ingress peer, by ingress mid, for fan-out.
    pub forward: &'a mut Vec<(Mid, RtpPacket)>,
    /// Egress mids whose subscriber asked for a keyframe.
    pub keyframes_wanted: &'a mut Vec<Mid>,
}

/// What the peer is for.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one Role per long-lived peer; boxing would add a pointer chase on the hot path for no memory win"
)]
pub enum Role {
    /// A session's WHIP connection.
    Ingress(Ingress),
    /// A session's WHEP connection.
    Egress(Egress),
}

/// The session a peer belongs to and where its events go.
#[derive(Debug)]
pub struct PeerOwner {
    /// Owning session.
    pub session: SessionId,
    /// Its public id, for logs.
    pub participant: ParticipantId,
    /// The session actor.
    pub events: Recipient<MediaEvent>,
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
    /// The remote's ICE ufrag (trickle fragments must name it).
    pub remote_ufrag: Option<String>,
    /// The bundle's first mid (the server's restart fragment names it).
    pub bundle_mid: Option<String>,
    /// The remote's latest offer (`i=` stripped), when the remote was the
    /// offerer: an ICE restart re-applies it with the new credentials.
    pub remote_offer: Option<String>,
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
    /// The first str0m error was logged.
    error_logged: bool,
    /// Set once the peer is gone; the worker then removes it.
    pub lost: Option<PeerLoss>,
    /// Ingress or egress state.
    pub role: Role,
}

impl Peer {
    /// A peer whose first SDP exchange step was just produced at `now`.
    pub fn new(
        owner: PeerOwner,
        rtc: Rtc,
        ufrag: String,
        limits: PeerLimits,
        role: Role,
        now: Instant,
    ) -> Self {
        let PeerOwner {
            session,
            participant,
            events,
        } = owner;
        Self {
            session,
            participant,
            rtc,
            ufrag,
            addrs: Vec::new(),
            remote_ufrag: None,
            bundle_mid: None,
            remote_offer: None,
            events,
            rtc_timeout: now,
            scheduled: None,
            answered_at: now,
            connected_at: None,
            last_activity: now,
            limits,
            error_logged: false,
            lost: None,
            role,
        }
    }

    /// Whether this is a WHIP peer.
    pub fn is_ingress(&self) -> bool {
        matches!(self.role, Role::Ingress(_))
    }

    /// The ingress state, for WHIP peers.
    pub fn ingress_mut(&mut self) -> Option<&mut Ingress> {
        match &mut self.role {
            Role::Ingress(i) => Some(i),
            Role::Egress(_) => None,
        }
    }

    /// The egress state, for WHEP peers.
    pub fn egress_mut(&mut self) -> Option<&mut Egress> {
        match &mut self.role {
            Role::Egress(e) => Some(e),
            Role::Ingress(_) => None,
        }
    }

    /// The earliest moment this peer needs attention.
    pub fn next_deadline(&self) -> Instant {
        let mut next = self.rtc_timeout;
        match self.connected_at {
            None => next = next.min(self.answered_at + self.limits.connect_timeout),
            Some(at) => {
                next = next.min(self.last_activity + self.limits.ice_timeout);
                if let Role::Ingress(i) = &self.role {
                    if i.choosing_signal() {
                        next = next.min(at + SIGNAL_FALLBACK);
                    }
                    if let Some(due) = i.next_keyframe_due() {
                        next = next.min(due);
                    }
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
    pub fn on_timeout(&mut self, d: &mut Drive<'_>) {
        let now = d.now;
        match self.connected_at {
            None if now >= self.answered_at + self.limits.connect_timeout => {
                self.lost = Some(PeerLoss::NeverConnected);
                return;
            }
            Some(_) if now >= self.last_activity + self.limits.ice_timeout => {
                self.lost = Some(PeerLoss::Vanished);
                return;
            }
            Some(at) if now >= at + SIGNAL_FALLBACK => {
                if let Role::Ingress(i) = &mut self.role {
                    i.settle_fallback(&self.events);
                }
            }
            _ => {}
        }
        if let Role::Ingress(i) = &mut self.role {
            i.fire_deferred_keyframes(&mut self.rtc, now, d.metrics);
        }
        if self.rtc_timeout <= now
            && let Err(e) = self.rtc.handle_input(str0m::Input::Timeout(now))
        {
            self.note_error(&e);
            self.lost = Some(PeerLoss::Vanished);
            return;
        }
        self.drain(d);
    }

    /// Polls str0m until it wants to wait, handling its events; then writes
    /// queued signal messages (a mutation) and drains again.
    pub fn drain(&mut self, d: &mut Drive<'_>) {
        loop {
            self.drain_once(d);
            let flush = matches!(&self.role, Role::Ingress(i) if i.has_outbox());
            if !flush || self.lost.is_some() {
                break;
            }
            if let Role::Ingress(i) = &mut self.role {
                i.flush_outbox(&mut self.rtc, d.metrics);
            }
        }
        if !self.rtc.is_alive() && self.lost.is_none() {
            self.lost = Some(PeerLoss::Vanished);
        }
    }

    fn drain_once(&mut self, d: &mut Drive<'_>) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.rtc_timeout = t;
                    return;
                }
                Ok(Output::Transmit(t)) => d.tx.push(t.destination, t.contents.into()),
                Ok(Output::Event(event)) => self.on_event(event, d),
                Err(e) => {
                    self.note_error(&e);
                    self.lost = Some(PeerLoss::Vanished);
                    return;
                }
            }
        }
    }

    fn on_event(&mut self, event: Event, d: &mut Drive<'_>) {
        let now = d.now;
        match event {
            Event::Connected => {
                if self.connected_at.is_none() {
                    self.connected_at = Some(now);
                    self.last_activity = now;
                    let setup = now.duration_since(self.answered_at);
                    d.metrics.family.setup_seconds.observe(setup.as_secs_f64());
                    match &self.role {
                        Role::Ingress(_) => self.events.do_send(MediaEvent::Connected { setup }),
                        // Packets written before DTLS completes are lost: ask
                        // the publishers for a keyframe now, so the first
                        // forwarded frame is one the subscriber can decode.
                        Role::Egress(egress) => d.keyframes_wanted.extend(egress.open_video_mids()),
                    }
                }
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.lost = Some(PeerLoss::Vanished);
            }
            Event::KeyframeRequest(request) => {
                if matches!(self.role, Role::Egress(_)) {
                    d.keyframes_wanted.push(request.mid);
                }
            }
            event => {
                if matches!(event, Event::ChannelData(_) | Event::RtpPacket(_)) {
                    self.last_activity = now;
                }
                let connected = self.connected_at.is_some();
                if let Role::Ingress(i) = &mut self.role
                    && let Some(loss) = i.on_event(
                        &mut self.rtc,
                        &self.events,
                        &self.limits,
                        connected,
                        event,
                        d,
                    )
                {
                    self.lost = Some(loss);
                }
            }
        }
    }

    /// The session's event recipient (also after the peer is removed).
    pub fn events_recipient(&self) -> Recipient<MediaEvent> {
        self.events.clone()
    }

    /// Logs the first error str0m reported for this peer (a DTLS handshake
    /// failure, an unsupported certificate): once per peer, so a broken
    /// client cannot spam the log, and the cause of a later loss is known.
    pub fn note_error(&mut self, error: &str0m::RtcError) {
        if !self.error_logged {
            self.error_logged = true;
            tracing::info!(participant = %self.participant, connected = self.connected_at.is_some(), cause = %error, "peer error");
        }
    }

    /// Whether the peer has reached DTLS connected.
    pub fn is_connected(&self) -> bool {
        self.connected_at.is_some()
    }
}
