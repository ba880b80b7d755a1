//! HOT PATH: batched UDP I/O for one worker. Receives with recvmmsg (+GRO)
//! through quinn-udp; sends queued datagrams with one GSO send per run of
//! equal-size datagrams to one destination (quinn-udp) and one sendmmsg per
//! up to [`SEND_BATCH`] other datagrams (nix; quinn-udp has no sendmmsg).
//! No allocation per packet beyond the owned buffers str0m hands out; no
//! logging.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd as _;

use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};

use quinn_udp::{BATCH_SIZE, RecvMeta, Transmit, UdpSockRef, UdpSocketState};
use tokio::io::Interest;

/// Largest datagram we expect on the media path (ICE, DTLS, SRTP).
const MAX_DATAGRAM: usize = 1500;
/// Datagrams per sendmmsg call.
pub const SEND_BATCH: usize = 64;
/// Socket buffer sizes: absorb keyframe bursts without drops.
const SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// One worker's socket plus quinn-udp's per-socket state.
#[derive(Debug)]
pub struct MediaSocket {
    socket: tokio::net::UdpSocket,
    state: UdpSocketState,
}

/// Receive buffers, allocated once per worker and reused.
#[derive(Debug)]
pub struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    metas: Vec<RecvMeta>,
    filled: usize,
}

/// Datagrams waiting to be sent this loop iteration.
pub struct SendQueue {
    queue: Vec<(SocketAddr, Vec<u8>)>,
    /// Scratch for concatenating GSO runs (reused).
    gso: Vec<u8>,
    /// Indexes into `queue` of single datagrams awaiting one sendmmsg.
    singles: Vec<usize>,
    /// sendmmsg headers, allocated once.
    headers: MultiHeaders<SockaddrStorage>,
}

impl Default for SendQueue {
    fn default() -> Self {
        Self {
            queue: Vec::new(),
            gso: Vec::new(),
            singles: Vec::with_capacity(SEND_BATCH),
            headers: MultiHeaders::preallocate(SEND_BATCH, None),
        }
    }
}

impl std::fmt::Debug for SendQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendQueue")
            .field("queued", &self.queue.len())
            .finish()
    }
}

