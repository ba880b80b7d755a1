//! `LobbyRegistry`: stream key -> running lobby. Creates a lobby on the
//! first join of a stream and forgets it when it stops.

use std::collections::HashMap;
use std::sync::Arc;

use actix::{
    Actor, ActorFutureExt as _, Addr, AsyncContext as _, Context, Handler, Message,
    ResponseActFuture, ResponseFuture, WrapFuture as _,
};
use futures_util::future::join_all;

use crate::directory::SessionDirectory;
use crate::error::JoinError;
use crate::ids::{Identity, StreamKey};
use crate::lobby::{AddSession, AddSessionError, CloseLobby, Lobby, SessionTicket};
use crate::media::MediaPort;
use crate::metrics::ControlMetrics;
use crate::session::EndReason;

/// Lobby policies, taken from the server configuration.
#[derive(Debug, Clone)]
pub struct LobbyPolicy {
    /// `lobby.max_sessions`.
    pub max_sessions: usize,
    /// `lobby.max_tracks`.
    pub max_tracks: usize,
    /// `lobby.on_duplicate_user = "replace"`.
    pub replace_duplicates: bool,
    /// `security.max_sessions_per_user`.
    pub max_sessions_per_user: usize,
    /// `session.max_media_sections` (also bounds client offers).
    pub max_media_sections: usize,
    /// `lobby.renegotiate_debounce_ms`: track changes within it make one offer.
    pub renegotiate_debounce: std::time::Duration,
    /// `lobby.max_viewers`: plain WHEP viewers per lobby.
    pub max_viewers: usize,
}

impl Default for LobbyPolicy {
    fn default() -> Self {
        Self {
            max_sessions: 16,
            max_tracks: 32,
            replace_duplicates: true,
            max_sessions_per_user: 4,
            max_media_sections: 4,
            max_viewers: 200,
            renegotiate_debounce: std::time::Duration::from_millis(150),
        }
    }
}

/// What every lobby shares: policy, the session directory, metrics and the
/// media port.
#[derive(Debug)]
pub struct ControlPlane {
    /// Limits and duplicate handling.
    pub policy: LobbyPolicy,
    /// Index of live sessions.
    pub directory: Arc<SessionDirectory>,
    /// Control-plane metrics.
    pub metrics: ControlMetrics,
    /// Handles to the media workers.
    pub media: MediaPort,
}

/// A running lobby and the generation that tells it apart from a later one.
#[derive(Debug, Clone)]
struct LobbyHandle {
    generation: u64,
    addr: Addr<Lobby>,
}

/// The registry actor.
#[derive(Debug)]
pub struct LobbyRegistry {
    plane: Arc<ControlPlane>,
    lobbies: HashMap<StreamKey, LobbyHandle>,
    next_generation: u64,
    shutting_down: bool,
}

impl LobbyRegistry {
    /// A registry with no lobbies.
    pub fn new(plane: Arc<ControlPlane>) -> Self {
        Self {
            plane,
            lobbies: HashMap::new(),
            next_generation: 1,
            shutting_down: false,
        }
    }

    /// The shared control-plane state.
    pub fn plane(&self) -> &Arc<ControlPlane> {
        &self.plane
    }

    fn lobby_for(&mut self, stream: &StreamKey, ctx: &Context<Self>) -> LobbyHandle {
        if let Some(handle) = self.lobbies.get(stream)
            && handle.addr.connected()
        {
            return handle.clone();
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        let addr = Lobby::new(
            stream.clone(),
            generation,
            Arc::clone(&self.plane),
            ctx.address(),
        )
        .start();
        let handle = LobbyHandle { generation, addr };
        self.lobbies.insert(stream.clone(), handle.clone());
        handle
    }
}

impl Actor for LobbyRegistry {
    type Context = Context<Self>;
}

/// Joins `identity` to the lobby of `stream`, creating the lobby if needed.
#[derive(Debug, Message)]
#[rtype(result = "Result<SessionTicket, JoinError>")]
pub struct JoinLobby {
    /// The stream.
    pub stream: StreamKey,
    /// Who joins.
    pub identity: Identity,
    /// Whether that user owns the stream.
    pub is_owner: bool,
}

/// How often a join retries when it meets a lobby that is stopping.
const JOIN_ATTEMPTS: usize = 3;

impl Handler<JoinLobby> for LobbyRegistry {
    type Result = ResponseFuture<Result<SessionTicket, JoinError>>;

