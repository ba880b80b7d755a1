//! Real, decodable media for the test publisher: H.264 access units (or
//! VP8 frames) and Opus packets encoded ahead of time by the system
//! `ffmpeg`, loaded into memory and replayed in a loop.
//!
//! The synthetic media of [`super::synthetic`] is filler that only looks
//! like VP8 to a keyframe detector; paths that decode or remux what a
//! publisher sends (RTMP restreaming) need media a decoder accepts, so
//! this module encodes a solid colour (or a moving lavfi test pattern) and
//! a sine tone once per test run and hands the publisher one access unit
//! per video tick and one 20 ms packet per audio tick. H.264 exercises the
//! restreamer's copy path, VP8 its x264 transcode path.

use std::fmt;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::Command;

/// NAL unit types (ITU-T H.264 table 7-1) the splitter cares about.
const NAL_IDR: u8 = 5;
const NAL_SEI: u8 = 6;
const NAL_SPS: u8 = 7;
const NAL_AUD: u8 = 9;
/// The Annex-B start code every access unit's NAL units are written with.
const START_CODE: [u8; 4] = [0, 0, 0, 1];
/// The only Opus packet duration the publisher's 20 ms pacing supports.
const OPUS_PACKET_US: u32 = 20_000;
/// IVF (the libvpx test container): a 32-byte file header starting with
/// `DKIF`, then per frame a 12-byte header (u32 LE size, u64 LE pts).
const IVF_SIGNATURE: &[u8; 4] = b"DKIF";
const IVF_FILE_HEADER: usize = 32;
const IVF_FRAME_HEADER: usize = 12;

/// Why encoding or loading media failed.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// `ffmpeg` could not be started (not installed?).
    #[error("cannot run ffmpeg: {0}")]
    Spawn(std::io::Error),
    /// `ffmpeg` ran and failed.
    #[error("ffmpeg failed ({status}): {stderr}")]
    Ffmpeg {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The end of its standard error.
        stderr: String,
    },
    /// The Ogg container is malformed.
    #[error("ogg: {0}")]
    Ogg(#[from] ogg::OggReadError),
    /// The Ogg file is not Ogg Opus (RFC 7845).
    #[error("not an Ogg Opus stream: {0}")]
    NotOpus(&'static str),
    /// An Opus packet does not last 20 ms, so 20 ms pacing would drift.
    #[error("Opus packet {index} lasts {micros} µs, not 20 ms")]
    OpusDuration {
        /// Packet index after the headers.
        index: usize,
        /// Its duration by its TOC byte.
        micros: u32,
    },
    /// The H.264 stream has no access units or no SPS.
    #[error("H.264 stream: {0}")]
    H264(&'static str),
    /// The IVF file is malformed, empty or not VP8.
    #[error("IVF file: {0}")]
    Ivf(&'static str),
    /// A lavfi pattern name that would break the ffmpeg command line.
    #[error("bad lavfi pattern {0:?}")]
    Pattern(String),
    /// A frame rate of zero.
    #[error("fps must be at least 1")]
    ZeroFps,
}

/// The video codec [`EncodedMedia`] holds, and so what the publisher
/// offers: the restreamer copies H.264 and transcodes VP8 with x264, so
/// the two exercise its two paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VideoCodec {
    /// H.264 constrained baseline (libx264), Annex-B.
    #[default]
    H264,
    /// VP8 (libvpx, realtime settings), from IVF.
    Vp8,
}

/// What [`EncodedMedia::generate`] encodes: a solid colour (or a lavfi test
/// pattern) as H.264 (constrained baseline, a keyframe every second, no
/// B-frames) or VP8 (a keyframe every second, no alt-ref frames), and a
/// sine tone as mono Opus in 20 ms packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeSpec {
    /// Picture width in pixels.
    pub width: u32,
    /// Picture height in pixels.
    pub height: u32,
    /// Frames per second; also the GOP length (one keyframe a second).
    pub fps: u32,
    /// An ffmpeg colour name or `0xRRGGBB` (no whitespace); used unless
    /// `pattern` is set.
    pub color: String,
    /// A lavfi video source such as `testsrc2` or `mandelbrot` instead of
    /// the solid `color`: a moving picture gives encoders (and a
    /// transcoding restreamer) real work, where a solid colour costs
    /// nearly nothing. Only the source's name: size and rate come from
    /// this spec.
    pub pattern: Option<String>,
    /// Tone frequency in Hz.
    pub tone_hz: u32,
    /// Length of the loop in seconds.
    pub seconds: u32,
    /// Video codec.
    pub codec: VideoCodec,
    /// Target video bitrate in kb/s. `None`: H.264 keeps x264's default
    /// constant quality (as before this field existed); VP8, whose libvpx
    /// default of 256 kb/s smears anything larger than a thumbnail, gets
    /// 0.1 bit per pixel (about 2.8 Mb/s at 1280x720, 30 fps).
    pub video_kbps: Option<u32>,
}

impl Default for EncodeSpec {
    /// A solid red 320x240 H.264 picture at 15 fps and a 1 kHz tone, 2 s long.
    fn default() -> Self {
        Self {
            width: 320,
            height: 240,
            fps: 15,
            color: "red".into(),
            pattern: None,
            tone_hz: 1000,
            seconds: 2,
            codec: VideoCodec::H264,
            video_kbps: None,
        }
    }
}

impl EncodeSpec {
    /// The bitrate VP8 is encoded at: `video_kbps`, or 0.1 bit per pixel
    /// (at least 100 kb/s).
    fn vp8_kbps(&self) -> u64 {
        self.video_kbps.map_or_else(
            || {
                (u64::from(self.width) * u64::from(self.height) * u64::from(self.fps) / 10_000)
                    .max(100)
            },
            u64::from,
        )
    }

    /// The lavfi input: `pattern` or `color`, at the spec's size and rate.
    fn lavfi_source(&self) -> Result<String, EncodeError> {
        let EncodeSpec {
            width,
            height,
            fps,
            color,
            pattern,
            ..
        } = self;
        match pattern {
            Some(name) => {
                // A bare filter name: anything else would inject options or
                // split the whitespace-separated command line.
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(EncodeError::Pattern(name.clone()));
                }
                Ok(format!("{name}=size={width}x{height}:rate={fps}"))
            }
            None => Ok(format!("color=c={color}:size={width}x{height}:rate={fps}")),
        }
    }
}

