//! Start-up and shutdown: builds the object graph by hand, serves HTTP, and
//! tears down in a fixed order on SIGTERM/SIGINT.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix::Actor as _;
use actix_web::{App, HttpServer, web};
use tracing::{info, warn};
use vestibule_actors::directory::SessionDirectory;
use vestibule_actors::registry::{CloseAllLobbies, ControlPlane, LobbyPolicy, LobbyRegistry};

use crate::auth::{KeyError, KeySource, TokenKeys, load_or_generate_key};
use crate::config::{OnDuplicateUser, Settings};
use crate::http;
use crate::http::rate_limit::IpRateLimiter;
use crate::http::state::AppState;
use crate::live::LiveService;
use crate::live::metrics::LiveMetrics;
use crate::media::MediaPlane;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

/// The user that owns `demo/demo` on a fresh store.
pub const DEV_USER: &str = "dev";
/// Lifetime of the development token printed at start.
const DEV_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// Time the HTTP server gives in-flight requests at shutdown.
const HTTP_DRAIN: Duration = Duration::from_secs(2);
/// Time media workers get to close their peers at shutdown.
const MEDIA_DRAIN: Duration = Duration::from_secs(1);
/// Time lobbies get to close at shutdown.
const LOBBY_DRAIN: Duration = Duration::from_secs(2);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The JWT key.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The store.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Binding a listener.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// TLS certificate or key.
    #[error("TLS: {0}")]
    Tls(String),
    /// The media plane.
    #[error("media: {0}")]
    Media(#[from] crate::media::MediaStartError),
    /// Metric registration (a bug).
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// Serving failed.
    #[error("server: {0}")]
    Serve(std::io::Error),
    /// Token issuing failed (a bug).
    #[error("token: {0}")]
    Token(#[from] jsonwebtoken::errors::Error),
}

/// Opens the store and the key; seeds `demo/demo` on an empty store.
fn prepare(settings: &Settings) -> Result<(Arc<Store>, TokenKeys, KeySource), StartError> {
    let data_dir = &settings.server.data_dir;
    let (key, source) = load_or_generate_key(settings.security.jwt.key.as_deref(), data_dir)?;
    let keys = TokenKeys::new(
        &key,
        settings.security.jwt.require_exp,
        Duration::from_secs(settings.security.jwt.teardown_grace_s),
    );
    let store = Store::open(data_dir)?;
    if store.is_empty()? {
        store.put_stream("demo", "demo", DEV_USER, None, "Demo lobby")?;
        info!("created stream demo/demo owned by user \"{DEV_USER}\"");
    }
    Ok((Arc::new(store), keys, source))
}

fn tls_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, StartError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let tls = |e: &dyn std::fmt::Display| StartError::Tls(e.to_string());
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| tls(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls(&e))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| tls(&e))?;
    rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls(&e))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| tls(&e))
}

