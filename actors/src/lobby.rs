//! `Lobby`: the live room of one stream. Authoritative for its sessions and
//! tracks; writes them into the shared [`SessionDirectory`]; stops itself
//! after the last session leaves.

use std::collections::HashMap;
use std::sync::Arc;

use actix::{
    Actor, ActorContext as _, ActorFutureExt as _, Addr, AsyncContext as _, Context, Handler,
    Message, MessageResult, ResponseActFuture, ResponseFuture, WrapFuture as _,
};
use tracing::{debug, info};

use crate::directory::SessionRecord;
use crate::error::{JoinError, PublishError};
use crate::ids::{
    CookieSecret, Identity, LiveId, ParticipantId, ReqToken, SessionId, StreamKey, TrackId, WhepId,
};
use crate::live::{LiveLink, StopLive};
use crate::media::{
    EgressTrack, IcePatch, IcePatchResult, IngressAnswer, IngressSection, MediaError,
    PublishedMedia, WorkerCmd,
};
use crate::program::{self, Program};
use crate::registry::{ControlPlane, LobbyRegistry, LobbyStopped};
use crate::session::{EndReason, EndSession, RelayMute, Session, UpdateEgress};
use crate::snapshot::{LobbySnapshot, MediaKind, ParticipantSnapshot, Purpose, TrackInfo};
use crate::track::{EndTrack, SetMute, Track};
use crate::viewer::{EndViewer, Viewer, ViewerLeft};

/// One member of the lobby.
#[derive(Debug)]
struct Member {
    record: Arc<SessionRecord>,
    /// Published tracks in publish order.
    tracks: Vec<TrackId>,
    /// Largest signal-channel message the member accepts (its SCTP
    /// `a=max-message-size`): server offers must fit in it.
    max_message_size: usize,
}

/// `a=max-message-size` when a peer does not say (API.md "Limits").
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024;
/// Conservative size of one egress m-line (source codec + RTX, `i=`, msid,
/// candidates) plus the session part, for the offer-size check at join.
const OFFER_BYTES_PER_TRACK: usize = 1500;
const OFFER_BYTES_BASE: usize = 2000;

/// Estimated size of a server offer carrying `tracks` m-lines, as a signal message.
pub fn estimated_offer_bytes(tracks: usize) -> usize {
    OFFER_BYTES_BASE + tracks * OFFER_BYTES_PER_TRACK
}

/// One published track.
#[derive(Debug)]
struct TrackEntry {
    addr: Addr<Track>,
    info: TrackInfo,
    owner: SessionId,
}

/// The lobby actor.
#[derive(Debug)]
pub struct Lobby {
    stream: StreamKey,
    /// Distinguishes this lobby from a later one of the same stream in the registry.
    generation: u64,
    plane: Arc<ControlPlane>,
    registry: Addr<LobbyRegistry>,
    // Owned state.
    members: HashMap<SessionId, Member>,
    /// Join order, for stable listings.
    order: Vec<SessionId>,
    tracks: HashMap<TrackId, TrackEntry>,
    /// Set once the lobby decided to stop; joins then go to a new lobby.
    closing: bool,
    /// The media worker every peer of this lobby lives on.
    home: usize,
    /// A debounced push of the track set to every session is scheduled.
    renegotiation_scheduled: bool,
    /// The program last sent to the home worker.
    program: Program,
    /// The live restream, while one is wanted.
    live: Option<LiveLink>,
    /// Plain viewers by resource id.
    viewers: HashMap<WhepId, ViewerEntry>,
}

/// One plain viewer.
#[derive(Debug)]
struct ViewerEntry {
    /// Its peer's key on the worker.
    peer: SessionId,
    /// Who may end it.
    identity: Identity,
    addr: Addr<Viewer>,
}

impl Lobby {
    /// A new, empty lobby for `stream`.
    pub fn new(
        stream: StreamKey,
        generation: u64,
        plane: Arc<ControlPlane>,
        registry: Addr<LobbyRegistry>,
    ) -> Self {
        let home = plane.media.home_of(&stream);
        Self {
            stream,
            generation,
            plane,
            registry,
            members: HashMap::new(),
            order: Vec::new(),
            tracks: HashMap::new(),
            closing: false,
            home,
            renegotiation_scheduled: false,
            program: Program::default(),
            live: None,
            viewers: HashMap::new(),
        }
    }

