//! API.md "Which credential wins", on session-bound routes, over real HTTP
//! on 127.0.0.1. Until the media plane exists a WHIP POST cannot create a
//! session, so the test runs the server's own app in-process and joins
//! stand-in sessions through the real control plane (registry, lobby,
//! directory); every request still goes through the real HTTP stack.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::HttpServer;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};
use vestibule::config::Settings;
use vestibule::http::{self, rate_limit::IpRateLimiter, state::AppState};
use vestibule::server;
use vestibule_actors::lobby::SessionTicket;
use vestibule_actors::registry::{FindLobby, JoinLobby};
use vestibule_actors::{Identity, StreamKey};

const KEY: &str = "credentials-test-key-credentials-test-key";

struct Harness {
    state: AppState,
    base: String,
    _tmp: tempfile::TempDir,
}

impl Harness {
    async fn start() -> Harness {
        let tmp = tempfile::tempdir().expect("tempdir");
        let env = vec![
            (
                "VESTIBULE__SERVER__HOST".to_string(),
                "127.0.0.1".to_string(),
            ),
            (
                "VESTIBULE__SERVER__DATA_DIR".to_string(),
                tmp.path().display().to_string(),
            ),
            ("VESTIBULE__SECURITY__JWT__KEY".to_string(), KEY.to_string()),
            (
                "VESTIBULE__SECURITY__JWT__TEARDOWN_GRACE_S".to_string(),
                "3600".to_string(),
            ),
            (
                "VESTIBULE__MEDIA__BIND".to_string(),
                "127.0.0.1".to_string(),
            ),
            ("VESTIBULE__MEDIA__PORT_BASE".to_string(), "0".to_string()),
        ];
        let settings = Settings::load_with_env(None, env).expect("settings");
        let state = server::build(settings).expect("built").state;
        let app_state = state.clone();
        let srv =
            HttpServer::new(move || http::app(app_state.clone(), IpRateLimiter::new(0), true))
                .workers(1)
                .disable_signals()
                .bind(("127.0.0.1", 0))
                .expect("bind");
        let port = srv.addrs()[0].port();
        actix_web::rt::spawn(srv.run());
        Harness {
            state,
            base: format!("http://127.0.0.1:{port}"),
            _tmp: tmp,
        }
    }

    /// A stand-in session in demo/demo (owned by "dev").
    async fn join(&self, user: &str) -> SessionTicket {
        self.state
            .registry
            .send(JoinLobby {
                stream: StreamKey::new("demo", "demo"),
                identity: Identity::local(user),
                is_owner: user == "dev",
            })
            .await
            .expect("registry")
            .expect("joined")
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn token(&self, user: &str, admin: bool) -> String {
        self.state
            .keys
            .issue(user, None, admin, None, Duration::from_secs(600))
            .expect("token")
    }
}

fn expired_token(user: &str, seconds_ago: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"userId": user, "exp": now - seconds_ago}),
        &EncodingKey::from_secret(KEY.as_bytes()),
    )
    .expect("token")
}

fn cookie(t: &SessionTicket) -> String {
    format!("vestibule_session={}", t.record.cookie.reveal())
}

const ALIAS: &str = "/space/demo/stream/demo/whip";

fn resource(t: &SessionTicket) -> String {
    format!("{ALIAS}/{}", t.record.session_id.reveal())
}

