//! HOT PATH: batched UDP I/O for one worker. Receives with recvmmsg (+GRO)
//! through quinn-udp; sends queued datagrams, coalescing runs of equal-size
//! datagrams to one destination into a single GSO send. No allocation per
//! packet beyond the owned buffers str0m hands out; no logging.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};

use quinn_udp::{BATCH_SIZE, RecvMeta, Transmit, UdpSockRef, UdpSocketState};
use tokio::io::Interest;

/// Largest datagram we expect on the media path (ICE, DTLS, SRTP).
const MAX_DATAGRAM: usize = 1500;
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
#[derive(Debug, Default)]
pub struct SendQueue {
    queue: Vec<(SocketAddr, Vec<u8>)>,
    /// Scratch for concatenating GSO runs (reused).
    gso: Vec<u8>,
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
            let count = (end - i) as u64;
            let result = if end - i == 1 {
                self.send_one(*dest, first, None)
            } else {
                queue.gso.clear();
                for (_, d) in &items[i..end] {
                    queue.gso.extend_from_slice(d);
                }
                self.send_one(*dest, &queue.gso, Some(first.len()))
            };
            match result {
                Ok(()) => sent += count,
                Err(_) => dropped += count,
            }
            i = end;
        }
        // Keep the allocation for the next iteration.
        let mut items = items;
        items.clear();
        queue.queue = items;
        (sent, dropped)
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
}