    /// Removes a member and everything it owns; stops the lobby when empty.
    fn remove_member(&mut self, session: &SessionId, reason: EndReason, ctx: &mut Context<Self>) {
        let Some(member) = self.members.remove(session) else {
            return;
        };
        self.order.retain(|s| s != session);
        self.plane.directory.remove(session);
        self.plane
            .directory
            .release_user_slot(&member.record.identity);
        for track in &member.tracks {
            self.end_track(track);
        }
        if !member.tracks.is_empty() {
            self.track_set_changed(ctx);
        }
        // The media side may be absent (no workers) or already gone: either
        // way there is nothing left to close.
        let _ = self
            .plane
            .media
            .send(self.home, WorkerCmd::CloseSession { session: *session });
        member.record.session.do_send(EndSession { reason });
        self.plane.metrics.sessions.dec();
        self.plane
            .metrics
            .sessions_ended
            .with_label_values(&[reason.as_str()])
            .inc();
        info!(lobby = %self.stream, participant = %member.record.participant_id, reason = reason.as_str(), "session left");
        if self.members.is_empty() {
            self.closing = true;
            ctx.stop();
        }
    }

    fn end_track(&mut self, track: &TrackId) {
        if let Some(entry) = self.tracks.remove(track) {
            entry.addr.do_send(EndTrack);
            self.plane
                .metrics
                .tracks
                .with_label_values(&[entry.info.kind.as_str()])
                .dec();
        }
    }

    fn snapshot(&self) -> LobbySnapshot {
        let participants = self
            .order
            .iter()
            .filter_map(|id| self.members.get(id))
            .map(|m| ParticipantSnapshot {
                participant_id: m.record.participant_id,
                user_id: m.record.identity.user_id.clone(),
                home: m.record.identity.home.clone(),
                owner: m.record.is_owner,
                tracks: m
                    .tracks
                    .iter()
                    .filter_map(|t| self.tracks.get(t).map(|e| e.info.clone()))
                    .collect(),
            })
            .collect();
        LobbySnapshot { participants }
    }
}

impl Actor for Lobby {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        self.plane.metrics.lobbies.inc();
        self.plane.metrics.lobbies_created.inc();
        info!(lobby = %self.stream, "lobby opened");
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        // API.md: viewers close with the lobby, and so does its live.
        if let Some(live) = self.live.take() {
            live.stop.do_send(StopLive {
                reason: "lobby closed",
            });
        }
        for (_, viewer) in self.viewers.drain() {
            let _ = self.plane.media.send(
                self.home,
                WorkerCmd::CloseEgress {
                    session: viewer.peer,
                },
            );
            viewer.addr.do_send(EndViewer);
            self.plane.metrics.viewers.dec();
        }
        let _ = self.plane.media.send(
            self.home,
            WorkerCmd::ClearProgram {
                stream: self.stream.clone(),
            },
        );
        self.plane.metrics.lobbies.dec();
        info!(lobby = %self.stream, "lobby closed");
        self.registry.do_send(LobbyStopped {
            stream: self.stream.clone(),
            generation: self.generation,
        });
    }
}

/// What a successful join hands back to the HTTP layer.
#[derive(Debug, Clone)]
pub struct SessionTicket {
    /// The directory record of the new session.
    pub record: Arc<SessionRecord>,
}

/// Why [`AddSession`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddSessionError {
    /// A policy refused the join.
    Refused(JoinError),
    /// The lobby is stopping; the registry retries with a new lobby.
    Closing,
}

/// Adds a session for `identity`. Sent by the registry.
#[derive(Debug, Message)]
#[rtype(result = "Result<SessionTicket, AddSessionError>")]
pub struct AddSession {
    /// Who joins.
    pub identity: Identity,
    /// Whether that user owns the stream.
    pub is_owner: bool,
}

impl Handler<AddSession> for Lobby {
    type Result = Result<SessionTicket, AddSessionError>;

