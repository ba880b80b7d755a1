//! The data plane: media workers, each a thread owning one UDP socket
//! (`media.port_base + i`) and every str0m peer placed on it. Actors never
//! see a packet; workers never decide policy. Commands arrive on an mpsc
//! ([`vestibule_actors::media::WorkerCmd`]); events leave as actix messages.
//!
//! Files: `worker` (the loop and fan-out), `udp` (batched socket I/O),
//! `demux` (datagram -> peer), `timers`, `slab` (peer storage), `peer` (one
//! Rtc and its state) with its roles `ingress` (WHIP) and `egress` (WHEP),
//! `forward` (per-subscriber packet rewriting), `rtc_config`, `sdp_meta`
//! (`i=` lines, candidates), `signal` (the signal-channel codec), `metrics`,
//! and `bench_support` (the in-memory worker the criterion benches drive).

#[doc(hidden)]
pub mod bench_support;
pub mod commands;
pub mod demux;
pub mod egress;
pub mod fanout;
pub mod forward;
pub mod h264_fmtp;
pub mod ice;
pub mod ingress;
pub mod metrics;
pub mod peer;
pub mod program;
pub mod rtc_config;
pub mod sdp_meta;
pub mod sdpfrag;
pub mod signal;
pub mod slab;
pub mod stun_fixup;
pub mod tap;
pub mod timers;
pub mod udp;
pub mod worker;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::warn;
use vestibule_actors::media::MediaPort;

use crate::config::Settings;
use metrics::MediaMetrics;
use peer::PeerLimits;
use worker::WorkerSetup;

/// Why the media plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum MediaStartError {
    /// A worker's UDP port could not be bound.
    #[error("cannot bind media UDP port {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The DTLS certificate could not be generated.
    #[error("cannot generate the DTLS certificate")]
    Certificate,
    /// No address to advertise as an ICE candidate.
    #[error("no address to advertise; set media.public_ips")]
    NoAddress,
    /// A worker thread could not be spawned.
    #[error("cannot start a media worker thread: {0}")]
    Thread(std::io::Error),
    /// Metric registration failed (a bug).
    #[error("media metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// The running workers.
#[derive(Debug)]
pub struct MediaPlane {
    /// Handles for the control plane.
    pub port: MediaPort,
    threads: Vec<JoinHandle<()>>,
}

/// The addresses advertised as host candidates: `media.public_ips`, else
/// the bind address, else (bound to the unspecified address) every
/// non-link-local address of the machine's family, loopback last.
pub fn advertised_ips(settings: &Settings) -> Vec<IpAddr> {
    if !settings.media.public_ips.is_empty() {
        return settings.media.public_ips.clone();
    }
    let bind = settings.media.bind;
    if !bind.is_unspecified() {
        return vec![bind];
    }
    let mut ips: Vec<IpAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.ip())
        .filter(|ip| ip.is_ipv4() == bind.is_ipv4())
        .filter(|ip| match ip {
            IpAddr::V4(v4) => !v4.is_link_local() && !v4.is_unspecified(),
            IpAddr::V6(v6) => !v6.is_unicast_link_local() && !v6.is_unspecified(),
        })
        .collect();
    ips.sort_by_key(|ip| ip.is_loopback());
    ips.dedup();
    ips
}

impl MediaPlane {
    /// Binds every worker's socket and starts the worker threads.
    pub fn start(
        settings: &Settings,
        registry: &prometheus::Registry,
    ) -> Result<Self, MediaStartError> {
        let provider = str0m::crypto::from_feature_flags();
        let cert = provider
            .dtls_provider
            .generate_certificate()
            .ok_or(MediaStartError::Certificate)?;
        provider.install_process_default();
        let metrics = MediaMetrics::register(registry)?;
        let ips = advertised_ips(settings);
        if ips.is_empty() {
            return Err(MediaStartError::NoAddress);
        }
        let limits = PeerLimits {
            ice_timeout: Duration::from_secs(settings.media.ice_timeout_s),
            connect_timeout: Duration::from_secs(settings.media.connect_timeout_s),
            signal_max_bytes: settings.signal.max_message_bytes,
            signal_per_s: settings.signal.max_messages_per_s,
        };
        let mut senders = Vec::new();
        let mut threads = Vec::new();
        for index in 0..settings.worker_count() {
            // validate() guarantees port_base + workers fits in u16; base 0
            // asks the OS for ephemeral ports (tests, several servers on a host).
            let wanted = match settings.media.port_base {
                0 => 0,
                base => base.saturating_add(index as u16),
            };
            let addr = SocketAddr::new(settings.media.bind, wanted);
            let socket =
                UdpSocket::bind(addr).map_err(|source| MediaStartError::Bind { addr, source })?;
            let port = socket
                .local_addr()
                .map_err(|source| MediaStartError::Bind { addr, source })?
                .port();
            let setup = WorkerSetup {
                index,
                socket,
                candidates: ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect(),
                cert: cert.clone(),
                codecs: settings.media.codecs.clone(),
                limits: limits.clone(),
                metrics: metrics.clone(),
            };
            let (tx, rx) = mpsc::unbounded_channel();
            let thread = std::thread::Builder::new()
                .name(format!("vestibule-media-{index}"))
                .spawn(move || worker::run(setup, rx))
                .map_err(MediaStartError::Thread)?;
            senders.push(tx);
            threads.push(thread);
        }
        Ok(Self {
            port: MediaPort::new(senders),
            threads,
        })
    }

    /// Stops every worker and waits for its thread (bounded by `limit`).
    pub fn stop(self, limit: Duration) {
        self.port.shutdown();
        let deadline = std::time::Instant::now() + limit;
        for thread in self.threads {
            while !thread.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                warn!("a media worker did not stop in time");
            }
        }
    }
}
