//! `Session`: one user in one lobby. Receives its media peer's events,
//! applies the per-session signal-channel policy (client offers: one
//! outstanding, 10 per minute), and tells its lobby when it ends. The lobby
//! keeps the authoritative membership.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{
    Actor, ActorContext as _, ActorFutureExt as _, Addr, AsyncContext as _, Context, Handler,
    Message, ResponseActFuture, WrapFuture as _,
};
use tracing::{debug, info_span};

use crate::ids::{ParticipantId, SessionId, TrackId, WhepId};
use crate::lobby::{
    AcceptWhepOffer, AnswerWhep, ApplyClientOffer, CloseWhep, LeaveLobby, Lobby, OpenWhep,
    SessionLeft, SetTrackMute,
};
use crate::media::{
    EgressTrack, IcePatch, IcePatchResult, MediaError, MediaEvent, PeerLoss, WorkerCmd,
};
use crate::registry::ControlPlane;

/// Client offers accepted per [`CLIENT_OFFER_WINDOW`].
const CLIENT_OFFERS_PER_WINDOW: usize = 10;
/// The sliding window of the client-offer rate limit.
const CLIENT_OFFER_WINDOW: Duration = Duration::from_secs(60);

/// Why a session ended; also the `reason` label of `vestibule_sessions_ended_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// DELETE by the client.
    Deleted,
    /// The same user joined again (`on_duplicate_user = "replace"`).
    Replaced,
    /// The peer vanished (ICE/DTLS loss, consent timeout).
    PeerGone,
    /// The peer never connected.
    NeverConnected,
    /// The signal channel broke its limits.
    Misbehaved,
    /// The media plane refused the offer.
    Rejected,
    /// The stream was deleted.
    LobbyClosed,
    /// The server is shutting down.
    Shutdown,
}

impl EndReason {
    /// Metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Deleted => "deleted",
            EndReason::Replaced => "replaced",
            EndReason::PeerGone => "peer_gone",
            EndReason::NeverConnected => "never_connected",
            EndReason::Misbehaved => "misbehaved",
            EndReason::Rejected => "rejected",
            EndReason::LobbyClosed => "lobby_closed",
            EndReason::Shutdown => "shutdown",
        }
    }
}

impl From<PeerLoss> for EndReason {
    fn from(loss: PeerLoss) -> Self {
        match loss {
            PeerLoss::Vanished => EndReason::PeerGone,
            PeerLoss::NeverConnected => EndReason::NeverConnected,
            PeerLoss::Misbehaved => EndReason::Misbehaved,
        }
    }
}

/// The session actor.
#[derive(Debug)]
pub struct Session {
    session_id: SessionId,
    participant_id: ParticipantId,
    lobby: Addr<Lobby>,
    plane: Arc<ControlPlane>,
    end_reason: Option<EndReason>,
    connected: bool,
    signal_open: bool,
    /// A client offer is being applied; further ones are ignored meanwhile.
    client_offer_pending: bool,
    /// When recent client offers were accepted (rate window).
    client_offers: VecDeque<Instant>,
    /// The WHEP connection, if one exists.
    whep: Option<Whep>,
    /// Number of the next server offer; never reset while the session lives.
    next_offer_number: u64,
    /// Id of the next message this server originates on the signal channel.
    next_message_id: u64,
    /// The lobby's media worker.
    home: usize,
    span: tracing::Span,
}

/// The session's WHEP connection and its renegotiation state (API.md
/// "Signal channel" rules 2-4).
#[derive(Debug)]
struct Whep {
    id: WhepId,
    /// Number of the outstanding server offer.
    pending: Option<u64>,
    /// The outstanding offer's encoded message, re-sent byte-identical.
    pending_message: Option<Vec<u8>>,
    /// Re-sends of the outstanding offer so far.
    resends: u32,
    /// A renegotiation request is with the worker.
    building: bool,
    /// The lobby's latest wish for this session's tracks.
    desired: Option<Vec<EgressTrack>>,
    /// `desired` changed since the last offer was built.
    dirty: bool,
    /// Created by a 406 counter-offer (its PATCH answers 204, not 201).
    counter_offer: bool,
}