    fn handle(&mut self, msg: AddSession, ctx: &mut Context<Self>) -> Self::Result {
        if self.closing {
            return Err(AddSessionError::Closing);
        }
        let policy = &self.plane.policy;
        let previous = self
            .members
            .iter()
            .find(|(_, m)| m.record.identity == msg.identity)
            .map(|(id, _)| *id);
        if previous.is_some() && !policy.replace_duplicates {
            return Err(AddSessionError::Refused(JoinError::DuplicateUser));
        }
        let seats_taken = self.members.len() - usize::from(previous.is_some());
        if seats_taken >= policy.max_sessions {
            return Err(AddSessionError::Refused(JoinError::LobbyFull));
        }
        // A replaced session gives its slot back below, so only a new
        // member needs one of the user's slots.
        if previous.is_none()
            && !self
                .plane
                .directory
                .reserve_user_slot(&msg.identity, policy.max_sessions_per_user)
        {
            return Err(AddSessionError::Refused(JoinError::UserLimit));
        }
        if let Some(old) = previous {
            // Keep the user's slot across the swap: take one for the new
            // session before the old one releases its own.
            self.plane
                .directory
                .reserve_user_slot(&msg.identity, usize::MAX);
            // The newcomer is inserted before the old member leaves, so the
            // lobby never looks empty (and never stops) during the swap.
            let record = self.insert_member(msg.identity, msg.is_owner, ctx);
            self.remove_member(&old, EndReason::Replaced, ctx);
            return Ok(SessionTicket { record });
        }
        let record = self.insert_member(msg.identity, msg.is_owner, ctx);
        Ok(SessionTicket { record })
    }
}

impl Lobby {
    fn insert_member(
        &mut self,
        identity: Identity,
        is_owner: bool,
        ctx: &Context<Self>,
    ) -> Arc<SessionRecord> {
        let session_id = SessionId::random();
        let participant_id = ParticipantId::random();
        let session = Session::new(
            session_id,
            participant_id,
            ctx.address(),
            Arc::clone(&self.plane),
            self.home,
        )
        .start();
        let record = Arc::new(SessionRecord {
            session_id,
            participant_id,
            stream: self.stream.clone(),
            identity,
            is_owner,
            cookie: CookieSecret::random(),
            req_token: ReqToken::random(),
            session,
            lobby: ctx.address(),
        });
        self.plane.directory.insert(Arc::clone(&record));
        self.members.insert(
            session_id,
            Member {
                record: Arc::clone(&record),
                tracks: Vec::new(),
                max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            },
        );
        self.order.push(session_id);
        self.plane.metrics.sessions.inc();
        info!(lobby = %self.stream, participant = %participant_id, user = %record.identity, "session joined");
        record
    }
}

/// Ends a member's session (DELETE, peer loss). Answers once the session is
/// out of the directory, so its credentials fail from then on.
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub struct LeaveLobby {
    /// The session.
    pub session: SessionId,
    /// Why.
    pub reason: EndReason,
}

impl Handler<LeaveLobby> for Lobby {
    type Result = bool;
    fn handle(&mut self, msg: LeaveLobby, ctx: &mut Context<Self>) -> bool {
        let known = self.members.contains_key(&msg.session);
        self.remove_member(&msg.session, msg.reason, ctx);
        known
    }
}

/// A session actor stopped (for whatever reason).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SessionLeft {
    /// The session.
    pub session: SessionId,
    /// Why.
    pub reason: EndReason,
}

impl Handler<SessionLeft> for Lobby {
    type Result = ();
    fn handle(&mut self, msg: SessionLeft, ctx: &mut Context<Self>) {
        self.remove_member(&msg.session, msg.reason, ctx);
    }
}

/// Publishes a track of a member.
#[derive(Debug, Message)]
#[rtype(result = "Result<TrackId, PublishError>")]
pub struct PublishTrack {
    /// The publishing session.
    pub session: SessionId,
    /// Audio or video.
    pub kind: MediaKind,
    /// Requested purpose; main is kept only for the owner.
    pub purpose: Purpose,
    /// Initial mute state.
    pub mute: bool,
    /// Ingress mid.
    pub ingress_mid: String,
}

impl Handler<PublishTrack> for Lobby {
    type Result = Result<TrackId, PublishError>;
    fn handle(&mut self, msg: PublishTrack, ctx: &mut Context<Self>) -> Self::Result {
        let track = self.publish_track(msg)?;
        self.track_set_changed(ctx);
        Ok(track)
    }
}

impl Lobby {
    fn publish_track(&mut self, msg: PublishTrack) -> Result<TrackId, PublishError> {
        let Some(member) = self.members.get_mut(&msg.session) else {
            return Err(PublishError::UnknownSession);
        };
        if self.tracks.len() >= self.plane.policy.max_tracks {
            return Err(PublishError::LobbyFull);
        }
        // API.md: purpose 2 from anyone but the owner is stored as 1.
        let purpose = if member.record.is_owner {
            msg.purpose
        } else {
            Purpose::Guest
        };
        let info = TrackInfo {
            track_id: TrackId::random(),
            kind: msg.kind,
            purpose,
            mute: msg.mute,
            ingress_mid: msg.ingress_mid,
            participant_id: member.record.participant_id,
        };
        let track_id = info.track_id;
        member.tracks.push(track_id);
        let addr = Track::new(info.clone()).start();
        let kind = info.kind.as_str();
        self.tracks.insert(
            track_id,
            TrackEntry {
                addr,
                info,
                owner: msg.session,
            },
        );
        self.plane.metrics.tracks.with_label_values(&[kind]).inc();
        self.plane
            .metrics
            .tracks_published
            .with_label_values(&[kind])
            .inc();
        debug!(lobby = %self.stream, track = %track_id, kind, "track published");
        Ok(track_id)
    }
}

