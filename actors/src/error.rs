//! Errors of the control plane, one enum per operation callers branch on.

/// Why a session could not join a lobby.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// `lobby.max_sessions` reached.
    #[error("the lobby is full")]
    LobbyFull,
    /// `security.max_sessions_per_user` reached across lobbies.
    #[error("too many sessions for this user")]
    UserLimit,
    /// The user is already in the lobby and duplicates are rejected.
    #[error("this user already has a session in the lobby")]
    DuplicateUser,
    /// The server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The control plane did not answer (actor gone or timed out).
    #[error("the control plane is unavailable")]
    Unavailable,
}

/// Why a track could not be published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// `lobby.max_tracks` reached.
    #[error("the lobby has too many tracks")]
    LobbyFull,
    /// The session is not (or no longer) in the lobby.
    #[error("unknown session")]
    UnknownSession,
}
