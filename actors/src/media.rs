//! The port between the control plane and the media workers (the data
//! plane). Commands go to a worker on an unbounded mpsc, requests carry a
//! oneshot reply; events come back as actix messages. Nothing per-packet
//! crosses this boundary, and no str0m type appears here.

use actix::Message;
use tokio::sync::{mpsc, oneshot};

use crate::ids::{ParticipantId, SessionId};
use crate::snapshot::MediaKind;

/// Why a media operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// No media worker runs in this process.
    #[error("the media plane is not available")]
    Unavailable,
    /// The worker is gone (shutting down).
    #[error("the media worker stopped")]
    WorkerGone,
    /// The offer could not be used.
    #[error("the offer was rejected: {0}")]
    Rejected(String),
}

/// A command for one media worker.
#[derive(Debug)]
pub enum WorkerCmd {
    /// Create the WHIP peer of a session from a client offer; reply with the answer.
    OpenIngress {
        /// The session the peer belongs to.
        session: SessionId,
        /// Its public id (for msid and logs).
        participant: ParticipantId,
        /// The client's SDP offer, `i=` lines already stripped.
        offer: String,
        /// The SDP answer, or why not.
        reply: oneshot::Sender<Result<String, MediaError>>,
    },
    /// Close every peer of a session and forget its routes.
    CloseSession {
        /// The session to close.
        session: SessionId,
    },
    /// Close every peer and stop the worker loop.
    Shutdown,
}

/// An event from a worker about a session's peers.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum MediaEvent {
    /// ICE and DTLS completed on the session's WHIP peer.
    Connected {
        /// The session.
        session: SessionId,
    },
    /// The session's WHIP peer is gone (DTLS closed, ICE timeout, never connected).
    Disconnected {
        /// The session.
        session: SessionId,
    },
    /// The publisher announced a new m-line.
    TrackAdded {
        /// The session.
        session: SessionId,
        /// Ingress mid.
        mid: String,
        /// Audio or video.
        kind: MediaKind,
    },
}

/// Handles to the media workers. Empty means no media plane in this
/// process: requests that need one fail with [`MediaError::Unavailable`].
#[derive(Debug, Clone, Default)]
pub struct MediaPort {
    workers: Vec<mpsc::UnboundedSender<WorkerCmd>>,
}

impl MediaPort {
    /// A port over running workers.
    pub fn new(workers: Vec<mpsc::UnboundedSender<WorkerCmd>>) -> Self {
        Self { workers }
    }

    /// Whether any worker runs.
    pub fn is_available(&self) -> bool {
        !self.workers.is_empty()
    }

    /// Sends a command to the worker that owns `session`'s peers.
    pub fn send(&self, session: &SessionId, cmd: WorkerCmd) -> Result<(), MediaError> {
        let worker = self.worker_for(session).ok_or(MediaError::Unavailable)?;
        worker.send(cmd).map_err(|_| MediaError::WorkerGone)
    }

    /// Tells every worker to stop.
    pub fn shutdown(&self) {
        for worker in &self.workers {
            let _ = worker.send(WorkerCmd::Shutdown);
        }
    }

    fn worker_for(&self, session: &SessionId) -> Option<&mpsc::UnboundedSender<WorkerCmd>> {
        if self.workers.is_empty() {
            return None;
        }
        // A session's WHIP and WHEP peers share a worker, chosen from the
        // session id's random bits so placement needs no shared counter.
        let bits = session.reveal();
        let hash = bits
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
        self.workers.get(hash % self.workers.len())
    }
}
