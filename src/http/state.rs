//! What every handler shares.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix::Addr;
use vestibule_actors::StreamKey;
use vestibule_actors::directory::SessionDirectory;
use vestibule_actors::lobby::Lobby;
use vestibule_actors::media::MediaPort;
use vestibule_actors::registry::{FindLobby, LobbyRegistry};

use super::error::ApiError;
use crate::auth::TokenKeys;
use crate::config::Settings;
use crate::live::LiveService;
use crate::metrics::Metrics;
use crate::store::Store;

/// Application state, cloned into every actix-web worker.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Validated configuration.
    pub settings: Arc<Settings>,
    /// Token verification.
    pub keys: Arc<TokenKeys>,
    /// Spaces and streams.
    pub store: Arc<Store>,
    /// Lobby registry actor.
    pub registry: Addr<LobbyRegistry>,
    /// Live session index.
    pub directory: Arc<SessionDirectory>,
    /// Media workers.
    pub media: MediaPort,
    /// Metric families.
    pub metrics: Metrics,
    /// Live restreaming.
    pub live: LiveService,
    /// Set when shutdown begins; new sessions are refused from then on.
    pub shutting_down: Arc<AtomicBool>,
}

impl AppState {
    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// The running lobby of a stream, if any.
    pub async fn find_lobby(&self, key: &StreamKey) -> Result<Option<Addr<Lobby>>, ApiError> {
        Ok(self
            .registry
            .send(FindLobby {
                stream: key.clone(),
            })
            .await?)
    }

    /// An absolute-path reference under the public base path.
    pub fn public_path(&self, path: &str) -> String {
        format!("{}{path}", self.settings.server.public_base_path)
    }
}
