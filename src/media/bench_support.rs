//! In-memory harness for the criterion benches under `benches/` (issue 6):
//! a real [`Worker`] with a real WHIP publisher peer and N real WHEP
//! subscriber peers, each connected (ICE, DTLS, SRTP) to a str0m client
//! `Rtc` through an in-memory network instead of a socket.
//!
//! Why a module here rather than a public API on the worker: the fan-out is
//! a method of the crate-private `Worker`, and the benches must measure that
//! code, not a copy of it. This module is the one narrow door: the rest of
//! the media plane stays `pub(super)`, and nothing here is used by the
//! server itself. Hidden from the docs because it is not an API to build on.
//!
//! Why connected peers instead of bare `Rtc`s: str0m drops what is written
//! to a stream before DTLS completes, so an unconnected subscriber would
//! measure nothing; and a subscriber whose SRTP context is live pays the
//! real per-packet cost (RTP header write, AES-GCM or AES-CM+HMAC seal,
//! RTX cache insert). Clients are driven the way str0m's own tests drive
//! two `Rtc`s: each side's `Output::Transmit` becomes the other side's
//! `Input::Receive`, on a virtual clock.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use actix::{Actor, Addr, Context, Handler, Recipient};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind as StrMediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpPacket;
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use tokio::sync::oneshot;
use vestibule_actors::ids::{ParticipantId, SessionId, TrackId};
use vestibule_actors::media::{EgressTrack, MediaEvent, WorkerCmd};
use vestibule_actors::snapshot::{MediaKind, Purpose};

use super::metrics::MediaMetrics;
use super::peer::{PeerLimits, Role};
use super::slab::PeerKey;
use super::worker::Worker;
use crate::client::synthetic;

/// Video frame interval (30 fps) on the virtual clock.
const FRAME_INTERVAL: Duration = Duration::from_micros(33_333);
/// RTP ticks per frame at 90 kHz.
const FRAME_TICKS: u64 = 3_000;
/// Bytes per frame: 1.2 Mbit/s at 30 fps, as the load tool sends; str0m
/// packetizes it into about five RTP packets of ~1 KB.
const FRAME_BYTES: usize = 5_000;
/// Frames per keyframe (2 s), as the load tool sends.
const GOP: u64 = 60;
/// Virtual time the in-memory network may take to connect everyone.
const CONNECT_BUDGET: Duration = Duration::from_secs(20);

/// Where the session actors of the rig's peers would be: nowhere. Events
/// go to a closed mailbox and are dropped, as a vanished session's are.
struct NoSession;

impl Actor for NoSession {
    type Context = Context<Self>;
}

impl Handler<MediaEvent> for NoSession {
    type Result = ();

    fn handle(&mut self, _: MediaEvent, _: &mut Context<Self>) {}
}

/// A recipient whose mailbox is closed: `do_send` drops the message.
fn no_session() -> Recipient<MediaEvent> {
    let (tx, _rx) = actix::dev::channel::channel::<NoSession>(1);
    Addr::new(tx).recipient()
}

/// The remote end of one peer: a str0m client and its address.
struct Client {
    rtc: Rtc,
    addr: SocketAddr,
    /// Its next timeout.
    timeout: Instant,
    /// Media frames it decoded from SRTP (only while media is delivered).
    frames: u64,
}

/// RFC 7983 + RFC 5761: an RTP (not RTCP) datagram. Those are what the
/// benches produce by the million and the clients need not decrypt.
fn is_rtp_media(datagram: &[u8]) -> bool {
    matches!(datagram.first(), Some(128..=191)) && !matches!(datagram.get(1), Some(192..=223))
}

