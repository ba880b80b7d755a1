//! A media worker: one thread, one tokio current-thread runtime, one UDP
//! socket, and every peer placed on it. The loop waits for datagrams,
//! commands or the next timer, processes them, then flushes sends.
//! Only this file reads the clock (once per wake-up). Commands are in
//! `commands.rs`, the packet fan-out in `fanout.rs`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use str0m::config::DtlsCert;
use str0m::media::Mid;
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpPacket;
use str0m::{Input, Rtc};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use vestibule_actors::ids::SessionId;
use vestibule_actors::media::{MediaEvent, PeerLoss, WorkerCmd};

use super::demux::{Demux, is_stun};
use super::metrics::{BoundMetrics, DropReason, MediaMetrics};
use super::peer::{Drive, Peer, PeerLimits};
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
pub(super) struct Worker {
    pub(super) index: usize,
    pub(super) candidates: Vec<SocketAddr>,
    pub(super) cert: DtlsCert,
    pub(super) codecs: Vec<String>,
    pub(super) limits: PeerLimits,
    pub(super) peers: Slab<Peer>,
    pub(super) demux: Demux,
    pub(super) timers: TimerHeap,
    /// Each session's WHIP peer.
    pub(super) ingress_of: HashMap<SessionId, PeerKey>,
    /// Each session's WHEP peer.
    pub(super) egress_of: HashMap<SessionId, PeerKey>,
    /// (publisher peer, ingress mid) -> subscribers (egress peer, out index).
    pub(super) routes: HashMap<(PeerKey, Mid), Vec<(PeerKey, usize)>>,
    /// Lobby programs on this worker: viewers and live taps.
    pub(super) programs: HashMap<vestibule_actors::StreamKey, super::program::ProgramFeed>,
    /// Which publisher sections a live tap takes (empty when nothing is live).
    pub(super) tap_routes: super::program::TapRoutes,
    /// Peers found lost during this iteration, removed at its end.
    pub(super) lost: Vec<PeerKey>,
    /// RTP a drive produced, waiting for fan-out (reused buffer).
    pub(super) forward: Vec<(Mid, RtpPacket)>,
    /// Egress mids whose subscriber asked for a keyframe (reused buffer).
    pub(super) keyframes_wanted: Vec<Mid>,
    /// Subscribers written to during one fan-out (reused buffer).
    pub(super) touched: Vec<PeerKey>,
    pub(super) tx: SendQueue,
    pub(super) metrics: BoundMetrics,
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
    let mut worker = Worker::new(
        index,
        setup.candidates,
        setup.cert,
        setup.codecs,
        setup.limits,
        setup.metrics.bind(),
    );
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
    /// A worker without peers. Separate from [`run`] so that the in-memory
    /// benches (`bench_support`) build the same worker without a socket.
    pub(super) fn new(
        index: usize,
        candidates: Vec<SocketAddr>,
        cert: DtlsCert,
        codecs: Vec<String>,
        limits: PeerLimits,
        metrics: BoundMetrics,
    ) -> Self {
        Worker {
            index,
            candidates,
            cert,
            codecs,
            limits,
            peers: Slab::default(),
            demux: Demux::default(),
            timers: TimerHeap::default(),
            ingress_of: HashMap::new(),
            egress_of: HashMap::new(),
            routes: HashMap::new(),
            programs: HashMap::new(),
            tap_routes: HashMap::new(),
            lost: Vec::new(),
            forward: Vec::new(),
            keyframes_wanted: Vec::new(),
            touched: Vec::new(),
            tx: SendQueue::default(),
            metrics,
        }
    }

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