/// Pre-encoded media the publisher replays forever: `access_unit(n)` and
/// `opus_packet(n)` wrap around, and since the first access unit is an IDR
/// with SPS and PPS (or a VP8 keyframe), the wrap lands on a keyframe.
///
/// Never empty: the constructors reject a stream without access units or
/// Opus packets.
#[derive(Clone)]
pub struct EncodedMedia {
    /// H.264 access units (Annex-B) or VP8 frames.
    access_units: Vec<Vec<u8>>,
    opus_packets: Vec<Vec<u8>>,
    fps: u32,
    codec: VideoCodec,
    /// 0 for VP8, which has no such parameter.
    profile_level_id: u32,
}

impl fmt::Debug for EncodedMedia {
    /// Counts, not the megabytes of media.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncodedMedia")
            .field("codec", &self.codec)
            .field("access_units", &self.access_units.len())
            .field("opus_packets", &self.opus_packets.len())
            .field("fps", &self.fps)
            .field(
                "profile_level_id",
                &format_args!("{:06x}", self.profile_level_id),
            )
            .finish()
    }
}

impl EncodedMedia {
    /// Encodes `spec` with the system `ffmpeg` (libx264 or libvpx,
    /// libopus) into `dir/video.h264` or `dir/video.ivf` and
    /// `dir/audio.ogg`, then loads them.
    pub fn generate(dir: &Path, spec: &EncodeSpec) -> Result<EncodedMedia, EncodeError> {
        if spec.fps == 0 {
            return Err(EncodeError::ZeroFps);
        }
        let audio = dir.join("audio.ogg");
        let source = spec.lavfi_source()?;
        let EncodeSpec {
            fps,
            tone_hz,
            seconds,
            ..
        } = spec;
        let seconds = (*seconds).max(1);
        let video = match spec.codec {
            VideoCodec::H264 => dir.join("video.h264"),
            VideoCodec::Vp8 => dir.join("video.ivf"),
        };
        match spec.codec {
            VideoCodec::H264 => {
                // A fixed bitrate only when asked: the default stays x264's
                // constant quality, as the existing tests were written for.
                let rate = spec.video_kbps.map_or_else(String::new, |k| {
                    format!("-b:v {k}k -maxrate {k}k -bufsize {}k", u64::from(k) * 2)
                });
                // Constrained baseline, one keyframe a second at fixed
                // places, no B-frames (WebRTC has no reordering), and an AUD
                // before every access unit so splitting is trivial.
                run_ffmpeg(
                    &format!(
                        "-f lavfi -i {source} -t {seconds} \
                         -c:v libx264 -profile:v baseline -pix_fmt yuv420p {rate} \
                         -g {fps} -keyint_min {fps} -bf 0 -x264-params aud=1:scenecut=0 -f h264"
                    ),
                    &video,
                )?;
            }
            VideoCodec::Vp8 => {
                let kbps = spec.vp8_kbps();
                // What a browser's realtime VP8 encoder does: one keyframe a
                // second at fixed places and no alt-ref (invisible) frames,
                // so every IVF frame is one displayed picture and one RTP
                // frame.
                run_ffmpeg(
                    &format!(
                        "-f lavfi -i {source} -t {seconds} \
                         -c:v libvpx -pix_fmt yuv420p -deadline realtime -cpu-used 8 \
                         -g {fps} -keyint_min {fps} -auto-alt-ref 0 -lag-in-frames 0 \
                         -b:v {kbps}k -f ivf"
                    ),
                    &video,
                )?;
            }
        }
        // Mono Opus at 64 kb/s in 20 ms packets (the publisher's pacing).
        run_ffmpeg(
            &format!(
                "-f lavfi -i sine=frequency={tone_hz}:sample_rate=48000 -t {seconds} \
                 -c:a libopus -b:a 64k -frame_duration 20 -ac 1 -f ogg"
            ),
            &audio,
        )?;
        match spec.codec {
            VideoCodec::H264 => Self::load(&video, &audio, spec.fps),
            VideoCodec::Vp8 => Self::load_vp8(&video, &audio, spec.fps),
        }
    }

