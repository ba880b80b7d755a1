//! Lobby lifecycle without media: created on first join, gone after the last
//! leave, policies enforced, nothing left behind.

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr};
use vestibule_actors::directory::SessionDirectory;
use vestibule_actors::lobby::{LeaveLobby, PublishTrack, SessionTicket};
use vestibule_actors::media::MediaPort;
use vestibule_actors::metrics::ControlMetrics;
use vestibule_actors::registry::{
    CloseAllLobbies, ControlPlane, FindLobby, JoinLobby, LobbyPolicy, LobbyRegistry,
};
use vestibule_actors::session::{EndReason, IsAlive};
use vestibule_actors::snapshot::{MediaKind, Purpose};
use vestibule_actors::{Identity, JoinError, StreamKey};

struct Harness {
    registry: Addr<LobbyRegistry>,
    plane: Arc<ControlPlane>,
}

fn harness(policy: LobbyPolicy) -> Harness {
    let plane = Arc::new(ControlPlane {
        policy,
        directory: Arc::new(SessionDirectory::default()),
        metrics: ControlMetrics::unregistered(),
        media: MediaPort::default(),
    });
    let registry = LobbyRegistry::new(Arc::clone(&plane)).start();
    Harness { registry, plane }
}

fn demo() -> StreamKey {
    StreamKey::new("demo", "demo")
}

async fn join(h: &Harness, stream: &StreamKey, user: &str) -> Result<SessionTicket, JoinError> {
    h.registry
        .send(JoinLobby {
            stream: stream.clone(),
            identity: Identity::local(user),
            is_owner: user == "owner",
        })
        .await
        .expect("registry alive")
}

async fn leave(ticket: &SessionTicket) -> bool {
    ticket
        .record
        .lobby
        .send(LeaveLobby {
            session: ticket.record.session_id,
            reason: EndReason::Deleted,
        })
        .await
        .unwrap_or(false)
}

/// Lets stop notifications (lobby -> registry) run.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(20)).await;
}

async fn lobby_exists(h: &Harness, stream: &StreamKey) -> bool {
    h.registry
        .send(FindLobby {
            stream: stream.clone(),
        })
        .await
        .expect("registry alive")
        .is_some()
}

#[actix_rt::test]
async fn lobby_is_created_on_first_join_and_gone_after_last_leave() {
    let h = harness(LobbyPolicy::default());
    assert!(!lobby_exists(&h, &demo()).await);

    let a = join(&h, &demo(), "owner").await.expect("a joins");
    let b = join(&h, &demo(), "guest").await.expect("b joins");
    assert!(lobby_exists(&h, &demo()).await);
    assert_eq!(h.plane.metrics.lobbies.get(), 1);
    assert_eq!(h.plane.metrics.sessions.get(), 2);
    assert_eq!(h.plane.directory.len(), 2);
    assert_ne!(a.record.participant_id, b.record.participant_id);

    assert!(leave(&a).await);
    settle().await;
    assert!(lobby_exists(&h, &demo()).await, "one session is still in");

    assert!(leave(&b).await);
    settle().await;
    assert!(!lobby_exists(&h, &demo()).await);
    assert_eq!(h.plane.metrics.lobbies.get(), 0);
    assert_eq!(h.plane.metrics.sessions.get(), 0);
    assert!(h.plane.directory.is_empty());
    assert_eq!(
        h.plane.directory.user_sessions(&Identity::local("owner")),
        0
    );
    assert!(!b.record.session.connected(), "session actor stopped");
    assert!(!leave(&b).await, "a second leave finds nothing");
}

#[actix_rt::test]
async fn rejoin_right_after_the_last_leave_gets_a_fresh_lobby() {
    let h = harness(LobbyPolicy::default());
    let a = join(&h, &demo(), "owner").await.expect("joins");
    assert!(leave(&a).await);
    // No settle: the join may meet the stopping lobby and must retry.
    let b = join(&h, &demo(), "owner").await.expect("rejoins");
    settle().await;
    assert!(lobby_exists(&h, &demo()).await);
    assert!(b.record.lobby.connected());
    assert_eq!(h.plane.metrics.lobbies.get(), 1);
}

