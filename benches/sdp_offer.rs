//! Criterion bench of the server's SDP offer build (src/media/egress.rs +
//! sdp_meta.rs) for 1, 8 and 32 lobby tracks, reported per m-line:
//!
//! - `offer/T`: `Egress::offer` on a fresh WHEP `Rtc`: str0m adds T
//!   send-only m-lines and writes the SDP, then Vestibule restricts each
//!   m-line to its source codec, adds the `i=` labels and msid, and
//!   completes the candidates;
//! - `str0m_only/T`: the str0m part of that alone (`add_media` x T,
//!   `apply`, `to_sdp_string`), so `offer - str0m_only` is Vestibule's own
//!   annotation cost;
//! - `renegotiate/T`: `Egress::renegotiate` on an answered connection with
//!   T - 1 tracks when the T-th joins (T = 1: the empty lobby's inactive
//!   placeholder is reused); the new offer again carries all T m-lines.
//!
//! Throughput is in m-lines (T per iteration): criterion's time/T is the
//! cost per m-line. Building the `Rtc` (and, for renegotiate, the previous
//! offer/answer) is setup, not measured. See benches/README-criterion.md.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use str0m::media::{Direction, MediaKind as StrMediaKind};
use vestibule::media::egress::Egress;
use vestibule_actors::snapshot::MediaKind;

#[path = "support/cpu_time.rs"]
mod cpu_time;
#[path = "support/lobby_sdp.rs"]
mod lobby_sdp;

use cpu_time::ThreadCpuTime;

fn bench_sdp_offer(c: &mut Criterion<ThreadCpuTime>) {
    let cert = lobby_sdp::certificate();
    let mut group = c.benchmark_group("sdp_offer");
    group.sample_size(30);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    for count in [1usize, 8, 32] {
        let tracks = lobby_sdp::tracks(count);
        let sources = lobby_sdp::sources(&lobby_sdp::server_rtc(&cert), &tracks);
        {
            let mut rtc = lobby_sdp::server_rtc(&cert);
            let (_, offer) =
                Egress::offer(&mut rtc, tracks.clone(), sources.clone()).expect("offer");
            eprintln!(
                "sdp_offer: {count} tracks: {} m-lines, {} bytes of SDP",
                offer.lines().filter(|l| l.starts_with("m=")).count(),
                offer.len()
            );
        }
        group.throughput(Throughput::Elements(count as u64));
        group.bench_function(BenchmarkId::new("offer", count), |b| {
            b.iter_batched(
                || {
                    (
                        lobby_sdp::server_rtc(&cert),
                        tracks.clone(),
                        sources.clone(),
                    )
                },
                |(mut rtc, tracks, sources)| {
                    let made = Egress::offer(&mut rtc, tracks, sources).expect("offer");
                    black_box(made);
                    rtc
                },
                BatchSize::SmallInput,
            );
        });
        group.bench_function(BenchmarkId::new("str0m_only", count), |b| {
            b.iter_batched(
                || (lobby_sdp::server_rtc(&cert), tracks.clone()),
                |(mut rtc, tracks)| {
                    let mut change = rtc.sdp_api();
                    for t in tracks {
                        let kind = match t.kind {
                            MediaKind::Audio => StrMediaKind::Audio,
                            MediaKind::Video => StrMediaKind::Video,
                        };
                        change.add_media(
                            kind,
                            Direction::SendOnly,
                            Some(t.participant.to_string()),
                            Some(t.track.to_string()),
                            None,
                        );
                    }
                    let (offer, _pending) = change.apply().expect("offer");
                    black_box(offer.to_sdp_string());
                    rtc
                },
                BatchSize::SmallInput,
            );
        });
        group.bench_function(BenchmarkId::new("renegotiate", count), |b| {
            b.iter_batched(
                || {
                    let mut rtc = lobby_sdp::server_rtc(&cert);
                    let before = tracks[..count - 1].to_vec();
                    let (mut egress, offer) =
                        Egress::offer(&mut rtc, before, sources.clone()).expect("offer");
                    let answer = lobby_sdp::client_answer(&offer);
                    egress
                        .accept_answer(&mut rtc, &answer, Instant::now())
                        .expect("answer");
                    (rtc, egress, tracks.clone(), sources.clone())
                },
                |(mut rtc, mut egress, tracks, sources)| {
                    let offer = egress
                        .renegotiate(&mut rtc, tracks, sources)
                        .expect("renegotiation")
                        .expect("an offer");
                    black_box(offer);
                    (rtc, egress)
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = bench_sdp_offer
}
criterion_main!(benches);
