//! The port between the control plane and the media workers (the data
//! plane). Commands go to a worker on an unbounded mpsc, requests carry a
//! oneshot reply; events come back as actix messages to the session's
//! actor. Nothing per-packet crosses this boundary, and no str0m type
//! appears here.

use std::time::Duration;

use actix::{Message, Recipient};
use tokio::sync::{mpsc, oneshot};

use crate::ids::{LiveId, ParticipantId, SessionId, StreamKey, TrackId};
use crate::live::TapEvent;
use crate::program::Program;
use crate::snapshot::{MediaKind, Purpose};

/// Why a media operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// No media worker runs in this process.
    #[error("the media plane is not available")]
    Unavailable,
    /// The worker is gone (shutting down).
    #[error("the media worker stopped")]
    WorkerGone,
    /// The SDP could not be parsed or applied.
    #[error("malformed SDP: {0}")]
    MalformedSdp(String),
    /// An offered audio or video section has no acceptable codec.
    #[error("no acceptable codec for an offered {0} section")]
    NoCodec(&'static str),
    /// The session has no peer on the worker (already closed).
    #[error("the session has no media peer")]
    NoPeer,
    /// An answer arrived but no offer is pending.
    #[error("no offer is pending")]
    NoPendingOffer,
    /// An offer is already outstanding on this connection.
    #[error("an offer is outstanding")]
    OfferOutstanding,
    /// `If-Match` names another ICE session (RFC 9725: 412).
    #[error("If-Match does not match the resource's ETag")]
    PreconditionFailed,
    /// A trickle fragment's ufrag is not the session's (RFC 9725: 422).
    #[error("the fragment's ICE ufrag is not this session's")]
    UfragMismatch,
    /// ICE restart on a server-offer WHEP connection (API.md: 422).
    #[error("ICE restart is not possible on a server-offer WHEP connection")]
    RestartNotAllowed,
    /// A plain viewer offered more than one audio or video m-line.
    #[error("a viewer offer carries at most one audio and one video m-line")]
    TooManyViewerSections,
}

/// What the control plane knows of one offered media section (from its
/// `i=` line), keyed by mid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressSection {
    /// The section's mid.
    pub mid: String,
    /// Requested purpose.
    pub purpose: Purpose,
    /// Initial mute state.
    pub mute: bool,
}

/// A media section the publisher sends on its WHIP connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedMedia {
    /// Its mid.
    pub mid: String,
    /// Audio or video.
    pub kind: MediaKind,
}

/// The worker's answer to a WHIP offer.
#[derive(Debug, Clone)]
pub struct IngressAnswer {
    /// SDP answer.
    pub sdp: String,
    /// The ICE session's tag (changes on ICE restart): the resource's ETag.
    pub etag: String,
    /// Sections the publisher sends.
    pub media: Vec<PublishedMedia>,
}

/// What a client offer on the signal channel changed.
#[derive(Debug, Clone, Default)]
pub struct IngressChange {
    /// Newly published sections.
    pub added: Vec<PublishedMedia>,
    /// Mids no longer published (stopped or inactive).
    pub removed: Vec<String>,
}

/// One lobby track as a subscriber's egress m-line carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressTrack {
    /// Public track id (msid track id).
    pub track: TrackId,
    /// The publishing session (its WHIP peer is on the same worker).
    pub publisher: SessionId,
    /// The publisher's participant id (msid stream id).
    pub participant: ParticipantId,
    /// Ingress mid on the publisher's WHIP connection.
    pub mid: String,
    /// Audio or video.
    pub kind: MediaKind,
    /// Guest or main (`i=` purpose).
    pub purpose: Purpose,
    /// Advisory mute (`i=` mute).
    pub mute: bool,
    /// The publisher's userId (`i=` label).
    pub user_id: String,
}

/// Why a peer went away by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerLoss {
    /// No authenticated traffic for `media.ice_timeout_s`, or DTLS closed.
    Vanished,
    /// Never connected within `media.connect_timeout_s`.
    NeverConnected,
    /// Broke the signal channel's limits.
    Misbehaved,
}

/// A trickle ICE PATCH (RFC 9725 §4.3), already parsed and validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IcePatch {
    /// The request's `If-Match`, raw.
    pub if_match: Option<String>,
    /// The fragment's `a=ice-ufrag`.
    pub ufrag: Option<String>,
    /// The fragment's `a=ice-pwd`.
    pub pwd: Option<String>,
    /// `candidate:...` attributes.
    pub candidates: Vec<String>,
}

