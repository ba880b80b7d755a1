//! Vestibule's control plane: who is in which lobby, which tracks exist, and
//! what each session must see.
//!
//! ```text
//! HTTP handler ──send──▶ LobbyRegistry ──▶ Lobby ──▶ Session, Track
//!                                            │
//!                                 WorkerCmd ▼ ▲ MediaEvent
//!                                     media workers (src/media, str0m)
//! ```
//!
//! Invariants:
//! - Actors never see a packet. Only control events cross [`media`]'s port,
//!   and this crate has no str0m dependency, so no `Rtc` can live here.
//! - A [`lobby::Lobby`] exists while it has sessions: the registry creates it
//!   on the first join, it stops itself after the last session leaves.
//! - The [`lobby::Lobby`] is the single writer of its sessions' entries in the
//!   shared [`directory::SessionDirectory`] that HTTP handlers read.
//! - Secrets (session ids, cookies, request tokens) never implement
//!   `Display` and print as `***` in `Debug`, so they cannot reach a log line
//!   by accident.

pub mod directory;
pub mod error;
pub mod ids;
pub mod live;
pub mod lobby;
pub mod media;
pub mod metrics;
pub mod program;
pub mod registry;
pub mod session;
pub mod snapshot;
pub mod track;
pub mod viewer;

pub use error::JoinError;
pub use ids::{Identity, ParticipantId, SessionId, StreamKey, TrackId};
