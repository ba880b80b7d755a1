//! Synthetic media for load and tests: VP8 frames whose headers carry real
//! keyframe bits (so keyframe detection works) and Opus packets. The
//! payload is filler: nothing decodes it, but every byte is accounted for,
//! and the first 8 bytes after the header carry the send time (µs since
//! a process-wide epoch, [`stamp_us`]) for latency measurement: senders
//! and receivers in one process (the load tool) then share a clock.

use std::sync::OnceLock;
use std::time::Instant;

/// The process-wide origin of send stamps.
static EPOCH: OnceLock<Instant> = OnceLock::new();

/// `at` in µs since the process-wide epoch (set on first use; earlier
/// instants stamp as 0).
pub fn stamp_us(at: Instant) -> u64 {
    let epoch = *EPOCH.get_or_init(Instant::now);
    at.saturating_duration_since(epoch).as_micros() as u64
}

/// Bytes of a VP8 keyframe header: 3-byte frame tag, start code, size.
const VP8_KEY_HEADER: usize = 10;
/// Bytes of a VP8 interframe header: the 3-byte frame tag.
const VP8_INTER_HEADER: usize = 3;

/// Builds one VP8 frame of `len` bytes (at least the header + 8).
pub fn vp8_frame(
    keyframe: bool,
    len: usize,
    send_time_us: u64,
    width: u16,
    height: u16,
) -> Vec<u8> {
    let header = if keyframe {
        VP8_KEY_HEADER
    } else {
        VP8_INTER_HEADER
    };
    let len = len.max(header + 8);
    let mut frame = Vec::with_capacity(len);
    // Frame tag (RFC 6386 §9.1): bit 0 = !keyframe, version 0, show_frame,
    // 19-bit first partition size (any plausible value).
    let partition = ((len - header) as u32).min(0x7ffff);
    let tag = u32::from(!keyframe) | (1 << 4) | (partition << 5);
    frame.extend_from_slice(&tag.to_le_bytes()[..3]);
    if keyframe {
        frame.extend_from_slice(&[0x9d, 0x01, 0x2a]);
        frame.extend_from_slice(&width.to_le_bytes());
        frame.extend_from_slice(&height.to_le_bytes());
    }
    frame.extend_from_slice(&send_time_us.to_be_bytes());
    frame.resize(len, 0x5a);
    frame
}

/// One 20 ms Opus packet carrying the send time (TOC 0xf8: CELT FB 20 ms mono).
pub fn opus_packet(send_time_us: u64) -> Vec<u8> {
    let mut p = vec![0xf8];
    p.extend_from_slice(&send_time_us.to_be_bytes());
    p.resize(40, 0xff);
    p
}

/// The send time stamped by [`vp8_frame`] / [`opus_packet`] in a frame.
pub fn send_time_us(frame: &[u8], video: bool) -> Option<u64> {
    let offset = if !video {
        1
    } else if frame.first().is_some_and(|b| b & 1 == 0) {
        VP8_KEY_HEADER
    } else {
        VP8_INTER_HEADER
    };
    let bytes: [u8; 8] = frame.get(offset..offset + 8)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// The VP8 frame bytes in an RTP payload that starts a frame (RFC 7741
/// payload descriptor with S=1 and partition index 0), else `None`.
pub fn vp8_frame_start(payload: &[u8]) -> Option<&[u8]> {
    let b0 = *payload.first()?;
    if b0 & 0x10 == 0 || b0 & 0x07 != 0 {
        return None;
    }
    let mut idx = 1;
    if b0 & 0x80 != 0 {
        let ext = *payload.get(idx)?;
        idx += 1;
        if ext & 0x80 != 0 {
            // PictureID: 15 bits when its M bit is set, else 7.
            idx += if *payload.get(idx)? & 0x80 != 0 { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            idx += 1; // TL0PICIDX
        }
        if ext & 0x30 != 0 {
            idx += 1; // TID / KEYIDX
        }
    }
    payload.get(idx..).filter(|f| !f.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyframes_are_detected_and_times_round_trip() {
        let key = vp8_frame(true, 1200, 42, 320, 240);
        let inter = vp8_frame(false, 1200, 43, 320, 240);
        assert_eq!(key.len(), 1200);
        assert_eq!(key[0] & 1, 0, "keyframe bit");
        assert_eq!(&key[3..6], &[0x9d, 0x01, 0x2a]);
        assert_eq!(inter[0] & 1, 1);
        assert_eq!(send_time_us(&key, true), Some(42));
        assert_eq!(send_time_us(&inter, true), Some(43));
        assert_eq!(send_time_us(&opus_packet(44), false), Some(44));
    }

    #[test]
    fn frame_start_skips_the_payload_descriptor() {
        let key = vp8_frame(true, 100, 7, 320, 240);
        // X=1, S=1; I=1 with a 15-bit PictureID.
        let mut payload = vec![0x90, 0x80, 0x81, 0x23];
        payload.extend_from_slice(&key);
        let frame = vp8_frame_start(&payload).expect("a frame start");
        assert_eq!(frame[0] & 1, 0);
        assert_eq!(send_time_us(frame, true), Some(7));
        // Not a start: S=0.
        payload[0] = 0x80;
        assert!(vp8_frame_start(&payload).is_none());
        // No extension.
        let mut plain = vec![0x10];
        plain.extend_from_slice(&key);
        assert_eq!(
            send_time_us(vp8_frame_start(&plain).expect("start"), true),
            Some(7)
        );
    }
}
