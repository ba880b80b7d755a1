//! A media worker: one thread, one tokio current-thread runtime, one UDP
//! socket, and every peer placed on it. The loop waits for datagrams,
//! commands or the next timer, processes them, then flushes sends.
//! Only this file reads the clock (once per wake-up).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::config::DtlsCert;
use str0m::media::Mid;
use str0m::net::{Protocol, Receive};
use str0m::{Input, Rtc};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};
use vestibule_actors::ids::{ParticipantId, SessionId};
use vestibule_actors::media::{
    IngressAnswer, IngressChange, MediaError, MediaEvent, PeerLoss, WorkerCmd,
};

use super::demux::{Demux, is_stun};
use super::metrics::{BoundMetrics, DropReason, MediaMetrics};
use super::peer::{Peer, PeerLimits};
use super::rtc_config::{build_rtc, new_credentials};
use super::sdp_meta;
use super::signal::SignalMessage;
use super::slab::{PeerKey, Slab};
use super::timers::TimerHeap;
use super::udp::{MediaSocket, SendQueue};

/// Receive batches handled per wake-up before timers and sends get a turn.
const MAX_BATCHES_PER_WAKE: usize = 16;
/// Sleep when no timer is pending (any datagram or command wakes earlier).
const IDLE_WAKE: Duration = Duration::from_secs(1);

/// Everything a worker is started with.
#[derive(Debug)]
pub struct WorkerSetup {
    /// Worker number (for logs and thread names).
    pub index: usize,
    /// The bound socket.
    pub socket: std::net::UdpSocket,
    /// Advertised host candidates (public IP, this worker's port), in order.
    pub candidates: Vec<SocketAddr>,
    /// The process-wide DTLS certificate.
    pub cert: DtlsCert,
    /// `media.codecs`.
    pub codecs: Vec<String>,
    /// Per-peer limits.
    pub limits: PeerLimits,
    /// Metric families.
    pub metrics: MediaMetrics,
}

/// A worker's state: peers, routes, timers and the send queue.
struct Worker {
    index: usize,
    candidates: Vec<SocketAddr>,
    cert: DtlsCert,
    codecs: Vec<String>,
    limits: PeerLimits,
    peers: Slab<Peer>,
    demux: Demux,
    timers: TimerHeap,
    by_session: HashMap<SessionId, PeerKey>,
    /// Peers found lost during this iteration, removed at its end.
    lost: Vec<PeerKey>,
    tx: SendQueue,
    metrics: BoundMetrics,
}

/// Runs a worker on the current thread until `Shutdown` or the command
/// channel closes.
pub fn run(setup: WorkerSetup, commands: mpsc::UnboundedReceiver<WorkerCmd>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            warn!(worker = setup.index, cause = %e, "media worker could not start a runtime");
            return;
        }
    };
    runtime.block_on(run_loop(setup, commands));
}

