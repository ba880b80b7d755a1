//! HOT PATH: which peer a datagram belongs to. STUN by our own local ufrag
//! (USERNAME = "local:remote"), everything else by the source address
//! learned after that peer accepted an authenticated STUN request. Never
//! a scan over peers.

use std::collections::HashMap;
use std::net::SocketAddr;

use str0m::ice::StunMessage;

use super::metrics::DropReason;
use super::slab::PeerKey;

/// Routing tables of one worker.
#[derive(Debug, Default)]
pub struct Demux {
    by_ufrag: HashMap<String, PeerKey>,
    by_addr: HashMap<SocketAddr, PeerKey>,
}

/// Whether a datagram looks like STUN (RFC 7983 demultiplexing: first byte 0..=3).
pub fn is_stun(datagram: &[u8]) -> bool {
    datagram.len() >= 20 && datagram[0] < 4
}

impl Demux {
    /// Routes a datagram to a peer.
    pub fn route(&self, source: SocketAddr, datagram: &[u8]) -> Result<PeerKey, DropReason> {
        if is_stun(datagram) {
            let message = StunMessage::parse(datagram).map_err(|_| DropReason::Malformed)?;
            let (local, _remote) = message.split_username().ok_or(DropReason::Malformed)?;
            return self
                .by_ufrag
                .get(local)
                .copied()
                .ok_or(DropReason::UnknownUfrag);
        }
        self.by_addr
            .get(&source)
            .copied()
            .ok_or(DropReason::UnknownSource)
    }

    /// The peer whose local ufrag this is.
    pub fn by_ufrag(&self, ufrag: &str) -> Option<PeerKey> {
        self.by_ufrag.get(ufrag).copied()
    }

    /// Registers a peer's local ufrag.
    pub fn add_ufrag(&mut self, ufrag: String, key: PeerKey) {
        self.by_ufrag.insert(ufrag, key);
    }

    /// Learns that `source` belongs to `key`; returns true when new.
    pub fn learn(&mut self, source: SocketAddr, key: PeerKey) -> bool {
        self.by_addr.insert(source, key) != Some(key)
    }

    /// Forgets a peer's routes.
    pub fn forget(&mut self, ufrag: &str, addrs: &[SocketAddr], key: PeerKey) {
        if self.by_ufrag.get(ufrag) == Some(&key) {
            self.by_ufrag.remove(ufrag);
        }
        for addr in addrs {
            if self.by_addr.get(addr) == Some(&key) {
                self.by_addr.remove(addr);
            }
        }
    }

    /// Routes held (ufrags, addresses), for leak checks.
    pub fn sizes(&self) -> (usize, usize) {
        (self.by_ufrag.len(), self.by_addr.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_classified_not_panicking() {
        let d = Demux::default();
        let src: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        assert_eq!(d.route(src, &[]), Err(DropReason::UnknownSource));
        assert_eq!(d.route(src, &[0u8; 20]), Err(DropReason::Malformed));
        assert_eq!(d.route(src, &[0x80; 100]), Err(DropReason::UnknownSource));
        for len in 0..64 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 % 4) as u8).collect();
            let _ = d.route(src, &junk);
        }
    }
}
