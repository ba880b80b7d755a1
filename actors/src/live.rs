//! The control plane's side of a live restream: the link a lobby keeps to
//! its restreamer (which lives in the server crate, next to ffmpeg), the
//! status it reports, and what the media worker's tap tells the
//! restreamer about the program's codecs.
//!
//! The lobby owns the link so that a live ends with its lobby (API.md
//! "Live": at most one per lobby; 409 when one exists).

use actix::{Message, Recipient};
use serde::Serialize;

use crate::ids::{LiveId, TrackId};

/// What `GET /live/{liveId}` answers (API.md "Live").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveStatus {
    /// `"online"` while media is being pushed right now, else `"offline"`.
    pub status: &'static str,
    /// The program's video track id (else its audio track id), or `"none"`.
    pub source: String,
    /// Host of the RTMP endpoint (never the key or the full URL).
    pub rtmp_host: String,
    /// RFC 3339 time of `POST /live/start`.
    pub started_at: String,
    /// FLV bytes ffmpeg pushed, over every run.
    pub bytes_out: u64,
    /// ffmpeg restarts after failures (back-off retries); restarts for a
    /// source switch or after a hold are not counted.
    pub restarts: u32,
    /// The last failure, redacted; `null` when none.
    pub last_error: Option<String>,
}

/// Stops a restream (DELETE, lobby closed, shutdown).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct StopLive {
    /// Why, for logs and the exit metric.
    pub reason: &'static str,
}

/// Asks a restream for its status.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "LiveStatus")]
pub struct QueryLive;

/// A lobby's handle on its restream.
#[derive(Debug, Clone)]
pub struct LiveLink {
    /// The restream's secret id (its resource URL).
    pub id: LiveId,
    /// Where stop requests go.
    pub stop: Recipient<StopLive>,
    /// Where status queries go.
    pub status: Recipient<QueryLive>,
}

/// One program medium as the worker's tap sends it to ffmpeg: enough to
/// write the SDP ffmpeg reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapMedia {
    /// The source track.
    pub track: TrackId,
    /// Codec name as in `a=rtpmap` (`H264`, `VP8`, `VP9`, `opus`).
    pub codec: String,
    /// The RTP payload type the tap writes.
    pub pt: u8,
    /// RTP clock rate.
    pub clock_rate: u32,
    /// Audio channels (`a=rtpmap` third field), `None` for video.
    pub channels: Option<u8>,
    /// `a=fmtp` parameters (H264 profile and packetization mode), may be empty.
    pub fmtp: String,
}

/// What a worker's tap reports to its restreamer.
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub enum TapEvent {
    /// The media the tap now writes (once a new source's first packet
    /// showed its codec), or that a kind has no source any more.
    Sources {
        /// Main video, if any.
        video: Option<TapMedia>,
        /// Main audio, if any.
        audio: Option<TapMedia>,
    },
}