/// One worker with one publisher (one VP8 track) and N subscribers of that
/// track, everything connected in memory. See the module docs.
pub struct FanoutRig {
    worker: Worker,
    /// The virtual clock: the wake-up time of the worker's next turn.
    now: Instant,
    /// The worker's advertised candidate.
    server: SocketAddr,
    /// `clients[0]` publishes; the others subscribe.
    clients: Vec<Client>,
    by_addr: HashMap<SocketAddr, usize>,
    publisher: PeerKey,
    subscribers: Vec<PeerKey>,
    /// The publisher client's video mid and VP8 payload type.
    video: (Mid, Pt),
    /// Frames published so far.
    frames: u64,
    /// Publisher packets already through SRTP and str0m, awaiting fan-out.
    packets: VecDeque<(Mid, RtpPacket)>,
    /// Publisher SRTP datagrams awaiting the whole receive path.
    datagrams: VecDeque<Vec<u8>>,
    /// RTP datagrams the worker queued for subscribers (and dropped here).
    sent: u64,
    /// Their bytes.
    sent_bytes: u64,
    /// Whether [`FanoutRig::exchange`] hands subscribers their RTP too.
    deliver_media: bool,
}

impl std::fmt::Debug for FanoutRig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanoutRig")
            .field("subscribers", &self.subscribers.len())
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

impl FanoutRig {
    /// A worker with one connected publisher and `subscribers` connected
    /// subscribers whose keyframe gate is open. Panics when the in-memory
    /// setup fails: a bench must not measure a half-connected rig.
    pub fn new(subscribers: usize) -> Self {
        let provider = str0m::crypto::from_feature_flags();
        let cert = provider
            .dtls_provider
            .generate_certificate()
            .expect("DTLS certificate");
        provider.install_process_default();
        let metrics = MediaMetrics::register(&prometheus::Registry::new())
            .expect("metrics")
            .bind();
        let server = SocketAddr::from(([10, 0, 0, 1], 4000));
        let limits = PeerLimits {
            ice_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(30),
            signal_max_bytes: 16 * 1024,
            signal_per_s: 10,
        };
        let codecs = ["opus", "vp8", "vp9", "h264"].map(String::from).to_vec();
        let worker = Worker::new(0, vec![server], cert, codecs, limits, metrics);
        let now = Instant::now();
        let mut rig = FanoutRig {
            worker,
            now,
            server,
            clients: Vec::new(),
            by_addr: HashMap::new(),
            publisher: PeerKey {
                index: 0,
                generation: 0,
            },
            subscribers: Vec::new(),
            video: (Mid::from("0"), Pt::from(0)),
            frames: 0,
            packets: VecDeque::new(),
            datagrams: VecDeque::new(),
            sent: 0,
            sent_bytes: 0,
            deliver_media: false,
        };
        let (session, participant, ingress_mid) = rig.connect_publisher();
        let track = EgressTrack {
            track: TrackId::random(),
            publisher: session,
            participant,
            mid: ingress_mid,
            kind: MediaKind::Video,
            purpose: Purpose::Guest,
            mute: false,
            user_id: "bench-publisher".into(),
        };
        for i in 0..subscribers {
            rig.add_subscriber(i, track.clone());
        }
        let keys = rig.subscribers.clone();
        rig.run_until(|w| keys.iter().all(|k| connected(w, *k)));
        // Open every keyframe gate through the whole receive path: the
        // next frame is a keyframe (RTP time jumps ahead, as after a gap).
        // This once the subscribers decrypt what they get: proof that the
        // SRTP the benches produce is the real thing.
        rig.frames = rig.frames.div_ceil(GOP) * GOP;
        rig.deliver_media = true;
        rig.publish_frame(Sink::Worker);
        rig.settle();
        rig.deliver_media = false;
        assert!(
            rig.clients[1..].iter().all(|c| c.frames > 0),
            "a subscriber decoded no frame"
        );
        for key in &rig.subscribers {
            let peer = rig.worker.peers.get_mut(*key).expect("subscriber");
            let Role::Egress(egress) = &peer.role else {
                panic!("subscriber is not an egress peer");
            };
            assert!(
                egress.outs.iter().all(|o| o.open && !o.waiting_keyframe),
                "a subscriber's m-line did not open"
            );
        }
        rig.sent = 0;
        rig.sent_bytes = 0;
        rig
    }

    /// Subscribers on the worker.
    pub fn subscribers(&self) -> usize {
        self.subscribers.len()
    }