#[actix_rt::test]
async fn duplicate_user_replaces_the_old_session_by_default() {
    let h = harness(LobbyPolicy::default());
    let first = join(&h, &demo(), "guest").await.expect("first");
    let second = join(&h, &demo(), "guest").await.expect("second replaces");
    settle().await;
    assert!(h.plane.directory.get(&first.record.session_id).is_none());
    assert!(h.plane.directory.get(&second.record.session_id).is_some());
    assert!(second.record.session.send(IsAlive).await.unwrap_or(false));
    assert!(!first.record.session.connected(), "old session stopped");
    assert_eq!(h.plane.metrics.sessions.get(), 1);
    assert_eq!(
        h.plane.directory.user_sessions(&Identity::local("guest")),
        1
    );
    assert_eq!(
        h.plane
            .metrics
            .sessions_ended
            .with_label_values(&["replaced"])
            .get(),
        1
    );
}

#[actix_rt::test]
async fn duplicate_user_is_refused_under_reject() {
    let h = harness(LobbyPolicy {
        replace_duplicates: false,
        ..LobbyPolicy::default()
    });
    join(&h, &demo(), "guest").await.expect("first");
    assert_eq!(
        join(&h, &demo(), "guest").await.err(),
        Some(JoinError::DuplicateUser)
    );
}

#[actix_rt::test]
async fn lobby_and_user_limits_are_enforced() {
    let h = harness(LobbyPolicy {
        max_sessions: 2,
        max_sessions_per_user: 2,
        ..LobbyPolicy::default()
    });
    join(&h, &demo(), "a").await.expect("a");
    join(&h, &demo(), "b").await.expect("b");
    assert_eq!(
        join(&h, &demo(), "c").await.err(),
        Some(JoinError::LobbyFull)
    );

    let other = |n: &str| StreamKey::new("s", n);
    join(&h, &other("1"), "a").await.expect("a's second lobby");
    assert_eq!(
        join(&h, &other("2"), "a").await.err(),
        Some(JoinError::UserLimit)
    );
}

#[actix_rt::test]
async fn tracks_follow_their_session_and_only_the_owner_gets_main() {
    let h = harness(LobbyPolicy::default());
    let owner = join(&h, &demo(), "owner").await.expect("owner");
    let guest = join(&h, &demo(), "guest").await.expect("guest");
    let publish = |t: &SessionTicket, kind, mid: &str| PublishTrack {
        session: t.record.session_id,
        kind,
        purpose: Purpose::Main,
        mute: false,
        ingress_mid: mid.to_string(),
    };
    owner
        .record
        .lobby
        .send(publish(&owner, MediaKind::Video, "0"))
        .await
        .expect("alive")
        .expect("published");
    guest
        .record
        .lobby
        .send(publish(&guest, MediaKind::Audio, "0"))
        .await
        .expect("alive")
        .expect("published");
    let snap = owner
        .record
        .lobby
        .send(vestibule_actors::lobby::DescribeLobby)
        .await
        .expect("alive");
    assert_eq!(snap.participants.len(), 2);
    assert_eq!(snap.participants[0].tracks[0].purpose, Purpose::Main);
    assert_eq!(
        snap.participants[1].tracks[0].purpose,
        Purpose::Guest,
        "guest main stored as guest"
    );
    assert_eq!(
        h.plane.metrics.tracks.with_label_values(&["video"]).get(),
        1
    );

    assert!(leave(&guest).await);
    assert!(leave(&owner).await);
    assert_eq!(
        h.plane.metrics.tracks.with_label_values(&["video"]).get(),
        0
    );
    assert_eq!(
        h.plane.metrics.tracks.with_label_values(&["audio"]).get(),
        0
    );
}

#[actix_rt::test]
async fn close_all_ends_everything_and_refuses_new_joins() {
    let h = harness(LobbyPolicy::default());
    let a = join(&h, &demo(), "owner").await.expect("a");
    join(&h, &StreamKey::new("x", "y"), "guest")
        .await
        .expect("b");
    h.registry.send(CloseAllLobbies).await.expect("closes");
    settle().await;
    assert!(h.plane.directory.is_empty());
    assert_eq!(h.plane.metrics.lobbies.get(), 0);
    assert!(!a.record.session.connected());
    assert_eq!(
        join(&h, &demo(), "owner").await.err(),
        Some(JoinError::ShuttingDown)
    );
}
