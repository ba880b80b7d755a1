//! Vestibule: a WebRTC lobby server. Participants join a stream's lobby over
//! WHIP, receive each other over WHEP, and the owner restreams the lobby's
//! program to RTMP.
//!
//! Two planes (see `ARCHITECTURE.md` in the shared docs):
//! - the **control plane**, actix actors in the `vestibule-actors` crate
//!   (registry, lobbies, sessions, tracks), which never see a packet;
//! - the **data plane**, media workers that own UDP sockets and str0m peers
//!   and move packets without asking anyone.
//!
//! This crate wires them together: [`config`] (typed settings), [`auth`]
//! (tokens), [`store`] (SQLite), [`http`] (the wire contract of API.md),
//! [`metrics`], [`telemetry`] and [`server`] (start-up and shutdown order).
//!
//! Shutdown order: stop accepting HTTP, close every lobby (sessions end,
//! media peers close), flush the store, exit; bounded by 5 s.

pub mod auth;
pub mod client;
pub mod config;
pub mod http;
pub mod live;
pub mod media;
pub mod metrics;
pub mod server;
pub mod store;
pub mod telemetry;