    /// RTP datagrams the worker produced for subscribers so far (counted
    /// by [`FanoutRig::settle`]).
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Bytes of those datagrams (SRTP header, payload and auth tag).
    pub fn sent_bytes(&self) -> u64 {
        self.sent_bytes
    }

    /// Publishes frames until `count` publisher packets have been received
    /// and decrypted by the worker's WHIP peer but not yet fanned out. Not
    /// part of the measured cost.
    pub fn prepare_packets(&mut self, count: usize) {
        while self.packets.len() < count {
            self.publish_frame(Sink::Packets);
        }
    }

    /// Publishes frames until `count` publisher SRTP datagrams wait for
    /// [`FanoutRig::receive_next`]. Not part of the measured cost.
    pub fn prepare_datagrams(&mut self, count: usize) {
        while self.datagrams.len() < count {
            self.publish_frame(Sink::Datagrams);
        }
    }

    /// The measured unit of the fan-out bench: the worker forwards one
    /// received publisher packet to every subscriber (`Worker::fan_out`:
    /// per subscriber the keyframe gate, PT map, sequence and RTP-time
    /// rebase, `write_rtp`, then one str0m timeout and drain that SRTP-seals
    /// the packet into the send queue). Returns false when nothing was
    /// prepared.
    pub fn fan_out_next(&mut self) -> bool {
        let Some(packet) = self.packets.pop_front() else {
            return false;
        };
        self.worker.forward.push(packet);
        self.worker.fan_out(self.publisher, self.now);
        true
    }

    /// The measured unit of the receive + fan-out bench: one publisher SRTP
    /// datagram through `Worker::on_datagram` (demux, SRTP unprotect, str0m
    /// RTP parse, then the fan-out above). Returns false when nothing was
    /// prepared.
    pub fn receive_next(&mut self) -> bool {
        let Some(datagram) = self.datagrams.pop_front() else {
            return false;
        };
        let source = self.clients[0].addr;
        self.worker
            .on_datagram(source, Some(self.server.ip()), &datagram, self.now);
        true
    }

    /// What the worker loop does after processing input, minus the socket:
    /// queued datagrams leave (RTP to subscribers is counted and dropped,
    /// everything else reaches its client), the clients answer, timers
    /// run. Panics when a peer was lost: the figures would be wrong.
    pub fn settle(&mut self) {
        self.exchange();
        assert!(
            self.worker.lost.is_empty(),
            "a peer was lost during the bench"
        );
    }

    /// Creates the WHIP peer through the worker's own command and connects
    /// its client; sends one frame so the worker knows the source codec.
    fn connect_publisher(&mut self) -> (SessionId, ParticipantId, String) {
        let addr = SocketAddr::from(([10, 1, 0, 1], 5000));
        let mut rtc = RtcConfig::new()
            .clear_codecs()
            .enable_vp8(true)
            .build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"))
            .expect("local candidate");
        let mut change = rtc.sdp_api();
        let mid = change.add_media(StrMediaKind::Video, Direction::SendOnly, None, None, None);
        let (offer, pending) = change.apply().expect("offer");
        let session = SessionId::random();
        let participant = ParticipantId::random();
        let (reply, mut answer) = oneshot::channel();
        self.worker.on_command(
            WorkerCmd::OpenIngress {
                session,
                participant,
                offer: offer.to_sdp_string(),
                events: no_session(),
                reply,
            },
            self.now,
        );
        let answer = answer
            .try_recv()
            .expect("worker replied")
            .expect("ingress answer");
        let parsed = SdpAnswer::from_sdp_string(&answer.sdp).expect("answer SDP");
        rtc.sdp_api()
            .accept_answer(pending, parsed)
            .expect("answer applied");
        let pt = rtc
            .writer(mid)
            .expect("writer")
            .payload_params()
            .find(|p| p.spec().codec == Codec::Vp8)
            .expect("VP8")
            .pt();
        self.video = (mid, pt);
        self.publisher = *self.worker.ingress_of.get(&session).expect("ingress");
        self.add_client(rtc, addr);
        let key = self.publisher;
        self.run_until(|w| connected(w, key));
        self.publish_frame(Sink::Worker);
        self.settle();
        let ingress_mid = answer.media.first().expect("published media").mid.clone();
        (session, participant, ingress_mid)
    }