impl Whep {
    fn new(id: WhepId, pending: Option<u64>) -> Self {
        Self {
            id,
            pending,
            pending_message: None,
            resends: 0,
            building: false,
            desired: None,
            dirty: false,
            counter_offer: false,
        }
    }
}

/// An unanswered offer is re-sent after this long (rule 4).
const OFFER_RESEND: Duration = Duration::from_secs(5);
/// Re-sends before the WHEP connection is closed (rule 4).
const OFFER_MAX_RESENDS: u32 = 3;

impl Session {
    /// A session of `lobby`.
    pub fn new(
        session_id: SessionId,
        participant_id: ParticipantId,
        lobby: Addr<Lobby>,
        plane: Arc<ControlPlane>,
        home: usize,
    ) -> Self {
        // The public participant id names the span: the secret session id
        // must never reach a log line.
        let span = info_span!("session", participant = %participant_id);
        Self {
            session_id,
            participant_id,
            lobby,
            plane,
            end_reason: None,
            connected: false,
            signal_open: false,
            client_offer_pending: false,
            client_offers: VecDeque::new(),
            whep: None,
            next_offer_number: 1,
            next_message_id: 1,
            home,
            span,
        }
    }

    fn ignore(&self, reason: &str) {
        self.plane
            .metrics
            .signal_ignored
            .with_label_values(&[reason])
            .inc();
    }

    /// Whether a client offer may be applied now (and records it if so).
    fn admit_client_offer(&mut self, now: Instant) -> Result<(), &'static str> {
        if self.client_offer_pending {
            return Err("offer_outstanding");
        }
        while self
            .client_offers
            .front()
            .is_some_and(|t| now.duration_since(*t) >= CLIENT_OFFER_WINDOW)
        {
            self.client_offers.pop_front();
        }
        if self.client_offers.len() >= CLIENT_OFFERS_PER_WINDOW {
            return Err("offer_rate");
        }
        self.client_offers.push_back(now);
        self.client_offer_pending = true;
        Ok(())
    }
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        let _enter = self.span.enter();
        debug!("session started");
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        let _enter = self.span.enter();
        debug!(participant = %self.participant_id, "session stopped");
        if self.connected {
            self.plane.metrics.sessions_connected.dec();
        }
        // The lobby ignores this when it already removed the session itself.
        self.lobby.do_send(SessionLeft {
            session: self.session_id,
            reason: self.end_reason.unwrap_or(EndReason::PeerGone),
        });
    }
}

/// Stops the session. Sent by its lobby after it removed the membership.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct EndSession {
    /// Why.
    pub reason: EndReason,
}

impl Handler<EndSession> for Session {
    type Result = ();
    fn handle(&mut self, msg: EndSession, ctx: &mut Context<Self>) {
        self.end_reason.get_or_insert(msg.reason);
        ctx.stop();
    }
}

/// Whether the session actor still runs (tests and leak checks).
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub struct IsAlive;

impl Handler<IsAlive> for Session {
    type Result = bool;
    fn handle(&mut self, _msg: IsAlive, ctx: &mut Context<Self>) -> bool {
        ctx.address().connected()
    }
}

/// The session's signal-channel and connection state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionStatus {
    /// WHIP peer connected.
    pub connected: bool,
    /// Signal channel open.
    pub signal_open: bool,
}

/// Returns [`SessionStatus`].
#[derive(Debug, Message)]
#[rtype(result = "SessionStatus")]
pub struct GetSessionStatus;

impl Handler<GetSessionStatus> for Session {
    type Result = actix::MessageResult<GetSessionStatus>;
    fn handle(&mut self, _msg: GetSessionStatus, _ctx: &mut Context<Self>) -> Self::Result {
        actix::MessageResult(SessionStatus {
            connected: self.connected,
            signal_open: self.signal_open,
        })
    }
}

