//! What a receiving client measures per RTP stream: sequence-gap loss
//! after the first keyframe and end-to-end latency from the send time that
//! [`super::synthetic`] stamps in the payload. Kept separate from the
//! receive loop so that a load run can snapshot it cheaply and diff two
//! snapshots into one measurement window.

use std::collections::HashMap;
use std::time::Instant;

/// Linear buckets below this many µs (1 µs each).
const LINEAR_US: u64 = 64;
/// Sub-buckets per power of two above [`LINEAR_US`]: about 3 % resolution,
/// plenty for p50/p99 and mergeable across thousands of subscribers.
const SUB_BUCKETS: u64 = 32;
/// Buckets cover values up to 2^40 µs (12 days): nothing realistic clips.
const BUCKETS: usize = (LINEAR_US + SUB_BUCKETS * 35) as usize;

/// A log-linear latency histogram in µs: fixed size, so windows are the
/// difference of two snapshots and subscribers merge by addition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
    /// Largest value recorded.
    pub max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            max: 0,
        }
    }
}

fn bucket(v: u64) -> usize {
    if v < LINEAR_US {
        return v as usize;
    }
    // v in [2^e, 2^(e+1)) with e >= 6: 32 sub-buckets of width 2^(e-5).
    let e = 63 - u64::from(v.leading_zeros());
    let shift = e - 5;
    let sub = (v >> shift) - SUB_BUCKETS; // 0..32
    let idx = LINEAR_US + (e - 6) * SUB_BUCKETS + sub;
    (idx as usize).min(BUCKETS - 1)
}

/// The lowest value that falls in bucket `i`.
fn bucket_floor(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR_US {
        return i;
    }
    let e = (i - LINEAR_US) / SUB_BUCKETS + 6;
    let sub = (i - LINEAR_US) % SUB_BUCKETS;
    (SUB_BUCKETS + sub) << (e - 5)
}

impl Histogram {
    /// Records one value in µs.
    pub fn record(&mut self, us: u64) {
        self.counts[bucket(us)] += 1;
        self.max = self.max.max(us);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Adds another histogram into this one.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.max = self.max.max(other.max);
    }

    /// This histogram minus an earlier snapshot of the same one. `max` is
    /// the larger bucket floor seen in the window (exact max is lost).
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .zip(&earlier.counts)
            .map(|(a, b)| a.saturating_sub(*b))
            .collect();
        let max = counts.iter().rposition(|c| *c > 0).map_or(0, |i| {
            if self.max >= bucket_floor(i) && bucket(self.max) == i {
                self.max
            } else {
                bucket_floor(i)
            }
        });
        Histogram { counts, max }
    }

    /// The value at quantile `q` (0..=1), as the floor of its bucket.
    pub fn quantile(&self, q: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        let rank = ((total as f64 * q).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_floor(i).min(self.max);
            }
        }
        self.max
    }
}

/// One RTP stream (SSRC) as received.
#[derive(Debug, Clone, Default)]
struct StreamCount {
    /// Extended sequence number from which packets count (the first
    /// keyframe's first packet for video, the first packet for audio).
    base: Option<u64>,
    /// Highest extended sequence number counted.
    highest: u64,
    /// Packets counted from `base` on.
    received: u64,
}

/// One received RTP packet, as [`ReceiveStats`] needs it.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// Its SSRC.
    pub ssrc: u32,
    /// Extended sequence number.
    pub seq: u64,
    /// A video packet.
    pub video: bool,
    /// A video packet that starts a keyframe: video counts from there,
    /// since servers hold video back until one.
    pub keyframe_start: bool,
    /// RTP payload bytes.
    pub bytes: usize,
    /// Receive time minus the payload's send stamp, when it carries one.
    pub latency_us: Option<u64>,
    /// When it arrived.
    pub at: Instant,
}

/// Loss and latency of one receiving peer connection.
#[derive(Debug, Clone, Default)]
pub struct ReceiveStats {
    streams: HashMap<u32, StreamCount>,
    /// Payload bytes of the counted packets.
    bytes: u64,
    /// End-to-end latency of stamped packets, µs.
    pub latency: Histogram,
    /// When the first video keyframe started to arrive.
    pub first_keyframe_at: Option<Instant>,
}

