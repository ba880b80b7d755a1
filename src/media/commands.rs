//! What a worker does for each [`WorkerCmd`] from the control plane:
//! create WHIP and WHEP peers, apply client offers and subscriber answers,
//! close peers.

use std::time::Instant;

use actix::Recipient;
use str0m::change::SdpOffer;
use str0m::media::{MediaKind as StrMediaKind, Mid};
use tokio::sync::oneshot;
use tracing::debug;
use vestibule_actors::ids::{ParticipantId, SessionId};
use vestibule_actors::media::{
    EgressTrack, IngressAnswer, IngressChange, MediaError, MediaEvent, WorkerCmd,
};

use super::egress::{Egress, SourceCodecs};
use super::ingress::Ingress;
use super::peer::{Peer, PeerOwner, Role};
use super::rtc_config::{build_rtc, new_credentials};
use super::sdp_meta;
use super::sdpfrag;
use super::signal::{self, SignalMessage};
use super::slab::PeerKey;
use super::worker::Worker;

impl Worker {
    pub(super) fn on_command(&mut self, cmd: WorkerCmd, now: Instant) {
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
            WorkerCmd::OpenEgress {
                session,
                participant,
                tracks,
                events,
                reply,
            } => {
                let result = self.open_egress(session, participant, tracks, events, now);
                let _ = reply.send(result);
            }
            WorkerCmd::AcceptEgressOffer {
                session,
                participant,
                offer,
                tracks,
                events,
                reply,
            } => {
                let owner = PeerOwner {
                    session,
                    participant,
                    events,
                };
                let result = self.accept_egress_offer(owner, &offer, tracks, now);
                let _ = reply.send(result);
            }
            WorkerCmd::AnswerEgress {
                session,
                answer,
                reply,
            } => {
                let result = self.answer_egress(session, &answer, now);
                let _ = reply.send(result);
            }
            WorkerCmd::RequestKeyframe { session, mid } => {
                if let Some(&key) = self.ingress_of.get(&session) {
                    self.request_keyframe(key, Mid::from(mid.as_str()), now);
                }
            }
            WorkerCmd::RenegotiateEgress {
                session,
                tracks,
                id,
                number,
                whep,
                reply,
            } => {
                let result = self.renegotiate_egress(session, tracks, id, number, whep, now);
                let _ = reply.send(result);
            }
            WorkerCmd::SendSignal { session, message } => self.send_signal(session, message, now),
            WorkerCmd::RelayMute {
                session,
                track,
                mute,
                id,
            } => {
                let mid = self
                    .egress_of
                    .get(&session)
                    .and_then(|&k| self.peers.get_mut(k))
                    .and_then(|p| p.egress_mut())
                    .and_then(|e| {
                        e.outs
                            .iter()
                            .find(|o| o.open && !o.stopped && o.track.track == track)
                    })
                    .map(|o| o.mid.to_string());
                if let Some(mid) = mid {
                    self.metrics.family.signal_message("out", "mute");
                    self.send_signal(
                        session,
                        signal::encode(&SignalMessage::Mute { id, mid, mute }),
                        now,
                    );
                }
            }
            WorkerCmd::CloseEgress { session } => {
                if let Some(key) = self.egress_of.get(&session).copied() {
                    self.close_peer(key, now);
                }
            }
            WorkerCmd::CloseSession { session } => {
                for key in [self.ingress_of.get(&session), self.egress_of.get(&session)]
                    .into_iter()
                    .flatten()
                    .copied()
                    .collect::<Vec<_>>()
                {
                    self.close_peer(key, now);
                }
            }
            WorkerCmd::PatchIce {
                session,
                egress,
                patch,
                reply,
            } => {
                let result = self.patch_ice(session, egress, patch, now);
                let _ = reply.send(result);
            }
            WorkerCmd::SetProgram { stream, program } => self.set_program(stream, program, now),
            WorkerCmd::OpenViewer {
                stream,
                viewer,
                offer,
                events,
                reply,
            } => {
                let result = self.open_viewer(stream, viewer, &offer, events, now);
                let _ = reply.send(result);
            }
            WorkerCmd::OpenTap {
                stream,
                live,
                video_port,
                audio_port,
                events,
            } => self.open_tap(stream, live, (video_port, audio_port), events, now),
            WorkerCmd::RefreshTap { live } => self.refresh_tap(live, now),
            WorkerCmd::PauseTap { live } => self.pause_tap(live),
            WorkerCmd::CloseTap { live } => self.close_tap(live, now),
            WorkerCmd::ClearProgram { stream } => self.clear_program(&stream, now),
            WorkerCmd::Shutdown => self.close_all(now),
        }
    }

    /// Places a new peer and registers its routes and timer.
    pub(super) fn place(&mut self, peer: Peer, now: Instant) -> PeerKey {
        let ufrag = peer.ufrag.clone();
        let (session, ingress) = (peer.session, peer.is_ingress());
        let key = self.peers.insert(peer);
        self.demux.add_ufrag(ufrag, key);
        if ingress {
            self.ingress_of.insert(session, key);
        } else {
            self.egress_of.insert(session, key);
        }
        self.metrics.family.peers.inc();
        if !ingress {
            self.metrics.family.subscribers.inc();
        }
        self.drive(key, now, |peer, d| peer.drain(d));
        self.after_drive(key, now);
        key
    }

    fn open_ingress(
        &mut self,
        session: SessionId,
        participant: ParticipantId,
        offer: &str,
        events: Recipient<MediaEvent>,
        now: Instant,
    ) -> Result<IngressAnswer, MediaError> {
        if let Some(old) = self.ingress_of.get(&session).copied() {
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
            .map_err(|e| MediaError::MalformedSdp(e.to_string()))?
            .to_sdp_string();
        check_codecs(offer, &answer)?;
        let answer = super::h264_fmtp::keep_offered_profiles(offer, &answer);
        let mut ingress = Ingress::new(&self.limits, now);
        let (media, _) = ingress.apply_answer(&answer);
        let owner = PeerOwner {
            session,
            participant,
            events,
        };
        let mut peer = Peer::new(
            owner,
            rtc,
            ufrag.clone(),
            self.limits.clone(),
            Role::Ingress(ingress),
            now,
        );
        peer.remote_ufrag = sdpfrag::ice_ufrag(offer).map(str::to_string);
        peer.bundle_mid = sdpfrag::first_mid(&answer).map(str::to_string);
        self.place(peer, now);
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
        let Some(&key) = self.ingress_of.get(&session) else {
            let _ = reply.send(Err(MediaError::NoPeer));
            return;
        };
        let result = self
            .drive(key, now, |peer, d| {
                let parsed = SdpOffer::from_sdp_string(offer)
                    .map_err(|e| MediaError::MalformedSdp(e.to_string()))?;
                let answer = peer
                    .rtc
                    .sdp_api()
                    .accept_offer(parsed)
                    .map_err(|e| MediaError::MalformedSdp(e.to_string()))?
                    .to_sdp_string();
                let answer = super::h264_fmtp::keep_offered_profiles(offer, &answer);
                let Some(ingress) = peer.ingress_mut() else {
                    return Err(MediaError::NoPeer);
                };
                let (added, removed) = ingress.apply_answer(&answer);
                ingress.queue_signal(&SignalMessage::Answer {
                    id,
                    number,
                    sdp: sdp_meta::complete_candidates(&sdp_meta::ensure_msid_semantic(&answer)),
                });
                d.metrics.family.signal_message("out", "answer");
                peer.drain(d);
                Ok(IngressChange { added, removed })
            })
            .unwrap_or(Err(MediaError::NoPeer));
        let _ = reply.send(result);
        self.after_drive(key, now);
    }

    fn open_egress(
        &mut self,
        session: SessionId,
        participant: ParticipantId,
        tracks: Vec<EgressTrack>,
        events: Recipient<MediaEvent>,
        now: Instant,
    ) -> Result<String, MediaError> {
        let (mut rtc, ufrag, tracks, sources) = self.new_egress_rtc(session, tracks, now);
        let (egress, offer) = Egress::offer(&mut rtc, tracks, sources)?;
        let owner = PeerOwner {
            session,
            participant,
            events,
        };
        let mut peer = Peer::new(
            owner,
            rtc,
            ufrag,
            self.limits.clone(),
            Role::Egress(egress),
            now,
        );
        peer.bundle_mid = sdpfrag::first_mid(&offer).map(str::to_string);
        self.place(peer, now);
        Ok(offer)
    }

    fn accept_egress_offer(
        &mut self,
        owner: PeerOwner,
        offer: &str,
        tracks: Vec<EgressTrack>,
        now: Instant,
    ) -> Result<Option<String>, MediaError> {
        let (mut rtc, ufrag, tracks, sources) = self.new_egress_rtc(owner.session, tracks, now);
        let Some((egress, answer)) =
            Egress::answer_client_offer(&mut rtc, offer, tracks, sources, now)?
        else {
            return Ok(None);
        };
        let opened = egress.open_outs();
        let mut peer = Peer::new(
            owner,
            rtc,
            ufrag,
            self.limits.clone(),
            Role::Egress(egress),
            now,
        );
        peer.remote_ufrag = sdpfrag::ice_ufrag(offer).map(str::to_string);
        peer.bundle_mid = sdpfrag::first_mid(&answer).map(str::to_string);
        let key = self.place(peer, now);
        for out in opened {
            self.open_route(key, out, now);
        }
        Ok(Some(answer))
    }

    fn answer_egress(
        &mut self,
        session: SessionId,
        answer: &str,
        now: Instant,
    ) -> Result<(), MediaError> {
        let key = *self.egress_of.get(&session).ok_or(MediaError::NoPeer)?;
        let opened = self
            .drive(key, now, |peer, d| {
                let Role::Egress(egress) = &mut peer.role else {
                    return Err(MediaError::NoPeer);
                };
                let opened = egress.accept_answer(&mut peer.rtc, answer, d.now)?;
                if peer.remote_ufrag.is_none() {
                    peer.remote_ufrag = sdpfrag::ice_ufrag(answer).map(str::to_string);
                }
                peer.drain(d);
                Ok(opened)
            })
            .unwrap_or(Err(MediaError::NoPeer))?;
        for out in opened {
            self.open_route(key, out, now);
        }
        self.after_drive(key, now);
        Ok(())
    }

    /// Writes a message on the session's signal channel (its WHIP peer).
    fn send_signal(&mut self, session: SessionId, message: Vec<u8>, now: Instant) {
        let Some(&key) = self.ingress_of.get(&session) else {
            return;
        };
        self.drive(key, now, |peer, d| {
            if let Some(ingress) = peer.ingress_mut() {
                ingress.queue_raw(message);
                peer.drain(d);
            }
        });
        self.after_drive(key, now);
    }

    fn renegotiate_egress(
        &mut self,
        session: SessionId,
        tracks: Vec<EgressTrack>,
        id: u64,
        number: u64,
        whep: String,
        now: Instant,
    ) -> Result<Option<Vec<u8>>, MediaError> {
        let key = *self.egress_of.get(&session).ok_or(MediaError::NoPeer)?;
        let tracks = tracks
            .into_iter()
            .filter(|t| self.ingress_of.contains_key(&t.publisher))
            .collect::<Vec<_>>();
        let sources = self.source_codecs(&tracks);
        let offer = self
            .drive(key, now, |peer, d| {
                let Role::Egress(egress) = &mut peer.role else {
                    return Err(MediaError::NoPeer);
                };
                let offer = egress.renegotiate(&mut peer.rtc, tracks, sources)?;
                peer.drain(d);
                Ok(offer)
            })
            .unwrap_or(Err(MediaError::NoPeer))?;
        // Stopped outs take no more packets.
        self.prune_routes(key);
        self.after_drive(key, now);
        let Some(sdp) = offer else { return Ok(None) };
        let message = signal::encode(&SignalMessage::Offer {
            id,
            number,
            sdp,
            whep: Some(whep),
        });
        self.metrics.family.signal_message("out", "offer");
        self.send_signal(session, message.clone(), now);
        Ok(Some(message))
    }

    /// A fresh WHEP `Rtc` for `session` (closing any previous one), with the
    /// tracks this worker can forward and their source codecs.
    fn new_egress_rtc(
        &mut self,
        session: SessionId,
        tracks: Vec<EgressTrack>,
        now: Instant,
    ) -> (str0m::Rtc, String, Vec<EgressTrack>, SourceCodecs) {
        if let Some(old) = self.egress_of.get(&session).copied() {
            self.close_peer(old, now);
        }
        let creds = new_credentials();
        let ufrag = creds.ufrag.clone();
        let rtc = build_rtc(&self.codecs, &self.cert, creds, &self.candidates, now);
        // Only tracks whose publisher sits on this worker can be forwarded.
        let tracks: Vec<EgressTrack> = tracks
            .into_iter()
            .filter(|t| self.ingress_of.contains_key(&t.publisher))
            .collect();
        let sources = self.source_codecs(&tracks);
        (rtc, ufrag, tracks, sources)
    }

    /// The codec each track's publisher currently sends, where known.
    fn source_codecs(&mut self, tracks: &[EgressTrack]) -> SourceCodecs {
        let mut sources = SourceCodecs::new();
        for track in tracks {
            let Some(&publisher) = self.ingress_of.get(&track.publisher) else {
                continue;
            };
            let Some(peer) = self.peers.get_mut(publisher) else {
                continue;
            };
            let Peer { rtc, role, .. } = peer;
            if let Role::Ingress(ingress) = role
                && let Some(params) = ingress.source_codec(rtc, Mid::from(track.mid.as_str()))
            {
                sources.insert(track.track, params);
            }
        }
        sources
    }

    /// Drops routes to a subscriber's stopped outs.
    fn prune_routes(&mut self, subscriber: PeerKey) {
        let Some(egress) = self.peers.get_mut(subscriber).and_then(|p| p.egress_mut()) else {
            return;
        };
        let stopped: Vec<usize> = egress
            .outs
            .iter()
            .enumerate()
            .filter(|(_, o)| o.stopped)
            .map(|(i, _)| i)
            .collect();
        if stopped.is_empty() {
            return;
        }
        self.routes.retain(|_, subs| {
            subs.retain(|(sub, out)| *sub != subscriber || !stopped.contains(out));
            !subs.is_empty()
        });
    }

    /// Asks a publisher for a keyframe on one of its sections.
    pub(super) fn request_keyframe(&mut self, publisher: PeerKey, mid: Mid, now: Instant) {
        self.drive(publisher, now, |peer, d| {
            let Role::Ingress(ingress) = &mut peer.role else {
                return;
            };
            if ingress.request_keyframe(&mut peer.rtc, mid, d.now, d.metrics) {
                peer.drain(d);
            }
        });
        self.after_drive(publisher, now);
    }
}

/// 422 when an offered audio or video section got no codec: str0m answers
/// such a section disabled (port 0) while the offer had it enabled. And
/// 400 when the answer has fewer sections than the offer: str0m stops
/// parsing at the first media-level line it cannot read and drops every
/// later section silently.
fn check_codecs(offer: &str, answer: &str) -> Result<(), MediaError> {
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
    if answered.len() != offered.len() {
        return Err(MediaError::MalformedSdp(format!(
            "{} of {} media sections could be read",
            answered.len(),
            offered.len()
        )));
    }
    for ((kind, enabled), (_, accepted)) in offered.iter().zip(&answered) {
        if *enabled && !*accepted {
            match kind.as_str() {
                "audio" => return Err(MediaError::NoCodec(StrMediaKind::Audio.as_label())),
                "video" => return Err(MediaError::NoCodec(StrMediaKind::Video.as_label())),
                _ => {}
            }
        }
    }
    Ok(())
}

/// A static label for a media kind.
trait KindLabel {
    fn as_label(&self) -> &'static str;
}

impl KindLabel for StrMediaKind {
    fn as_label(&self) -> &'static str {
        match self {
            StrMediaKind::Audio => "audio",
            StrMediaKind::Video => "video",
        }
    }
}
