//! How every `Rtc` is configured: ICE-lite, RTP mode, the shared DTLS
//! certificate, our own ICE credentials (the demux key) and the codecs of
//! `media.codecs`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng as _;
use rand::distr::Alphanumeric;
use str0m::config::DtlsCert;
use str0m::{Candidate, IceCreds, Rtc, RtcConfig};

/// How often ingress peers report stats (NACK counts); stats walk every stream.
const STATS_INTERVAL: Duration = Duration::from_secs(5);
/// Egress RTX cache: browsers NACK within about a second.
const SEND_BUFFER_VIDEO: usize = 256;

/// Fresh random local ICE credentials (ufrag 16, pwd 32 ice-chars).
pub fn new_credentials() -> IceCreds {
    let random = |n| {
        rand::rng()
            .sample_iter(Alphanumeric)
            .take(n)
            .map(char::from)
            .collect::<String>()
    };
    IceCreds {
        ufrag: random(16),
        pass: random(32),
    }
}

/// Builds a server-side `Rtc` with `creds`, advertising `candidates`.
pub fn build_rtc(
    codecs: &[String],
    cert: &DtlsCert,
    creds: IceCreds,
    candidates: &[SocketAddr],
    now: Instant,
) -> Rtc {
    let mut config = RtcConfig::new()
        .set_rtp_mode(true)
        .set_ice_lite(true)
        .set_dtls_cert(cert.clone())
        .set_local_ice_credentials(creds)
        .set_send_buffer_video(SEND_BUFFER_VIDEO)
        .set_stats_interval(Some(STATS_INTERVAL))
        .clear_codecs();
    for codec in codecs {
        config = match codec.as_str() {
            "opus" => config.enable_opus(true, false),
            "vp8" => config.enable_vp8(true),
            "vp9" => config.enable_vp9(true),
            "h264" => config.enable_h264(true),
            _ => config,
        };
    }
    let mut rtc = config.build(now);
    for addr in candidates {
        if let Ok(candidate) = Candidate::host(*addr, "udp") {
            // Only fails for a duplicate; nothing to do then.
            let _ = rtc.add_local_candidate(candidate);
        }
    }
    rtc
}