impl IcePatch {
    /// An ICE restart: `If-Match: "*"` with new credentials.
    pub fn is_restart(&self) -> bool {
        matches!(self.if_match.as_deref().map(str::trim), Some("*" | "\"*\""))
    }
}

/// What a trickle ICE PATCH did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IcePatchResult {
    /// Candidates added (204).
    Trickled,
    /// ICE restarted (200): the server's fragment and the new ETag.
    Restarted {
        /// `application/trickle-ice-sdpfrag` body.
        sdpfrag: String,
        /// The new ETag (quoted).
        etag: String,
    },
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
        /// Where the peer's events go.
        events: Recipient<MediaEvent>,
        /// The answer, or why not.
        reply: oneshot::Sender<Result<IngressAnswer, MediaError>>,
    },
    /// Apply a client offer received on the signal channel to the WHIP
    /// peer and send the answer (type 2, same `id`) on the channel.
    AnswerClientOffer {
        /// The session.
        session: SessionId,
        /// The offer message's `id`, echoed by the answer.
        id: u64,
        /// The offer's `number`, echoed by the answer.
        number: u64,
        /// The offer, `i=` lines already stripped.
        offer: String,
        /// What changed, or why not.
        reply: oneshot::Sender<Result<IngressChange, MediaError>>,
    },
    /// Create the session's WHEP peer with a server offer of `tracks` (two
    /// inactive m-lines when empty); reply with the offer.
    OpenEgress {
        /// The subscribing session.
        session: SessionId,
        /// Its public id.
        participant: ParticipantId,
        /// What to offer.
        tracks: Vec<EgressTrack>,
        /// Where the peer's events go.
        events: Recipient<MediaEvent>,
        /// The offer SDP, or why not.
        reply: oneshot::Sender<Result<String, MediaError>>,
    },
    /// Create the session's WHEP peer from a client offer (standard WHEP):
    /// lobby tracks fill the offered receive-only m-lines by kind, in order.
    /// Replies with the answer, or `Ok(None)` when no offered m-line is
    /// usable (the caller then makes a counter-offer).
    AcceptEgressOffer {
        /// The subscribing session.
        session: SessionId,
        /// Its public id.
        participant: ParticipantId,
        /// The client's offer.
        offer: String,
        /// Tracks to place.
        tracks: Vec<EgressTrack>,
        /// Where the peer's events go.
        events: Recipient<MediaEvent>,
        /// The answer SDP, `None` when nothing is usable, or why not.
        reply: oneshot::Sender<Result<Option<String>, MediaError>>,
    },
    /// Apply the client's answer to the pending server offer of the WHEP peer.
    AnswerEgress {
        /// The subscribing session.
        session: SessionId,
        /// The SDP answer.
        answer: String,
        /// Done, or why not.
        reply: oneshot::Sender<Result<(), MediaError>>,
    },
    /// Bring the session's WHEP peer to `tracks` with a server offer sent on
    /// its signal channel (type 1, `data.whep`); reply with the encoded
    /// message for byte-identical re-sends, or `None` when nothing changed.
    RenegotiateEgress {
        /// The subscribing session.
        session: SessionId,
        /// Every track the session should receive now.
        tracks: Vec<EgressTrack>,
        /// Message id of the offer.
        id: u64,
        /// Offer number.
        number: u64,
        /// The WHEP resource id for `data.whep`.
        whep: String,
        /// The encoded offer message, `None` when nothing changed, or why not.
        reply: oneshot::Sender<Result<Option<Vec<u8>>, MediaError>>,
    },
    /// Write an already encoded message on the session's signal channel.
    SendSignal {
        /// The session.
        session: SessionId,
        /// The message bytes.
        message: Vec<u8>,
    },
    /// Tell a subscriber a track it receives changed its mute state (type 3
    /// by egress mid), when its answered WHEP carries that track.
    RelayMute {
        /// The subscribing session.
        session: SessionId,
        /// The track.
        track: TrackId,
        /// New state.
        mute: bool,
        /// Message id.
        id: u64,
    },
    /// Close the session's WHEP peer only.
    CloseEgress {
        /// The subscribing session.
        session: SessionId,
    },
    /// Ask the publisher for a keyframe on one of its sections (throttled by the worker).
    RequestKeyframe {
        /// The publishing session.
        session: SessionId,
        /// Ingress mid.
        mid: String,
    },
    /// Close every peer of a session and forget its routes.
    CloseSession {
        /// The session to close.
        session: SessionId,
    },
    /// Trickle candidates or restart ICE on one of a session's peers.
    PatchIce {
        /// The session (or a plain viewer's worker key).
        session: SessionId,
        /// The WHEP peer (else the WHIP peer).
        egress: bool,
        /// The request.
        patch: IcePatch,
        /// What happened, or why not.
        reply: oneshot::Sender<Result<IcePatchResult, MediaError>>,
    },
    /// The lobby's program changed (API.md "Program selection"): plain
    /// viewers and the live tap switch to the new sources.
    SetProgram {
        /// The lobby's stream.
        stream: StreamKey,
        /// The new program.
        program: Program,
    },
    /// Create a plain viewer's WHEP peer from its client offer (at most one
    /// audio and one video m-line, msid stream id `program`); reply with
    /// the answer.
    OpenViewer {
        /// The lobby's stream.
        stream: StreamKey,
        /// The viewer's worker key (a fresh secret, not a lobby session).
        viewer: SessionId,
        /// The client's offer.
        offer: String,
        /// Where the peer's events go (the viewer actor).
        events: Recipient<MediaEvent>,
        /// The answer SDP, or why not.
        reply: oneshot::Sender<Result<String, MediaError>>,
    },
    /// Start writing the program as plain RTP to loopback ports (ffmpeg's).
    OpenTap {
        /// The lobby's stream.
        stream: StreamKey,
        /// The restream.
        live: LiveId,
        /// ffmpeg's video RTP port on 127.0.0.1.
        video_port: u16,
        /// ffmpeg's audio RTP port on 127.0.0.1.
        audio_port: u16,
        /// Where the tap reports its media.
        events: Recipient<TapEvent>,
    },
    /// ffmpeg exited: stop writing (its ports may be reused by anyone)
    /// but keep reporting the program's media.
    PauseTap {
        /// The restream.
        live: LiveId,
    },
    /// ffmpeg (re)started: write again, gate video to the next keyframe and
    /// ask for one.
    RefreshTap {
        /// The restream.
        live: LiveId,
    },
    /// Stop the tap.
    CloseTap {
        /// The restream.
        live: LiveId,
    },
    /// The lobby closed: forget its program (its viewers are closed too).
    ClearProgram {
        /// The lobby's stream.
        stream: StreamKey,
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
        /// Time from the answer to DTLS connected.
        setup: Duration,
    },
    /// The session's WHIP peer is gone; the worker already closed it.
    Lost {
        /// Why.
        reason: PeerLoss,
    },
    /// The signal channel is open.
    SignalOpen,
    /// An answer (type 2) to a server offer arrived on the signal channel.
    EgressAnswer {
        /// The answered offer's number.
        number: u64,
        /// The SDP answer.
        sdp: String,
    },
    /// The session's WHEP peer is gone; the worker already closed it.
    EgressLost {
        /// Why.
        reason: PeerLoss,
    },
    /// A mute message (type 3) for one of the session's own sections.
    Mute {
        /// Ingress mid.
        mid: String,
        /// New state.
        mute: bool,
    },
    /// A client offer (type 1) for the session's own WHIP connection.
    ClientOffer {
        /// Message id.
        id: u64,
        /// Offer number.
        number: u64,
        /// The offer with `i=` lines stripped.
        offer: String,
        /// Section metadata read from the `i=` lines.
        sections: Vec<IngressSection>,
        /// Audio and video sections in the offer.
        media_sections: usize,
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

    /// The worker a lobby of `stream` lives on. Every session of a lobby
    /// shares it, so forwarding between them never leaves the thread; a
    /// lobby bigger than one core is the inter-worker pipe's job (later).
    pub fn home_of(&self, stream: &StreamKey) -> usize {
        use std::hash::{Hash as _, Hasher as _};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        stream.hash(&mut hasher);
        (hasher.finish() % self.workers.len().max(1) as u64) as usize
    }

    /// Sends a command to one worker.
    pub fn send(&self, worker: usize, cmd: WorkerCmd) -> Result<(), MediaError> {
        let worker = self.workers.get(worker).ok_or(MediaError::Unavailable)?;
        worker.send(cmd).map_err(|_| MediaError::WorkerGone)
    }

    /// Sends a request to one worker and waits for its reply.
    pub async fn request<T>(
        &self,
        worker: usize,
        make: impl FnOnce(oneshot::Sender<Result<T, MediaError>>) -> WorkerCmd,
    ) -> Result<T, MediaError> {
        let (reply, answer) = oneshot::channel();
        self.send(worker, make(reply))?;
        answer.await.map_err(|_| MediaError::WorkerGone)?
    }

    /// Tells every worker to stop.
    pub fn shutdown(&self) {
        for worker in &self.workers {
            let _ = worker.send(WorkerCmd::Shutdown);
        }
    }
}
