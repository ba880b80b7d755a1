//! Tokens, admin routes, body limits, CORS, route statuses, rate limit and
//! metrics against the real binary on 127.0.0.1.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Server, ServerSpec};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn sign(alg: Algorithm, key: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(key.as_bytes()),
    )
    .expect("signed")
}

async fn get_streams(server: &Server, auth: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(server.url("/space/demo/streams"));
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    req.send().await.expect("request")
}

#[tokio::test]
async fn bad_tokens_get_401_with_www_authenticate() {
    let server = Server::start(ServerSpec::default()).await;
    let key = server.key.clone();
    let good = json!({"userId": "alice", "exp": now() + 600});
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("not bearer", Some("Basic YWxpY2U6eA==".into())),
        ("garbage", Some("Bearer not.a.jwt".into())),
        (
            "HS512",
            Some(format!(
                "Bearer {}",
                sign(Algorithm::HS512, &key, good.clone())
            )),
        ),
        (
            "wrong key",
            Some(format!(
                "Bearer {}",
                sign(
                    Algorithm::HS256,
                    "another-key-another-key-another-key",
                    good.clone()
                )
            )),
        ),
        (
            "expired",
            Some(format!(
                "Bearer {}",
                sign(
                    Algorithm::HS256,
                    &key,
                    json!({"userId": "alice", "exp": now() - 600})
                )
            )),
        ),
        (
            "missing exp",
            Some(format!(
                "Bearer {}",
                sign(Algorithm::HS256, &key, json!({"userId": "alice"}))
            )),
        ),
        (
            "missing userId",
            Some(format!(
                "Bearer {}",
                sign(Algorithm::HS256, &key, json!({"exp": now() + 600}))
            )),
        ),
        (
            "bad userId",
            Some(format!(
                "Bearer {}",
                sign(
                    Algorithm::HS256,
                    &key,
                    json!({"userId": "a b/c", "exp": now() + 600})
                )
            )),
        ),
        (
            "alg none",
            Some({
                let t = sign(Algorithm::HS256, &key, good.clone());
                let payload = t.split('.').nth(1).expect("payload").to_string();
                format!("Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.")
            }),
        ),
    ];
    for (name, auth) in cases {
        let r = get_streams(&server, auth.as_deref()).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{name}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer", "{name}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{name}"
        );
        let body: Value = r.json().await.expect("problem json");
        assert_eq!(body["status"], 401, "{name}");
    }
    let ok = get_streams(
        &server,
        Some(&format!("Bearer {}", sign(Algorithm::HS256, &key, good))),
    )
    .await;
    assert_eq!(ok.status(), StatusCode::OK, "the control case passes");
}

#[tokio::test]
async fn admin_routes_refuse_user_tokens() {
    let server = Server::start(ServerSpec::default()).await;
    let client = reqwest::Client::new();
    let user = format!("Bearer {}", server.token("alice"));
    let put = client
        .put(server.url("/space/s/stream/x"))
        .header("Authorization", &user)
        .json(&json!({"owner": "alice"}))
        .send()
        .await
        .expect("put");
    assert_eq!(put.status(), StatusCode::FORBIDDEN);
    let del = client
        .delete(server.url("/space/demo/stream/demo"))
        .header("Authorization", &user)
        .send()
        .await
        .expect("delete");
    assert_eq!(del.status(), StatusCode::FORBIDDEN);
    let anon = client
        .delete(server.url("/space/demo/stream/demo"))
        .send()
        .await
        .expect("delete");
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_and_wrong_types_415() {
    let server = Server::start(ServerSpec::default()).await;
    let client = reqwest::Client::new();
    let auth = format!("Bearer {}", server.token("dev"));
    let admin = format!("Bearer {}", server.admin_token());
    let whip = server.url("/space/demo/stream/demo/whip");

    let big_sdp = format!("v=0\r\n{}", "a=x\r\n".repeat(14_000));
    assert!(big_sdp.len() > 64 * 1024);
    let r = client
        .post(&whip)
        .header("Authorization", &auth)
        .header("Content-Type", "application/sdp")
        .body(big_sdp)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let r = client
        .post(&whip)
        .header("Authorization", &auth)
        .header("Content-Type", "text/plain")
        .body("v=0\r\n")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = client
        .post(&whip)
        .header("Authorization", &auth)
        .body("v=0\r\n")
        .send()
        .await
        .expect("post");
    assert_eq!(
        r.status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "missing content type"
    );

    let r = client
        .post(&whip)
        .header("Authorization", &auth)
        .header("Content-Type", "application/sdp")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "empty WHIP body");
    let r = client
        .post(&whip)
        .header("Authorization", &auth)
        .header("Content-Type", "application/sdp; charset=utf-8")
        .body("hello")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "not an SDP");

    let big_json = json!({"owner": "alice", "title": "t".repeat(17 * 1024)});
    let r = client
        .put(server.url("/space/s/stream/x"))
        .header("Authorization", &admin)
        .json(&big_json)
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r = client
        .put(server.url("/space/s/stream/x"))
        .header("Authorization", &admin)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("owner=alice")
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = client
        .put(server.url("/space/s/stream/x"))
        .header("Authorization", &admin)
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn media_routes_check_their_input_after_auth() {
    let server = Server::start(ServerSpec::default()).await;
    let client = reqwest::Client::new();
    let auth = format!("Bearer {}", server.token("dev"));
    let r = client
        .post(server.url("/space/demo/stream/demo/whip"))
        .header("Authorization", &auth)
        .header("Content-Type", "application/sdp")
        .body("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n")
        .send()
        .await
        .expect("post");
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "an SDP without media sections"
    );
    let r = client
        .post(server.url("/space/demo/stream/demo/whep"))
        .header("Authorization", &auth)
        .send()
        .await
        .expect("post");
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "WHEP needs a session in the lobby"
    );
    let r = client
        .post(server.url("/space/demo/stream/demo/live/start"))
        .header("Authorization", &auth)
        .send()
        .await
        .expect("post");
    assert_eq!(
        r.status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "the owner passes auth; a start needs a JSON body"
    );
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["status"], 415, "{body}");
    let other = format!("Bearer {}", server.token("mallory"));
    let r = client
        .post(server.url("/space/demo/stream/demo/live"))
        .header("Authorization", &other)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "non-owner");
    let r = client
        .post(server.url("/space/demo/stream/nope/whip"))
        .header("Authorization", &auth)
        .header("Content-Type", "application/sdp")
        .body("v=0\r\n")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "unknown stream");
}