    /// Runs `f` on one peer with a [`Drive`] of this worker, isolating
    /// panics: a peer that panics is lost, the worker goes on.
    pub(super) fn drive<R>(
        &mut self,
        key: PeerKey,
        now: Instant,
        f: impl FnOnce(&mut Peer, &mut Drive<'_>) -> R,
    ) -> Option<R> {
        let peer = self.peers.get_mut(key)?;
        let mut d = Drive {
            now,
            tx: &mut self.tx,
            metrics: &self.metrics,
            forward: &mut self.forward,
            keyframes_wanted: &mut self.keyframes_wanted,
        };
        match catch_unwind(AssertUnwindSafe(|| f(peer, &mut d))) {
            Ok(r) => Some(r),
            Err(_) => {
                warn!(worker = self.index, participant = %peer.participant, "peer panicked; closing it");
                peer.lost = Some(PeerLoss::Vanished);
                None
            }
        }
    }

    pub(super) fn on_datagram(
        &mut self,
        source: SocketAddr,
        dst_ip: Option<IpAddr>,
        datagram: &[u8],
        now: Instant,
    ) {
        self.metrics.family.datagrams_in.inc();
        let key = match self.demux.route(source, datagram) {
            Ok(k) => k,
            // Off the hot path: only a STUN message str0m cannot parse.
            Err(DropReason::Malformed) => match self.repaired_stun(datagram) {
                Some((key, fixed)) => return self.deliver(key, source, dst_ip, &fixed, now),
                None => return self.metrics.dropped(DropReason::Malformed),
            },
            Err(reason) => return self.metrics.dropped(reason),
        };
        self.deliver(key, source, dst_ip, datagram, now);
    }

    /// A Binding request without PRIORITY (FFmpeg 8) that verifies with
    /// the peer's own password, rebuilt so str0m accepts it (`stun_fixup`).
    fn repaired_stun(&mut self, datagram: &[u8]) -> Option<(PeerKey, Vec<u8>)> {
        let ufrag = super::stun_fixup::needs_priority(datagram)?;
        let key = self.demux.by_ufrag(ufrag)?;
        let pwd = self
            .peers
            .get_mut(key)?
            .rtc
            .direct_api()
            .local_ice_credentials()
            .pass;
        let fixed = super::stun_fixup::add_priority(datagram, &pwd)?;
        self.metrics.family.stun_repaired.inc();
        Some((key, fixed))
    }

    /// Hands a routed datagram to its peer.
    fn deliver(
        &mut self,
        key: PeerKey,
        source: SocketAddr,
        dst_ip: Option<IpAddr>,
        datagram: &[u8],
        now: Instant,
    ) {
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
        if stun && peer.egress_mut().is_some_and(|e| !e.answered()) {
            return self.metrics.dropped(DropReason::Early);
        }
        let handled = self.drive(key, now, |peer, d| {
            let handled = match peer.rtc.handle_input(input) {
                Ok(()) => true,
                Err(e) => {
                    peer.note_error(&e);
                    false
                }
            };
            if stun && handled {
                // accepts() verified the STUN integrity: consent is fresh.
                peer.touch(now);
            }
            peer.drain(d);
            handled
        });
        if handled == Some(false) {
            self.metrics.dropped(DropReason::PeerError);
        }
        if stun
            && self.demux.learn(source, key)
            && let Some(peer) = self.peers.get_mut(key)
        {
            peer.addrs.push(source);
        }
        self.after_drive(key, now);
    }

    /// After a peer was driven: fan out what it received, pass on keyframe
    /// requests, reschedule it, and note it for removal when it was lost.
    pub(super) fn after_drive(&mut self, key: PeerKey, now: Instant) {
        if !self.forward.is_empty() {
            self.fan_out(key, now);
        }
        if !self.keyframes_wanted.is_empty() {
            self.forward_keyframe_requests(key, now);
        }
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        if peer.lost.is_some() {
            if !self.lost.contains(&key) {
                self.lost.push(key);
            }
            return;
        }
        let next = peer.next_deadline();
        if peer.scheduled.is_none_or(|s| next < s) {
            peer.scheduled = Some(next);
            self.timers.push(next, key);
        }
    }

    pub(super) fn on_timers(&mut self, now: Instant) {
        while let Some((at, key)) = self.timers.pop_due(now) {
            let Some(peer) = self.peers.get_mut(key) else {
                continue;
            };
            if peer.scheduled != Some(at) {
                continue; // superseded by an earlier deadline
            }
            peer.scheduled = None;
            self.drive(key, now, |peer, d| peer.on_timeout(d));
            self.after_drive(key, now);
        }
    }

    /// Removes lost peers and tells their sessions.
    fn reap_lost(&mut self, now: Instant) {
        for key in std::mem::take(&mut self.lost) {
            let Some(peer) = self.peers.get_mut(key) else {
                continue;
            };
            let reason = peer.lost.unwrap_or(PeerLoss::Vanished);
            debug!(worker = self.index, participant = %peer.participant, ?reason, ingress = peer.is_ingress(), "peer lost");
            let events = peer.events_recipient();
            let event = if peer.is_ingress() {
                MediaEvent::Lost { reason }
            } else {
                MediaEvent::EgressLost { reason }
            };
            self.close_peer(key, now);
            events.do_send(event);
        }
    }

    /// Removes a peer with its routes and says goodbye to the remote.
    pub(super) fn close_peer(&mut self, key: PeerKey, now: Instant) {
        let Some(mut peer) = self.peers.remove(key) else {
            return;
        };
        self.demux.forget(&peer.ufrag, &peer.addrs, key);
        let index = if peer.is_ingress() {
            &mut self.ingress_of
        } else {
            &mut self.egress_of
        };
        if index.get(&peer.session) == Some(&key) {
            index.remove(&peer.session);
        }
        self.forget_viewer(key);
        // Routes from this peer (publisher) and to it (subscriber).
        self.routes.retain(|(publisher, _), subs| {
            subs.retain(|(sub, _)| *sub != key);
            *publisher != key && !subs.is_empty()
        });
        self.metrics.family.peers.dec();
        if !peer.is_ingress() {
            self.metrics.family.subscribers.dec();
        }
        // RTCP BYE, SCTP shutdown and DTLS close_notify, best effort: the
        // remote may already be gone.
        if peer.rtc.close().is_ok() {
            drain_transmits(&mut peer.rtc, &mut self.tx, now);
        }
    }

    pub(super) fn close_all(&mut self, now: Instant) {
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