impl Handler<MediaEvent> for Session {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, event: MediaEvent, _ctx: &mut Context<Self>) -> Self::Result {
        let span = self.span.clone();
        let _enter = span.enter();
        match event {
            MediaEvent::Connected { setup } => {
                if !self.connected {
                    self.connected = true;
                    self.plane.metrics.sessions_connected.inc();
                }
                debug!(setup_ms = setup.as_millis() as u64, "peer connected");
            }
            MediaEvent::Lost { reason } => {
                let reason = EndReason::from(reason);
                self.end_reason.get_or_insert(reason);
                self.lobby.do_send(LeaveLobby {
                    session: self.session_id,
                    reason,
                });
            }
            MediaEvent::SignalOpen => self.signal_open = true,
            MediaEvent::EgressAnswer { number, sdp } => {
                let Some(whep) = self.whep.as_ref() else {
                    self.ignore("answer_without_whep");
                    return Box::pin(actix::fut::ready(()));
                };
                if whep.pending != Some(number) {
                    // Rule 2: an answer whose number is not the outstanding one is ignored.
                    self.ignore("stale_answer");
                    return Box::pin(actix::fut::ready(()));
                }
                return self.apply_answer(number, sdp);
            }
            MediaEvent::EgressLost { reason } => {
                debug!(?reason, "whep peer lost");
                self.whep = None;
            }
            MediaEvent::Mute { mid, mute } => {
                let lobby = self.lobby.clone();
                let session = self.session_id;
                return Box::pin(
                    async move {
                        lobby
                            .send(SetTrackMute {
                                session,
                                ingress_mid: mid,
                                mute,
                            })
                            .await
                            .unwrap_or(false)
                    }
                    .into_actor(self)
                    .map(|known, act, _ctx| {
                        if !known {
                            act.ignore("mute_unknown_mid");
                        }
                    }),
                );
            }
            MediaEvent::ClientOffer {
                id,
                number,
                offer,
                sections,
                media_sections,
            } => {
                if media_sections > self.plane.policy.max_media_sections {
                    self.ignore("offer_too_many_sections");
                    return Box::pin(actix::fut::ready(()));
                }
                if let Err(reason) = self.admit_client_offer(Instant::now()) {
                    self.ignore(reason);
                    return Box::pin(actix::fut::ready(()));
                }
                let lobby = self.lobby.clone();
                let apply = ApplyClientOffer {
                    session: self.session_id,
                    id,
                    number,
                    offer,
                    sections,
                };
                return Box::pin(
                    async move { lobby.send(apply).await.unwrap_or(false) }
                        .into_actor(self)
                        .map(|applied, act, _ctx| {
                            act.client_offer_pending = false;
                            if !applied {
                                act.ignore("offer_rejected");
                            }
                        }),
                );
            }
        }
        Box::pin(actix::fut::ready(()))
    }
}

/// Why a WHEP request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WhepError {
    /// No WHEP connection (or not this one).
    #[error("no such WHEP connection")]
    NoWhep,
    /// An answer arrived but no offer is pending.
    #[error("no offer is pending")]
    NoPendingOffer,
    /// No offered m-line is usable (no common codec): counter-offer.
    #[error("no offered media section is usable")]
    NoUsableMedia,
    /// The media plane failed.
    #[error(transparent)]
    Media(#[from] MediaError),
}

/// A server offer for the session's (new) WHEP connection.
#[derive(Debug, Clone)]
pub struct WhepOffer {
    /// The WHEP resource id.
    pub whep_id: WhepId,
    /// The offer SDP.
    pub sdp: String,
    /// Its offer number (`Vestibule-Offer-Number`).
    pub number: u64,
}

/// Creates the session's WHEP connection in server-offer mode, replacing
/// any previous one. The offer consumes an offer number.
#[derive(Debug, Message)]
#[rtype(result = "Result<WhepOffer, WhepError>")]
pub struct StartWhep {
    /// The offer answers a client offer with no usable m-line (406, draft-03).
    pub counter_offer: bool,
}