    /// Loads an Annex-B H.264 elementary stream and an Ogg Opus file whose
    /// packets last 20 ms each; `fps` paces the video.
    pub fn load(h264: &Path, ogg: &Path, fps: u32) -> Result<EncodedMedia, EncodeError> {
        if fps == 0 {
            return Err(EncodeError::ZeroFps);
        }
        let bytes = std::fs::read(h264).map_err(|source| EncodeError::Io {
            path: h264.to_path_buf(),
            source,
        })?;
        let access_units = split_access_units(&bytes);
        let profile_level_id = access_units
            .iter()
            .flat_map(|au| nal_units(au))
            .find(|nal| nal_type(nal) == Some(NAL_SPS))
            .and_then(profile_level_id)
            .ok_or(EncodeError::H264("no SPS"))?;
        Ok(EncodedMedia {
            access_units,
            opus_packets: load_opus(ogg)?,
            fps,
            codec: VideoCodec::H264,
            profile_level_id,
        })
    }

    /// Loads a VP8 IVF file and an Ogg Opus file whose packets last 20 ms
    /// each; `fps` paces the video (the IVF time base is not trusted:
    /// muxers write the stream's, which need not be 1/fps).
    pub fn load_vp8(ivf: &Path, ogg: &Path, fps: u32) -> Result<EncodedMedia, EncodeError> {
        if fps == 0 {
            return Err(EncodeError::ZeroFps);
        }
        let bytes = std::fs::read(ivf).map_err(|source| EncodeError::Io {
            path: ivf.to_path_buf(),
            source,
        })?;
        let (fourcc, frames) = parse_ivf(&bytes)?;
        if &fourcc != b"VP80" {
            return Err(EncodeError::Ivf("not VP8 (fourcc is not VP80)"));
        }
        if frames.is_empty() {
            return Err(EncodeError::Ivf("no frames"));
        }
        if !frames.first().is_some_and(|f| is_vp8_keyframe(f)) {
            return Err(EncodeError::Ivf("the first frame is not a keyframe"));
        }
        Ok(EncodedMedia {
            access_units: frames,
            opus_packets: load_opus(ogg)?,
            fps,
            codec: VideoCodec::Vp8,
            profile_level_id: 0,
        })
    }

