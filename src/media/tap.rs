//! HOT PATH (while live): the live restream's "virtual subscriber". It
//! takes the program's packets inside the worker and writes them as plain
//! RTP (no SRTP, no extensions) to ffmpeg's loopback ports, rebasing
//! sequence numbers and RTP time across source switches, gating video to a
//! keyframe after a switch or an ffmpeg (re)start, and asking H.264
//! sources for a keyframe at a steady interval so ffmpeg's copy path can
//! always start (WebRTC senders emit SPS/PPS only with keyframes).
//!
//! It tells its restreamer the media it writes ([`TapEvent::Sources`]) once
//! a source's first packet shows the codec, so the SDP ffmpeg reads always
//! matches what arrives.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use actix::Recipient;
use str0m::format::{Codec, PayloadParams};
use str0m::rtp::RtpPacket;
use vestibule_actors::ids::{LiveId, TrackId};
use vestibule_actors::live::{TapEvent, TapMedia};
use vestibule_actors::snapshot::MediaKind;

use super::forward::{SeqRebase, TsRebase, is_keyframe};

/// Keyframe requests toward an H.264 source while the copy path runs:
/// a late ffmpeg (re)start or RTMP reader gets SPS/PPS within this.
const COPY_KEYFRAME_INTERVAL: Duration = Duration::from_secs(2);
/// Bytes of a plain RTP header without CSRCs or extensions.
const RTP_HEADER: usize = 12;

/// One medium of the tap.
#[derive(Debug)]
struct TapOut {
    /// ffmpeg's RTP port for it.
    dest: SocketAddr,
    ssrc: u32,
    seq: SeqRebase,
    ts: TsRebase,
    /// The program's source track, as last set.
    source: Option<TrackId>,
    /// What the tap writes now (known after the source's first packet).
    media: Option<TapMedia>,
    /// The codec of `media`, for the keyframe detector.
    codec: Option<Codec>,
    waiting_keyframe: bool,
}

impl TapOut {
    fn new(port: u16, ssrc: u32, video: bool) -> Self {
        Self {
            dest: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            ssrc,
            seq: SeqRebase::default(),
            ts: TsRebase::default(),
            source: None,
            media: None,
            codec: None,
            waiting_keyframe: video,
        }
    }
}

/// What forwarding one packet asks of the worker.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TapOutcome {
    /// Ask the source for a keyframe.
    pub want_keyframe: bool,
}

/// A live restream's tap on one program.
#[derive(Debug)]
pub struct LiveTap {
    /// The restream it feeds.
    pub live: LiveId,
    socket: UdpSocket,
    video: TapOut,
    audio: TapOut,
    events: Recipient<TapEvent>,
    /// What was last reported (video, audio).
    reported: (Option<TapMedia>, Option<TapMedia>),
    /// ffmpeg listens: packets are written. While paused (no ffmpeg) the
    /// ports may belong to someone else, so nothing is sent; sources are
    /// still tracked and reported.
    active: bool,
    /// Next periodic keyframe request (H.264 copy path).
    next_keyframe: Option<Instant>,
    /// Reused datagram buffer.
    buf: Vec<u8>,
}

impl LiveTap {
    /// A tap writing to ffmpeg's ports on 127.0.0.1.
    pub fn new(
        live: LiveId,
        video_port: u16,
        audio_port: u16,
        events: Recipient<TapEvent>,
    ) -> std::io::Result<Self> {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        // Never block the worker: a full socket buffer drops a packet.
        socket.set_nonblocking(true)?;
        let ssrc = rand::random::<u32>();
        Ok(Self {
            live,
            socket,
            video: TapOut::new(video_port, ssrc, true),
            audio: TapOut::new(audio_port, ssrc.wrapping_add(1), false),
            events,
            reported: (None, None),
            active: false,
            next_keyframe: None,
            buf: Vec::with_capacity(1500),
        })
    }

    fn out(&mut self, kind: MediaKind) -> &mut TapOut {
        match kind {
            MediaKind::Video => &mut self.video,
            MediaKind::Audio => &mut self.audio,
        }
    }

    /// The program's source of `kind` is now `track` (or none). A kind
    /// that lost its source is reported by the next [`LiveTap::report`]
    /// (the caller sets both kinds first, so one program change makes one
    /// report); a new source is reported with its first packet.
    pub fn set_source(&mut self, kind: MediaKind, track: Option<TrackId>) {
        let out = self.out(kind);
        if out.source == track {
            return;
        }
        out.source = track;
        if track.is_none() {
            out.media = None;
            out.codec = None;
        }
    }

    /// ffmpeg (re)started: the next video it gets starts with a keyframe.
    /// Returns whether a video source exists to ask.
    pub fn refresh(&mut self) -> bool {
        self.active = true;
        self.video.waiting_keyframe = true;
        self.video.seq.switch();
        self.video.ts.switch();
        self.audio.seq.switch();
        self.audio.ts.switch();
        self.video.source.is_some()
    }