impl Handler<StartWhep> for Session {
    type Result = ResponseActFuture<Self, Result<WhepOffer, WhepError>>;

    fn handle(&mut self, msg: StartWhep, _ctx: &mut Context<Self>) -> Self::Result {
        self.whep = None;
        let counter_offer = msg.counter_offer;
        let lobby = self.lobby.clone();
        let session = self.session_id;
        Box::pin(
            async move {
                lobby
                    .send(OpenWhep { session })
                    .await
                    .map_err(|_| MediaError::WorkerGone)?
            }
            .into_actor(self)
            .map(move |result, act, _ctx| {
                let sdp = result?;
                let number = act.next_offer_number;
                act.next_offer_number += 1;
                let id = WhepId::random();
                let mut whep = Whep::new(id, Some(number));
                whep.counter_offer = counter_offer;
                act.whep = Some(whep);
                Ok(WhepOffer {
                    whep_id: id,
                    sdp,
                    number,
                })
            }),
        )
    }
}

/// The client's answer to the pending server offer (PATCH). Answers
/// whether the offer was a 406 counter-offer.
#[derive(Debug, Message)]
#[rtype(result = "Result<bool, WhepError>")]
pub struct FinishWhep {
    /// The resource named by the request; `None` on the stream-scoped alias.
    pub whep_id: Option<WhepId>,
    /// The SDP answer.
    pub sdp: String,
}