#[actix_rt::test]
async fn cookie_and_request_token_rules_on_the_delete_alias() {
    let h = Harness::start().await;
    let c = reqwest::Client::new();
    let a = h.join("dev").await;
    let token = a.record.req_token.reveal();

    let r = c.delete(h.url(ALIAS)).send().await.expect("delete");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "no credentials");
    assert_eq!(r.headers()["www-authenticate"], "Bearer");

    let r = c
        .delete(h.url(ALIAS))
        .header("Cookie", "vestibule_session=AAAAAAAAAAAAAAAAAAAAAA")
        .header("X-Req-Token", &token)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "unknown cookie");

    let r = c
        .delete(h.url(ALIAS))
        .header("Cookie", cookie(&a))
        .send()
        .await
        .expect("delete");
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "cookie without request token"
    );
    let wrong = h.join("bob").await.record.req_token.reveal();
    let r = c
        .delete(h.url(ALIAS))
        .header("Cookie", cookie(&a))
        .header("X-Req-Token", &wrong)
        .send()
        .await
        .expect("delete");
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "another session's request token"
    );
    assert!(
        r.headers().get("x-req-token").is_none(),
        "never echoed on errors"
    );

    let r = c
        .delete(h.url(ALIAS))
        .header("Authorization", "Bearer broken.token.here")
        .header("Cookie", cookie(&a))
        .header("X-Req-Token", &token)
        .send()
        .await
        .expect("delete");
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "a bad Bearer is not rescued by a good cookie"
    );

    let r = c
        .delete(h.url(ALIAS))
        .header("Cookie", cookie(&a))
        .header("X-Req-Token", &token)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let set_cookie = r.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(
        set_cookie.starts_with("vestibule_session=;"),
        "{set_cookie}"
    );
    for part in [
        "Path=/space/demo/stream/demo",
        "HttpOnly",
        "SameSite=Lax",
        "Max-Age=0",
    ] {
        assert!(set_cookie.contains(part), "{part} in {set_cookie}");
    }
    assert!(
        !set_cookie.contains("Secure"),
        "loopback listener: no Secure by default"
    );

    let r = c
        .delete(h.url(ALIAS))
        .header("Cookie", cookie(&a))
        .header("X-Req-Token", &token)
        .send()
        .await
        .expect("delete");
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "ended session's cookie"
    );
    let r = c
        .delete(h.url(&resource(&a)))
        .header("Authorization", format!("Bearer {}", h.token("dev", false)))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "ended resource");
}

#[actix_rt::test]
async fn bearer_wins_and_scopes_to_the_callers_own_session() {
    let h = Harness::start().await;
    let c = reqwest::Client::new();
    let a = h.join("dev").await;
    let b = h.join("bob").await;

    // Bearer alone authenticates; the garbage cookie is ignored.
    let r = c
        .delete(h.url(ALIAS))
        .header("Authorization", format!("Bearer {}", h.token("bob", false)))
        .header("Cookie", "vestibule_session=garbage")
        .send()
        .await
        .expect("delete");
    assert_eq!(
        r.status(),
        StatusCode::NO_CONTENT,
        "bob ends his own session"
    );
    assert!(h.state.directory.get(&b.record.session_id).is_none());
    assert!(
        h.state.directory.get(&a.record.session_id).is_some(),
        "dev's session untouched"
    );

    let r = c
        .delete(h.url(ALIAS))
        .header(
            "Authorization",
            format!("Bearer {}", h.token("carol", false)),
        )
        .send()
        .await
        .expect("delete");
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "carol has no session here"
    );

    let r = c
        .delete(h.url(&resource(&a)))
        .header(
            "Authorization",
            format!("Bearer {}", h.token("carol", false)),
        )
        .send()
        .await
        .expect("delete");
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "someone else's resource is not revealed"
    );

    let r = c
        .delete(h.url(&resource(&a)))
        .header("Cookie", cookie(&b))
        .header("X-Req-Token", b.record.req_token.reveal())
        .send()
        .await
        .expect("delete");
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "ended session's cookie"
    );

    let r = c
        .delete(h.url(&format!("{ALIAS}/AAAAAAAAAAAAAAAAAAAAAA")))
        .header("Authorization", format!("Bearer {}", h.token("dev", false)))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "unknown resource");

    let r = c
        .delete(h.url(&resource(&a)))
        .header("Authorization", format!("Bearer {}", h.token("dev", false)))
        .send()
        .await
        .expect("delete");
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "RFC 9725 DELETE of the resource"
    );
    assert!(h.state.directory.is_empty());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let lobby = h
        .state
        .registry
        .send(FindLobby {
            stream: StreamKey::new("demo", "demo"),
        })
        .await
        .expect("registry");
    assert!(lobby.is_none(), "the lobby is gone after its last session");
    assert_eq!(h.state.metrics.control.sessions.get(), 0);
    assert_eq!(h.state.metrics.control.lobbies.get(), 0);
}