    /// The video codec, which decides what the publisher offers.
    pub fn codec(&self) -> VideoCodec {
        self.codec
    }

    /// Video frames per second.
    pub fn fps(&self) -> u32 {
        self.fps
    }

    /// `profile-level-id` of the stream's SPS (e.g. `0x42c00c`: constrained
    /// baseline, level 1.2), for the SDP `fmtp` line; 0 for VP8.
    pub fn profile_level_id(&self) -> u32 {
        self.profile_level_id
    }

    /// Access units of one loop, Annex-B with 4-byte start codes (VP8:
    /// frames as libvpx wrote them).
    pub fn access_units(&self) -> &[Vec<u8>] {
        &self.access_units
    }

    /// Opus packets of one loop, 20 ms each.
    pub fn opus_packets(&self) -> &[Vec<u8>] {
        &self.opus_packets
    }

    /// The `n`th access unit of the endless loop.
    pub fn access_unit(&self, n: u64) -> &[u8] {
        at(&self.access_units, n)
    }

    /// The `n`th Opus packet of the endless loop.
    pub fn opus_packet(&self, n: u64) -> &[u8] {
        at(&self.opus_packets, n)
    }
}

/// The Opus packets of an Ogg Opus file.
fn load_opus(ogg: &Path) -> Result<Vec<Vec<u8>>, EncodeError> {
    let file = File::open(ogg).map_err(|source| EncodeError::Io {
        path: ogg.to_path_buf(),
        source,
    })?;
    read_ogg_opus(BufReader::new(file))
}

/// The fourcc and the frames of an IVF file. The header's own length field
/// is honoured (it is 32 in every known writer) and the frame count field
/// ignored (ffmpeg fills it in only when it can seek back). Each frame's
/// size is checked against what is left, so a truncated or hostile file is
/// an error, never a panic or a huge allocation.
fn parse_ivf(bytes: &[u8]) -> Result<([u8; 4], Vec<Vec<u8>>), EncodeError> {
    if bytes.len() < IVF_FILE_HEADER || !bytes.starts_with(IVF_SIGNATURE) {
        return Err(EncodeError::Ivf("no DKIF header"));
    }
    let header_len = usize::from(u16::from_le_bytes([bytes[6], bytes[7]]));
    if header_len < IVF_FILE_HEADER || header_len > bytes.len() {
        return Err(EncodeError::Ivf("bad header length"));
    }
    let fourcc = [bytes[8], bytes[9], bytes[10], bytes[11]];
    let mut frames = Vec::new();
    let mut rest = &bytes[header_len..];
    while !rest.is_empty() {
        let Some((header, after)) = rest.split_at_checked(IVF_FRAME_HEADER) else {
            return Err(EncodeError::Ivf("truncated frame header"));
        };
        let size = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let size = usize::try_from(size).map_err(|_| EncodeError::Ivf("frame too large"))?;
        let Some((frame, after)) = after.split_at_checked(size) else {
            return Err(EncodeError::Ivf("truncated frame"));
        };
        frames.push(frame.to_vec());
        rest = after;
    }
    Ok((fourcc, frames))
}

/// Whether a VP8 frame is a keyframe: bit 0 of its frame tag is 0 for
/// one (RFC 6386 §9.1).
fn is_vp8_keyframe(frame: &[u8]) -> bool {
    frame.first().is_some_and(|b| b & 1 == 0)
}

/// `items[n % len]`; empty for an empty list (the constructors forbid one).
fn at(items: &[Vec<u8>], n: u64) -> &[u8] {
    let len = items.len() as u64;
    if len == 0 {
        return &[];
    }
    // The remainder is below `len`, which came from a usize.
    items.get((n % len) as usize).map_or(&[], Vec::as_slice)
}

