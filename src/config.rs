//! Typed settings: the embedded `config/default.toml`, then `--config FILE`,
//! then `VESTIBULE__SECTION__KEY` environment variables.
//!
//! Every struct denies unknown fields, so a misspelt key fails at start with
//! the key's name instead of being silently ignored.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The shipped defaults, compiled in so that a bare `vestibule serve` works.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Environment variable prefix; `__` separates path segments.
const ENV_PREFIX: &str = "VESTIBULE";

/// Keys whose environment values are comma-separated lists.
const ENV_LIST_KEYS: [&str; 6] = [
    "security.allowed_origins",
    "media.public_ips",
    "media.codecs",
    "live.allowed_hosts",
    "live.allowed_ports",
    "media.ice_servers",
];

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A source could not be read or did not match the schema; the message
    /// names the offending key.
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    /// A value parsed but is not usable.
    #[error("configuration: `{key}` {problem}")]
    Invalid {
        /// Dotted key path.
        key: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

/// The whole configuration tree.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// HTTP listener and storage.
    pub server: ServerConfig,
    /// Logging.
    pub log: LogConfig,
    /// Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// Tokens, cookies, CORS, per-user limits.
    pub security: SecurityConfig,
    /// HTTP-level limits.
    pub http: HttpConfig,
    /// Stream store behaviour.
    pub streams: StreamsConfig,
    /// Lobby limits and policies.
    pub lobby: LobbyConfig,
    /// Per-session limits.
    pub session: SessionConfig,
    /// Signal data channel limits.
    pub signal: SignalConfig,
    /// Media workers.
    pub media: MediaConfig,
    /// Restreaming to RTMP.
    pub live: LiveConfig,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Listener address.
    pub host: IpAddr,
    /// Listener port.
    pub port: u16,
    /// SQLite file and generated key live here.
    pub data_dir: PathBuf,
    /// Prefix for Location URLs behind a reverse proxy.
    pub public_base_path: String,
    /// PEM certificate chain; HTTPS when set together with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key.
    pub tls_key: Option<PathBuf>,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Line format.
    pub format: LogFormat,
    /// Default filter; `RUST_LOG` overrides it.
    pub level: String,
}

/// `[metrics]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Separate listener for `/metrics`; `None` serves it on the HTTP port.
    pub port: Option<u16>,
}

/// SameSite attribute of the session cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SameSite {
    /// `SameSite=Strict`.
    Strict,
    /// `SameSite=Lax`.
    Lax,
    /// `SameSite=None` (needs HTTPS at the browser).
    None,
}

/// `[security]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityConfig {
    /// CORS origins; `["*"]` means any origin without credentials.
    pub allowed_origins: Vec<String>,
    /// SameSite of the session cookie.
    pub cookie_same_site: SameSite,
    /// Secure attribute; `None` = true unless the listener is loopback.
    pub cookie_secure: Option<bool>,
    /// Sessions per user across lobbies.
    pub max_sessions_per_user: usize,
    /// Bearer token settings.
    pub jwt: JwtConfig,
}

/// `[security.jwt]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// HS256 key; `None` = generated and kept in `data_dir/jwt.key`.
    pub key: Option<String>,
    /// Reject tokens without `exp`.
    pub require_exp: bool,
    /// Seconds an expired token may still delete its own resource.
    pub teardown_grace_s: u64,
}

/// `[http]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Requests per second per IP; 0 disables.
    pub rate_limit_per_ip: u32,
}

/// `[streams]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamsConfig {
    /// WHIP creates unknown streams.
    pub auto_create: bool,
}

/// What a second WHIP by the same user in one lobby does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDuplicateUser {
    /// End the old session, accept the new one.
    Replace,
    /// Answer 409.
    Reject,
}

/// `[lobby]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LobbyConfig {
    /// Sessions per lobby.
    pub max_sessions: usize,
    /// Tracks per lobby.
    pub max_tracks: usize,
    /// Duplicate-user policy.
    pub on_duplicate_user: OnDuplicateUser,
    /// Renegotiation debounce, ms.
    pub renegotiate_debounce_ms: u64,
    /// Plain WHEP viewers allowed.
    pub allow_viewers: bool,
    /// Plain viewers per lobby.
    pub max_viewers: usize,
}