/// Removes a member's track by ingress mid.
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub struct UnpublishTrack {
    /// The publishing session.
    pub session: SessionId,
    /// Ingress mid of the track.
    pub ingress_mid: String,
}

impl Handler<UnpublishTrack> for Lobby {
    type Result = bool;
    fn handle(&mut self, msg: UnpublishTrack, ctx: &mut Context<Self>) -> bool {
        let removed = self.unpublish(&msg.session, &msg.ingress_mid);
        if removed {
            self.track_set_changed(ctx);
        }
        removed
    }
}

impl Lobby {
    fn unpublish(&mut self, session: &SessionId, mid: &str) -> bool {
        let Some(track) = self.find_track(session, mid) else {
            return false;
        };
        if let Some(member) = self.members.get_mut(session) {
            member.tracks.retain(|t| *t != track);
        }
        self.end_track(&track);
        true
    }
}

/// Sets the mute state of a member's track by ingress mid.
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub struct SetTrackMute {
    /// The publishing session.
    pub session: SessionId,
    /// Ingress mid of the track.
    pub ingress_mid: String,
    /// New state.
    pub mute: bool,
}

impl Handler<SetTrackMute> for Lobby {
    type Result = bool;
    fn handle(&mut self, msg: SetTrackMute, _ctx: &mut Context<Self>) -> bool {
        let Some(track) = self.find_track(&msg.session, &msg.ingress_mid) else {
            return false;
        };
        let Some(entry) = self.tracks.get_mut(&track) else {
            return false;
        };
        entry.info.mute = msg.mute;
        entry.addr.do_send(SetMute { mute: msg.mute });
        // A muted main track stops being the program source.
        self.refresh_program();
        // Rule 8: relayed by egress mid to sessions whose answered WHEP
        // carries the track (the worker knows which do); later offers carry
        // the state in their i= lines.
        for (id, member) in &self.members {
            if *id != msg.session {
                member.record.session.do_send(RelayMute {
                    track,
                    mute: msg.mute,
                });
            }
        }
        true
    }
}

impl Lobby {
    fn find_track(&self, session: &SessionId, mid: &str) -> Option<TrackId> {
        self.tracks
            .iter()
            .find(|(_, e)| e.owner == *session && e.info.ingress_mid == mid)
            .map(|(id, _)| *id)
    }
}

/// Returns the lobby's membership.
#[derive(Debug, Message)]
#[rtype(result = "LobbySnapshot")]
pub struct DescribeLobby;

impl Handler<DescribeLobby> for Lobby {
    type Result = MessageResult<DescribeLobby>;
    fn handle(&mut self, _msg: DescribeLobby, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.snapshot())
    }
}

/// Ends every session and stops the lobby (stream deleted, shutdown).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct CloseLobby {
    /// Why, for every session.
    pub reason: EndReason,
}

impl Handler<CloseLobby> for Lobby {
    type Result = ();
    fn handle(&mut self, msg: CloseLobby, ctx: &mut Context<Self>) {
        let sessions: Vec<SessionId> = self.order.clone();
        for session in sessions {
            self.remove_member(&session, msg.reason, ctx);
        }
        self.closing = true;
        ctx.stop();
    }
}

/// Why [`OpenIngress`] failed. The session has been removed from the lobby.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenIngressError {
    /// The media plane refused or could not process the offer.
    #[error(transparent)]
    Media(#[from] MediaError),
    /// Publishing the offered tracks would exceed `lobby.max_tracks`.
    #[error("the lobby has too many tracks")]
    TooManyTracks,
    /// The session left while the offer was processed.
    #[error("the session ended")]
    SessionGone,
}

/// Creates the session's WHIP peer from its offer and publishes the offered
/// tracks. On failure the session leaves the lobby.
#[derive(Debug, Message)]
#[rtype(result = "Result<IngressAnswer, OpenIngressError>")]
pub struct OpenIngress {
    /// The joining session.
    pub session: SessionId,
    /// The offer with `i=` lines stripped.
    pub offer: String,
    /// Metadata of the offered sections.
    pub sections: Vec<IngressSection>,
    /// The offer's `a=max-message-size` (default 64 KiB).
    pub max_message_size: usize,
}