/// Runs `ffmpeg -y -loglevel error ARGS OUT` (ARGS split at whitespace);
/// keeps the tail of its stderr for the error.
fn run_ffmpeg(args: &str, out: &Path) -> Result<(), EncodeError> {
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(args.split_whitespace())
        .arg(out)
        .output()
        .map_err(EncodeError::Spawn)?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: String = stderr
        .chars()
        .rev()
        .take(2000)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Err(EncodeError::Ffmpeg {
        status: output.status,
        stderr: tail,
    })
}

/// The NAL units of an Annex-B byte stream, without start codes. Accepts
/// 3- and 4-byte start codes and drops the zero bytes that trail a NAL unit
/// (a NAL unit never ends in a zero byte; its stop bit is a one).
fn nal_units(stream: &[u8]) -> Vec<&[u8]> {
    let mut units = Vec::new();
    let mut start: Option<usize> = None;
    let mut i = 0;
    while i + 3 <= stream.len() {
        if stream[i] == 0 && stream[i + 1] == 0 && stream[i + 2] == 1 {
            if let Some(s) = start {
                units.push(trim_trailing_zeros(&stream[s..i]));
            }
            i += 3;
            start = Some(i);
        } else {
            i += 1;
        }
    }
    if let Some(s) = start {
        units.push(trim_trailing_zeros(&stream[s..]));
    }
    units.retain(|u| !u.is_empty());
    units
}

fn trim_trailing_zeros(nal: &[u8]) -> &[u8] {
    let end = nal.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    &nal[..end]
}

/// `nal_unit_type` from the first byte of a NAL unit.
fn nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| b & 0x1f)
}

/// Splits an Annex-B stream into access units (ITU-T H.264 §7.4.1.2.3):
/// one starts at an AUD, or at an SPS/PPS/SEI/AUD-like NAL or at the
/// first slice of a picture (`first_mb_in_slice == 0`) once the current
/// one already holds a slice. With x264's `aud=1` only the AUD rule fires;
/// the others keep streams without AUDs working.
fn split_access_units(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut units: Vec<Vec<u8>> = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    let mut has_slice = false;
    for nal in nal_units(stream) {
        let Some(kind) = nal_type(nal) else {
            continue;
        };
        let is_slice = (1..=NAL_IDR).contains(&kind);
        // ue(v) first_mb_in_slice is 0 exactly when its first bit is 1.
        let first_slice = is_slice && nal.get(1).is_some_and(|b| b & 0x80 != 0);
        let starts_unit = kind == NAL_AUD
            || (has_slice && ((NAL_SEI..=NAL_AUD).contains(&kind) || (14..=18).contains(&kind)))
            || (has_slice && first_slice);
        if starts_unit && !current.is_empty() {
            units.push(std::mem::take(&mut current));
            has_slice = false;
        }
        current.extend_from_slice(&START_CODE);
        current.extend_from_slice(nal);
        has_slice |= is_slice;
    }
    if !current.is_empty() {
        units.push(current);
    }
    units
}

/// Whether an access unit holds an IDR slice.
#[cfg(test)]
fn is_idr(access_unit: &[u8]) -> bool {
    nal_units(access_unit)
        .iter()
        .any(|n| nal_type(n) == Some(NAL_IDR))
}

/// `profile_idc`, the constraint flags and `level_idc`: the three bytes
/// after the SPS NAL header, as SDP's `profile-level-id` wants them.
fn profile_level_id(sps: &[u8]) -> Option<u32> {
    let bytes = sps.get(1..4)?;
    Some(u32::from(bytes[0]) << 16 | u32::from(bytes[1]) << 8 | u32::from(bytes[2]))
}