/// `[session]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// m-lines per WHIP offer.
    pub max_media_sections: usize,
}

/// `[signal]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalConfig {
    /// Largest message, bytes.
    pub max_message_bytes: usize,
    /// Messages per second per session.
    pub max_messages_per_s: u32,
}

/// One STUN/TURN server announced in `Link` headers. In a file it is a
/// table (`{urls, username, credential}`) or a bare URL string; the
/// environment (`VESTIBULE__MEDIA__ICE_SERVERS=stun:a:3478,stun:b`) can
/// only give bare URLs, so TURN credentials belong in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "IceServerEntry")]
pub struct IceServer {
    /// `stun:`, `turn:` or `turns:` URL.
    pub urls: String,
    /// TURN username.
    pub username: Option<String>,
    /// TURN password.
    pub credential: Option<String>,
}

/// How an ICE server may be written.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum IceServerEntry {
    /// Just the URL (no credentials).
    Url(String),
    /// The full form.
    Full(IceServerTable),
}

/// The table form of an ICE server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct IceServerTable {
    urls: String,
    username: Option<String>,
    credential: Option<String>,
}

impl From<IceServerEntry> for IceServer {
    fn from(entry: IceServerEntry) -> Self {
        match entry {
            IceServerEntry::Url(urls) => IceServer {
                urls,
                username: None,
                credential: None,
            },
            IceServerEntry::Full(t) => IceServer {
                urls: t.urls,
                username: t.username,
                credential: t.credential,
            },
        }
    }
}

/// `[media]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    /// Worker threads; 0 = one per core.
    pub workers: usize,
    /// UDP bind address.
    pub bind: IpAddr,
    /// First UDP port.
    pub port_base: u16,
    /// Advertised host candidate addresses.
    pub public_ips: Vec<IpAddr>,
    /// STUN/TURN servers for Link headers.
    pub ice_servers: Vec<IceServer>,
    /// Accepted codecs.
    pub codecs: Vec<String>,
    /// Peer loss timeout, seconds.
    pub ice_timeout_s: u64,
    /// Connect timeout, seconds.
    pub connect_timeout_s: u64,
}

/// `[live]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveConfig {
    /// ffmpeg binary.
    pub ffmpeg_path: PathBuf,
    /// x264 preset.
    pub x264_preset: String,
    /// Transcode video bitrate.
    pub video_kbps: u32,
    /// AAC bitrate.
    pub audio_kbps: u32,
    /// Allow private destinations.
    pub allow_private: bool,
    /// Destination host allow-list.
    pub allowed_hosts: Vec<String>,
    /// Destination port allow-list.
    pub allowed_ports: Vec<u16>,
    /// Hold time without a source, seconds.
    pub no_source_grace_s: u64,
}

/// Codec names `media.codecs` may hold.
const KNOWN_CODECS: [&str; 4] = ["opus", "vp8", "vp9", "h264"];