impl Handler<OpenIngress> for Lobby {
    type Result = ResponseActFuture<Self, Result<IngressAnswer, OpenIngressError>>;

    fn handle(&mut self, msg: OpenIngress, _ctx: &mut Context<Self>) -> Self::Result {
        let Some(member) = self.members.get(&msg.session) else {
            return Box::pin(actix::fut::ready(Err(OpenIngressError::SessionGone)));
        };
        let events = member.record.session.clone().recipient();
        let participant = member.record.participant_id;
        let media = self.plane.media.clone();
        let home = self.home;
        let session = msg.session;
        let offer = msg.offer;
        Box::pin(
            async move {
                media
                    .request(home, |reply| WorkerCmd::OpenIngress {
                        session,
                        participant,
                        offer,
                        events,
                        reply,
                    })
                    .await
            }
            .into_actor(self)
            .map(move |result, act, ctx| {
                let answer = match result {
                    Ok(answer) => answer,
                    Err(e) => {
                        act.remove_member(&session, EndReason::Rejected, ctx);
                        return Err(e.into());
                    }
                };
                if !act.members.contains_key(&session) {
                    return Err(OpenIngressError::SessionGone);
                }
                let total = act.tracks.len() + answer.media.len();
                if let Some(member) = act.members.get_mut(&session) {
                    member.max_message_size = msg.max_message_size;
                }
                // Every member's offers must fit its signal channel (API.md
                // "Limits": lobby.max_tracks also covers max-message-size).
                let smallest = act
                    .members
                    .values()
                    .map(|m| m.max_message_size)
                    .min()
                    .unwrap_or(DEFAULT_MAX_MESSAGE_SIZE);
                if total > act.plane.policy.max_tracks || estimated_offer_bytes(total) > smallest {
                    act.plane
                        .metrics
                        .tracks_refused
                        .inc_by(answer.media.len() as u64);
                    act.remove_member(&session, EndReason::Rejected, ctx);
                    return Err(OpenIngressError::TooManyTracks);
                }
                for media in &answer.media {
                    act.publish(&session, media, &msg.sections);
                }
                if !answer.media.is_empty() {
                    act.track_set_changed(ctx);
                }
                Ok(answer)
            }),
        )
    }
}

impl Lobby {
    /// Publishes one section of a member with the metadata of its `i=` line.
    fn publish(
        &mut self,
        session: &SessionId,
        media: &PublishedMedia,
        sections: &[IngressSection],
    ) -> Option<TrackId> {
        let meta = sections.iter().find(|s| s.mid == media.mid);
        let msg = PublishTrack {
            session: *session,
            kind: media.kind,
            purpose: meta.map_or(Purpose::Guest, |m| m.purpose),
            mute: meta.is_some_and(|m| m.mute),
            ingress_mid: media.mid.clone(),
        };
        match self.publish_track(msg) {
            Ok(track) => Some(track),
            Err(PublishError::LobbyFull) => {
                self.plane.metrics.tracks_refused.inc();
                None
            }
            Err(PublishError::UnknownSession) => None,
        }
    }
}

/// Applies a client offer from a member's signal channel: the worker
/// answers it on the channel, then the lobby adds and removes tracks.
/// Answers whether the offer was applied.
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub struct ApplyClientOffer {
    /// The offering session.
    pub session: SessionId,
    /// Message id to echo.
    pub id: u64,
    /// Offer number to echo.
    pub number: u64,
    /// The offer, `i=` lines stripped.
    pub offer: String,
    /// Metadata of the offered sections.
    pub sections: Vec<IngressSection>,
}

impl Handler<ApplyClientOffer> for Lobby {
    type Result = ResponseActFuture<Self, bool>;

    fn handle(&mut self, msg: ApplyClientOffer, _ctx: &mut Context<Self>) -> Self::Result {
        if !self.members.contains_key(&msg.session) {
            return Box::pin(actix::fut::ready(false));
        }
        let media = self.plane.media.clone();
        let home = self.home;
        let session = msg.session;
        let (id, number, offer) = (msg.id, msg.number, msg.offer);
        Box::pin(
            async move {
                media
                    .request(home, |reply| WorkerCmd::AnswerClientOffer {
                        session,
                        id,
                        number,
                        offer,
                        reply,
                    })
                    .await
            }
            .into_actor(self)
            .map(move |result, act, ctx| {
                let Ok(change) = result else { return false };
                for mid in &change.removed {
                    act.unpublish(&session, mid);
                }
                for added in &change.added {
                    act.publish(&session, added, &msg.sections);
                }
                if !change.added.is_empty() || !change.removed.is_empty() {
                    act.track_set_changed(ctx);
                }
                true
            }),
        )
    }
}

