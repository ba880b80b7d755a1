//! Shared harness for integration tests: runs the real `vestibule` binary on
//! 127.0.0.1 with its own data folder, port and key, and talks HTTP to it.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use vestibule::auth::TokenKeys;

pub mod clients;
pub mod rtmp;

/// A key long enough for the config check; random per server.
pub fn random_key() -> String {
    use rand::Rng as _;
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(48)
        .map(char::from)
        .collect()
}

/// A TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// How to start a server.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Contents of a `--config` file.
    pub config_file: Option<String>,
    /// Key; `None` lets the server generate one.
    pub key: Option<String>,
    /// Port; `None` picks a free one.
    pub port: Option<u16>,
}

impl Default for ServerSpec {
    fn default() -> Self {
        Self {
            env: vec![("VESTIBULE__HTTP__RATE_LIMIT_PER_IP".into(), "10000".into())],
            config_file: None,
            key: Some(random_key()),
            port: None,
        }
    }
}

impl ServerSpec {
    /// Adds an environment variable.
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_string(), v.to_string()));
        self
    }
}

/// A running server process.
pub struct Server {
    child: Option<Child>,
    /// HTTP port.
    pub port: u16,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Data folder.
    pub data_dir: PathBuf,
    /// The HS256 key in force.
    pub key: String,
    logs_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

/// The path of the binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_vestibule")
}

impl Server {
    /// Starts a server with a fresh data folder and waits until it serves.
    pub async fn start(spec: ServerSpec) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data_dir = tmp.path().join("data");
        let mut server = Server::start_in(spec, &data_dir, tmp.path()).await;
        server._tmp = Some(tmp);
        server
    }

    /// Starts a server on an existing data folder (restart tests).
    pub async fn start_in(spec: ServerSpec, data_dir: &Path, logs_dir: &Path) -> Server {
        let (child, port) = Self::spawn(&spec, data_dir, logs_dir);
        let key = match &spec.key {
            Some(k) => k.clone(),
            None => String::new(),
        };
        let mut server = Server {
            child: Some(child),
            port,
            base: format!("http://127.0.0.1:{port}"),
            data_dir: data_dir.to_path_buf(),
            key,
            logs_dir: logs_dir.to_path_buf(),
            _tmp: None,
        };
        server.wait_ready().await;
        if server.key.is_empty() {
            server.key = std::fs::read_to_string(data_dir.join("jwt.key"))
                .expect("generated key file")
                .trim()
                .to_string();
        }
        server
    }

    /// Spawns the process without waiting (start-failure tests).
    pub fn spawn(spec: &ServerSpec, data_dir: &Path, logs_dir: &Path) -> (Child, u16) {
        let port = spec.port.unwrap_or_else(free_port);
        let mut cmd = Command::new(binary());
        cmd.arg("serve");
        if let Some(contents) = &spec.config_file {
            let path = logs_dir.join("config.toml");
            std::fs::write(&path, contents).expect("config file");
            cmd.arg("--config").arg(path);
        }
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "debug,actix_server=info,h2=info")
            .env("VESTIBULE__SERVER__HOST", "127.0.0.1")
            .env("VESTIBULE__SERVER__PORT", port.to_string())
            .env("VESTIBULE__SERVER__DATA_DIR", data_dir)
            // Media ports are not used before the media plane exists, but
            // keep parallel servers apart anyway.
            .env(
                "VESTIBULE__MEDIA__PORT_BASE",
                (20000 + port % 20000).to_string(),
            );
        if let Some(key) = &spec.key {
            cmd.env("VESTIBULE__SECURITY__JWT__KEY", key);
        }
        for (k, v) in &spec.env {
            cmd.env(k, v);
        }
        let stdout = std::fs::File::create(logs_dir.join("stdout.log")).expect("stdout log");
        let stderr = std::fs::File::create(logs_dir.join("stderr.log")).expect("stderr log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn vestibule");
        (child, port)
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let client = reqwest::Client::new();
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("server exited early with {status}: {}", self.logs());
            }
            if let Ok(r) = client.get(format!("{}/health", self.base)).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server did not become healthy: {}", self.logs());
    }

    /// stdout + stderr so far.
    pub fn logs(&self) -> String {
        let read = |n| std::fs::read_to_string(self.logs_dir.join(n)).unwrap_or_default();
        format!("{}{}", read("stdout.log"), read("stderr.log"))
    }

    /// Token keys over the server's key.
    pub fn keys(&self) -> TokenKeys {
        TokenKeys::new(self.key.as_bytes(), true, Duration::from_secs(86400))
    }

    /// A user token valid for an hour.
    pub fn token(&self, user: &str) -> String {
        self.keys()
            .issue(user, None, false, None, Duration::from_secs(3600))
            .expect("token")
    }

    /// An admin token valid for an hour.
    pub fn admin_token(&self) -> String {
        self.keys()
            .issue("admin", None, true, None, Duration::from_secs(3600))
            .expect("token")
    }

    /// `base + path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends SIGTERM and waits up to `limit`; returns the exit status and
    /// how long it took.
    pub fn terminate(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        let mut child = self.child.take().expect("running");
        let pid = child.id().to_string();
        let started = Instant::now();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return (status, started.elapsed());
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                panic!("server did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The sum of every sample of a metric whose line starts with `prefix`
/// (a family name, or a name with labels such as `x{kind="video"}`).
pub async fn metric(server: &Server, prefix: &str) -> f64 {
    let text = reqwest::get(server.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(prefix).is_some_and(|rest| {
                rest.starts_with(' ') || rest.starts_with('{') || prefix.ends_with('}')
            })
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls `metric(prefix)` until `pred` holds or `limit` passes; returns the last value.
pub async fn wait_metric(
    server: &Server,
    prefix: &str,
    limit: Duration,
    pred: impl Fn(f64) -> bool,
) -> f64 {
    let deadline = Instant::now() + limit;
    loop {
        let v = metric(server, prefix).await;
        if pred(v) || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET /space/{s}/stream/{id}` as `user`.
pub async fn stream_state(server: &Server, path: &str, user: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(server.url(path))
        .bearer_auth(server.token(user))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json")
}

/// Waits for a spawned server that must fail to start; returns its stderr.
pub fn expect_start_failure(mut child: Child, logs_dir: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(!status.success(), "server should have failed to start");
            return std::fs::read_to_string(logs_dir.join("stderr.log")).unwrap_or_default();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("server kept running although its start should fail");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
