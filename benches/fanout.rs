//! Criterion bench of the fan-out (src/media/fanout.rs + forward.rs): one
//! publisher packet forwarded inside a worker to N = 1, 10, 100, 500
//! subscribers, in memory, no syscalls.
//!
//! The rig (`vestibule::media::bench_support::FanoutRig`) is a real worker
//! with a real WHIP peer and N real WHEP peers, each DTLS-connected to a
//! str0m client through an in-memory network (str0m's own test approach:
//! one side's transmits are the other side's input). So each measured
//! fan-out runs the production code: per subscriber the keyframe gate, PT
//! map, sequence and RTP-time rebase and `write_rtp`, then one str0m
//! timeout + drain per subscriber that SRTP-seals the packet into the
//! worker's send queue. Two figures per N:
//!
//! - `fan_out/N`: `Worker::fan_out` of one already-received packet;
//! - `receive_fan_out/N`: `Worker::on_datagram` of the publisher's SRTP
//!   datagram: demux, SRTP unprotect, str0m RTP parse, then the fan-out.
//!
//! Throughput is in subscriber-packets (N per iteration). Not measured:
//! producing the publisher's packets, the socket flush (sendmmsg/GSO) and
//! freeing the sent buffers, timers: [`FanoutRig::settle`] does those between
//! timed blocks of [`BLOCK`] packets, like a worker flushes after a wake-up.
//! See benches/README-criterion.md.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use vestibule::media::bench_support::FanoutRig;

#[path = "support/cpu_time.rs"]
mod cpu_time;

use cpu_time::{ThreadCpuTime, thread_cpu_now};

/// Packets per timed block between two flushes (a busy worker's wake-up
/// handles up to 16 receive batches before it flushes).
const BLOCK: u64 = 16;

#[derive(Clone, Copy)]
enum Unit {
    FanOut,
    ReceiveFanOut,
}

/// Runs `iters` measured units in timed blocks; returns the thread CPU
/// time of the timed parts (see support/cpu_time.rs).
fn measure(rig: &mut FanoutRig, unit: Unit, iters: u64) -> Duration {
    let before = rig.sent();
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let block = (iters - done).min(BLOCK);
        match unit {
            Unit::FanOut => rig.prepare_packets(block as usize),
            Unit::ReceiveFanOut => rig.prepare_datagrams(block as usize),
        }
        let start = thread_cpu_now();
        for _ in 0..block {
            let ran = match unit {
                Unit::FanOut => rig.fan_out_next(),
                Unit::ReceiveFanOut => rig.receive_next(),
            };
            assert!(ran, "nothing prepared");
        }
        total += thread_cpu_now().saturating_sub(start);
        rig.settle();
        done += block;
    }
    // Every packet must have reached every subscriber's send queue, or the
    // figure would flatter a rig that silently stopped forwarding.
    let expected = iters * rig.subscribers() as u64;
    let sent = rig.sent() - before;
    assert!(
        sent >= expected,
        "{sent} RTP datagrams queued, {expected} expected"
    );
    total
}

fn bench_fanout(c: &mut Criterion<ThreadCpuTime>) {
    let mut group = c.benchmark_group("fanout");
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    for n in [1usize, 10, 100, 500] {
        let setup = Instant::now();
        let mut rig = FanoutRig::new(n);
        eprintln!(
            "fanout: {n} subscribers connected in memory in {:.1} s",
            setup.elapsed().as_secs_f64()
        );
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::new("fan_out", n), |b| {
            b.iter_custom(|iters| measure(&mut rig, Unit::FanOut, iters));
        });
        group.bench_function(BenchmarkId::new("receive_fan_out", n), |b| {
            b.iter_custom(|iters| measure(&mut rig, Unit::ReceiveFanOut, iters));
        });
        eprintln!(
            "fanout: {n} subscribers: {} SRTP datagrams queued, {:.0} bytes each on average",
            rig.sent(),
            rig.sent_bytes() as f64 / rig.sent().max(1) as f64
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = bench_fanout
}
criterion_main!(benches);
