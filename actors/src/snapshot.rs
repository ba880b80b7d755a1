//! Plain data describing tracks and lobbies, shared by actors, HTTP bodies
//! and the media port.

use serde::Serialize;

use crate::ids::{ParticipantId, TrackId};

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    /// An audio track.
    Audio,
    /// A video track.
    Video,
}

impl MediaKind {
    /// Lower-case name, used as a metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        }
    }
}

/// What a track is for (API.md "Track metadata": `i=` purpose field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    /// `1`: a participant's own camera or microphone.
    Guest,
    /// `2`: a program source; only the stream owner's tracks may be main.
    Main,
}

impl Purpose {
    /// The number used in `i=` lines.
    pub fn code(self) -> u8 {
        match self {
            Purpose::Guest => 1,
            Purpose::Main => 2,
        }
    }
}

/// Everything the control plane knows about one track.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackInfo {
    /// Public track id.
    pub track_id: TrackId,
    /// Audio or video.
    pub kind: MediaKind,
    /// Guest or main.
    pub purpose: Purpose,
    /// Advisory mute state (RTP is forwarded regardless).
    pub mute: bool,
    /// The mid of the m-line that carries it on the publisher's WHIP connection.
    #[serde(skip)]
    pub ingress_mid: String,
    /// The publishing participant.
    pub participant_id: ParticipantId,
}

/// One participant as shown in lobby state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantSnapshot {
    /// Public id.
    pub participant_id: ParticipantId,
    /// Authenticated user id.
    pub user_id: String,
    /// Home server of the user, when not this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub home: Option<String>,
    /// Whether this participant owns the stream.
    pub owner: bool,
    /// Published tracks.
    pub tracks: Vec<TrackInfo>,
}

/// A lobby as shown to its owner, admins and participants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LobbySnapshot {
    /// Participants in join order.
    pub participants: Vec<ParticipantSnapshot>,
}