/// Opens a member's WHEP peer with a server offer of every other member's
/// tracks (join order, then publish order); answers with the offer SDP.
#[derive(Debug, Message)]
#[rtype(result = "Result<String, MediaError>")]
pub struct OpenWhep {
    /// The subscribing session.
    pub session: SessionId,
}

impl Lobby {
    /// The tracks `subscriber` receives: everyone else's.
    fn egress_tracks_for(&self, subscriber: &SessionId) -> Vec<EgressTrack> {
        self.order
            .iter()
            .filter(|id| *id != subscriber)
            .filter_map(|id| self.members.get(id))
            .flat_map(|m| {
                m.tracks.iter().filter_map(|t| {
                    let entry = self.tracks.get(t)?;
                    Some(EgressTrack {
                        track: entry.info.track_id,
                        publisher: m.record.session_id,
                        participant: m.record.participant_id,
                        mid: entry.info.ingress_mid.clone(),
                        kind: entry.info.kind,
                        purpose: entry.info.purpose,
                        mute: entry.info.mute,
                        user_id: m.record.identity.user_id.clone(),
                    })
                })
            })
            .collect()
    }
}

impl Handler<OpenWhep> for Lobby {
    type Result = ResponseFuture<Result<String, MediaError>>;

    fn handle(&mut self, msg: OpenWhep, _ctx: &mut Context<Self>) -> Self::Result {
        let Some(member) = self.members.get(&msg.session) else {
            return Box::pin(async { Err(MediaError::NoPeer) });
        };
        let events = member.record.session.clone().recipient();
        let participant = member.record.participant_id;
        let tracks = self.egress_tracks_for(&msg.session);
        let media = self.plane.media.clone();
        let (home, session) = (self.home, msg.session);
        Box::pin(async move {
            media
                .request(home, |reply| WorkerCmd::OpenEgress {
                    session,
                    participant,
                    tracks,
                    events,
                    reply,
                })
                .await
        })
    }
}

/// Applies a member's answer to its WHEP peer's pending offer.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), MediaError>")]
pub struct AnswerWhep {
    /// The subscribing session.
    pub session: SessionId,
    /// The SDP answer.
    pub sdp: String,
}

impl Handler<AnswerWhep> for Lobby {
    type Result = ResponseFuture<Result<(), MediaError>>;

    fn handle(&mut self, msg: AnswerWhep, _ctx: &mut Context<Self>) -> Self::Result {
        let media = self.plane.media.clone();
        let home = self.home;
        Box::pin(async move {
            media
                .request(home, |reply| WorkerCmd::AnswerEgress {
                    session: msg.session,
                    answer: msg.sdp,
                    reply,
                })
                .await
        })
    }
}

/// Closes a member's WHEP peer only.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct CloseWhep {
    /// The subscribing session.
    pub session: SessionId,
}

impl Handler<CloseWhep> for Lobby {
    type Result = ();
    fn handle(&mut self, msg: CloseWhep, _ctx: &mut Context<Self>) {
        let _ = self.plane.media.send(
            self.home,
            WorkerCmd::CloseEgress {
                session: msg.session,
            },
        );
    }
}

impl Lobby {
    /// The track set changed: after the debounce, tell every session what
    /// it should receive (rule 3: a burst of changes makes one offer).
    fn track_set_changed(&mut self, ctx: &mut Context<Self>) {
        // The program follows at once; only offers are debounced.
        self.refresh_program();
        if self.renegotiation_scheduled {
            return;
        }
        self.renegotiation_scheduled = true;
        ctx.run_later(self.plane.policy.renegotiate_debounce, |act, _ctx| {
            act.renegotiation_scheduled = false;
            for id in &act.order {
                if let Some(member) = act.members.get(id) {
                    member.record.session.do_send(UpdateEgress {
                        tracks: act.egress_tracks_for(id),
                    });
                }
            }
        });
    }
}

/// Creates a member's WHEP peer from its client offer (standard WHEP);
/// `None` when no offered m-line is usable.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<String>, MediaError>")]
pub struct AcceptWhepOffer {
    /// The subscribing session.
    pub session: SessionId,
    /// The client's offer.
    pub offer: String,
}

