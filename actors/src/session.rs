//! `Session`: one user in one lobby. Owns the session's lifecycle; its lobby
//! keeps the authoritative membership and is told when the session stops.

use actix::{Actor, ActorContext as _, Addr, AsyncContext as _, Context, Handler, Message};
use tracing::{debug, info_span};

use crate::ids::{ParticipantId, SessionId};
use crate::lobby::{Lobby, SessionLeft};

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
            EndReason::LobbyClosed => "lobby_closed",
            EndReason::Shutdown => "shutdown",
        }
    }
}

/// The session actor.
#[derive(Debug)]
pub struct Session {
    session_id: SessionId,
    participant_id: ParticipantId,
    lobby: Addr<Lobby>,
    end_reason: Option<EndReason>,
    span: tracing::Span,
}

impl Session {
    /// A session of `lobby`.
    pub fn new(session_id: SessionId, participant_id: ParticipantId, lobby: Addr<Lobby>) -> Self {
        // The public participant id names the span: the secret session id
        // must never reach a log line.
        let span = info_span!("session", participant = %participant_id);
        Self {
            session_id,
            participant_id,
            lobby,
            end_reason: None,
            span,
        }
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
        // The lobby ignores this when it already removed the session itself.
        self.lobby.do_send(SessionLeft {
            session: self.session_id,
            reason: self.end_reason.unwrap_or(EndReason::PeerGone),
        });
    }
}

/// Stops the session. Sent by its lobby after it removed the membership,
/// or by the media side when the peer is gone.
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
