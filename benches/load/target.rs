//! The server under load: the `vestibule` binary started here with its
//! limits raised above the run's sessions, or a running server (`--url`,
//! or only `--whip-url`/`--whep-url` for another WHIP/WHEP server). Knows
//! the URLs and signs one token per simulated user.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use vestibule::auth::TokenKeys;

use super::args::{Args, Mode};

/// The space every load stream lives in.
pub const SPACE: &str = "load";

/// Who a token is for.
#[derive(Debug, Clone, Copy)]
pub enum Role {
    /// Publisher `n` of the lobby (0 owns the stream).
    Publisher(usize),
    /// Subscriber `n` of the lobby.
    Subscriber(usize),
}

/// The server and how to reach it.
pub struct Target {
    /// `http://host:port` of a Vestibule (`None`: a foreign server).
    pub base: Option<String>,
    whip: String,
    whep: String,
    keys: Option<TokenKeys>,
    token: Option<String>,
    child: Option<Child>,
    /// PID for CPU and memory figures.
    pub pid: Option<u32>,
    data_dir: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("base", &self.base)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

/// The stream name of lobby `k`.
pub fn stream(k: usize) -> String {
    format!("lobby-{k}")
}

impl Target {
    /// Starts the server (or checks the given one) and creates the streams.
    pub async fn open(args: &Args) -> anyhow::Result<Target> {
        let env_key = std::env::var("VESTIBULE__SECURITY__JWT__KEY").ok();
        let mut target = match (&args.url, &args.whip_url) {
            (Some(url), _) => Target::remote(
                args,
                Some(url.trim_end_matches('/').to_string()),
                args.key.clone().or(env_key),
            ),
            (None, Some(_)) => Target::remote(args, None, args.key.clone().or(env_key)),
            (None, None) => Target::start(args)?,
        };
        target.wait_healthy().await?;
        if target.base.is_some() && target.keys.is_some() {
            target.create_streams(args).await?;
        }
        Ok(target)
    }

    fn remote(args: &Args, base: Option<String>, key: Option<String>) -> Target {
        let lobby = |kind: &str| {
            base.as_ref()
                .map(|b| format!("{b}/space/{SPACE}/stream/{{stream}}/{kind}"))
                .unwrap_or_default()
        };
        Target {
            whip: args.whip_url.clone().unwrap_or_else(|| lobby("whip")),
            whep: args.whep_url.clone().unwrap_or_else(|| lobby("whep")),
            keys: key.map(|k| TokenKeys::new(k.as_bytes(), true, Duration::ZERO)),
            token: args.token.clone(),
            pid: args.server_pid,
            child: None,
            data_dir: None,
            base,
        }
    }

    /// Starts `vestibule serve` on 127.0.0.1 with ephemeral media ports,
    /// viewers allowed and every limit above what the run can reach.
    fn start(args: &Args) -> anyhow::Result<Target> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .context("a free port")?;
        // The server wants at least 32 bytes of key.
        let key = format!("load-key-{:032x}", rand::random::<u128>());
        let dir =
            std::env::temp_dir().join(format!("vestibule-load-{}-{port}", std::process::id()));
        let subscribers = args.max_subscribers.max(args.subscribers);
        let sessions = args.publishers + subscribers + 2;
        let limits = [
            ("VESTIBULE__LOBBY__MAX_SESSIONS", sessions),
            ("VESTIBULE__LOBBY__MAX_TRACKS", 2 * args.publishers + 4),
            ("VESTIBULE__LOBBY__MAX_VIEWERS", subscribers + 1),
            ("VESTIBULE__SECURITY__MAX_SESSIONS_PER_USER", 4),
            ("VESTIBULE__HTTP__RATE_LIMIT_PER_IP", 0),
            ("VESTIBULE__MEDIA__WORKERS", args.workers),
            ("VESTIBULE__MEDIA__PORT_BASE", 0),
        ];
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vestibule"));
        cmd.arg("serve")
            .env("VESTIBULE__SERVER__HOST", "127.0.0.1")
            .env("VESTIBULE__SERVER__PORT", port.to_string())
            .env("VESTIBULE__SERVER__DATA_DIR", &dir)
            .env("VESTIBULE__SECURITY__JWT__KEY", &key)
            .env("VESTIBULE__MEDIA__BIND", "127.0.0.1")
            .env("VESTIBULE__LOBBY__ALLOW_VIEWERS", "true")
            .env("VESTIBULE__LOG__LEVEL", "warn")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(if args.server_log {
                Stdio::inherit()
            } else {
                Stdio::null()
            });
        for (name, value) in limits {
            cmd.env(name, value.to_string());
        }
        let child = cmd.spawn().context("start vestibule")?;
        let base = format!("http://127.0.0.1:{port}");
        let mut target = Target::remote(args, Some(base), Some(key));
        target.pid = Some(child.id());
        target.child = Some(child);
        target.data_dir = Some(dir);
        Ok(target)
    }