async fn run_loop(setup: WorkerSetup, mut commands: mpsc::UnboundedReceiver<WorkerCmd>) {
    let index = setup.index;
    let socket = match MediaSocket::new(setup.socket) {
        Ok(s) => s,
        Err(e) => {
            warn!(worker = index, cause = %e, "media socket setup failed");
            return;
        }
    };
    let mut batch = socket.batch();
    let mut worker = Worker {
        index,
        candidates: setup.candidates,
        cert: setup.cert,
        codecs: setup.codecs,
        limits: setup.limits,
        peers: Slab::default(),
        demux: Demux::default(),
        timers: TimerHeap::default(),
        by_session: HashMap::new(),
        lost: Vec::new(),
        tx: SendQueue::default(),
        metrics: setup.metrics.bind(),
    };
    info!(worker = index, candidates = ?worker.candidates, "media worker running");
    let epoch = Instant::now();
    loop {
        let next = worker
            .timers
            .next()
            .unwrap_or_else(|| Instant::now() + IDLE_WAKE);
        let wake = round_up_to_tick(epoch, next);
        let mut stop = false;
        tokio::select! {
            ready = socket.readable() => {
                if ready.is_ok() {
                    for _ in 0..MAX_BATCHES_PER_WAKE {
                        match socket.try_recv(&mut batch) {
                            Ok(0) => break,
                            Ok(_) => {
                                let now = Instant::now();
                                batch.for_each(|source, dst_ip, datagram| worker.on_datagram(source, dst_ip, datagram, now));
                            }
                            Err(e) => {
                                debug!(worker = index, cause = %e, "receive error");
                                break;
                            }
                        }
                    }
                }
            }
            command = commands.recv() => match command {
                None | Some(WorkerCmd::Shutdown) => stop = true,
                Some(cmd) => worker.on_command(cmd, Instant::now()),
            },
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        if stop {
            worker.close_all(Instant::now());
            flush(&socket, &mut worker);
            info!(worker = index, "media worker stopped");
            return;
        }
        worker.on_timers(Instant::now());
        worker.reap_lost(Instant::now());
        flush(&socket, &mut worker);
    }
}

/// Timers fire on 1 ms ticks: every deadline inside one tick is handled by
/// one wake-up instead of one each (at most 1 ms late, which RTP timers
/// tolerate), so idle peers do not multiply wake-ups.
const TIMER_TICK: Duration = Duration::from_millis(1);

fn round_up_to_tick(epoch: Instant, at: Instant) -> Instant {
    let since = at.saturating_duration_since(epoch);
    let tick = TIMER_TICK.as_nanos();
    let rounded = since.as_nanos().div_ceil(tick) * tick;
    epoch + Duration::from_nanos(u64::try_from(rounded).unwrap_or(u64::MAX))
}

fn flush(socket: &MediaSocket, worker: &mut Worker) {
    if worker.tx.is_empty() {
        return;
    }
    let (sent, dropped) = socket.flush(&mut worker.tx);
    worker.metrics.family.datagrams_out.inc_by(sent);
    for _ in 0..dropped {
        worker.metrics.dropped(DropReason::SendBackpressure);
    }
}

impl Worker {
    /// The local address a datagram was sent to, as str0m needs it: the
    /// advertised candidate it matches (by destination IP, else the first).
    fn destination(&self, dst_ip: Option<IpAddr>) -> SocketAddr {
        let first = self
            .candidates
            .first()
            .copied()
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        dst_ip
            .and_then(|ip| self.candidates.iter().find(|c| c.ip() == ip).copied())
            .unwrap_or(first)
    }

    fn on_datagram(
        &mut self,
        source: SocketAddr,
        dst_ip: Option<IpAddr>,
        datagram: &[u8],
        now: Instant,
    ) {
        self.metrics.family.datagrams_in.inc();
        let key = match self.demux.route(source, datagram) {
            Ok(k) => k,
            Err(reason) => return self.metrics.dropped(reason),
        };
        let destination = self.destination(dst_ip);
        let Ok(receive) = Receive::new(Protocol::Udp, source, destination, datagram) else {
            return self.metrics.dropped(DropReason::Malformed);
        };
        let input = Input::Receive(now, receive);
        let stun = is_stun(datagram);
        let Some(peer) = self.peers.get_mut(key) else {
            return self.metrics.dropped(DropReason::UnknownSource);
        };
        if !peer.rtc.accepts(&input) {
            return self.metrics.dropped(DropReason::Rejected);
        }
        let (tx, metrics) = (&mut self.tx, &self.metrics);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let handled = peer.rtc.handle_input(input).is_ok();
            if stun && handled {
                // accepts() verified the STUN integrity: consent is fresh.
                peer.touch(now);
            }
            peer.drain(now, tx, metrics);
            handled
        }));
        match outcome {
            Ok(true) => {}
            Ok(false) => self.metrics.dropped(DropReason::PeerError),
            Err(_) => {
                warn!(worker = self.index, participant = %peer.participant, "peer panicked on input; closing it");
                peer.lost = Some(PeerLoss::Vanished);
            }
        }
        if stun && self.demux.learn(source, key) {
            peer.addrs.push(source);
        }
        self.after_drive(key);
    }

    /// Reschedules a peer and notes it for removal when it was lost.
    fn after_drive(&mut self, key: PeerKey) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        if peer.lost.is_some() {
            self.lost.push(key);
            return;
        }
        let next = peer.next_deadline();
        if peer.scheduled.is_none_or(|s| next < s) {
            peer.scheduled = Some(next);
            self.timers.push(next, key);
        }
    }

    fn on_timers(&mut self, now: Instant) {
        while let Some((at, key)) = self.timers.pop_due(now) {
            let Some(peer) = self.peers.get_mut(key) else {
                continue;
            };
            if peer.scheduled != Some(at) {
                continue; // superseded by an earlier deadline
            }
            peer.scheduled = None;
            let (tx, metrics) = (&mut self.tx, &self.metrics);
            if catch_unwind(AssertUnwindSafe(|| peer.on_timeout(now, tx, metrics))).is_err() {
                warn!(worker = self.index, participant = %peer.participant, "peer panicked on timeout; closing it");
                peer.lost = Some(PeerLoss::Vanished);
            }
            self.after_drive(key);
        }
    }

    /// Removes lost peers and tells their sessions.
    fn reap_lost(&mut self, now: Instant) {
        for key in std::mem::take(&mut self.lost) {
            let Some(peer) = self.peers.get_mut(key) else {
                continue;
            };
            let reason = peer.lost.unwrap_or(PeerLoss::Vanished);
            debug!(worker = self.index, participant = %peer.participant, ?reason, "peer lost");
            let events = peer.events_recipient();
            self.close_peer(key, now);
            events.do_send(MediaEvent::Lost { reason });
        }
    }

    fn on_command(&mut self, cmd: WorkerCmd, now: Instant) {
        match cmd {
            WorkerCmd::OpenIngress {
                session,
                participant,
                offer,
                events,
                reply,
            } => {
                let result = self.open_ingress(session, participant, &offer, events, now);
                let _ = reply.send(result);
            }
            WorkerCmd::AnswerClientOffer {
                session,
                id,
                number,
                offer,
                reply,
            } => self.answer_client_offer(session, id, number, &offer, reply, now),
            WorkerCmd::RequestKeyframe { session, mid } => {
                let Some(&key) = self.by_session.get(&session) else {
                    return;
                };
                let (tx, metrics) = (&mut self.tx, &self.metrics);
                if let Some(peer) = self.peers.get_mut(key)
                    && peer.request_keyframe(Mid::from(mid.as_str()), now, metrics)
                {
                    peer.drain(now, tx, metrics);
                }
                self.after_drive(key);
            }
            WorkerCmd::CloseSession { session } => {
                if let Some(key) = self.by_session.get(&session).copied() {
                    self.close_peer(key, now);
                }
            }
            WorkerCmd::Shutdown => self.close_all(now),
        }
    }

    fn open_ingress(
        &mut self,
        session: SessionId,
        participant: ParticipantId,
        offer: &str,
        events: actix::Recipient<MediaEvent>,
        now: Instant,
    ) -> Result<IngressAnswer, MediaError> {
        if let Some(old) = self.by_session.get(&session).copied() {
            self.close_peer(old, now);
        }
        let parsed = SdpOffer::from_sdp_string(offer)
            .map_err(|e| MediaError::MalformedSdp(e.to_string()))?;
        let creds = new_credentials();
        let ufrag = creds.ufrag.clone();
        let mut rtc = build_rtc(&self.codecs, &self.cert, creds, &self.candidates, now);
        let answer = rtc
            .sdp_api()
            .accept_offer(parsed)
            .map_err(|e| MediaError::MalformedSdp(e.to_string()))?;
        let answer = answer.to_sdp_string();
        check_codecs(offer, &answer, &rtc)?;
        let mut peer = Peer::new_ingress(
            session,
            participant,
            rtc,
            ufrag.clone(),
            events,
            self.limits.clone(),
            now,
        );
        let (media, _) = peer.apply_answer(&answer);
        peer.drain(now, &mut self.tx, &self.metrics);
        let key = self.peers.insert(peer);
        self.demux.add_ufrag(ufrag.clone(), key);
        self.by_session.insert(session, key);
        self.metrics.family.peers.inc();
        self.after_drive(key);
        debug!(worker = self.index, participant = %participant, sections = media.len(), "ingress peer created");
        Ok(IngressAnswer {
            sdp: sdp_meta::complete_candidates(&sdp_meta::ensure_msid_semantic(&answer)),
            etag: format!("\"{ufrag}\""),
            media,
        })
    }

    fn answer_client_offer(
        &mut self,
        session: SessionId,
        id: u64,
        number: u64,
        offer: &str,
        reply: oneshot::Sender<Result<IngressChange, MediaError>>,
        now: Instant,
    ) {
        let Some(&key) = self.by_session.get(&session) else {
            let _ = reply.send(Err(MediaError::NoPeer));
            return;
        };
        let (tx, metrics) = (&mut self.tx, &self.metrics);
        let Some(peer) = self.peers.get_mut(key) else {
            let _ = reply.send(Err(MediaError::NoPeer));
            return;
        };
        let result = (|| {
            let parsed = SdpOffer::from_sdp_string(offer)
                .map_err(|e| MediaError::MalformedSdp(e.to_string()))?;
            let answer = peer
                .rtc
                .sdp_api()
                .accept_offer(parsed)
                .map_err(|e| MediaError::MalformedSdp(e.to_string()))?
                .to_sdp_string();
            let (added, removed) = peer.apply_answer(&answer);
            peer.drain(now, tx, metrics);
            peer.queue_signal(&SignalMessage::Answer {
                id,
                number,
                sdp: sdp_meta::complete_candidates(&sdp_meta::ensure_msid_semantic(&answer)),
            });
            metrics.family.signal_message("out", "answer");
            peer.drain(now, tx, metrics);
            Ok(IngressChange { added, removed })
        })();
        let _ = reply.send(result);
        self.after_drive(key);
    }

    fn close_peer(&mut self, key: PeerKey, now: Instant) {
        let Some(mut peer) = self.peers.remove(key) else {
            return;
        };
        self.demux.forget(&peer.ufrag, &peer.addrs, key);
        if self.by_session.get(&peer.session) == Some(&key) {
            self.by_session.remove(&peer.session);
        }
        self.metrics.family.peers.dec();
        // RTCP BYE, SCTP shutdown and DTLS close_notify, best effort: the
        // remote may already be gone.
        if peer.rtc.close().is_ok() {
            drain_transmits(&mut peer.rtc, &mut self.tx, now);
        }
    }

    fn close_all(&mut self, now: Instant) {
        for key in self.peers.keys() {
            self.close_peer(key, now);
        }
    }
}

