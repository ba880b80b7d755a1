//! Criterion bench of the demux lookup (src/media/demux.rs): which peer a
//! datagram belongs to, for 1k and 10k peers on one worker, both paths:
//!
//! - `stun`: a real ICE binding request (USERNAME, PRIORITY, ICE-CONTROLLING,
//!   USE-CANDIDATE, MESSAGE-INTEGRITY, FINGERPRINT; 100 bytes, as browsers
//!   send) parsed by str0m and looked up by our local ufrag;
//! - `srtp`: a 1 200-byte SRTP-looking datagram looked up by source address.
//!
//! Each iteration routes the next of 4 096 datagrams of distinct peers, so
//! the lookups do not all hit one warm hash bucket. Figure: time per route.
//! See benches/README-criterion.md.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use str0m::ice::{StunMessage, TransId};
use vestibule::media::demux::Demux;
use vestibule::media::rtc_config::new_credentials;
use vestibule::media::slab::PeerKey;

#[path = "support/cpu_time.rs"]
mod cpu_time;

use cpu_time::ThreadCpuTime;

/// Distinct datagrams cycled through per bench.
const PROBES: usize = 4096;

/// A peer's remote address: distinct IPs and ports, like NATed browsers.
fn peer_addr(i: usize) -> SocketAddr {
    let ip = Ipv4Addr::new(100, 64 + (i >> 16) as u8, (i >> 8) as u8, i as u8);
    SocketAddr::new(IpAddr::V4(ip), 40_000 + (i % 20_000) as u16)
}

/// A demux with `peers` routes of each kind, and the peers' local ufrags.
fn demux(peers: usize) -> (Demux, Vec<String>) {
    let mut demux = Demux::default();
    let mut ufrags = Vec::with_capacity(peers);
    for i in 0..peers {
        let key = PeerKey {
            index: i as u32,
            generation: 0,
        };
        let ufrag = new_credentials().ufrag;
        demux.add_ufrag(ufrag.clone(), key);
        demux.learn(peer_addr(i), key);
        ufrags.push(ufrag);
    }
    (demux, ufrags)
}

/// A browser-like binding request to `local_ufrag`, signed with `pass`.
fn binding_request(local_ufrag: &str, pass: &str) -> Vec<u8> {
    let provider = str0m::crypto::from_feature_flags();
    let hmac = provider.sha1_hmac_provider;
    let username = format!("{local_ufrag}:rmte");
    let message = StunMessage::binding_request(
        &username,
        TransId::new(),
        true,
        0x1234_5678,
        1_845_501_695,
        true,
    );
    let mut buf = vec![0u8; 1500];
    let len = message
        .to_bytes(Some(pass.as_bytes()), &mut buf, |key, payloads| {
            hmac.sha1_hmac(key, payloads)
        })
        .expect("STUN message");
    buf.truncate(len);
    buf
}

fn bench_demux(c: &mut Criterion<ThreadCpuTime>) {
    let mut group = c.benchmark_group("demux");
    group.sample_size(50);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(1));
    for peers in [1_000usize, 10_000] {
        let (demux, ufrags) = demux(peers);
        // 7919 is prime, so this walks every peer before repeating.
        let pick = |k: usize| (k * 7919) % peers;
        let stun: Vec<(SocketAddr, Vec<u8>)> = (0..PROBES)
            .map(|k| {
                let i = pick(k);
                (
                    peer_addr(i),
                    binding_request(&ufrags[i], "pwd-not-checked-by-demux"),
                )
            })
            .collect();
        let mut srtp_payload = vec![0u8; 1200];
        srtp_payload[0] = 0x80;
        srtp_payload[1] = 96;
        let srtp: Vec<SocketAddr> = (0..PROBES).map(|k| peer_addr(pick(k))).collect();
        // Every probe must route: a miss would measure the error path.
        for (source, datagram) in &stun {
            assert!(demux.route(*source, datagram).is_ok(), "STUN probe misses");
        }
        for source in &srtp {
            assert!(
                demux.route(*source, &srtp_payload).is_ok(),
                "SRTP probe misses"
            );
        }
        group.bench_with_input(BenchmarkId::new("stun", peers), &stun, |b, probes| {
            let mut k = 0;
            b.iter(|| {
                let (source, datagram) = &probes[k % PROBES];
                k += 1;
                black_box(demux.route(black_box(*source), black_box(datagram)))
            });
        });
        group.bench_with_input(BenchmarkId::new("srtp", peers), &srtp, |b, probes| {
            let mut k = 0;
            b.iter(|| {
                let source = probes[k % PROBES];
                k += 1;
                black_box(demux.route(black_box(source), black_box(&srtp_payload)))
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = bench_demux
}
criterion_main!(benches);