/// The audio packets of the first logical stream of an Ogg Opus file,
/// after its OpusHead and OpusTags header packets (RFC 7845 §3).
fn read_ogg_opus<R: std::io::Read + std::io::Seek>(reader: R) -> Result<Vec<Vec<u8>>, EncodeError> {
    let mut ogg = ogg::PacketReader::new(reader);
    let head = ogg
        .read_packet()?
        .ok_or(EncodeError::NotOpus("empty file"))?;
    if !head.data.starts_with(b"OpusHead") {
        return Err(EncodeError::NotOpus("no OpusHead"));
    }
    let serial = head.stream_serial();
    let mut packets = Vec::new();
    let mut saw_tags = false;
    while let Some(packet) = ogg.read_packet()? {
        if packet.stream_serial() != serial {
            continue;
        }
        if !saw_tags {
            if !packet.data.starts_with(b"OpusTags") {
                return Err(EncodeError::NotOpus("no OpusTags"));
            }
            saw_tags = true;
            continue;
        }
        let micros = opus_duration_us(&packet.data);
        if micros != OPUS_PACKET_US {
            return Err(EncodeError::OpusDuration {
                index: packets.len(),
                micros,
            });
        }
        packets.push(packet.data);
    }
    if packets.is_empty() {
        return Err(EncodeError::NotOpus("no audio packets"));
    }
    Ok(packets)
}

