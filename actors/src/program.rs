//! Program selection (API.md "Program selection"): which of the owner's
//! tracks are the lobby's main video and main audio, the program that goes
//! live and that plain viewers watch. A pure function of the owner's
//! tracks, so the rule is tested without actors.

use crate::ids::{SessionId, TrackId};
use crate::snapshot::{MediaKind, Purpose, TrackInfo};

/// One program source: a published track on the home worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramSource {
    /// Public track id (reported as the live `source`).
    pub track: TrackId,
    /// The publishing session (its WHIP peer carries the track).
    pub publisher: SessionId,
    /// Ingress mid on the publisher's WHIP connection.
    pub mid: String,
}

/// The lobby's program: at most one video and one audio source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Program {
    /// Main video.
    pub video: Option<ProgramSource>,
    /// Main audio.
    pub audio: Option<ProgramSource>,
}

impl Program {
    /// Whether neither source exists.
    pub fn is_empty(&self) -> bool {
        self.video.is_none() && self.audio.is_none()
    }
}

/// Picks the program from the owner's tracks, given oldest first: per
/// kind, the most recently published live (unmuted) purpose-2 track;
/// failing that, the most recently published track of that kind. Guests'
/// tracks are never passed in, so their purpose 2 cannot win.
pub fn select<'a>(owner_tracks: impl IntoIterator<Item = (SessionId, &'a TrackInfo)>) -> Program {
    let tracks: Vec<(SessionId, &TrackInfo)> = owner_tracks.into_iter().collect();
    let pick = |kind: MediaKind| -> Option<ProgramSource> {
        let of_kind = || tracks.iter().rev().filter(move |(_, t)| t.kind == kind);
        of_kind()
            .find(|(_, t)| t.purpose == Purpose::Main && !t.mute)
            .or_else(|| of_kind().next())
            .map(|(session, t)| ProgramSource {
                track: t.track_id,
                publisher: *session,
                mid: t.ingress_mid.clone(),
            })
    };
    Program {
        video: pick(MediaKind::Video),
        audio: pick(MediaKind::Audio),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ParticipantId;

    fn track(kind: MediaKind, purpose: Purpose, mute: bool, mid: &str) -> TrackInfo {
        TrackInfo {
            track_id: TrackId::random(),
            kind,
            purpose,
            mute,
            ingress_mid: mid.into(),
            participant_id: ParticipantId::random(),
        }
    }

    #[test]
    fn latest_live_main_wins_over_newer_guest_tracks() {
        let s = SessionId::random();
        let cam = track(MediaKind::Video, Purpose::Guest, false, "0");
        let mix = track(MediaKind::Video, Purpose::Main, false, "1");
        let later_cam = track(MediaKind::Video, Purpose::Guest, false, "2");
        let p = select([(s, &cam), (s, &mix), (s, &later_cam)]);
        assert_eq!(p.video.map(|v| v.mid), Some("1".into()));
        assert_eq!(p.audio, None);
    }

    #[test]
    fn muted_main_falls_back_to_the_latest_track() {
        let s = SessionId::random();
        let mix = track(MediaKind::Video, Purpose::Main, true, "0");
        let cam = track(MediaKind::Video, Purpose::Guest, false, "1");
        let mic = track(MediaKind::Audio, Purpose::Guest, false, "2");
        let p = select([(s, &mix), (s, &cam), (s, &mic)]);
        assert_eq!(p.video.map(|v| v.mid), Some("1".into()));
        assert_eq!(p.audio.map(|a| a.mid), Some("2".into()));
    }

    #[test]
    fn of_two_mains_the_latest_wins_and_nothing_means_empty() {
        let s = SessionId::random();
        let a = track(MediaKind::Video, Purpose::Main, false, "0");
        let b = track(MediaKind::Video, Purpose::Main, false, "1");
        assert_eq!(
            select([(s, &a), (s, &b)]).video.map(|v| v.mid),
            Some("1".into())
        );
        assert!(select(std::iter::empty()).is_empty());
    }
}
