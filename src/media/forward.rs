//! HOT PATH: what one subscriber's m-line does to a publisher's packet:
//! sequence-number rebasing (the SRTP ROC comes from the extended sequence
//! number, so a subscriber must start near zero), payload-type mapping,
//! the keyframe gate, and the header extensions that may be copied.
//! Pure functions over small state; no allocation, no logging.

use str0m::format::{Codec, PayloadParams};
use str0m::media::Pt;
use str0m::rtp::{ExtensionValues, SeqNo};

/// Where a subscriber's sequence numbers start; small so the ROC stays 0
/// for a long time whatever the publisher's extended numbers are.
const FIRST_SEQ: u64 = 1000;

/// Per (subscriber, track) sequence-number rebasing.
#[derive(Debug, Default, Clone, Copy)]
pub struct SeqRebase {
    /// Added to the publisher's extended sequence number.
    offset: Option<i64>,
}

impl SeqRebase {
    /// The subscriber-side extended sequence number for `seq`.
    pub fn map(&mut self, seq: SeqNo) -> SeqNo {
        let seq = *seq as i64;
        let offset = *self.offset.get_or_insert(FIRST_SEQ as i64 - seq);
        // A packet older than the first forwarded one (reordering) would go
        // below zero: clamp rather than wrap into a huge ROC.
        (seq.saturating_add(offset).max(0) as u64).into()
    }
}

/// Publisher PT -> (subscriber PT, codec), computed once per m-line after
/// negotiation. The codec picks the keyframe detector: detectors of other
/// codecs misread foreign payloads.
#[derive(Debug, Default, Clone)]
pub struct PtMap {
    pairs: Vec<(Pt, Pt, Codec)>,
}

impl PtMap {
    /// Maps every publisher payload type that the subscriber's m-line has an
    /// equivalent for (`match_params` compares codec and format).
    pub fn build(publisher: &[PayloadParams], subscriber: &str0m::format::CodecConfig) -> Self {
        let pairs = publisher
            .iter()
            .filter_map(|p| {
                subscriber
                    .match_params(*p)
                    .map(|s| (p.pt(), s.pt(), p.spec().codec))
            })
            .collect();
        Self { pairs }
    }

    /// The subscriber's payload type and the codec for a publisher's payload type.
    pub fn get(&self, pt: Pt) -> Option<(Pt, Codec)> {
        self.pairs
            .iter()
            .find(|(from, _, _)| *from == pt)
            .map(|(_, to, codec)| (*to, *codec))
    }

    /// Whether nothing maps.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// The header extension values a subscriber may receive: semantic ones
/// only. Never mid, rid, rid_repair or transport-cc: those describe the
/// publisher's connection, and str0m writes the subscriber's own.
pub fn forwardable_extensions(ext: &ExtensionValues) -> ExtensionValues {
    ExtensionValues {
        audio_level: ext.audio_level,
        voice_activity: ext.voice_activity,
        video_orientation: ext.video_orientation,
        ..ExtensionValues::default()
    }
}

/// Whether a video payload of `codec` starts a keyframe.
pub fn is_keyframe(codec: Codec, payload: &[u8]) -> bool {
    match codec {
        Codec::Vp8 => str0m::format::detect_vp8_keyframe(payload),
        Codec::Vp9 => str0m::format::detect_vp9_keyframe(payload),
        Codec::H264 => str0m::format::detect_h264_keyframe(payload),
        Codec::Av1 => str0m::format::detect_av1_keyframe(payload),
        // Codecs we cannot inspect pass the gate rather than stall forever.
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebasing_starts_low_and_keeps_gaps() {
        let mut r = SeqRebase::default();
        let high = 70_000u64 * 3;
        assert_eq!(*r.map(high.into()), FIRST_SEQ);
        assert_eq!(*r.map((high + 1).into()), FIRST_SEQ + 1);
        assert_eq!(
            *r.map((high + 5).into()),
            FIRST_SEQ + 5,
            "loss stays visible"
        );
        assert_eq!(*r.map((high - 2).into()), FIRST_SEQ - 2, "reordering");
        let mut fresh = SeqRebase::default();
        assert_eq!(*fresh.map(5u64.into()), FIRST_SEQ);
        assert_eq!(*fresh.map(0u64.into()), FIRST_SEQ - 5);
    }

    #[test]
    fn only_semantic_extensions_are_forwarded() {
        let ext = ExtensionValues {
            audio_level: Some(-30),
            voice_activity: Some(true),
            transport_cc: Some(7),
            mid: Some("3".into()),
            ..ExtensionValues::default()
        };
        let out = forwardable_extensions(&ext);
        assert_eq!(out.audio_level, Some(-30));
        assert_eq!(out.voice_activity, Some(true));
        assert_eq!(out.transport_cc, None);
        assert_eq!(out.mid, None);
    }
}
