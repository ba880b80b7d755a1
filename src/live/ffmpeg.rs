//! The ffmpeg side of a restream: the SDP that describes the tap's plain
//! RTP, the command line (H.264 copied, VP8/VP9 transcoded with x264, Opus
//! to AAC, FLV out), and whether a usable ffmpeg exists at all.

use std::path::Path;
use std::process::Stdio;

use vestibule_actors::live::TapMedia;

use crate::config::LiveConfig;

/// How the video reaches FLV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoMode {
    /// H.264 passed through.
    Copy,
    /// Decoded and encoded with x264.
    X264,
}

impl VideoMode {
    /// The mode for a source codec.
    pub fn for_codec(codec: &str) -> Self {
        if codec == "H264" {
            VideoMode::Copy
        } else {
            VideoMode::X264
        }
    }

    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            VideoMode::Copy => "copy",
            VideoMode::X264 => "x264",
        }
    }
}

/// The loopback ports ffmpeg reads (RTCP takes port + 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TapPorts {
    /// Video RTP port.
    pub video: u16,
    /// Audio RTP port.
    pub audio: u16,
}

/// Finds two free even ports whose odd neighbours are free too (ffmpeg
/// binds RTP on N and RTCP on N + 1). They are released before ffmpeg
/// binds them; on a loopback-only port range the race is harmless and a
/// lost race shows up as an ffmpeg exit, which the supervisor retries.
pub fn free_port_pairs() -> std::io::Result<TapPorts> {
    let mut found = Vec::new();
    for _ in 0..64 {
        let probe = std::net::UdpSocket::bind(("127.0.0.1", 0))?;
        let port = probe.local_addr()?.port();
        if !port.is_multiple_of(2) || port == u16::MAX - 1 || found.contains(&port) {
            continue;
        }
        if std::net::UdpSocket::bind(("127.0.0.1", port + 1)).is_ok() {
            found.push(port);
            if found.len() == 2 {
                return Ok(TapPorts {
                    video: found[0],
                    audio: found[1],
                });
            }
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrNotAvailable,
        "no free loopback port pairs",
    ))
}

/// The SDP ffmpeg reads: one m-line per present medium, on 127.0.0.1.
pub fn sdp(video: Option<&TapMedia>, audio: Option<&TapMedia>, ports: TapPorts) -> String {
    let mut sdp = String::from(
        "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=vestibule-program\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n",
    );
    let mut section = |kind: &str, port: u16, m: &TapMedia| {
        sdp.push_str(&format!("m={kind} {port} RTP/AVP {}\r\n", m.pt));
        match m.channels {
            Some(ch) => sdp.push_str(&format!(
                "a=rtpmap:{} {}/{}/{}\r\n",
                m.pt,
                m.codec,
                m.clock_rate,
                ch.max(1)
            )),
            None => sdp.push_str(&format!(
                "a=rtpmap:{} {}/{}\r\n",
                m.pt, m.codec, m.clock_rate
            )),
        }
        if !m.fmtp.is_empty() {
            sdp.push_str(&format!("a=fmtp:{} {}\r\n", m.pt, m.fmtp));
        }
        sdp.push_str("a=recvonly\r\n");
    };
    if let Some(v) = video {
        section("video", ports.video, v);
    }
    if let Some(a) = audio {
        section("audio", ports.audio, a);
    }
    sdp
}