impl Session {
    fn whep_matches(&self, id: Option<WhepId>) -> bool {
        match (&self.whep, id) {
            (Some(w), Some(id)) => w.id == id,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

impl Handler<FinishWhep> for Session {
    type Result = ResponseActFuture<Self, Result<bool, WhepError>>;

    fn handle(&mut self, msg: FinishWhep, _ctx: &mut Context<Self>) -> Self::Result {
        if !self.whep_matches(msg.whep_id) {
            return Box::pin(actix::fut::ready(Err(WhepError::NoWhep)));
        }
        let Some(number) = self.whep.as_ref().and_then(|w| w.pending) else {
            return Box::pin(actix::fut::ready(Err(WhepError::NoPendingOffer)));
        };
        let lobby = self.lobby.clone();
        let session = self.session_id;
        Box::pin(
            async move {
                lobby
                    .send(AnswerWhep {
                        session,
                        sdp: msg.sdp,
                    })
                    .await
                    .map_err(|_| MediaError::WorkerGone)?
            }
            .into_actor(self)
            .map(move |result, act, ctx| {
                result?;
                let counter = act.whep.as_ref().is_some_and(|w| w.counter_offer);
                act.offer_answered(number, ctx);
                Ok(counter)
            }),
        )
    }
}

/// Ends the session's WHEP connection only.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), WhepError>")]
pub struct EndWhep {
    /// The resource named by the request; `None` on the stream-scoped alias.
    pub whep_id: Option<WhepId>,
}

impl Handler<EndWhep> for Session {
    type Result = Result<(), WhepError>;

    fn handle(&mut self, msg: EndWhep, _ctx: &mut Context<Self>) -> Self::Result {
        if !self.whep_matches(msg.whep_id) {
            return Err(WhepError::NoWhep);
        }
        self.whep = None;
        self.lobby.do_send(CloseWhep {
            session: self.session_id,
        });
        Ok(())
    }
}

impl Session {
    /// Applies the answer to the outstanding offer `number` (from the signal channel).
    fn apply_answer(&self, number: u64, sdp: String) -> ResponseActFuture<Self, ()> {
        let lobby = self.lobby.clone();
        let session = self.session_id;
        Box::pin(
            async move { lobby.send(AnswerWhep { session, sdp }).await }
                .into_actor(self)
                .map(move |result, act, ctx| match result {
                    Ok(Ok(())) => act.offer_answered(number, ctx),
                    _ => act.ignore("answer_rejected"),
                }),
        )
    }

    /// The outstanding offer was answered: clear it and send what changed meanwhile.
    fn offer_answered(&mut self, number: u64, ctx: &mut Context<Self>) {
        let Some(whep) = self.whep.as_mut() else {
            return;
        };
        if whep.pending != Some(number) {
            return;
        }
        whep.pending = None;
        whep.pending_message = None;
        whep.resends = 0;
        if whep.dirty {
            self.renegotiate(ctx);
        }
    }

    /// Builds and sends the next server offer when one is due and allowed
    /// (rules 3 and 7: one outstanding offer, only with an open signal channel).
    fn renegotiate(&mut self, ctx: &mut Context<Self>) {
        if !self.signal_open {
            return;
        }
        let Some(whep) = self.whep.as_mut() else {
            return;
        };
        if whep.pending.is_some() || whep.building {
            whep.dirty = true;
            return;
        }
        let Some(tracks) = whep.desired.clone() else {
            return;
        };
        whep.dirty = false;
        whep.building = true;
        let (id, number) = (self.next_message_id, self.next_offer_number);
        let media = self.plane.media.clone();
        let (home, session, whep_id) = (self.home, self.session_id, whep.id.reveal());
        let started = Instant::now();
        ctx.spawn(
            async move {
                media
                    .request(home, |reply| WorkerCmd::RenegotiateEgress {
                        session,
                        tracks,
                        id,
                        number,
                        whep: whep_id,
                        reply,
                    })
                    .await
            }
            .into_actor(self)
            .map(move |result, act, ctx| {
                let Some(whep) = act.whep.as_mut() else {
                    return;
                };
                whep.building = false;
                match result {
                    Ok(Some(message)) => {
                        act.next_message_id += 1;
                        act.next_offer_number += 1;
                        whep.pending = Some(number);
                        whep.pending_message = Some(message);
                        whep.resends = 0;
                        act.plane.metrics.renegotiations.inc();
                        act.plane
                            .metrics
                            .renegotiation_seconds
                            .observe(started.elapsed().as_secs_f64());
                        act.schedule_resend(number, ctx);
                    }
                    Ok(None) => {
                        if whep.dirty {
                            act.renegotiate(ctx);
                        }
                    }
                    Err(e) => {
                        debug!(cause = %e, "renegotiation failed");
                        act.ignore("renegotiation_failed");
                    }
                }
            }),
        );
    }

    /// Rule 4: re-send an unanswered offer byte-identical after 5 s, at most
    /// 3 times, then close the WHEP connection.
    fn schedule_resend(&self, number: u64, ctx: &mut Context<Self>) {
        ctx.run_later(OFFER_RESEND, move |act, ctx| {
            let Some(whep) = act.whep.as_mut() else {
                return;
            };
            if whep.pending != Some(number) {
                return;
            }
            if whep.resends >= OFFER_MAX_RESENDS {
                debug!(number, "offer never answered; closing the whep connection");
                act.plane.metrics.offers_abandoned.inc();
                act.whep = None;
                act.lobby.do_send(CloseWhep {
                    session: act.session_id,
                });
                return;
            }
            whep.resends += 1;
            if let Some(message) = whep.pending_message.clone() {
                act.plane.metrics.offers_resent.inc();
                let _ = act.plane.media.send(
                    act.home,
                    WorkerCmd::SendSignal {
                        session: act.session_id,
                        message,
                    },
                );
            }
            act.schedule_resend(number, ctx);
        });
    }
}

/// The lobby's current wish for the tracks this session receives.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct UpdateEgress {
    /// Every track the session should receive.
    pub tracks: Vec<EgressTrack>,
}

impl Handler<UpdateEgress> for Session {
    type Result = ();
    fn handle(&mut self, msg: UpdateEgress, ctx: &mut Context<Self>) {
        let Some(whep) = self.whep.as_mut() else {
            return;
        };
        whep.desired = Some(msg.tracks);
        whep.dirty = true;
        self.renegotiate(ctx);
    }
}

/// A track this session may receive changed its mute state.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RelayMute {
    /// The track.
    pub track: TrackId,
    /// New state.
    pub mute: bool,
}

impl Handler<RelayMute> for Session {
    type Result = ();
    fn handle(&mut self, msg: RelayMute, _ctx: &mut Context<Self>) {
        if self.whep.is_none() || !self.signal_open {
            return;
        }
        let id = self.next_message_id;
        self.next_message_id += 1;
        let _ = self.plane.media.send(
            self.home,
            WorkerCmd::RelayMute {
                session: self.session_id,
                track: msg.track,
                mute: msg.mute,
                id,
            },
        );
    }
}

/// A client offer for the session's WHEP connection (standard WHEP),
/// replacing any previous one. Answers the SDP answer and the resource id.
#[derive(Debug, Message)]
#[rtype(result = "Result<(WhepId, String), WhepError>")]
pub struct OfferWhep {
    /// The client's offer.
    pub offer: String,
}

impl Handler<OfferWhep> for Session {
    type Result = ResponseActFuture<Self, Result<(WhepId, String), WhepError>>;

