//! A lazy min-heap of peer deadlines: push only when a deadline gets
//! earlier, skip superseded entries on pop, so idle peers cost nothing.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use super::slab::PeerKey;

/// Pending wake-ups of one worker.
#[derive(Debug, Default)]
pub struct TimerHeap {
    heap: BinaryHeap<Reverse<(Instant, PeerKey)>>,
}

impl TimerHeap {
    /// Schedules `key` at `at`.
    pub fn push(&mut self, at: Instant, key: PeerKey) {
        self.heap.push(Reverse((at, key)));
    }

    /// The earliest pending deadline.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// Pops one entry that is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, PeerKey)> {
        match self.heap.peek() {
            Some(Reverse((t, _))) if *t <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    /// Entries held (including superseded ones).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}