impl MediaSocket {
    /// Wraps a bound, non-blocking std socket. Must be called inside a tokio runtime.
    pub fn new(socket: std::net::UdpSocket) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        let state = UdpSocketState::new(UdpSockRef::from(&socket))?;
        // Best effort: a smaller kernel limit only means earlier drops.
        let _ = state.set_recv_buffer_size(UdpSockRef::from(&socket), SOCKET_BUFFER);
        let _ = state.set_send_buffer_size(UdpSockRef::from(&socket), SOCKET_BUFFER);
        let socket = tokio::net::UdpSocket::from_std(socket)?;
        Ok(Self { socket, state })
    }

    /// Buffers sized for this socket's GRO segment count.
    pub fn batch(&self) -> RecvBatch {
        let slot = MAX_DATAGRAM * self.state.gro_segments().max(1);
        RecvBatch {
            bufs: (0..BATCH_SIZE).map(|_| vec![0u8; slot]).collect(),
            metas: vec![RecvMeta::default(); BATCH_SIZE],
            filled: 0,
        }
    }

    /// Waits until the socket may be readable.
    pub async fn readable(&self) -> io::Result<()> {
        self.socket.readable().await
    }

    /// Receives one batch without blocking; `Ok(0)` when nothing was waiting.
    pub fn try_recv(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        batch.filled = 0;
        let mut slices: [IoSliceMut<'_>; BATCH_SIZE] =
            std::array::from_fn(|_| IoSliceMut::new(&mut []));
        for (slice, buf) in slices.iter_mut().zip(batch.bufs.iter_mut()) {
            *slice = IoSliceMut::new(buf);
        }
        let result = self.socket.try_io(Interest::READABLE, || {
            self.state.recv(
                UdpSockRef::from(&self.socket),
                &mut slices,
                &mut batch.metas,
            )
        });
        match result {
            Ok(n) => {
                batch.filled = n;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Sends everything queued; returns (sent, dropped) datagram counts.
    /// Never blocks: what the kernel does not take now is dropped, as a
    /// real-time path must.
    pub fn flush(&self, queue: &mut SendQueue) -> (u64, u64) {
        let (mut sent, mut dropped) = (0u64, 0u64);
        let max_segments = self.state.max_gso_segments().max(1);
        let items = std::mem::take(&mut queue.queue);
        let mut i = 0;
        while i < items.len() {
            let (dest, first) = &items[i];
            // A GSO run: same destination, same size (the last may be shorter).
            let mut end = i + 1;
            while end < items.len()
                && end - i < max_segments
                && items[end].0 == *dest
                && items[end].1.len() <= first.len()
                && items[end - 1].1.len() == first.len()
            {
                end += 1;
            }
            if end - i == 1 {
                queue.singles.push(i);
                if queue.singles.len() == SEND_BATCH {
                    let (s, d) = self.send_singles(&items, queue);
                    sent += s;
                    dropped += d;
                }
            } else {
                // Earlier singles may go to the same destination: keep order.
                let (s, d) = self.send_singles(&items, queue);
                sent += s;
                dropped += d;
                queue.gso.clear();
                for (_, d) in &items[i..end] {
                    queue.gso.extend_from_slice(d);
                }
                let count = (end - i) as u64;
                match self.send_one(*dest, &queue.gso, Some(first.len())) {
                    Ok(()) => sent += count,
                    Err(_) => dropped += count,
                }
            }
            i = end;
        }
        let (s, d) = self.send_singles(&items, queue);
        sent += s;
        dropped += d;
        // Keep the allocation for the next iteration.
        let mut items = items;
        items.clear();
        queue.queue = items;
        (sent, dropped)
    }

    /// One sendmmsg for the collected single datagrams.
    fn send_singles(&self, items: &[(SocketAddr, Vec<u8>)], queue: &mut SendQueue) -> (u64, u64) {
        let count = queue.singles.len();
        if count == 0 {
            return (0, 0);
        }
        if count == 1 {
            let (dest, data) = &items[queue.singles[0]];
            queue.singles.clear();
            return match self.send_one(*dest, data, None) {
                Ok(()) => (1, 0),
                Err(_) => (0, 1),
            };
        }
        let slices: Vec<[IoSlice<'_>; 1]> = queue
            .singles
            .iter()
            .map(|&k| [IoSlice::new(&items[k].1)])
            .collect();
        let addrs: Vec<Option<SockaddrStorage>> = queue
            .singles
            .iter()
            .map(|&k| Some(SockaddrStorage::from(items[k].0)))
            .collect();
        queue.singles.clear();
        let no_cmsgs: [ControlMessage<'_>; 0] = [];
        let result = sendmmsg(
            self.socket.as_raw_fd(),
            &mut queue.headers,
            &slices,
            &addrs,
            no_cmsgs,
            MsgFlags::MSG_DONTWAIT,
        );
        match result {
            Ok(results) => {
                let done = results.count() as u64;
                (done, count as u64 - done)
            }
            Err(_) => (0, count as u64),
        }
    }

    fn send_one(
        &self,
        destination: SocketAddr,
        contents: &[u8],
        segment_size: Option<usize>,
    ) -> io::Result<()> {
        let transmit = Transmit {
            destination,
            ecn: None,
            contents,
            segment_size,
            src_ip: None,
        };
        self.state
            .try_send(UdpSockRef::from(&self.socket), &transmit)
    }
}

impl RecvBatch {
    /// Calls `f(source, datagram)` for every datagram of the last receive,
    /// splitting GRO-coalesced buffers by their stride.
    pub fn for_each(&self, mut f: impl FnMut(SocketAddr, Option<IpAddr>, &[u8])) {
        for (meta, buf) in self.metas.iter().zip(self.bufs.iter()).take(self.filled) {
            let data = &buf[..meta.len.min(buf.len())];
            for datagram in data.chunks(meta.stride.max(1)) {
                f(meta.addr, meta.dst_ip, datagram);
            }
        }
    }
}

impl SendQueue {
    /// Queues a datagram.
    pub fn push(&mut self, destination: SocketAddr, contents: Vec<u8>) {
        self.queue.push((destination, contents));
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Takes the queued datagrams without sending them, keeping the
    /// allocation like [`MediaSocket::flush`] does: the in-memory network
    /// of the benches (`bench_support`), which has no socket.
    pub(super) fn drain(&mut self) -> std::vec::Drain<'_, (SocketAddr, Vec<u8>)> {
        self.queue.drain(..)
    }
}