impl Handler<AcceptWhepOffer> for Lobby {
    type Result = ResponseFuture<Result<Option<String>, MediaError>>;

    fn handle(&mut self, msg: AcceptWhepOffer, _ctx: &mut Context<Self>) -> Self::Result {
        let Some(member) = self.members.get(&msg.session) else {
            return Box::pin(async { Err(MediaError::NoPeer) });
        };
        let events = member.record.session.clone().recipient();
        let participant = member.record.participant_id;
        let tracks = self.egress_tracks_for(&msg.session);
        let media = self.plane.media.clone();
        let (home, session, offer) = (self.home, msg.session, msg.offer);
        Box::pin(async move {
            media
                .request(home, |reply| WorkerCmd::AcceptEgressOffer {
                    session,
                    participant,
                    offer,
                    tracks,
                    events,
                    reply,
                })
                .await
        })
    }
}

impl Lobby {
    /// Recomputes the program from the owner's tracks and tells the home
    /// worker when it changed.
    fn refresh_program(&mut self) {
        let owner_tracks = self
            .order
            .iter()
            .filter_map(|id| self.members.get(id).map(|m| (id, m)))
            .filter(|(_, m)| m.record.is_owner)
            .flat_map(|(id, m)| {
                m.tracks
                    .iter()
                    .filter_map(|t| self.tracks.get(t))
                    .map(move |e| (*id, &e.info))
            });
        let program = program::select(owner_tracks);
        if program == self.program {
            return;
        }
        debug!(lobby = %self.stream, video = ?program.video.as_ref().map(|v| v.track), audio = ?program.audio.as_ref().map(|a| a.track), "program changed");
        self.program = program.clone();
        let _ = self.plane.media.send(
            self.home,
            WorkerCmd::SetProgram {
                stream: self.stream.clone(),
                program,
            },
        );
    }
}

/// Why [`AttachLive`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AttachLiveError {
    /// A live restream already runs for this lobby.
    #[error("the lobby is already live")]
    AlreadyLive,
    /// The lobby is closing.
    #[error("the lobby is closing")]
    Closing,
}

/// Makes a restream this lobby's live; answers the home worker's index
/// (where the restream's tap goes).
#[derive(Debug, Message)]
#[rtype(result = "Result<usize, AttachLiveError>")]
pub struct AttachLive {
    /// The restream.
    pub link: LiveLink,
}

impl Handler<AttachLive> for Lobby {
    type Result = Result<usize, AttachLiveError>;
    fn handle(&mut self, msg: AttachLive, _ctx: &mut Context<Self>) -> Self::Result {
        if self.closing {
            return Err(AttachLiveError::Closing);
        }
        if self.live.is_some() {
            return Err(AttachLiveError::AlreadyLive);
        }
        self.live = Some(msg.link);
        // The worker may not know the program yet (no change since it was
        // created): send it so the tap starts from the current one.
        let _ = self.plane.media.send(
            self.home,
            WorkerCmd::SetProgram {
                stream: self.stream.clone(),
                program: self.program.clone(),
            },
        );
        Ok(self.home)
    }
}

/// The lobby's live restream, if any.
#[derive(Debug, Message)]
#[rtype(result = "Option<LiveLink>")]
pub struct FindLive;

impl Handler<FindLive> for Lobby {
    type Result = Option<LiveLink>;
    fn handle(&mut self, _msg: FindLive, _ctx: &mut Context<Self>) -> Self::Result {
        self.live.clone()
    }
}

/// Forgets the live restream `id` (it was stopped by DELETE or gave up).
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub struct DetachLive {
    /// The restream.
    pub id: LiveId,
}

impl Handler<DetachLive> for Lobby {
    type Result = bool;
    fn handle(&mut self, msg: DetachLive, _ctx: &mut Context<Self>) -> bool {
        if self.live.as_ref().is_some_and(|l| l.id == msg.id) {
            self.live = None;
            return true;
        }
        false
    }
}

/// Why [`OpenViewer`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewerError {
    /// `lobby.max_viewers` reached.
    #[error("the lobby has too many viewers")]
    Full,
    /// The lobby is closing.
    #[error("the lobby is closing")]
    Closing,
    /// The media plane refused the offer.
    #[error(transparent)]
    Media(#[from] MediaError),
}

/// Creates a plain viewer of the program from its client offer; answers
/// its resource id and the SDP answer.
#[derive(Debug, Message)]
#[rtype(result = "Result<(WhepId, String), ViewerError>")]
pub struct OpenViewer {
    /// Who watches (the only identity that may end it, besides admins).
    pub identity: Identity,
    /// The client's offer.
    pub offer: String,
}

