//! The shared index of live sessions that HTTP handlers read without an
//! actor round trip: by secret id (resource URLs), by cookie, and by
//! `(stream, identity)` (Bearer on stream-scoped aliases). The owning
//! [`crate::lobby::Lobby`] is its only writer for its sessions.

use std::sync::Arc;

use actix::Addr;
use dashmap::DashMap;

use crate::ids::{CookieSecret, Identity, ParticipantId, ReqToken, SessionId, StreamKey};
use crate::lobby::Lobby;
use crate::session::Session;

/// Everything needed to authenticate a request against one session.
#[derive(Debug)]
pub struct SessionRecord {
    /// Secret id (resource URL).
    pub session_id: SessionId,
    /// Public id.
    pub participant_id: ParticipantId,
    /// The stream whose lobby the session is in.
    pub stream: StreamKey,
    /// Who joined.
    pub identity: Identity,
    /// Whether that user owns the stream.
    pub is_owner: bool,
    /// Cookie value.
    pub cookie: CookieSecret,
    /// Fixed request token.
    pub req_token: ReqToken,
    /// The session actor.
    pub session: Addr<Session>,
    /// The lobby actor.
    pub lobby: Addr<Lobby>,
}

/// Concurrent session index plus per-user session counts.
#[derive(Debug, Default)]
pub struct SessionDirectory {
    by_id: DashMap<SessionId, Arc<SessionRecord>>,
    by_cookie: DashMap<CookieSecret, SessionId>,
    by_member: DashMap<(StreamKey, Identity), SessionId>,
    per_user: DashMap<Identity, usize>,
}

impl SessionDirectory {
    /// Adds a session. Called by its lobby only.
    pub fn insert(&self, record: Arc<SessionRecord>) {
        self.by_cookie.insert(record.cookie, record.session_id);
        self.by_member.insert(
            (record.stream.clone(), record.identity.clone()),
            record.session_id,
        );
        self.by_id.insert(record.session_id, record);
    }

    /// Removes a session and returns its record. Called by its lobby only.
    pub fn remove(&self, session: &SessionId) -> Option<Arc<SessionRecord>> {
        let (_, record) = self.by_id.remove(session)?;
        self.by_cookie.remove(&record.cookie);
        self.by_member.remove_if(
            &(record.stream.clone(), record.identity.clone()),
            |_, id| id == session,
        );
        Some(record)
    }

    /// The session with this secret id.
    pub fn get(&self, session: &SessionId) -> Option<Arc<SessionRecord>> {
        self.by_id.get(session).map(|r| Arc::clone(r.value()))
    }

    /// The session whose cookie has this value.
    pub fn by_cookie(&self, cookie: &CookieSecret) -> Option<Arc<SessionRecord>> {
        let id = *self.by_cookie.get(cookie)?.value();
        self.get(&id)
    }

    /// The caller's own session in a stream's lobby.
    pub fn by_member(&self, stream: &StreamKey, identity: &Identity) -> Option<Arc<SessionRecord>> {
        let id = *self
            .by_member
            .get(&(stream.clone(), identity.clone()))?
            .value();
        self.get(&id)
    }

    /// Sessions indexed now.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether no session is indexed.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Takes one of the user's session slots if fewer than `max` are taken.
    /// Atomic per user: the map entry is locked while checked.
    pub fn reserve_user_slot(&self, identity: &Identity, max: usize) -> bool {
        let mut count = self.per_user.entry(identity.clone()).or_insert(0);
        if *count >= max {
            return false;
        }
        *count += 1;
        true
    }

    /// Gives a slot back.
    pub fn release_user_slot(&self, identity: &Identity) {
        self.per_user.remove_if_mut(identity, |_, count| {
            *count = count.saturating_sub(1);
            *count == 0
        });
    }

    /// Slots the user holds now.
    pub fn user_sessions(&self, identity: &Identity) -> usize {
        self.per_user.get(identity).map_or(0, |c| *c)
    }
}