/// Totals of a [`ReceiveStats`] at one moment; windows are differences.
#[derive(Debug, Clone, Default)]
pub struct ReceiveTotals {
    /// Packets counted after each stream's start.
    pub received: u64,
    /// Packets the sequence numbers say were sent from each stream's start.
    pub expected: u64,
    /// Payload bytes of the received packets.
    pub bytes: u64,
    /// Latency histogram so far.
    pub latency: Histogram,
}

impl ReceiveTotals {
    /// Adds another peer's totals (to sum over subscribers).
    pub fn merge(&mut self, other: &ReceiveTotals) {
        self.received += other.received;
        self.expected += other.expected;
        self.bytes += other.bytes;
        self.latency.merge(&other.latency);
    }

    /// This minus an earlier snapshot.
    pub fn since(&self, earlier: &ReceiveTotals) -> ReceiveTotals {
        ReceiveTotals {
            received: self.received.saturating_sub(earlier.received),
            expected: self.expected.saturating_sub(earlier.expected),
            bytes: self.bytes.saturating_sub(earlier.bytes),
            latency: self.latency.since(&earlier.latency),
        }
    }

    /// Sequence-gap loss in percent.
    pub fn loss_pct(&self) -> f64 {
        if self.expected == 0 {
            return 0.0;
        }
        self.expected.saturating_sub(self.received) as f64 * 100.0 / self.expected as f64
    }
}

impl ReceiveStats {
    /// Records one RTP packet.
    pub fn on_packet(&mut self, p: &Arrival) {
        if p.keyframe_start && self.first_keyframe_at.is_none() {
            self.first_keyframe_at = Some(p.at);
        }
        let stream = self.streams.entry(p.ssrc).or_default();
        match stream.base {
            None if p.video && !p.keyframe_start => return,
            None => {
                stream.base = Some(p.seq);
                stream.highest = p.seq;
            }
            Some(base) if p.seq < base => return,
            Some(_) => stream.highest = stream.highest.max(p.seq),
        }
        stream.received += 1;
        self.bytes += p.bytes as u64;
        if let Some(latency) = p.latency_us {
            self.latency.record(latency);
        }
    }

    /// Totals so far.
    pub fn totals(&self) -> ReceiveTotals {
        let (received, expected) = self
            .streams
            .values()
            .fold((0, 0), |(r, e), s| match s.base {
                Some(base) => (r + s.received, e + (s.highest - base + 1)),
                None => (r, e),
            });
        ReceiveTotals {
            received,
            // Duplicates (retransmissions of received packets) must not
            // turn into negative loss.
            expected: expected.max(received),
            bytes: self.bytes,
            latency: self.latency.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for v in [0u64, 1, 63, 64, 65, 100, 1000, 12_345, 1 << 20, 1 << 39] {
            let b = bucket(v);
            assert!(b >= last);
            last = b;
            let floor = bucket_floor(b);
            assert!(floor <= v, "{v}: floor {floor}");
            assert!(v - floor <= v / 32 + 1, "{v}: floor {floor}");
        }
    }

    #[test]
    fn quantiles_and_windows() {
        let mut h = Histogram::default();
        for v in 1..=100 {
            h.record(v * 10);
        }
        let early = h.clone();
        assert!((480..=500).contains(&h.quantile(0.5)));
        assert_eq!(h.max, 1000);
        for _ in 0..100 {
            h.record(5);
        }
        let window = h.since(&early);
        assert_eq!(window.count(), 100);
        assert_eq!(window.quantile(0.99), 5);
        assert_eq!(window.max, 5);
    }

    #[test]
    fn loss_counts_gaps_after_the_first_keyframe() {
        let mut s = ReceiveStats::default();
        let t = Instant::now();
        let p = |ssrc, seq, video, keyframe_start, latency_us| Arrival {
            ssrc,
            seq,
            video,
            keyframe_start,
            bytes: 100,
            latency_us,
            at: t,
        };
        // Video before a keyframe is not counted.
        s.on_packet(&p(1, 5, true, false, None));
        s.on_packet(&p(1, 10, true, true, Some(50)));
        s.on_packet(&p(1, 11, true, false, None));
        s.on_packet(&p(1, 13, true, false, None)); // 12 lost
        s.on_packet(&p(2, 7, false, false, Some(10)));
        let totals = s.totals();
        assert_eq!(totals.received, 4);
        assert_eq!(totals.expected, 5);
        assert!((totals.loss_pct() - 20.0).abs() < 1e-9);
        assert_eq!(totals.latency.count(), 2);
        assert_eq!(totals.bytes, 400);
        assert_eq!(s.first_keyframe_at, Some(t));
    }
}
