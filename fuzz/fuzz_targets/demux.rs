//! UDP datagrams arriving at a media worker: the worker's demultiplexer
//! (`is_stun`, `Demux::route`: STUN parsing and USERNAME splitting, then the
//! ufrag / source-address tables) and str0m's datagram classification
//! (`Receive::new`: STUN / DTLS / RTP / RTCP).
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use str0m::net::{Protocol, Receive};
use vestibule::media::demux::{Demux, is_stun};
use vestibule::media::slab::PeerKey;

/// The local ufrag of the seed corpus's STUN binding request.
const KNOWN_UFRAG: &str = "vest";

fuzz_target!(|data: &[u8]| {
    let src: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    let dst: SocketAddr = "127.0.0.1:50000".parse().unwrap();

    let stun = is_stun(data);

    // An empty table, as on a fresh worker.
    let empty = Demux::default().route(src, data);

    // A table with one peer, so the hit paths run as well.
    let key = PeerKey {
        index: 0,
        generation: 1,
    };
    let mut demux = Demux::default();
    demux.add_ufrag(KNOWN_UFRAG.to_owned(), key);
    demux.learn(src, key);
    let known = demux.route(src, data);
    if !stun {
        // Non-STUN is routed by source address alone.
        assert!(empty.is_err());
        assert_eq!(known, Ok(key));
    }
    demux.forget(KNOWN_UFRAG, &[src], key);
    assert_eq!(demux.sizes(), (0, 0));

    let _ = Receive::new(Protocol::Udp, src, dst, data);
});