    /// Creates one WHEP peer (server offer, client answer) through the
    /// worker's own commands; connection happens in the caller's run.
    fn add_subscriber(&mut self, i: usize, track: EgressTrack) {
        let octets = [10, 2, (i / 250) as u8, (i % 250) as u8 + 1];
        let addr = SocketAddr::from((octets, 5000));
        let session = SessionId::random();
        let (reply, mut offer) = oneshot::channel();
        self.worker.on_command(
            WorkerCmd::OpenEgress {
                session,
                participant: ParticipantId::random(),
                tracks: vec![track],
                events: no_session(),
                reply,
            },
            self.now,
        );
        let offer = offer
            .try_recv()
            .expect("worker replied")
            .expect("egress offer");
        let mut rtc = RtcConfig::new()
            .clear_codecs()
            .enable_vp8(true)
            .build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"))
            .expect("local candidate");
        // str0m rejects media-level i= lines: strip them as every
        // str0m-based client must (src/client/subscriber.rs).
        let offer = super::sdp_meta::prepare_offer(&offer).expect("offer SDP");
        let answer = rtc
            .sdp_api()
            .accept_offer(SdpOffer::from_sdp_string(&offer.sdp).expect("offer SDP"))
            .expect("answer");
        let (reply, mut done) = oneshot::channel();
        self.worker.on_command(
            WorkerCmd::AnswerEgress {
                session,
                answer: answer.to_sdp_string(),
                reply,
            },
            self.now,
        );
        done.try_recv()
            .expect("worker replied")
            .expect("egress answer");
        self.subscribers
            .push(*self.worker.egress_of.get(&session).expect("egress"));
        self.add_client(rtc, addr);
    }

    fn add_client(&mut self, rtc: Rtc, addr: SocketAddr) {
        self.by_addr.insert(addr, self.clients.len());
        self.clients.push(Client {
            rtc,
            addr,
            timeout: self.now,
            frames: 0,
        });
    }

    /// Exchanges datagrams and advances the virtual clock by 1 ms steps
    /// until `done` holds.
    fn run_until(&mut self, done: impl Fn(&mut Worker) -> bool) {
        let deadline = self.now + CONNECT_BUDGET;
        loop {
            self.exchange();
            if done(&mut self.worker) {
                return;
            }
            assert!(self.now < deadline, "the in-memory rig did not connect");
            self.now += Duration::from_millis(1);
        }
    }

    /// One frame from the publisher client, its datagrams going to `sink`.
    fn publish_frame(&mut self, sink: Sink) {
        self.now += FRAME_INTERVAL;
        let keyframe = self.frames.is_multiple_of(GOP);
        let data = synthetic::vp8_frame(keyframe, FRAME_BYTES, self.frames, 640, 360);
        let rtp_time = MediaTime::new(
            self.frames * FRAME_TICKS,
            str0m::media::Frequency::NINETY_KHZ,
        );
        self.frames += 1;
        let (mid, pt) = self.video;
        let now = self.now;
        let client = &mut self.clients[0];
        client
            .rtc
            .writer(mid)
            .expect("writer")
            .write(pt, now, rtp_time, data)
            .expect("frame written");
        let _ = client.rtc.handle_input(Input::Timeout(now));
        let mut media = Vec::new();
        let mut other = Vec::new();
        loop {
            match client.rtc.poll_output() {
                Ok(Output::Transmit(t)) if is_rtp_media(&t.contents) => {
                    media.push(t.contents.to_vec())
                }
                Ok(Output::Transmit(t)) => other.push(t.contents.to_vec()),
                Ok(Output::Timeout(t)) => {
                    client.timeout = t;
                    break;
                }
                Ok(Output::Event(_)) => {}
                Err(e) => panic!("publisher client failed: {e}"),
            }
        }
        let source = client.addr;
        let server = self.server;
        for datagram in other {
            self.worker
                .on_datagram(source, Some(server.ip()), &datagram, now);
        }
        for datagram in media {
            match sink {
                Sink::Worker => {
                    self.worker
                        .on_datagram(source, Some(server.ip()), &datagram, now);
                }
                Sink::Datagrams => self.datagrams.push_back(datagram),
                Sink::Packets => {
                    let receive =
                        Receive::new(Protocol::Udp, source, server, &datagram).expect("datagram");
                    // The ingress half of `on_datagram` without its fan-out:
                    // the packets stay in the worker's forward buffer.
                    self.worker.drive(self.publisher, now, |peer, d| {
                        let _ = peer.rtc.handle_input(Input::Receive(now, receive));
                        peer.drain(d);
                    });
                    self.packets.extend(self.worker.forward.drain(..));
                    // Reschedules the WHIP peer; nothing is left to fan out.
                    self.worker.after_drive(self.publisher, now);
                }
            }
        }
    }