impl Handler<OpenViewer> for Lobby {
    type Result = ResponseActFuture<Self, Result<(WhepId, String), ViewerError>>;

    fn handle(&mut self, msg: OpenViewer, ctx: &mut Context<Self>) -> Self::Result {
        if self.closing {
            return Box::pin(actix::fut::ready(Err(ViewerError::Closing)));
        }
        if self.viewers.len() >= self.plane.policy.max_viewers {
            return Box::pin(actix::fut::ready(Err(ViewerError::Full)));
        }
        let whep = WhepId::random();
        let peer = SessionId::random();
        let addr = Viewer::new(whep, ctx.address()).start();
        // Counted before the worker answers so concurrent POSTs cannot
        // overshoot the limit.
        self.viewers.insert(
            whep,
            ViewerEntry {
                peer,
                identity: msg.identity,
                addr: addr.clone(),
            },
        );
        self.plane.metrics.viewers.inc();
        let media = self.plane.media.clone();
        let (home, stream, offer) = (self.home, self.stream.clone(), msg.offer);
        let events = addr.recipient();
        Box::pin(
            async move {
                media
                    .request(home, |reply| WorkerCmd::OpenViewer {
                        stream,
                        viewer: peer,
                        offer,
                        events,
                        reply,
                    })
                    .await
            }
            .into_actor(self)
            .map(move |result, act, _ctx| match result {
                Ok(answer) if act.viewers.contains_key(&whep) => Ok((whep, answer)),
                Ok(_) => Err(ViewerError::Closing),
                Err(e) => {
                    act.drop_viewer(&whep);
                    Err(e.into())
                }
            }),
        )
    }
}

impl Lobby {
    /// Forgets a viewer and closes its peer; false when unknown.
    fn drop_viewer(&mut self, whep: &WhepId) -> bool {
        let Some(viewer) = self.viewers.remove(whep) else {
            return false;
        };
        let _ = self.plane.media.send(
            self.home,
            WorkerCmd::CloseEgress {
                session: viewer.peer,
            },
        );
        viewer.addr.do_send(EndViewer);
        self.plane.metrics.viewers.dec();
        true
    }
}

/// Ends a plain viewer (`DELETE {whep Location}`); false when no viewer
/// with that id belongs to the caller.
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub struct CloseViewer {
    /// The viewer's resource id.
    pub whep: WhepId,
    /// The caller.
    pub identity: Identity,
    /// The caller is an admin (may end anyone's).
    pub admin: bool,
}

impl Handler<CloseViewer> for Lobby {
    type Result = bool;
    fn handle(&mut self, msg: CloseViewer, _ctx: &mut Context<Self>) -> bool {
        let allowed = self
            .viewers
            .get(&msg.whep)
            .is_some_and(|v| msg.admin || v.identity == msg.identity);
        allowed && self.drop_viewer(&msg.whep)
    }
}

impl Handler<ViewerLeft> for Lobby {
    type Result = ();
    fn handle(&mut self, msg: ViewerLeft, _ctx: &mut Context<Self>) {
        if self.viewers.remove(&msg.whep).is_some() {
            self.plane.metrics.viewers.dec();
        }
    }
}

/// Trickle ICE or an ICE restart on a plain viewer's peer; `None` when no
/// viewer with that id belongs to the caller.
#[derive(Debug, Message)]
#[rtype(result = "Option<Result<IcePatchResult, MediaError>>")]
pub struct PatchViewerIce {
    /// The viewer's resource id.
    pub whep: WhepId,
    /// The caller.
    pub identity: Identity,
    /// The caller is an admin.
    pub admin: bool,
    /// The request.
    pub patch: IcePatch,
}

impl Handler<PatchViewerIce> for Lobby {
    type Result = ResponseFuture<Option<Result<IcePatchResult, MediaError>>>;

    fn handle(&mut self, msg: PatchViewerIce, _ctx: &mut Context<Self>) -> Self::Result {
        let peer = self
            .viewers
            .get(&msg.whep)
            .filter(|v| msg.admin || v.identity == msg.identity)
            .map(|v| v.peer);
        let Some(session) = peer else {
            return Box::pin(async { None });
        };
        let (media, home) = (self.plane.media.clone(), self.home);
        Box::pin(async move {
            Some(
                media
                    .request(home, |reply| WorkerCmd::PatchIce {
                        session,
                        egress: true,
                        patch: msg.patch,
                        reply,
                    })
                    .await,
            )
        })
    }
}