    fn handle(&mut self, msg: JoinLobby, ctx: &mut Context<Self>) -> Self::Result {
        if self.shutting_down {
            return Box::pin(async { Err(JoinError::ShuttingDown) });
        }
        let first = self.lobby_for(&msg.stream, ctx);
        let registry = ctx.address();
        Box::pin(async move {
            let mut handle = first;
            for _ in 0..JOIN_ATTEMPTS {
                let add = AddSession {
                    identity: msg.identity.clone(),
                    is_owner: msg.is_owner,
                };
                match handle.addr.send(add).await {
                    Ok(Ok(ticket)) => return Ok(ticket),
                    Ok(Err(AddSessionError::Refused(e))) => return Err(e),
                    // The lobby emptied and stopped between lookup and join:
                    // a fresh lobby takes the session.
                    Ok(Err(AddSessionError::Closing)) | Err(_) => {
                        let fresh = registry
                            .send(FreshLobby {
                                stream: msg.stream.clone(),
                                stale_generation: handle.generation,
                            })
                            .await
                            .map_err(|_| JoinError::Unavailable)?;
                        handle = fresh.ok_or(JoinError::ShuttingDown)?;
                    }
                }
            }
            Err(JoinError::Unavailable)
        })
    }
}

/// Replaces a stopping lobby by a new one (internal to joins).
#[derive(Debug, Message)]
#[rtype(result = "Option<LobbyHandle>")]
struct FreshLobby {
    stream: StreamKey,
    stale_generation: u64,
}

impl Handler<FreshLobby> for LobbyRegistry {
    type Result = Option<LobbyHandle>;
    fn handle(&mut self, msg: FreshLobby, ctx: &mut Context<Self>) -> Self::Result {
        if self.shutting_down {
            return None;
        }
        if self
            .lobbies
            .get(&msg.stream)
            .is_some_and(|h| h.generation == msg.stale_generation)
        {
            self.lobbies.remove(&msg.stream);
        }
        Some(self.lobby_for(&msg.stream, ctx))
    }
}

/// A lobby stopped; forget it unless a newer lobby took its place.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct LobbyStopped {
    /// The stream.
    pub stream: StreamKey,
    /// The stopped lobby's generation.
    pub generation: u64,
}

impl Handler<LobbyStopped> for LobbyRegistry {
    type Result = ();
    fn handle(&mut self, msg: LobbyStopped, _ctx: &mut Context<Self>) {
        if self
            .lobbies
            .get(&msg.stream)
            .is_some_and(|h| h.generation == msg.generation)
        {
            self.lobbies.remove(&msg.stream);
        }
    }
}

/// The running lobby of a stream, if any.
#[derive(Debug, Message)]
#[rtype(result = "Option<Addr<Lobby>>")]
pub struct FindLobby {
    /// The stream.
    pub stream: StreamKey,
}

impl Handler<FindLobby> for LobbyRegistry {
    type Result = Option<Addr<Lobby>>;
    fn handle(&mut self, msg: FindLobby, _ctx: &mut Context<Self>) -> Self::Result {
        self.lobbies
            .get(&msg.stream)
            .filter(|h| h.addr.connected())
            .map(|h| h.addr.clone())
    }
}

/// Streams that have a running lobby now.
#[derive(Debug, Message)]
#[rtype(result = "Vec<StreamKey>")]
pub struct ListLobbies;

impl Handler<ListLobbies> for LobbyRegistry {
    type Result = actix::MessageResult<ListLobbies>;
    fn handle(&mut self, _msg: ListLobbies, _ctx: &mut Context<Self>) -> Self::Result {
        actix::MessageResult(
            self.lobbies
                .iter()
                .filter(|(_, h)| h.addr.connected())
                .map(|(k, _)| k.clone())
                .collect(),
        )
    }
}

/// Closes the lobby of a stream (the stream was deleted).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct CloseStreamLobby {
    /// The stream.
    pub stream: StreamKey,
}

impl Handler<CloseStreamLobby> for LobbyRegistry {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, msg: CloseStreamLobby, _ctx: &mut Context<Self>) -> Self::Result {
        let handle = self.lobbies.remove(&msg.stream);
        Box::pin(async move {
            if let Some(h) = handle {
                let _ = h
                    .addr
                    .send(CloseLobby {
                        reason: EndReason::LobbyClosed,
                    })
                    .await;
            }
        })
    }
}

/// Refuses new joins and closes every lobby; answers when all are closed.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct CloseAllLobbies;

impl Handler<CloseAllLobbies> for LobbyRegistry {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _msg: CloseAllLobbies, _ctx: &mut Context<Self>) -> Self::Result {
        self.shutting_down = true;
        let closing: Vec<_> = self
            .lobbies
            .drain()
            .map(|(_, h)| {
                h.addr.send(CloseLobby {
                    reason: EndReason::Shutdown,
                })
            })
            .collect();
        Box::pin(
            async move {
                join_all(closing).await;
            }
            .into_actor(self)
            .map(|_, _, _| ()),
        )
    }
}