/// ffmpeg's arguments for one run. The output URL (with the key) is an
/// argument: visible in the host's process list (README says so).
pub fn arguments(
    sdp_path: &Path,
    video: Option<&TapMedia>,
    audio: Option<&TapMedia>,
    cfg: &LiveConfig,
    output_url: &str,
) -> Vec<String> {
    let mut args: Vec<String> = [
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "warning",
        "-nostats",
        // key=value progress blocks on stdout: the supervisor's liveness signal.
        "-progress",
        "pipe:1",
        "-stats_period",
        "0.25",
        "-protocol_whitelist",
        "file,udp,rtp",
        // A bigger socket buffer: without it ffmpeg under load reports
        // "jitter buffer full" and drops.
        "-buffer_size",
        "4194304",
        // The tap starts video with SPS + keyframe and the SDP names every
        // codec: a short probe is enough and cuts the time to online.
        "-analyzeduration",
        "1000000",
        "-probesize",
        "65536",
        "-i",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(sdp_path.display().to_string());
    if let Some(v) = video {
        args.extend(["-map".into(), "0:v:0".into()]);
        match VideoMode::for_codec(&v.codec) {
            VideoMode::Copy => args.extend(["-c:v".into(), "copy".into()]),
            VideoMode::X264 => {
                let kbps = cfg.video_kbps;
                args.extend(
                    [
                        "-c:v",
                        "libx264",
                        "-preset",
                        &cfg.x264_preset,
                        "-tune",
                        "zerolatency",
                        "-pix_fmt",
                        "yuv420p",
                        "-b:v",
                        &format!("{kbps}k"),
                        "-maxrate",
                        &format!("{kbps}k"),
                        "-bufsize",
                        &format!("{}k", kbps * 2),
                        // A keyframe every 2 s: what RTMP ingests (PeerTube,
                        // YouTube) recommend and what lets a reader join.
                        "-force_key_frames",
                        "expr:gte(t,n_forced*2)",
                    ]
                    .iter()
                    .map(|s| s.to_string()),
                );
            }
        }
    }
    if audio.is_some() {
        args.extend(
            [
                "-map",
                "0:a:0",
                "-c:a",
                "aac",
                "-b:a",
                &format!("{}k", cfg.audio_kbps),
                "-ar",
                "48000",
                "-ac",
                "2",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
    }
    args.extend(
        ["-f", "flv", "-flvflags", "no_duration_filesize", output_url]
            .iter()
            .map(|s| s.to_string()),
    );
    args
}

/// Whether `ffmpeg -version` runs (checked once at start, before any
/// listener exists; `/ready` reports it).
pub fn available(path: &Path) -> bool {
    std::process::Command::new(path)
        .arg("-version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vestibule_actors::ids::TrackId;

    fn media(codec: &str, pt: u8, clock: u32, channels: Option<u8>, fmtp: &str) -> TapMedia {
        TapMedia {
            track: TrackId::random(),
            codec: codec.into(),
            pt,
            clock_rate: clock,
            channels,
            fmtp: fmtp.into(),
        }
    }

    #[test]
    fn sdp_describes_each_present_medium() {
        let v = media(
            "H264",
            102,
            90_000,
            None,
            "packetization-mode=1;profile-level-id=42e01f",
        );
        let a = media("opus", 111, 48_000, Some(2), "");
        let ports = TapPorts {
            video: 5004,
            audio: 5006,
        };
        let text = sdp(Some(&v), Some(&a), ports);
        assert!(text.contains("m=video 5004 RTP/AVP 102\r\na=rtpmap:102 H264/90000\r\na=fmtp:102 packetization-mode=1;profile-level-id=42e01f\r\n"));
        assert!(text.contains("m=audio 5006 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n"));
        let audio_only = sdp(None, Some(&a), ports);
        assert!(!audio_only.contains("m=video"));
    }

    #[test]
    fn h264_is_copied_and_vp8_transcoded() {
        let cfg = LiveConfig {
            ffmpeg_path: "ffmpeg".into(),
            x264_preset: "veryfast".into(),
            video_kbps: 2500,
            audio_kbps: 128,
            allow_private: false,
            allowed_hosts: vec![],
            allowed_ports: vec![1935],
            no_source_grace_s: 30,
        };
        let a = media("opus", 111, 48_000, Some(2), "");
        let h264 = media("H264", 102, 90_000, None, "");
        let args = arguments(
            Path::new("x.sdp"),
            Some(&h264),
            Some(&a),
            &cfg,
            "rtmp://h/a/k",
        );
        let joined = args.join(" ");
        assert!(joined.contains("-c:v copy"));
        assert!(joined.contains("-c:a aac -b:a 128k"));
        assert_eq!(args.last().map(String::as_str), Some("rtmp://h/a/k"));
        let vp8 = media("VP8", 96, 90_000, None, "");
        let joined = arguments(Path::new("x.sdp"), Some(&vp8), None, &cfg, "u").join(" ");
        assert!(joined.contains("-c:v libx264 -preset veryfast"));
        assert!(!joined.contains("0:a:0"));
        let ports = free_port_pairs().unwrap();
        assert!(
            ports.video.is_multiple_of(2)
                && ports.audio.is_multiple_of(2)
                && ports.video != ports.audio
        );
    }
}