    fn handle(&mut self, msg: OfferWhep, _ctx: &mut Context<Self>) -> Self::Result {
        self.whep = None;
        let lobby = self.lobby.clone();
        let session = self.session_id;
        Box::pin(
            async move {
                lobby
                    .send(AcceptWhepOffer {
                        session,
                        offer: msg.offer,
                    })
                    .await
                    .map_err(|_| MediaError::WorkerGone)?
            }
            .into_actor(self)
            .map(|result, act, _ctx| {
                let sdp = result?.ok_or(WhepError::NoUsableMedia)?;
                let id = WhepId::random();
                act.whep = Some(Whep::new(id, None));
                Ok((id, sdp))
            }),
        )
    }
}

/// Trickle ICE or an ICE restart on the session's WHIP peer
/// (`PATCH {whip Location}`).
#[derive(Debug, Message)]
#[rtype(result = "Result<IcePatchResult, MediaError>")]
pub struct PatchIngressIce {
    /// The request.
    pub patch: IcePatch,
}

impl Handler<PatchIngressIce> for Session {
    type Result = actix::ResponseFuture<Result<IcePatchResult, MediaError>>;

    fn handle(&mut self, msg: PatchIngressIce, _ctx: &mut Context<Self>) -> Self::Result {
        let media = self.plane.media.clone();
        let (home, session) = (self.home, self.session_id);
        Box::pin(async move {
            media
                .request(home, |reply| WorkerCmd::PatchIce {
                    session,
                    egress: false,
                    patch: msg.patch,
                    reply,
                })
                .await
        })
    }
}

/// Trickle ICE or an ICE restart on the session's WHEP peer
/// (`PATCH /whep` or `PATCH {whep Location}` with an sdpfrag).
#[derive(Debug, Message)]
#[rtype(result = "Result<IcePatchResult, WhepError>")]
pub struct PatchEgressIce {
    /// The resource named by the request; `None` on the alias.
    pub whep_id: Option<WhepId>,
    /// The request.
    pub patch: IcePatch,
}

impl Handler<PatchEgressIce> for Session {
    type Result = actix::ResponseFuture<Result<IcePatchResult, WhepError>>;

    fn handle(&mut self, msg: PatchEgressIce, _ctx: &mut Context<Self>) -> Self::Result {
        if !self.whep_matches(msg.whep_id) {
            return Box::pin(async { Err(WhepError::NoWhep) });
        }
        let media = self.plane.media.clone();
        let (home, session) = (self.home, self.session_id);
        Box::pin(async move {
            Ok(media
                .request(home, |reply| WorkerCmd::PatchIce {
                    session,
                    egress: true,
                    patch: msg.patch,
                    reply,
                })
                .await?)
        })
    }
}
