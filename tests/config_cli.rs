//! Configuration layering, start-up validation, the `token` command and
//! SIGTERM, on the real binary.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Server, ServerSpec, binary, expect_start_failure, free_port};
use reqwest::StatusCode;

#[tokio::test]
async fn environment_overrides_the_config_file() {
    let file_port = free_port();
    let env_port = free_port();
    let spec = ServerSpec {
        config_file: Some(format!(
            "[server]\nport = {file_port}\n\n[lobby]\nmax_sessions = 3\n"
        )),
        port: Some(env_port),
        ..ServerSpec::default()
    };
    let server = Server::start(spec).await;
    assert_eq!(server.port, env_port);
    let refused = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{file_port}/health"))
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "the file's port lost to the environment's"
    );
}

#[tokio::test]
async fn the_config_file_overrides_the_defaults() {
    // Without an env override the file's value is the one in force.
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = tmp.path().join("c.toml");
    std::fs::write(&config, format!("[server]\nhost = \"127.0.0.1\"\nport = {port}\ndata_dir = \"{}\"\n[security.jwt]\nkey = \"{}\"\n", tmp.path().join("d").display(), common::random_key())).expect("write");
    let mut child = Command::new(binary())
        .args(["serve", "--config"])
        .arg(&config)
        .env_clear()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let mut up = false;
    for _ in 0..100 {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/health")).await
            && r.status() == StatusCode::OK
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(up, "server listened on the file's port");
}

#[test]
fn unknown_keys_fail_at_start_naming_the_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let spec = ServerSpec {
        config_file: Some("[lobby]\nmax_sesions = 3\n".into()),
        ..ServerSpec::default()
    };
    let (child, _) = Server::spawn(&spec, &data, tmp.path());
    let stderr = expect_start_failure(child, tmp.path());
    assert!(stderr.contains("max_sesions"), "file key named: {stderr}");

    let spec = ServerSpec::default().env("VESTIBULE__MEDIA__PORT_BAS", "5");
    let (child, _) = Server::spawn(&spec, &data, tmp.path());
    let stderr = expect_start_failure(child, tmp.path());
    assert!(stderr.contains("port_bas"), "env key named: {stderr}");

    let spec = ServerSpec::default().env("VESTIBULE__SECURITY__COOKIE_SAME_SITE", "sometimes");
    let (child, _) = Server::spawn(&spec, &data, tmp.path());
    let stderr = expect_start_failure(child, tmp.path());
    assert!(
        stderr.contains("cookie_same_site"),
        "bad value named: {stderr}"
    );
}

#[tokio::test]
async fn the_token_command_signs_with_the_configured_key() {
    let server = Server::start(ServerSpec::default()).await;
    let out = Command::new(binary())
        .args(["token", "--user", "erin", "--admin", "--ttl", "10m"])
        .env_clear()
        .env("VESTIBULE__SECURITY__JWT__KEY", &server.key)
        .env("VESTIBULE__SERVER__DATA_DIR", &server.data_dir)
        .output()
        .expect("token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string();
    let user = server.keys().verify(&token).expect("valid");
    assert_eq!(user.identity.user_id, "erin");
    assert!(user.admin);
    let r = reqwest::Client::new()
        .put(server.url("/space/cli/stream/made"))
        .header("Authorization", format!("Bearer {token}"))
        .json(&serde_json::json!({"owner": "erin"}))
        .send()
        .await
        .expect("put");
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "the CLI token is an admin token"
    );

    let bad = Command::new(binary())
        .args(["token", "--user", "no spaces"])
        .env_clear()
        .env("VESTIBULE__SECURITY__JWT__KEY", &server.key)
        .output()
        .expect("token");
    assert!(!bad.status.success());
}

#[tokio::test]
async fn sigterm_exits_cleanly_within_five_seconds() {
    let mut server = Server::start(ServerSpec::default()).await;
    // An in-flight keep-alive connection must not hold the exit.
    let client = reqwest::Client::new();
    client.get(server.url("/health")).send().await.expect("get");
    let (status, took) = server.terminate(Duration::from_secs(5));
    assert!(status.success(), "exit status {status}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(server.logs().contains("vestibule stopped"));
}