/// Duration of an Opus packet from its TOC byte (RFC 6716 §3.1); 0 for a
/// malformed one.
fn opus_duration_us(packet: &[u8]) -> u32 {
    let Some(&toc) = packet.first() else {
        return 0;
    };
    let config = toc >> 3;
    let frame_us = match config {
        0..=11 => [10_000, 20_000, 40_000, 60_000][usize::from(config % 4)],
        12..=15 => [10_000, 20_000][usize::from(config % 2)],
        _ => [2_500, 5_000, 10_000, 20_000][usize::from(config % 4)],
    };
    let frames = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => packet.get(1).map_or(0, |b| u32::from(b & 0x3f)),
    };
    frame_us * frames
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annex_b_splits_at_auds_with_3_and_4_byte_start_codes() {
        let stream = [
            // AU 1: AUD, SPS, PPS (3-byte start code), IDR slice.
            &[0, 0, 0, 1, 0x09, 0x10][..],
            &[0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x0c, 0xd9][..],
            &[0, 0, 1, 0x68, 0xcb, 0x83][..],
            &[0, 0, 0, 1, 0x65, 0x88, 0x84, 0x00, 0x10][..],
            // Trailing zero bytes before the next start code.
            &[0, 0][..],
            // AU 2: AUD (3-byte start code), P slice.
            &[0, 0, 1, 0x09, 0x30][..],
            &[0, 0, 0, 1, 0x41, 0x9a, 0x02][..],
        ]
        .concat();
        let units = split_access_units(&stream);
        assert_eq!(units.len(), 2);
        assert_eq!(
            units[0],
            [
                &[0, 0, 0, 1, 0x09, 0x10][..],
                &[0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x0c, 0xd9][..],
                &[0, 0, 0, 1, 0x68, 0xcb, 0x83][..],
                &[0, 0, 0, 1, 0x65, 0x88, 0x84, 0x00, 0x10][..],
            ]
            .concat()
        );
        assert_eq!(
            units[1],
            [0, 0, 0, 1, 0x09, 0x30, 0, 0, 0, 1, 0x41, 0x9a, 0x02]
        );
        assert!(is_idr(&units[0]) && !is_idr(&units[1]));
        let sps = nal_units(&units[0])[1];
        assert_eq!(profile_level_id(sps), Some(0x42c00c));
    }

    #[test]
    fn annex_b_without_auds_splits_at_first_slices() {
        let stream = [
            &[0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x0c][..],
            &[0, 0, 0, 1, 0x68, 0xcb][..],
            // Two slices of one picture: the second has first_mb != 0.
            &[0, 0, 0, 1, 0x65, 0x88][..],
            &[0, 0, 0, 1, 0x65, 0x40][..],
            // Next picture.
            &[0, 0, 1, 0x41, 0x9a][..],
        ]
        .concat();
        let units = split_access_units(&stream);
        assert_eq!(units.len(), 2);
        assert_eq!(nal_units(&units[0]).len(), 4);
        assert_eq!(nal_units(&units[1]), [&[0x41, 0x9a][..]]);
        assert!(split_access_units(&[0, 0, 0]).is_empty());
    }

    #[test]
    fn opus_durations_follow_the_toc_byte() {
        assert_eq!(opus_duration_us(&[0xf8]), 20_000, "CELT FB 20 ms");
        assert_eq!(opus_duration_us(&[0x78]), 20_000, "Hybrid FB 20 ms");
        assert_eq!(opus_duration_us(&[0x08]), 20_000, "SILK NB 20 ms");
        assert_eq!(opus_duration_us(&[0xf9]), 40_000, "two frames");
        assert_eq!(opus_duration_us(&[0xe0]), 2_500, "CELT FB 2.5 ms");
        assert_eq!(opus_duration_us(&[0xfb, 0x03]), 60_000, "code 3, 3 frames");
        assert_eq!(opus_duration_us(&[]), 0);
    }

    #[test]
    fn the_loop_wraps_around() {
        let media = EncodedMedia {
            access_units: vec![vec![1], vec![2]],
            opus_packets: vec![vec![3]],
            fps: 15,
            codec: VideoCodec::H264,
            profile_level_id: 0x42c00c,
        };
        assert_eq!(media.access_unit(3), [2]);
        assert_eq!(media.opus_packet(7), [3]);
        assert!(format!("{media:?}").contains("42c00c"));
    }

    /// An IVF file: the 32-byte header with `fourcc`, then `frames`.
    fn ivf(fourcc: &[u8; 4], frames: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"DKIF");
        out.extend_from_slice(&0u16.to_le_bytes()); // version
        out.extend_from_slice(&32u16.to_le_bytes()); // header length
        out.extend_from_slice(fourcc);
        out.extend_from_slice(&320u16.to_le_bytes());
        out.extend_from_slice(&240u16.to_le_bytes());
        out.extend_from_slice(&15u32.to_le_bytes()); // time base denominator
        out.extend_from_slice(&1u32.to_le_bytes()); // numerator
        out.extend_from_slice(&(frames.len() as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes()); // unused
        for (pts, frame) in frames.iter().enumerate() {
            out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            out.extend_from_slice(&(pts as u64).to_le_bytes());
            out.extend_from_slice(frame);
        }
        out
    }

    #[test]
    fn ivf_frames_are_split_by_their_headers() {
        let file = ivf(b"VP80", &[&[0x10, 1, 2, 3], &[0x11], &[]]);
        let (fourcc, frames) = parse_ivf(&file).expect("parses");
        assert_eq!(&fourcc, b"VP80");
        assert_eq!(frames, [vec![0x10, 1, 2, 3], vec![0x11], vec![]]);
        assert!(is_vp8_keyframe(&frames[0]) && !is_vp8_keyframe(&frames[1]));
        assert!(!is_vp8_keyframe(&[]));
        // A header alone is a valid, empty file.
        assert_eq!(parse_ivf(&file[..32]).expect("empty").1.len(), 0);
    }

    #[test]
    fn malformed_ivf_is_an_error() {
        let file = ivf(b"VP80", &[&[0x10, 1, 2, 3]]);
        assert!(matches!(parse_ivf(&file[..20]), Err(EncodeError::Ivf(_))));
        assert!(matches!(parse_ivf(b"RIFF"), Err(EncodeError::Ivf(_))));
        let mut bad = file.clone();
        bad[0] = b'X';
        assert!(parse_ivf(&bad).is_err(), "signature");
        // Truncated frame header, truncated frame body.
        assert!(parse_ivf(&file[..32 + 5]).is_err());
        assert!(parse_ivf(&file[..file.len() - 1]).is_err());
        // A size that claims 4 GB.
        let mut huge = file.clone();
        huge[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse_ivf(&huge).is_err());
        // A header length shorter than the fixed header or past the end.
        let mut short = file.clone();
        short[6..8].copy_from_slice(&8u16.to_le_bytes());
        assert!(parse_ivf(&short).is_err());
        let mut long = file;
        long[6..8].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(parse_ivf(&long).is_err());
    }

    #[test]
    fn load_vp8_wants_vp80_and_a_leading_keyframe() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ogg = dir.path().join("missing.ogg");
        let write = |name: &str, bytes: Vec<u8>| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).expect("write");
            path
        };
        let vp9 = write("vp9.ivf", ivf(b"VP90", &[&[0x10]]));
        let delta = write("delta.ivf", ivf(b"VP80", &[&[0x11]]));
        let empty = write("empty.ivf", ivf(b"VP80", &[]));
        for path in [vp9, delta, empty] {
            let result = EncodedMedia::load_vp8(&path, &ogg, 15);
            assert!(matches!(result, Err(EncodeError::Ivf(_))), "{path:?}");
        }
    }

    #[test]
    fn patterns_are_bare_lavfi_names() {
        let spec = |pattern: &str| EncodeSpec {
            pattern: Some(pattern.into()),
            ..EncodeSpec::default()
        };
        assert_eq!(
            spec("testsrc2").lavfi_source().expect("valid"),
            "testsrc2=size=320x240:rate=15"
        );
        assert_eq!(
            EncodeSpec::default().lavfi_source().expect("colour"),
            "color=c=red:size=320x240:rate=15"
        );
        for bad in ["", "testsrc2 -y", "color=c=red", "a:b"] {
            assert!(spec(bad).lavfi_source().is_err(), "{bad:?}");
        }
        let hd = EncodeSpec {
            width: 1280,
            height: 720,
            fps: 30,
            ..EncodeSpec::default()
        };
        assert_eq!(hd.vp8_kbps(), 2764);
        assert_eq!(EncodeSpec::default().vp8_kbps(), 115);
        let fixed = EncodeSpec {
            video_kbps: Some(2500),
            ..hd
        };
        assert_eq!(fixed.vp8_kbps(), 2500);
    }

    fn ffmpeg_available() -> bool {
        Command::new("ffmpeg")
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    #[test]
    fn generate_yields_fps_access_units_and_50_opus_packets_a_second() {
        if !ffmpeg_available() {
            eprintln!("skipped: no ffmpeg on PATH (apt-get install ffmpeg)");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = EncodeSpec {
            seconds: 3,
            ..EncodeSpec::default()
        };
        let media = EncodedMedia::generate(dir.path(), &spec).expect("generate");
        assert_eq!(media.fps(), 15);
        assert_eq!(media.access_units().len(), 45, "{media:?}");
        let keyframes: Vec<usize> = (0..media.access_units().len())
            .filter(|&i| is_idr(&media.access_units()[i]))
            .collect();
        assert_eq!(keyframes, [0, 15, 30], "one IDR a second");
        // libopus adds one packet for its look-ahead.
        let opus = media.opus_packets().len();
        assert!((150..=152).contains(&opus), "{opus} Opus packets");
        // Constrained baseline (profile 66 with constraint_set1).
        assert_eq!(media.profile_level_id() >> 16, 0x42);
        assert_ne!(media.profile_level_id() & 0x4000, 0);
    }

    #[test]
    fn generate_vp8_yields_fps_frames_a_second_with_a_keyframe_each_second() {
        if !ffmpeg_available() {
            eprintln!("skipped: no ffmpeg on PATH (apt-get install ffmpeg)");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = EncodeSpec {
            seconds: 3,
            codec: VideoCodec::Vp8,
            pattern: Some("testsrc2".into()),
            ..EncodeSpec::default()
        };
        let media = EncodedMedia::generate(dir.path(), &spec).expect("generate");
        assert_eq!(media.codec(), VideoCodec::Vp8);
        assert_eq!(media.fps(), 15);
        assert_eq!(media.profile_level_id(), 0);
        assert_eq!(media.access_units().len(), 45, "{media:?}");
        let keyframes: Vec<usize> = (0..media.access_units().len())
            .filter(|&i| is_vp8_keyframe(&media.access_units()[i]))
            .collect();
        assert_eq!(keyframes, [0, 15, 30], "one keyframe a second");
        // A keyframe carries the start code 9d 01 2a and the picture size.
        let key = &media.access_units()[0];
        assert_eq!(key.get(3..6), Some(&[0x9d, 0x01, 0x2a][..]));
        let size = |i: usize| u16::from_le_bytes([key[i], key[i + 1]]) & 0x3fff;
        assert_eq!((size(6), size(8)), (320, 240));
        let opus = media.opus_packets().len();
        assert!((150..=152).contains(&opus), "{opus} Opus packets");
    }
}