/// Polls only transmits out of a closing `Rtc`.
fn drain_transmits(rtc: &mut Rtc, tx: &mut SendQueue, now: Instant) {
    let _ = rtc.handle_input(Input::Timeout(now));
    for _ in 0..64 {
        match rtc.poll_output() {
            Ok(str0m::Output::Transmit(t)) => tx.push(t.destination, t.contents.into()),
            Ok(str0m::Output::Event(_)) => {}
            Ok(str0m::Output::Timeout(_)) | Err(_) => return,
        }
    }
}

/// 422 when an offered audio or video section got no codec: str0m answers
/// such a section disabled (port 0) while the offer had it enabled.
fn check_codecs(offer: &str, answer: &str, _rtc: &Rtc) -> Result<(), MediaError> {
    let sections = |sdp: &str| -> Vec<(String, bool)> {
        sdp.lines()
            .filter_map(|l| l.strip_prefix("m="))
            .map(|m| {
                let mut parts = m.split_whitespace();
                let kind = parts.next().unwrap_or_default().to_string();
                let enabled = parts.next().is_some_and(|port| port != "0");
                (kind, enabled)
            })
            .collect()
    };
    let offered = sections(offer);
    let answered = sections(answer);
    // str0m stops parsing at the first media-level line it cannot read and
    // drops every later section silently; a short answer means that happened.
    if answered.len() != offered.len() {
        return Err(MediaError::MalformedSdp(format!(
            "{} of {} media sections could be read",
            answered.len(),
            offered.len()
        )));
    }
    for (i, (kind, enabled)) in offered.iter().enumerate() {
        if !*enabled || !(kind == "audio" || kind == "video") {
            continue;
        }
        let accepted = answered.get(i).is_some_and(|(_, on)| *on);
        if !accepted {
            return Err(MediaError::NoCodec(if kind == "audio" {
                "audio"
            } else {
                "video"
            }));
        }
    }
    Ok(())
}
