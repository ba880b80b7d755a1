//! Signal data channel messages (API.md "Signal channel"): `signal::decode`
//! on arbitrary bytes, and decode -> encode -> decode must round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vestibule::media::signal::{decode, encode};

/// `signal.max_message_bytes` default (config/default.toml); the fuzzer's
/// `-max_len` keeps inputs below it, so the TooLarge branch is covered by
/// the unit tests rather than here.
const MAX_BYTES: usize = 65536;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = decode(data, MAX_BYTES) else {
        return;
    };
    let _ = (message.id(), message.type_code());
    let wire = encode(&message);
    // The encoded form can be longer than the input (it writes `id` when the
    // input had none, and `sdp` as a `{"type","sdp"}` object), so the second
    // decode has no size limit.
    let again = decode(&wire, usize::MAX).expect("encode output decodes");
    assert_eq!(again, message, "signal round trip changed the message");
});