    /// ffmpeg exited: write nothing until the next [`LiveTap::refresh`].
    pub fn pause(&mut self) {
        self.active = false;
    }

    /// Writes one program packet of `kind` from `track`. `params_of` looks
    /// up the source's payload type (only when it changes).
    pub fn forward(
        &mut self,
        kind: MediaKind,
        track: TrackId,
        packet: &RtpPacket,
        now: Instant,
        params_of: impl FnOnce(u8) -> Option<PayloadParams>,
    ) -> TapOutcome {
        let mut outcome = TapOutcome::default();
        let pt = *packet.header.payload_type;
        let out = self.out(kind);
        if out.source != Some(track) {
            return outcome; // a stale route during a switch
        }
        let current = out
            .media
            .as_ref()
            .is_some_and(|m| m.track == track && m.pt == pt);
        if !current {
            let Some(media) = params_of(pt).and_then(|p| tap_media(track, &p)) else {
                return outcome; // RTX, RED or a codec ffmpeg cannot take
            };
            out.codec = codec_of(&media);
            out.media = Some(media);
            out.seq.switch();
            out.ts.switch();
            out.waiting_keyframe = kind == MediaKind::Video;
            outcome.want_keyframe = kind == MediaKind::Video;
            self.report();
        }
        if !self.active {
            return outcome;
        }
        let out = self.out(kind);
        if out.waiting_keyframe {
            let keyframe = out
                .codec
                .is_some_and(|codec| is_keyframe(codec, &packet.payload));
            if !keyframe {
                return outcome;
            }
            out.waiting_keyframe = false;
        }
        let seq = *out.seq.map(packet.seq_no) as u16;
        let clock = out.media.as_ref().map_or(90_000, |m| m.clock_rate);
        let ts = out.ts.map(packet.header.timestamp, packet.timestamp, clock);
        let (dest, ssrc) = (out.dest, out.ssrc);
        let copy_path = kind == MediaKind::Video && out.codec == Some(Codec::H264);
        if copy_path {
            let due = self.next_keyframe.is_none_or(|at| now >= at);
            if due {
                self.next_keyframe = Some(now + COPY_KEYFRAME_INTERVAL);
                outcome.want_keyframe = true;
            }
        }
        self.buf.clear();
        self.buf.reserve(RTP_HEADER + packet.payload.len());
        self.buf.push(0x80);
        self.buf
            .push((u8::from(packet.header.marker) << 7) | (pt & 0x7f));
        self.buf.extend_from_slice(&seq.to_be_bytes());
        self.buf.extend_from_slice(&ts.to_be_bytes());
        self.buf.extend_from_slice(&ssrc.to_be_bytes());
        self.buf.extend_from_slice(&packet.payload);
        match self.socket.send_to(&self.buf, dest) {
            Ok(_) => {}
            // ffmpeg not listening yet (restart) or its buffer is full: the
            // packet is lost like on a network; the keyframe gate and the
            // periodic requests recover.
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => {}
        }
        outcome
    }

    /// Reports the media when it differs from the last report.
    pub fn report(&mut self) {
        let now = (self.video.media.clone(), self.audio.media.clone());
        if now != self.reported {
            self.reported = now.clone();
            self.events.do_send(TapEvent::Sources {
                video: now.0,
                audio: now.1,
            });
        }
    }
}

/// The codec ffmpeg reads, for a codec it can depacketize from RTP.
fn tap_media(track: TrackId, params: &PayloadParams) -> Option<TapMedia> {
    let spec = params.spec();
    let (codec, fmtp) = match spec.codec {
        Codec::H264 => {
            let f = &spec.format;
            let mut fmtp = format!("packetization-mode={}", f.packetization_mode.unwrap_or(1));
            if let Some(id) = f.profile_level_id {
                fmtp.push_str(&format!(";profile-level-id={id:06x}"));
            }
            ("H264", fmtp)
        }
        Codec::Vp8 => ("VP8", String::new()),
        Codec::Vp9 => ("VP9", String::new()),
        Codec::Opus => ("opus", String::new()),
        _ => return None,
    };
    Some(TapMedia {
        track,
        codec: codec.to_string(),
        pt: *params.pt(),
        clock_rate: spec.clock_rate.get(),
        channels: spec.channels,
        fmtp,
    })
}

fn codec_of(media: &TapMedia) -> Option<Codec> {
    match media.codec.as_str() {
        "H264" => Some(Codec::H264),
        "VP8" => Some(Codec::Vp8),
        "VP9" => Some(Codec::Vp9),
        "opus" => Some(Codec::Opus),
        _ => None,
    }
}