#[tokio::test]
async fn endpoint_method_statuses_follow_rfc_9725() {
    let server = Server::start(ServerSpec::default()).await;
    let client = reqwest::Client::new();
    let whip = server.url("/space/demo/stream/demo/whip");
    let whep = server.url("/space/demo/stream/demo/whep");
    assert_eq!(
        client.get(&whip).send().await.expect("get").status(),
        StatusCode::NO_CONTENT
    );
    let head = client.head(&whep).send().await.expect("head");
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["content-type"], "application/sdp");
    let opts = client
        .request(reqwest::Method::OPTIONS, &whip)
        .send()
        .await
        .expect("options");
    assert_eq!(opts.status(), StatusCode::OK);
    assert_eq!(opts.headers()["accept-post"], "application/sdp");
    assert!(
        opts.headers().get("link").is_none(),
        "no ICE servers on OPTIONS"
    );
    let opts = client
        .request(
            reqwest::Method::OPTIONS,
            format!("{whip}/AAAAAAAAAAAAAAAAAAAAAA"),
        )
        .send()
        .await
        .expect("options");
    assert_eq!(
        opts.headers()["accept-patch"],
        "application/sdp, application/trickle-ice-sdpfrag"
    );
    let put = client.put(&whip).send().await.expect("put");
    assert_eq!(put.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(
        put.headers()["allow"]
            .to_str()
            .expect("ascii")
            .contains("POST")
    );
    let unknown = client.get(server.url("/nope")).send().await.expect("get");
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        unknown.headers()["content-type"],
        "application/problem+json"
    );
}

#[tokio::test]
async fn cors_for_a_listed_origin_echoes_it_with_credentials() {
    let server = Server::start(
        ServerSpec::default().env("VESTIBULE__SECURITY__ALLOWED_ORIGINS", "http://app.test"),
    )
    .await;
    let client = reqwest::Client::new();
    let pre = client
        .request(
            reqwest::Method::OPTIONS,
            server.url("/space/demo/stream/demo/whip"),
        )
        .header("Origin", "http://app.test")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization, content-type",
        )
        .send()
        .await
        .expect("preflight");
    assert!(
        pre.status().is_success(),
        "preflight without auth: {}",
        pre.status()
    );
    let h = pre.headers();
    assert_eq!(h["access-control-allow-origin"], "http://app.test");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert!(
        h["access-control-allow-methods"]
            .to_str()
            .expect("ascii")
            .contains("PATCH")
    );
    assert!(
        h["access-control-allow-headers"]
            .to_str()
            .expect("ascii")
            .contains("X-Req-Token")
    );
    assert_eq!(h["access-control-max-age"], "600");

    let r = get_streams(&server, None).await;
    assert!(
        r.headers().get("access-control-allow-origin").is_none(),
        "no Origin, no CORS"
    );
    let r = client
        .get(server.url("/space/demo/streams"))
        .header("Origin", "http://app.test")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let expose = r.headers()["access-control-expose-headers"]
        .to_str()
        .expect("ascii")
        .to_string();
    for name in [
        "Location",
        "ETag",
        "Link",
        "X-Req-Token",
        "Accept-Patch",
        "Retry-After",
    ] {
        assert!(expose.contains(name), "{name} exposed: {expose}");
    }
    assert!(r.headers().get_all("vary").iter().any(|v| v == "Origin"));

    let other = client
        .get(server.url("/health"))
        .header("Origin", "http://evil.test")
        .send()
        .await
        .expect("get");
    assert!(
        other.headers().get("access-control-allow-origin").is_none(),
        "unlisted origin"
    );
}