    /// PUTs `load/lobby-k` for every lobby, owned by its publisher 0.
    async fn create_streams(&self, args: &Args) -> anyhow::Result<()> {
        let (Some(base), Some(keys)) = (&self.base, &self.keys) else {
            return Ok(());
        };
        let admin = keys.issue("load-admin", None, true, None, Duration::from_secs(86_400))?;
        let http = reqwest::Client::new();
        for k in 0..args.lobbies {
            let status = http
                .put(format!("{base}/space/{SPACE}/stream/{}", stream(k)))
                .bearer_auth(&admin)
                .json(&serde_json::json!({ "owner": user(k, Role::Publisher(0)), "title": "load" }))
                .send()
                .await?
                .status();
            if !status.is_success() {
                bail!("creating stream {}: {status}", stream(k));
            }
        }
        Ok(())
    }

    /// The WHIP URL of lobby `k`.
    pub fn whip_url(&self, k: usize) -> String {
        self.whip.replace("{stream}", &stream(k))
    }

    /// The WHEP URL of lobby `k`.
    pub fn whep_url(&self, k: usize) -> String {
        self.whep.replace("{stream}", &stream(k))
    }

    /// The Bearer token of one simulated user of lobby `k`: plain viewers
    /// (modes viewers and standard) carry a `view` claim for the stream.
    pub fn token(&self, k: usize, role: Role, mode: Mode) -> anyhow::Result<String> {
        if let Some(t) = &self.token {
            return Ok(t.clone());
        }
        let keys = self
            .keys
            .as_ref()
            .context("no key to sign tokens: pass --key or --token")?;
        let view = format!("{SPACE}/{}", stream(k));
        let view = matches!(
            (role, mode),
            (Role::Subscriber(_), Mode::Viewers | Mode::Standard)
        )
        .then_some(view.as_str());
        Ok(keys.issue(
            &user(k, role),
            None,
            false,
            view,
            Duration::from_secs(86_400),
        )?)
    }

    /// The server's `/metrics` sum of a counter family (0 when unknown).
    pub async fn metric(&self, family: &str) -> f64 {
        let Some(base) = &self.base else { return 0.0 };
        let Ok(resp) = reqwest::get(format!("{base}/metrics")).await else {
            return 0.0;
        };
        let text = resp.text().await.unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with(family) && l[family.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Stops a server started here.
    pub fn close(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = self.data_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.close();
    }
}

/// The user id of a simulated user.
fn user(k: usize, role: Role) -> String {
    match role {
        Role::Publisher(n) => format!("load-{k}-pub-{n}"),
        Role::Subscriber(n) => format!("load-{k}-sub-{n}"),
    }
}

impl Target {
    /// Waits for `/health` (a foreign server is taken as it is).
    async fn wait_healthy(&mut self) -> anyhow::Result<()> {
        let Some(base) = self.base.clone() else {
            return Ok(());
        };
        for _ in 0..400 {
            if let Ok(r) = reqwest::get(format!("{base}/health")).await
                && r.status().is_success()
            {
                return Ok(());
            }
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                bail!("vestibule exited with {status} (rerun with --server-log)");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        bail!("{base} did not become healthy")
    }
}