#[actix_rt::test]
async fn admins_and_recently_expired_tokens_may_tear_down() {
    let h = Harness::start().await;
    let c = reqwest::Client::new();
    let a = h.join("dev").await;
    let b = h.join("bob").await;

    let stale = expired_token("bob", 600);
    let r = c
        .get(h.url("/space/demo/streams"))
        .header("Authorization", format!("Bearer {stale}"))
        .send()
        .await
        .expect("get");
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "expired token on a normal route"
    );
    let r = c
        .delete(h.url(&resource(&b)))
        .header("Authorization", format!("Bearer {stale}"))
        .send()
        .await
        .expect("delete");
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "expired within the teardown grace ends its own resource"
    );

    let too_old = expired_token("dev", 7200);
    let r = c
        .delete(h.url(&resource(&a)))
        .header("Authorization", format!("Bearer {too_old}"))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "beyond the grace");

    let r = c
        .delete(h.url(&resource(&a)))
        .header("Authorization", format!("Bearer {}", h.token("root", true)))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::OK, "admin deletes any resource");
}

#[actix_rt::test]
async fn lobby_membership_is_shown_only_to_insiders() {
    let h = Harness::start().await;
    let c = reqwest::Client::new();
    let owner = h.join("dev").await;
    let guest = h.join("bob").await;
    let get = |user: &str, admin: bool| {
        c.get(h.url("/space/demo/stream/demo"))
            .header("Authorization", format!("Bearer {}", h.token(user, admin)))
            .send()
    };
    for (who, admin, sees) in [
        ("dev", false, true),
        ("bob", false, true),
        ("root", true, true),
        ("eve", false, false),
    ] {
        let r = get(who, admin).await.expect("get");
        assert_eq!(r.status(), StatusCode::OK);
        let text = r.text().await.expect("text");
        let body: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(body["lobbyOpen"], true, "{who}");
        assert_eq!(body.get("lobby").is_some(), sees, "{who}: {text}");
        for t in [&owner, &guest] {
            for secret in [
                t.record.session_id.reveal(),
                t.record.cookie.reveal(),
                t.record.req_token.reveal(),
            ] {
                assert!(!text.contains(&secret), "no secrets in stream state");
            }
        }
        if sees {
            let users: Vec<&str> = body["lobby"]["participants"]
                .as_array()
                .expect("list")
                .iter()
                .filter_map(|p| p["userId"].as_str())
                .collect();
            assert_eq!(users, ["dev", "bob"]);
            assert_eq!(
                body["lobby"]["participants"][0]["participantId"],
                owner.record.participant_id.to_string()
            );
        }
    }
}

#[actix_rt::test]
async fn live_needs_the_owners_session_or_token() {
    let h = Harness::start().await;
    let c = reqwest::Client::new();
    let owner = h.join("dev").await;
    let guest = h.join("bob").await;
    let start = h.url("/space/demo/stream/demo/live/start");
    let r = c
        .post(&start)
        .header("Cookie", cookie(&guest))
        .header("X-Req-Token", guest.record.req_token.reveal())
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "guest session");
    let r = c
        .post(&start)
        .header("Cookie", cookie(&owner))
        .send()
        .await
        .expect("post");
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "owner cookie without request token"
    );
    let r = c
        .post(&start)
        .header("Cookie", cookie(&owner))
        .header("X-Req-Token", owner.record.req_token.reveal())
        .send()
        .await
        .expect("post");
    assert_eq!(
        r.status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "owner passes auth; then the body (none, no JSON type) is refused"
    );
    let r = c
        .post(h.url("/space/demo/stream/nope/live"))
        .header("Authorization", format!("Bearer {}", h.token("dev", false)))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "no such stream");
}
