//! The floor: the least a forwarder can do per subscriber-packet on this
//! machine. Per packet and subscriber: copy an RTP header + payload, seal
//! it with AES-256-GCM (the SRTP profile browsers negotiate), then send
//! everything with sendmmsg in batches of 64, on a 1 ms tick like a media
//! worker. No str0m, no demux, no RTCP, no NACK: what is left when a
//! forwarder does nothing but encrypt and send.

use std::net::UdpSocket;
use std::os::fd::AsRawFd as _;
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};

/// One run of the floor loop.
pub struct FloorResult {
    /// Subscriber-packets sealed and handed to the kernel.
    pub packets: u64,
    /// CPU seconds of this process during the loop.
    pub cpu_seconds: f64,
}

fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// Sends `pps_per_subscriber` packets of `payload_len` bytes per second to
/// each of `subscribers` loopback sockets for `duration`.
pub fn run(
    subscribers: usize,
    pps_per_subscriber: u32,
    payload_len: usize,
    duration: Duration,
) -> FloorResult {
    let sender = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
    sender.set_nonblocking(true).expect("nonblocking");
    let sinks: Vec<UdpSocket> = (0..subscribers)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind sink"))
        .collect();
    let addrs: Vec<SockaddrStorage> = sinks
        .iter()
        .map(|s| SockaddrStorage::from(s.local_addr().expect("addr")))
        .collect();
    let keys: Vec<LessSafeKey> = (0..subscribers)
        .map(|i| {
            let mut key = [0u8; 32];
            key[0] = i as u8;
            LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).expect("key"))
        })
        .collect();
    let payload = vec![0x5au8; payload_len];
    let mut buffers: Vec<Vec<u8>> = (0..subscribers)
        .map(|_| Vec::with_capacity(payload_len + 64))
        .collect();
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(64, None);
    let interval = Duration::from_secs(1) / pps_per_subscriber.max(1);
    let started = Instant::now();
    let cpu0 = process_cpu_seconds();
    let mut next = started;
    let mut seq: u32 = 0;
    let mut packets = 0u64;
    while started.elapsed() < duration {
        let now = Instant::now();
        while next <= now {
            seq = seq.wrapping_add(1);
            for (i, buf) in buffers.iter_mut().enumerate() {
                buf.clear();
                buf.extend_from_slice(&[
                    0x80,
                    96,
                    (seq >> 8) as u8,
                    seq as u8,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    i as u8,
                ]);
                buf.extend_from_slice(&payload);
                let mut nonce = [0u8; 12];
                nonce[8..].copy_from_slice(&seq.to_be_bytes());
                let (header, body) = buf.split_at_mut(12);
                if let Ok(tag) = keys[i].seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(&*header),
                    body,
                ) {
                    buf.extend_from_slice(tag.as_ref());
                }
            }
            for (chunk_bufs, chunk_addrs) in buffers.chunks(64).zip(addrs.chunks(64)) {
                let slices: Vec<[std::io::IoSlice<'_>; 1]> = chunk_bufs
                    .iter()
                    .map(|b| [std::io::IoSlice::new(b)])
                    .collect();
                let targets: Vec<Option<SockaddrStorage>> =
                    chunk_addrs.iter().map(|a| Some(*a)).collect();
                let no_cmsgs: [ControlMessage<'_>; 0] = [];
                if let Ok(sent) = sendmmsg(
                    sender.as_raw_fd(),
                    &mut headers,
                    &slices,
                    &targets,
                    no_cmsgs,
                    MsgFlags::MSG_DONTWAIT,
                ) {
                    packets += sent.count() as u64;
                }
            }
            next += interval;
        }
        std::thread::sleep(
            next.saturating_duration_since(Instant::now())
                .min(Duration::from_millis(1)),
        );
    }
    FloorResult {
        packets,
        cpu_seconds: process_cpu_seconds() - cpu0,
    }
}
