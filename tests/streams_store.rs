//! Streams over HTTP, persistence across restarts, the generated key, and
//! loud failures on a damaged or locked database. Real binary, real SQLite.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use common::{Server, ServerSpec, expect_start_failure};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn stream_put_get_list_delete() {
    let server = Server::start(ServerSpec::default()).await;
    let client = reqwest::Client::new();
    let admin = format!("Bearer {}", server.admin_token());
    let user = format!("Bearer {}", server.token("carol"));
    let url = server.url("/space/studio/stream/show");

    let r = client
        .put(&url)
        .header("Authorization", &admin)
        .json(&json!({"owner": "carol", "title": "Show"}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = client
        .put(&url)
        .header("Authorization", &admin)
        .json(&json!({"owner": "carol", "ownerHome": "other.example", "title": "Show 2"}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::OK, "second PUT updates");
    let r = client
        .put(&url)
        .header("Authorization", &admin)
        .json(&json!({"owner": "bad owner"}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = client
        .put(server.url("/space/st%20udio/stream/x"))
        .header("Authorization", &admin)
        .json(&json!({"owner": "carol"}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "bad space id");

    let r = client
        .get(&url)
        .header("Authorization", &user)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["title"], "Show 2");
    assert_eq!(body["owner"], "carol");
    assert_eq!(body["ownerHome"], "other.example");
    assert_eq!(body["lobbyOpen"], false);
    assert!(body.get("lobby").is_none());

    let list: Value = client
        .get(server.url("/space/studio/streams"))
        .header("Authorization", &user)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(list[0]["stream"], "show");
    let r = client
        .get(server.url("/space/nowhere/streams"))
        .header("Authorization", &user)
        .send()
        .await
        .expect("list");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let r = client
        .delete(&url)
        .header("Authorization", &admin)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = client
        .delete(&url)
        .header("Authorization", &admin)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = client
        .get(&url)
        .header("Authorization", &user)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn streams_and_generated_key_survive_a_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let spec = ServerSpec {
        key: None,
        ..ServerSpec::default()
    };
    let mut first = Server::start_in(spec.clone(), &data, tmp.path()).await;
    let key_path = data.join("jwt.key");
    let mode = std::fs::metadata(&key_path)
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "key file is private");
    assert!(
        first.logs().contains("dev token:"),
        "a generated key prints the dev token"
    );
    let token_before = first.admin_token();
    let r = reqwest::Client::new()
        .put(first.url("/space/keep/stream/me"))
        .header("Authorization", format!("Bearer {token_before}"))
        .json(&json!({"owner": "dave", "title": "kept"}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::CREATED);
    let key_before = first.key.clone();
    let (status, _) = first.terminate(Duration::from_secs(5));
    assert!(status.success());

    let second = Server::start_in(spec, &data, tmp.path()).await;
    assert_eq!(second.key, key_before, "same key after restart");
    assert_eq!(
        std::fs::metadata(&key_path)
            .expect("key")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let r = reqwest::Client::new()
        .get(second.url("/space/keep/stream/me"))
        .header("Authorization", format!("Bearer {token_before}"))
        .send()
        .await
        .expect("get");
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "old token and old stream both still valid"
    );
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["title"], "kept");
    let demo = reqwest::Client::new()
        .get(second.url("/space/demo/stream/demo"))
        .header("Authorization", format!("Bearer {token_before}"))
        .send()
        .await
        .expect("get");
    assert_eq!(
        demo.status(),
        StatusCode::OK,
        "demo/demo seeded on first start"
    );
}

#[tokio::test]
async fn a_corrupt_database_fails_the_start_and_is_left_untouched() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    let garbage = b"this is not a database, and it must survive the failed start".repeat(200);
    std::fs::write(data.join("vestibule.db"), &garbage).expect("write");
    let (child, _) = Server::spawn(&ServerSpec::default(), &data, tmp.path());
    let stderr = expect_start_failure(child, tmp.path());
    assert!(stderr.contains("store"), "names the store: {stderr}");
    assert_eq!(
        std::fs::read(data.join("vestibule.db")).expect("read"),
        garbage
    );
}

#[tokio::test]
async fn a_locked_database_fails_the_start() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    // Create a valid store first, then hold an exclusive lock on it.
    let mut first = Server::start_in(ServerSpec::default(), &data, tmp.path()).await;
    first.terminate(Duration::from_secs(5));
    let conn = rusqlite::Connection::open(data.join("vestibule.db")).expect("open");
    conn.execute_batch("PRAGMA journal_mode=DELETE; BEGIN EXCLUSIVE;")
        .expect("lock");
    let (child, _) = Server::spawn(&ServerSpec::default(), &data, tmp.path());
    let stderr = expect_start_failure(child, tmp.path());
    assert!(
        stderr.contains("locked") || stderr.contains("busy"),
        "says it is locked: {stderr}"
    );
    conn.execute_batch("ROLLBACK").expect("unlock");
}