impl Settings {
    /// Loads defaults, then `file`, then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(file, std::env::vars())
    }

    /// Like [`Settings::load`] with an explicit environment (for tests).
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_TOML,
            config::FileFormat::Toml,
        ));
        if let Some(path) = file {
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
        }
        let env_map = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
            .collect();
        let mut env_source = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .list_separator(",")
            .source(Some(env_map));
        for key in ENV_LIST_KEYS {
            env_source = env_source.with_list_parse_key(key);
        }
        let settings: Settings = builder.add_source(env_source).build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks the values serde cannot check by type.
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, problem: &str| {
            Err(ConfigError::Invalid {
                key,
                problem: problem.to_string(),
            })
        };
        if let Some(bad) = self
            .media
            .codecs
            .iter()
            .find(|c| !KNOWN_CODECS.contains(&c.as_str()))
        {
            return invalid(
                "media.codecs",
                &format!("has unknown codec {bad:?}; known: opus, vp8, vp9, h264"),
            );
        }
        if self.media.codecs.is_empty() {
            return invalid("media.codecs", "must name at least one codec");
        }
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            return invalid(
                "server.tls_cert",
                "and `server.tls_key` must be set together",
            );
        }
        let base = &self.server.public_base_path;
        if !base.is_empty() && (!base.starts_with('/') || base.ends_with('/')) {
            return invalid(
                "server.public_base_path",
                "must be empty or start with '/' and not end with '/'",
            );
        }
        if let Some(key) = &self.security.jwt.key
            && key.len() < 32
        {
            return invalid("security.jwt.key", "must be at least 32 bytes long");
        }
        if self.lobby.max_sessions == 0 || self.lobby.max_tracks == 0 {
            return invalid(
                "lobby.max_sessions",
                "and `lobby.max_tracks` must be at least 1",
            );
        }
        if self.session.max_media_sections == 0 {
            return invalid("session.max_media_sections", "must be at least 1");
        }
        if self.media.ice_timeout_s == 0 || self.media.connect_timeout_s == 0 {
            return invalid(
                "media.ice_timeout_s",
                "and `media.connect_timeout_s` must be at least 1",
            );
        }
        if self
            .media
            .port_base
            .checked_add(self.worker_count() as u16)
            .is_none()
        {
            return invalid("media.port_base", "leaves no room for one port per worker");
        }
        Ok(())
    }

    /// Media worker threads after resolving `0` to the core count.
    pub fn worker_count(&self) -> usize {
        match self.media.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// Whether the session cookie carries `Secure`.
    pub fn cookie_secure(&self) -> bool {
        self.security
            .cookie_secure
            .unwrap_or(!self.server.host.is_loopback())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn embedded_defaults_load() {
        let s = Settings::load_with_env(None, env(&[])).expect("defaults load");
        assert_eq!(s.server.port, 8080);
        assert_eq!(s.lobby.max_sessions, 16);
        assert_eq!(s.media.codecs.len(), 4);
        assert!(s.security.jwt.key.is_none());
    }

    #[test]
    fn env_overrides_nested_keys_and_lists() {
        let s = Settings::load_with_env(
            None,
            env(&[
                ("VESTIBULE__SERVER__PORT", "9000"),
                ("VESTIBULE__MEDIA__PORT_BASE", "41000"),
                (
                    "VESTIBULE__SECURITY__ALLOWED_ORIGINS",
                    "http://a.test,http://b.test",
                ),
                ("VESTIBULE__MEDIA__CODECS", "opus,h264"),
                ("VESTIBULE__SECURITY__JWT__REQUIRE_EXP", "false"),
            ]),
        )
        .expect("loads");
        assert_eq!(s.server.port, 9000);
        assert_eq!(s.media.port_base, 41000);
        assert_eq!(
            s.security.allowed_origins,
            ["http://a.test", "http://b.test"]
        );
        assert_eq!(s.media.codecs, ["opus", "h264"]);
        assert!(!s.security.jwt.require_exp);
    }

    #[test]
    fn unknown_env_key_is_named() {
        let err = Settings::load_with_env(None, env(&[("VESTIBULE__LOBBY__MAX_SESIONS", "3")]))
            .expect_err("unknown key rejected");
        assert!(err.to_string().contains("max_sesions"), "{err}");
    }

    #[test]
    fn bad_enum_value_is_named() {
        let err = Settings::load_with_env(
            None,
            env(&[("VESTIBULE__LOBBY__ON_DUPLICATE_USER", "maybe")]),
        )
        .expect_err("bad value rejected");
        assert!(err.to_string().contains("on_duplicate_user"), "{err}");
    }

    #[test]
    fn unknown_codec_is_rejected() {
        let err = Settings::load_with_env(None, env(&[("VESTIBULE__MEDIA__CODECS", "opus,av1")]))
            .expect_err("av1 rejected");
        assert!(err.to_string().contains("media.codecs"), "{err}");
    }
}
