//! Lobby-shaped SDP inputs shared by the criterion benches `sdp_offer` and
//! `signal_codec`: server-side `Rtc`s configured like the worker's (default
//! `media.codecs`), lobby tracks (each participant an audio and a video
//! track), their source codecs, and a str0m client answering an offer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use str0m::change::SdpOffer;
use str0m::config::DtlsCert;
use str0m::format::Codec;
use str0m::{Candidate, Rtc, RtcConfig};
use vestibule::media::egress::SourceCodecs;
use vestibule::media::rtc_config::{build_rtc, new_credentials};
use vestibule::media::sdp_meta::prepare_offer;
use vestibule_actors::ids::{ParticipantId, SessionId, TrackId};
use vestibule_actors::media::EgressTrack;
use vestibule_actors::snapshot::{MediaKind, Purpose};

/// The default `media.codecs` (config/default.toml).
pub const CODECS: [&str; 4] = ["opus", "vp8", "vp9", "h264"];

/// The process-wide DTLS certificate, as `MediaPlane::start` makes it.
pub fn certificate() -> DtlsCert {
    let provider = str0m::crypto::from_feature_flags();
    let cert = provider
        .dtls_provider
        .generate_certificate()
        .expect("DTLS certificate");
    provider.install_process_default();
    cert
}

/// A fresh WHEP-side `Rtc`, built as the worker builds one.
pub fn server_rtc(cert: &DtlsCert) -> Rtc {
    let codecs: Vec<String> = CODECS.map(String::from).to_vec();
    let candidate = SocketAddr::from(([192, 0, 2, 1], 40_000));
    build_rtc(
        &codecs,
        cert,
        new_credentials(),
        &[candidate],
        Instant::now(),
    )
}

/// `count` lobby tracks: participant k publishes video then audio.
pub fn tracks(count: usize) -> Vec<EgressTrack> {
    let mut tracks = Vec::with_capacity(count);
    let mut who = (SessionId::random(), ParticipantId::random());
    for i in 0..count {
        if i % 2 == 0 {
            who = (SessionId::random(), ParticipantId::random());
        }
        let video = i % 2 == 0;
        tracks.push(EgressTrack {
            track: TrackId::random(),
            publisher: who.0,
            participant: who.1,
            mid: if video { "1" } else { "0" }.into(),
            kind: if video {
                MediaKind::Video
            } else {
                MediaKind::Audio
            },
            purpose: Purpose::Guest,
            mute: false,
            user_id: format!("user-{}", i / 2),
        });
    }
    tracks
}

/// The codec each track's publisher sends: VP8 video, Opus audio (the
/// worker learns them from the publishers' first packets).
pub fn sources(rtc: &Rtc, tracks: &[EgressTrack]) -> SourceCodecs {
    let params = |codec| {
        *rtc.codec_config()
            .params()
            .iter()
            .find(|p| p.spec().codec == codec)
            .expect("codec configured")
    };
    let (vp8, opus) = (params(Codec::Vp8), params(Codec::Opus));
    let mut sources = HashMap::new();
    for t in tracks {
        let p = match t.kind {
            MediaKind::Video => vp8,
            MediaKind::Audio => opus,
        };
        sources.insert(t.track, p);
    }
    sources
}

/// A browser-like str0m client's answer to `offer`.
pub fn client_answer(offer: &str) -> String {
    let mut rtc = RtcConfig::new().build(Instant::now());
    let candidate =
        Candidate::host(SocketAddr::from(([192, 0, 2, 2], 50_000)), "udp").expect("candidate");
    rtc.add_local_candidate(candidate).expect("local candidate");
    // str0m rejects media-level i= lines: strip them as every str0m-based
    // client must (src/client/subscriber.rs).
    let offer = prepare_offer(offer).expect("offer SDP");
    let offer = SdpOffer::from_sdp_string(&offer.sdp).expect("offer SDP");
    rtc.sdp_api()
        .accept_offer(offer)
        .expect("answer")
        .to_sdp_string()
}