    /// Moves datagrams between the worker and the clients until both sides
    /// are quiet at the current virtual time, and runs due timers.
    fn exchange(&mut self) {
        let now = self.now;
        let server = self.server;
        loop {
            let mut moved = false;
            let queued: Vec<(SocketAddr, Vec<u8>)> = self.worker.tx.drain().collect();
            for (destination, datagram) in queued {
                let Some(&i) = self.by_addr.get(&destination) else {
                    continue;
                };
                if i > 0 && is_rtp_media(&datagram) {
                    self.sent += 1;
                    self.sent_bytes += datagram.len() as u64;
                    if !self.deliver_media {
                        continue;
                    }
                }
                let Ok(receive) = Receive::new(Protocol::Udp, server, destination, &datagram)
                else {
                    continue;
                };
                let _ = self.clients[i]
                    .rtc
                    .handle_input(Input::Receive(now, receive));
                self.clients[i].timeout = now;
            }
            for client in &mut self.clients {
                if client.timeout > now {
                    continue;
                }
                let _ = client.rtc.handle_input(Input::Timeout(now));
                loop {
                    match client.rtc.poll_output() {
                        Ok(Output::Transmit(t)) => {
                            moved = true;
                            self.worker.on_datagram(
                                t.source,
                                Some(t.destination.ip()),
                                &t.contents,
                                now,
                            );
                        }
                        Ok(Output::Timeout(t)) => {
                            client.timeout = t;
                            break;
                        }
                        Ok(Output::Event(Event::MediaData(_))) => client.frames += 1,
                        Ok(Output::Event(_)) => {}
                        Err(e) => panic!("client failed: {e}"),
                    }
                }
            }
            self.worker.on_timers(now);
            if !moved && self.worker.tx.is_empty() {
                return;
            }
        }
    }
}

/// Where a published frame's RTP datagrams go.
#[derive(Clone, Copy)]
enum Sink {
    /// Through `on_datagram` (receive and fan-out) right away.
    Worker,
    /// Decrypted by the WHIP peer; packets kept for `fan_out_next`.
    Packets,
    /// Kept as datagrams for `receive_next`.
    Datagrams,
}

/// Whether the peer at `key` reached DTLS connected.
fn connected(worker: &mut Worker, key: PeerKey) -> bool {
    worker.peers.get_mut(key).is_some_and(|p| p.is_connected())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The benches are not run by the test suite; this keeps their rig
    /// from rotting: every packet reaches every subscriber, on both paths.
    #[test]
    fn the_rig_forwards_every_packet_to_every_subscriber() {
        let mut rig = FanoutRig::new(3);
        rig.prepare_packets(10);
        for _ in 0..10 {
            assert!(rig.fan_out_next());
        }
        rig.settle();
        assert_eq!(rig.sent(), 30);
        rig.prepare_datagrams(10);
        for _ in 0..10 {
            assert!(rig.receive_next());
        }
        rig.settle();
        assert_eq!(rig.sent(), 60);
        assert!(rig.sent_bytes() > 60 * 1000, "~1 KB packets");
    }
}
