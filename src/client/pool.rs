//! A few threads that each drive hundreds of receiving peers behind one
//! epoll. A thread per subscriber costs a context switch per packet per
//! subscriber, which on a small machine makes the load generator, not the
//! server, the bottleneck; a server fan-out burst (one packet to every
//! subscriber) here wakes one thread once and is drained in a loop.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::os::fd::AsFd as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};

use super::recv::{Control, RecvPeer};

/// Longest epoll wait: bounds how late commands (adds, removals) are seen.
const MAX_WAIT: Duration = Duration::from_millis(5);
/// Shortest wait for a str0m timeout.
const MIN_WAIT: Duration = Duration::from_millis(1);
/// Events taken from epoll per wait.
const EVENTS: usize = 256;

enum Command {
    Add(u64, Box<RecvPeer>),
    Remove(u64),
    Control(u64, Control),
}

/// A handle on the pool; clones share it. The threads stop when the last
/// handle and every peer in them are gone.
#[derive(Debug, Clone)]
pub struct ReceivePool {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    threads: Vec<(mpsc::Sender<Command>, JoinHandle<()>)>,
    next_id: AtomicU64,
}

impl ReceivePool {
    /// Starts `threads` pool threads (at least one).
    pub fn new(threads: usize) -> std::io::Result<ReceivePool> {
        let threads = (0..threads.max(1))
            .map(|i| {
                let (tx, rx) = mpsc::channel();
                let handle = std::thread::Builder::new()
                    .name(format!("whep-pool-{i}"))
                    .spawn(move || run(&rx))?;
                Ok((tx, handle))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(ReceivePool {
            shared: Arc::new(Shared {
                threads,
                next_id: AtomicU64::new(1),
            }),
        })
    }

    fn sender(&self, id: u64) -> &mpsc::Sender<Command> {
        let threads = &self.shared.threads;
        &threads[(id as usize) % threads.len()].0
    }

    /// Hands a peer to the next thread (round robin); returns its id.
    pub(crate) fn add(&self, peer: RecvPeer) -> u64 {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        if self
            .sender(id)
            .send(Command::Add(id, Box::new(peer)))
            .is_err()
        {
            tracing::warn!("receive pool thread gone");
        }
        id
    }

    /// Stops and drops a peer.
    pub(crate) fn remove(&self, id: u64) {
        let _ = self.sender(id).send(Command::Remove(id));
    }

    /// Passes a request to a peer; false when its thread is gone.
    pub(crate) fn control(&self, id: u64, request: Control) -> bool {
        self.sender(id).send(Command::Control(id, request)).is_ok()
    }
}

/// One pooled peer and its next str0m timeout.
struct Entry {
    peer: RecvPeer,
    /// str0m's next timeout.
    due: Instant,
    /// The earliest time this peer has in the timer heap.
    scheduled: Option<Instant>,
}

/// Peers by deadline. Entries are never removed, only superseded: an
/// entry counts when it equals the peer's `scheduled` time. Scanning
/// every peer per wake-up instead cost a quarter of the pool thread's
/// CPU at 500 peers (perf).
#[derive(Default)]
struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
}

impl Timers {
    /// Notes a peer's new deadline if it is earlier than the one queued.
    fn schedule(&mut self, id: u64, entry: &mut Entry) {
        if entry.scheduled.is_none_or(|s| entry.due < s) {
            entry.scheduled = Some(entry.due);
            self.heap.push(Reverse((entry.due, id)));
        }
    }

    fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// The next due (time, id), if any is due at `now`.
    fn pop_due(&mut self, now: Instant) -> Option<(Instant, u64)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }
}

/// The loop of one pool thread: until its handles are gone.
fn run(commands: &mpsc::Receiver<Command>) {
    let Ok(epoll) = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC) else {
        tracing::warn!("receive pool: epoll_create failed");
        return;
    };
    let mut peers: HashMap<u64, Entry> = HashMap::new();
    let mut timers = Timers::default();
    let mut events = vec![EpollEvent::empty(); EVENTS];
    let mut buf = vec![0u8; 2048];
    loop {
        loop {
            match commands.try_recv() {
                Ok(Command::Add(id, peer)) => {
                    let peer = *peer;
                    let _ = peer.socket.set_nonblocking(true);
                    let event = EpollEvent::new(EpollFlags::EPOLLIN, id);
                    if epoll.add(peer.socket.as_fd(), event).is_err() {
                        peer.end();
                        continue;
                    }
                    let mut entry = Entry {
                        peer,
                        due: Instant::now(),
                        scheduled: None,
                    };
                    if advance(&mut entry) {
                        timers.schedule(id, &mut entry);
                        peers.insert(id, entry);
                    }
                }
                Ok(Command::Remove(id)) => drop_peer(&epoll, &mut peers, id),
                Ok(Command::Control(id, request)) => {
                    if let Some(entry) = peers.get_mut(&id) {
                        entry.peer.on_control(request);
                        if advance(entry) {
                            timers.schedule(id, entry);
                        } else {
                            drop_peer(&epoll, &mut peers, id);
                        }
                    }
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    for (_, entry) in peers.drain() {
                        entry.peer.end();
                    }
                    return;
                }
            }
        }
        let now = Instant::now();
        let wait = timers
            .next()
            .map_or(MAX_WAIT, |d| d.saturating_duration_since(now))
            .min(MAX_WAIT);
        // Rounded up: truncating a wait under 1 ms to 0 made the thread
        // spin until the deadline.
        let millis = u16::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(u16::MAX);
        let ready = epoll.wait(&mut events, millis).unwrap_or(0);
        for event in &events[..ready] {
            let id = event.data();
            let Some(entry) = peers.get_mut(&id) else {
                continue;
            };
            if read_all(entry, &mut buf) {
                timers.schedule(id, entry);
            } else {
                drop_peer(&epoll, &mut peers, id);
            }
        }
        let now = Instant::now();
        while let Some((at, id)) = timers.pop_due(now) {
            let Some(entry) = peers.get_mut(&id) else {
                continue;
            };
            if entry.scheduled != Some(at) {
                continue; // superseded by an earlier deadline
            }
            entry.scheduled = None;
            if entry.peer.timeout(now) && advance(entry) {
                timers.schedule(id, entry);
            } else {
                drop_peer(&epoll, &mut peers, id);
            }
        }
    }
}

/// Drains str0m's output and notes its next timeout; false when dead.
fn advance(entry: &mut Entry) -> bool {
    match entry.peer.drain() {
        Some(due) => {
            // A timeout that is already due would make the loop spin:
            // like the thread driver, wait at least a millisecond.
            entry.due = due.max(Instant::now() + MIN_WAIT);
            true
        }
        None => false,
    }
}

/// Reads every queued datagram of one peer; false when it died.
fn read_all(entry: &mut Entry, buf: &mut [u8]) -> bool {
    loop {
        match entry.peer.socket.recv_from(buf) {
            Ok((n, source)) => {
                if !entry.peer.receive(Instant::now(), source, &buf[..n]) || !advance(entry) {
                    return false;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // ICMP port unreachable surfaces as ECONNREFUSED on some
            // kernels: not fatal for an unconnected socket.
            Err(_) => return true,
        }
    }
}

fn drop_peer(epoll: &Epoll, peers: &mut HashMap<u64, Entry>, id: u64) {
    if let Some(entry) = peers.remove(&id) {
        let _ = epoll.delete(entry.peer.socket.as_fd());
        entry.peer.end();
    }
}