#[tokio::test]
async fn cors_wildcard_never_allows_credentials() {
    let server =
        Server::start(ServerSpec::default().env("VESTIBULE__SECURITY__ALLOWED_ORIGINS", "*")).await;
    let client = reqwest::Client::new();
    let pre = client
        .request(
            reqwest::Method::OPTIONS,
            server.url("/space/demo/stream/demo/whep"),
        )
        .header("Origin", "http://anywhere.test")
        .header("Access-Control-Request-Method", "PATCH")
        .send()
        .await
        .expect("preflight");
    assert_eq!(pre.headers()["access-control-allow-origin"], "*");
    assert!(
        pre.headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
    let r = client
        .get(server.url("/health"))
        .header("Origin", "http://anywhere.test")
        .send()
        .await
        .expect("get");
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert!(
        r.headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
    assert!(
        r.headers()["access-control-expose-headers"]
            .to_str()
            .expect("ascii")
            .contains("X-Req-Token")
    );
}

#[tokio::test]
async fn per_ip_rate_limit_answers_429_with_retry_after() {
    let server = Server::start(ServerSpec {
        env: vec![("VESTIBULE__HTTP__RATE_LIMIT_PER_IP".into(), "5".into())],
        ..ServerSpec::default()
    })
    .await;
    let client = reqwest::Client::new();
    let mut limited = None;
    for _ in 0..30 {
        let r = client
            .get(server.url("/space/demo/streams"))
            .send()
            .await
            .expect("get");
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("a 429 within 30 quick requests at 5/s");
    assert!(
        r.headers()["retry-after"]
            .to_str()
            .expect("ascii")
            .parse::<u64>()
            .expect("seconds")
            >= 1
    );
    let health = client.get(server.url("/health")).send().await.expect("get");
    assert_eq!(health.status(), StatusCode::OK, "health is exempt");
    let metrics = client
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("vestibule_http_rate_limited_total"),
        "counted"
    );
}

#[tokio::test]
async fn metrics_label_by_route_template_and_logs_hold_no_secrets() {
    let server = Server::start(ServerSpec::default()).await;
    let client = reqwest::Client::new();
    let token = server.token("dev");
    let admin = server.admin_token();
    let auth = format!("Bearer {token}");
    client
        .get(server.url("/space/demo/streams"))
        .header("Authorization", &auth)
        .send()
        .await
        .expect("get");
    client
        .get(server.url("/space/demo/stream/demo"))
        .header("Authorization", &auth)
        .send()
        .await
        .expect("get");
    client
        .put(server.url("/space/s1/stream/x1"))
        .header("Authorization", format!("Bearer {admin}"))
        .json(&json!({"owner": "dev"}))
        .send()
        .await
        .expect("put");
    let secret_path = "/space/demo/stream/demo/whip/SECRETSECRETSECRETSECR";
    client
        .delete(server.url(secret_path))
        .header("Authorization", &auth)
        .send()
        .await
        .expect("delete");
    client
        .delete(server.url("/space/demo/stream/demo/whip"))
        .header("Cookie", "vestibule_session=COOKIECOOKIECOOKIECOOK")
        .send()
        .await
        .expect("delete");

    let text = client
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for family in [
        "vestibule_http_requests_total",
        "vestibule_http_request_duration_seconds",
        "vestibule_lobbies",
        "vestibule_sessions",
        "vestibule_tracks",
    ] {
        assert!(text.contains(family), "{family} missing");
    }
    assert!(
        text.contains(r#"route="/space/{space}/stream/{stream}/whip/{session}""#),
        "template label"
    );
    assert!(text.contains(r#"route="/space/{space}/streams",status="200""#));
    assert!(
        !text.contains("SECRETSECRET"),
        "raw ids never label metrics"
    );

    tokio::time::sleep(Duration::from_millis(100)).await;
    let logs = server.logs();
    assert!(!logs.is_empty(), "debug logging produced output");
    for secret in [
        server.key.as_str(),
        token.as_str(),
        admin.as_str(),
        "SECRETSECRET",
        "COOKIECOOKIE",
    ] {
        assert!(!logs.contains(secret), "a secret leaked into the logs");
    }
}