/// The page URL and token printed for a development setup.
fn print_dev_banner(settings: &Settings, keys: &TokenKeys) -> Result<(), StartError> {
    let token = keys.issue(DEV_USER, None, false, None, DEV_TOKEN_TTL)?;
    let host = if settings.server.host.is_unspecified() {
        "localhost".to_string()
    } else {
        settings.server.host.to_string()
    };
    let scheme = if settings.server.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let base = format!(
        "{scheme}://{host}:{}{}",
        settings.server.port, settings.server.public_base_path
    );
    // Printed on stdout, not logged: this is a development convenience for
    // the person at the terminal, and log pipelines must never carry tokens.
    // A configured key (production) prints nothing.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "\nVestibule is running with a generated development key.\n  web page:  {base}/?space=demo&stream=demo#token={token}\n  dev token: {token}\n  (user \"{DEV_USER}\", owner of demo/demo, valid 24 h; `vestibule token --user NAME` makes more)\n"
    );
    let _ = out.flush();
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => info!("SIGTERM received"),
                _ = int.recv() => info!("SIGINT received"),
            }
        }
        _ => {
            warn!("cannot install signal handlers; stop with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}

/// The object graph of a running server, before any listener exists.
#[derive(Debug)]
pub struct Built {
    /// What every handler shares.
    pub state: AppState,
    /// Where the JWT key came from.
    pub key_source: KeySource,
    /// The media workers.
    pub media: MediaPlane,
}

/// Opens store and key and starts the control plane. Must run inside an
/// actix `System` (it starts the registry actor).
pub fn build(settings: Settings) -> Result<Built, StartError> {
    let settings = Arc::new(settings);
    let (store, keys, key_source) = prepare(&settings)?;
    let metrics = Metrics::new()?;
    let directory = Arc::new(SessionDirectory::default());
    let plane_threads = MediaPlane::start(&settings, metrics.registry())?;
    let media = plane_threads.port.clone();
    let plane = Arc::new(ControlPlane {
        policy: LobbyPolicy {
            max_sessions: settings.lobby.max_sessions,
            max_tracks: settings.lobby.max_tracks,
            replace_duplicates: settings.lobby.on_duplicate_user == OnDuplicateUser::Replace,
            max_sessions_per_user: settings.security.max_sessions_per_user,
            max_media_sections: settings.session.max_media_sections,
            renegotiate_debounce: Duration::from_millis(settings.lobby.renegotiate_debounce_ms),
            max_viewers: settings.lobby.max_viewers,
        },
        directory: Arc::clone(&directory),
        metrics: metrics.control.clone(),
        media: media.clone(),
    });
    let registry = LobbyRegistry::new(plane).start();
    let live = LiveService::new(
        settings.live.clone(),
        LiveMetrics::register(metrics.registry())?,
        settings.server.data_dir.clone(),
    );
    let state = AppState {
        live,
        settings,
        keys: Arc::new(keys),
        store,
        registry,
        directory,
        media,
        metrics,
        shutting_down: Arc::new(AtomicBool::new(false)),
    };
    Ok(Built {
        state,
        key_source,
        media: plane_threads,
    })
}

/// Runs the server until SIGTERM/SIGINT. Must run inside an actix `System`.
pub async fn run(settings: Settings) -> Result<(), StartError> {
    let Built {
        state,
        key_source,
        media: media_plane,
    } = build(settings)?;
    let settings = Arc::clone(&state.settings);
    let registry = state.registry.clone();
    let shutting_down = Arc::clone(&state.shutting_down);
    let limiter = IpRateLimiter::new(settings.http.rate_limit_per_ip);
    let separate_metrics = settings.metrics.port.is_some();

    let app_state = state.clone();
    let app_limiter = limiter.clone();
    let server = HttpServer::new(move || {
        http::app(app_state.clone(), app_limiter.clone(), !separate_metrics)
    })
    .disable_signals()
    .shutdown_timeout(HTTP_DRAIN.as_secs());
    let addr = (settings.server.host, settings.server.port);
    let shown = format!("{}:{}", addr.0, addr.1);
    let bind_err = |source| StartError::Bind {
        addr: shown.clone(),
        source,
    };
    let server = match (&settings.server.tls_cert, &settings.server.tls_key) {
        (Some(cert), Some(key)) => server
            .bind_rustls_0_23(addr, tls_config(cert, key)?)
            .map_err(bind_err)?,
        _ => server.bind(addr).map_err(bind_err)?,
    }
    .run();
    let http_handle = server.handle();

    let metrics_server = match settings.metrics.port {
        Some(port) => {
            let m = state.clone();
            let srv = HttpServer::new(move || {
                App::new()
                    .app_data(web::Data::new(m.clone()))
                    .route("/metrics", web::get().to(crate::http::metrics_handler))
            })
            .workers(1)
            .disable_signals()
            .shutdown_timeout(1)
            .bind((settings.server.host, port))
            .map_err(|source| StartError::Bind {
                addr: format!("{}:{port}", settings.server.host),
                source,
            })?
            .run();
            Some(srv)
        }
        None => None,
    };
    let metrics_handle = metrics_server.as_ref().map(|s| s.handle());
    if let Some(srv) = metrics_server {
        actix_web::rt::spawn(srv);
    }

    // Keep the per-IP limiter's memory bounded by idle clients.
    actix_web::rt::spawn(async move {
        let mut tick = actix_web::rt::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            limiter.forget_idle();
        }
    });

    info!(addr = %shown, workers = settings.worker_count(), "vestibule listening");
    if key_source == KeySource::Generated {
        print_dev_banner(&settings, &state.keys)?;
    }

    actix_web::rt::spawn(async move {
        shutdown_signal().await;
        shutting_down.store(true, Ordering::Release);
        // 1. stop accepting HTTP (in-flight requests get HTTP_DRAIN);
        let stopping = http_handle.stop(true);
        // 2. close every lobby: sessions end, media peers close;
        if registry
            .send(CloseAllLobbies)
            .timeout(LOBBY_DRAIN)
            .await
            .is_err()
        {
            warn!("lobbies did not close in time");
        }
        if let Some(h) = metrics_handle {
            h.stop(true).await;
        }
        stopping.await;
    });

    server.await.map_err(StartError::Serve)?;
    // Lobbies are closed; stop the workers (their peers say goodbye).
    media_plane.stop(MEDIA_DRAIN);
    // 3. the store flushes (WAL checkpoint) when its last handle drops.
    drop(state);
    info!("vestibule stopped");
    Ok(())
}
