//! HOT PATH: what one subscriber's m-line does to a publisher's packet:
//! sequence-number rebasing (the SRTP ROC comes from the extended sequence
//! number, so a subscriber must start near zero), payload-type mapping,
//! the keyframe gate, and the header extensions that may be copied.
//! Pure functions over small state; no allocation, no logging.

use std::time::Instant;

use str0m::format::{Codec, PayloadParams};
use str0m::media::Pt;
use str0m::rtp::{ExtensionValues, SeqNo};

/// Where a subscriber's sequence numbers start; small so the ROC stays 0
/// for a long time whatever the publisher's extended numbers are.
const FIRST_SEQ: u64 = 1000;

/// Per (subscriber, track) sequence-number rebasing. A program m-line
/// switches sources: [`SeqRebase::switch`] makes the next source continue
/// where the last one stopped, so the receiver sees one stream.
#[derive(Debug, Default, Clone, Copy)]
pub struct SeqRebase {
    /// Added to the publisher's extended sequence number.
    offset: Option<i64>,
    /// Where the next source starts (`None`: [`FIRST_SEQ`]).
    next_start: Option<u64>,
    /// The highest number written so far.
    highest: u64,
}

impl SeqRebase {
    /// The subscriber-side extended sequence number for `seq`.
    pub fn map(&mut self, seq: SeqNo) -> SeqNo {
        let seq = *seq as i64;
        let start = self.next_start.unwrap_or(FIRST_SEQ) as i64;
        let offset = *self.offset.get_or_insert(start - seq);
        // A packet older than the first forwarded one (reordering) would go
        // below zero: clamp rather than wrap into a huge ROC.
        let out = seq.saturating_add(offset).max(0) as u64;
        self.highest = self.highest.max(out);
        out.into()
    }

    /// The source changes: its first packet follows the highest number
    /// written so far.
    pub fn switch(&mut self) {
        if self.offset.is_some() {
            self.next_start = Some(self.highest + 1);
            self.offset = None;
        }
    }
}

/// Per (subscriber, track) RTP timestamp rebasing: the identity until a
/// source switch, then the new source's clock continues the old one's
/// from the wall-clock gap between their packets.
#[derive(Debug, Default, Clone, Copy)]
pub struct TsRebase {
    /// Added (wrapping) to the source's RTP time.
    offset: u32,
    /// The last written RTP time and when its packet arrived.
    last: Option<(u32, Instant)>,
    /// The next packet comes from a new source.
    switching: bool,
}

impl TsRebase {
    /// The subscriber-side RTP time of a packet that arrived at `at`.
    pub fn map(&mut self, ts: u32, at: Instant, clock_hz: u32) -> u32 {
        if std::mem::take(&mut self.switching)
            && let Some((last_ts, last_at)) = self.last
        {
            let gap = at.saturating_duration_since(last_at);
            let ticks = (gap.as_micros() * u128::from(clock_hz) / 1_000_000).max(1);
            let advance = u32::try_from(ticks).unwrap_or(u32::MAX);
            self.offset = last_ts.wrapping_add(advance).wrapping_sub(ts);
        }
        let out = ts.wrapping_add(self.offset);
        self.last = Some((out, at));
        out
    }

    /// The source changes (see [`SeqRebase::switch`]).
    pub fn switch(&mut self) {
        self.switching = true;
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

/// NAL unit type of an H.264 sequence parameter set.
const H264_SPS: u8 = 7;

/// Whether a video payload of `codec` starts a keyframe.
pub fn is_keyframe(codec: Codec, payload: &[u8]) -> bool {
    match codec {
        Codec::Vp8 => str0m::format::detect_vp8_keyframe(payload),
        Codec::Vp9 => str0m::format::detect_vp9_keyframe(payload),
        // WebRTC H.264 senders (str0m, Chromium) put SPS/PPS in their own
        // packet (often a STAP-A) just before the IDR: the gate opens on
        // that packet, or a decoder (and ffmpeg's copy path) gets an IDR it
        // cannot use until the next one.
        Codec::H264 => {
            str0m::format::detect_h264_nalu(payload, H264_SPS)
                || str0m::format::detect_h264_keyframe(payload)
        }
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
    fn a_switched_source_continues_numbers_and_clock() {
        let t0 = Instant::now();
        let mut seq = SeqRebase::default();
        let mut ts = TsRebase::default();
        assert_eq!(*seq.map(500u64.into()), FIRST_SEQ);
        assert_eq!(*seq.map(501u64.into()), FIRST_SEQ + 1);
        assert_eq!(
            ts.map(90_000, t0, 90_000),
            90_000,
            "identity before a switch"
        );
        seq.switch();
        ts.switch();
        assert_eq!(*seq.map(9_000u64.into()), FIRST_SEQ + 2);
        assert_eq!(*seq.map(9_001u64.into()), FIRST_SEQ + 3);
        let later = t0 + std::time::Duration::from_millis(100);
        assert_eq!(ts.map(7, later, 90_000), 90_000 + 9_000);
        assert_eq!(ts.map(7 + 3_000, later, 90_000), 90_000 + 12_000);
        let mut fresh = SeqRebase::default();
        fresh.switch();
        assert_eq!(
            *fresh.map(3u64.into()),
            FIRST_SEQ,
            "a switch before any packet is a start"
        );
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
