//! A criterion measurement of the bench thread's CPU time instead of wall
//! time. The development machine has 2 cores shared with builds and other
//! sessions; wall time then counts the time our thread waits for a core,
//! which is noise, not cost. Thread CPU time counts only what the measured
//! code spends (cache pollution by the neighbours still shows), and it is
//! the figure the targets are stated in: a share of one core. On
//! an idle machine both clocks agree.

use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use nix::time::{ClockId, clock_gettime};

/// CPU time consumed by the calling thread (`CLOCK_THREAD_CPUTIME_ID`).
pub fn thread_cpu_now() -> Duration {
    let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).expect("thread CPU clock");
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

/// Criterion measurement: CPU time of the thread running the iterations.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadCpuTime;

/// Durations print the same whichever clock measured them.
static DURATIONS: WallTime = WallTime;

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu_now()
    }

    fn end(&self, started: Duration) -> Duration {
        thread_cpu_now().saturating_sub(started)
    }

    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        DURATIONS.formatter()
    }
}
