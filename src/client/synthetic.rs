//! Synthetic media for load and tests: VP8 frames whose headers carry real
//! keyframe bits (so keyframe detection works) and Opus packets. The
//! payload is filler: nothing decodes it, but every byte is accounted for,
//! and the first 8 bytes after the header carry the send time (µs since
//! the sender's start) for latency measurement.

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
}
