//! The signal data channel (API.md "Signal channel" and "Limits"): the JSON
//! codec for its messages and the per-session message limiter.
//!
//! Pure and sans-IO: the caller hands in the bytes of one SCTP message (text
//! or binary, both are the same UTF-8 JSON) and, for the limiter, the
//! `Instant` it received them at. Runs on the media worker thread that owns
//! the session's WHIP peer.

use std::time::Instant;

use serde::Serialize;
use serde_json::{Map, Value};

/// Wire code of an offer.
const TYPE_OFFER: u64 = 1;
/// Wire code of an answer.
const TYPE_ANSWER: u64 = 2;
/// Wire code of a mute notice.
const TYPE_MUTE: u64 = 3;

/// Violations after which the session is closed (API.md "Limits").
pub const MAX_VIOLATIONS: u32 = 3;

/// Fixed-point scale of the token bucket.
const NANO_PER_TOKEN: u128 = 1_000_000_000;

/// One message on the signal channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalMessage {
    /// Type 1: an SDP offer. Server to client for its WHEP connection, or
    /// client to server for its own WHIP connection.
    Offer {
        /// Counts the messages the sender originates, from 1; 0 when absent.
        id: u64,
        /// The per-session, per-direction offer number.
        number: u64,
        /// The SDP text.
        sdp: String,
        /// The WHEP connection the offer is for; set on server offers only.
        whep: Option<String>,
    },
    /// Type 2: the answer to the offer with the same `number`.
    Answer {
        /// Echoes the `id` of the offer it answers.
        id: u64,
        /// The `number` of the offer it answers.
        number: u64,
        /// The SDP text.
        sdp: String,
    },
    /// Type 3: advisory mute state of one track.
    Mute {
        /// Counts the messages the sender originates, from 1; 0 when absent.
        id: u64,
        /// The track's mid: the sender's WHIP mid from a client, the
        /// receiver's egress mid from the server.
        mid: String,
        /// Whether the track is now muted.
        mute: bool,
    },
}

impl SignalMessage {
    /// The message's `id`.
    pub fn id(&self) -> u64 {
        match self {
            SignalMessage::Offer { id, .. }
            | SignalMessage::Answer { id, .. }
            | SignalMessage::Mute { id, .. } => *id,
        }
    }

    /// The wire `type` code.
    pub fn type_code(&self) -> u64 {
        match self {
            SignalMessage::Offer { .. } => TYPE_OFFER,
            SignalMessage::Answer { .. } => TYPE_ANSWER,
            SignalMessage::Mute { .. } => TYPE_MUTE,
        }
    }
}

/// Why a signal message was not understood. Each is counted by
/// [`DecodeError::reason`] and the message dropped; none closes the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Longer than `signal.max_message_bytes`.
    #[error("signal message exceeds the size limit")]
    TooLarge,
    /// The bytes are not UTF-8.
    #[error("signal message is not UTF-8")]
    NotUtf8,
    /// Not JSON, or JSON that is not an object.
    #[error("signal message is not a JSON object")]
    NotJson,
    /// `type` is not 1, 2 or 3 (as a number or a numeric string).
    #[error("signal message has an unknown type")]
    UnknownType,
    /// A required field is missing or has the wrong JSON type.
    #[error("signal message lacks a valid `{0}`")]
    MissingField(&'static str),
}

impl DecodeError {
    /// A short, fixed label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::TooLarge => "too_large",
            DecodeError::NotUtf8 => "not_utf8",
            DecodeError::NotJson => "not_json",
            DecodeError::UnknownType => "unknown_type",
            DecodeError::MissingField(_) => "missing_field",
        }
    }
}

/// Decodes one signal message, received as text or binary.
///
/// Lenient where API.md says so: `type` may be a numeric string, `id` may be
/// absent or malformed (then 0; nothing is rejected for its id), `data.sdp`
/// may be a bare string, and unknown fields are ignored. The envelope's
/// `type` decides offer or answer; an `sdp.type` that disagrees is ignored.
pub fn decode(bytes: &[u8], max_bytes: usize) -> Result<SignalMessage, DecodeError> {
    // Checked before anything else so an oversized message costs no parsing.
    if bytes.len() > max_bytes {
        return Err(DecodeError::TooLarge);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| DecodeError::NotUtf8)?;
    // serde_json bounds nesting depth (128), so hostile input cannot
    // overflow the stack.
    let value: Value = serde_json::from_str(text).map_err(|_| DecodeError::NotJson)?;
    let Value::Object(envelope) = value else {
        return Err(DecodeError::NotJson);
    };
    let id = envelope.get("id").and_then(lenient_u64).unwrap_or(0);
    let code = envelope
        .get("type")
        .ok_or(DecodeError::MissingField("type"))
        .map(|t| lenient_u64(t).ok_or(DecodeError::UnknownType))??;
    if !matches!(code, TYPE_OFFER | TYPE_ANSWER | TYPE_MUTE) {
        return Err(DecodeError::UnknownType);
    }
    let Some(Value::Object(data)) = envelope.get("data") else {
        return Err(DecodeError::MissingField("data"));
    };
    match code {
        TYPE_MUTE => {
            let mid = data
                .get("mid")
                .and_then(Value::as_str)
                .ok_or(DecodeError::MissingField("mid"))?;
            let mute = data
                .get("mute")
                .and_then(Value::as_bool)
                .ok_or(DecodeError::MissingField("mute"))?;
            Ok(SignalMessage::Mute {
                id,
                mid: mid.to_owned(),
                mute,
            })
        }
        TYPE_OFFER => {
            let (number, sdp) = number_and_sdp(data)?;
            let whep = data.get("whep").and_then(Value::as_str).map(str::to_owned);
            Ok(SignalMessage::Offer {
                id,
                number,
                sdp,
                whep,
            })
        }
        _ => {
            let (number, sdp) = number_and_sdp(data)?;
            Ok(SignalMessage::Answer { id, number, sdp })
        }
    }
}

/// `data.number` and `data.sdp` of an offer or answer.
fn number_and_sdp(data: &Map<String, Value>) -> Result<(u64, String), DecodeError> {
    let number = data
        .get("number")
        .and_then(lenient_u64)
        .ok_or(DecodeError::MissingField("number"))?;
    let sdp = match data.get("sdp") {
        Some(Value::String(bare)) => bare,
        Some(Value::Object(desc)) => match desc.get("sdp") {
            Some(Value::String(text)) => text,
            _ => return Err(DecodeError::MissingField("sdp")),
        },
        _ => return Err(DecodeError::MissingField("sdp")),
    };
    Ok((number, sdp.clone()))
}

/// A non-negative integer given as a JSON number or a numeric string.
fn lenient_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The envelope as written; field order is the order on the wire.
#[derive(Serialize)]
struct WireOut<'a> {
    id: u64,
    #[serde(rename = "type")]
    code: u64,
    data: DataOut<'a>,
}

/// `data` of each message type.
#[derive(Serialize)]
#[serde(untagged)]
enum DataOut<'a> {
    Description {
        number: u64,
        sdp: SdpOut<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        whep: Option<&'a str>,
    },
    Mute {
        mid: &'a str,
        mute: bool,
    },
}

/// `data.sdp` in the object form browsers' `RTCSessionDescriptionInit` uses.
#[derive(Serialize)]
struct SdpOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sdp: &'a str,
}

/// Encodes a message as UTF-8 JSON, to be sent as a binary message: `type`
/// as a number, `data.sdp` as `{"type","sdp"}`, `data.whep` only when set.
pub fn encode(msg: &SignalMessage) -> Vec<u8> {
    let data = match msg {
        SignalMessage::Offer {
            number, sdp, whep, ..
        } => DataOut::Description {
            number: *number,
            sdp: SdpOut { kind: "offer", sdp },
            whep: whep.as_deref(),
        },
        SignalMessage::Answer { number, sdp, .. } => DataOut::Description {
            number: *number,
            sdp: SdpOut {
                kind: "answer",
                sdp,
            },
            whep: None,
        },
        SignalMessage::Mute { mid, mute, .. } => DataOut::Mute { mid, mute: *mute },
    };
    let wire = WireOut {
        id: msg.id(),
        code: msg.type_code(),
        data,
    };
    serde_json::to_vec(&wire)
        .expect("structs of strings, integers and bools always serialize into a Vec")
}

/// What to do with one received signal message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Within the limits: decode and handle it.
    Accepted,
    /// Oversized or over the rate: drop it and count it.
    Dropped {
        /// Violations so far, this one included.
        violations: u32,
    },
    /// The third violation (or any message after it): close the session.
    Close,
}

/// The per-session limits on the signal channel: `signal.max_message_bytes`
/// and `signal.max_messages_per_s` (burst twice the rate).
///
/// A token bucket driven by the caller's clock. Violations are counted over
/// the session's life and never forgiven: a client that keeps hitting the
/// limit is broken or hostile, and three strikes is what API.md promises.
#[derive(Debug, Clone)]
pub struct SignalRateLimit {
    // Configuration.
    /// Longest message admitted, in bytes.
    max_message_bytes: usize,
    /// Tokens added per second; 0 disables the rate limit.
    per_second: u32,
    // State.
    /// Tokens available now, in billionths of a token: a second's refill is
    /// then exactly `per_second` tokens, with no float rounding to make a
    /// message at exactly the right time fail.
    nano_tokens: u128,
    /// When `nano_tokens` was last brought up to date.
    refilled_at: Instant,
    /// Violations so far.
    violations: u32,
}

impl SignalRateLimit {
    /// A limiter that starts with a full burst at `now`.
    pub fn new(max_message_bytes: usize, per_second: u32, now: Instant) -> Self {
        Self {
            max_message_bytes,
            per_second,
            nano_tokens: Self::burst_of(per_second),
            refilled_at: now,
            violations: 0,
        }
    }

    /// Bucket capacity in billionths of a token: two seconds' worth.
    fn burst_of(per_second: u32) -> u128 {
        2 * u128::from(per_second) * NANO_PER_TOKEN
    }

    /// Decides on one message of `len` bytes received at `now`. An oversized
    /// message does not use up a token.
    pub fn admit(&mut self, now: Instant, len: usize) -> Admission {
        if self.violations >= MAX_VIOLATIONS {
            return Admission::Close;
        }
        if len > self.max_message_bytes || !self.take_token(now) {
            return self.violation();
        }
        Admission::Accepted
    }

    /// Violations counted so far.
    pub fn violations(&self) -> u32 {
        self.violations
    }

    /// Refills for the time since the last call, then takes one token.
    fn take_token(&mut self, now: Instant) -> bool {
        if self.per_second == 0 {
            return true;
        }
        // saturating: a `now` earlier than the last one (callers on
        // different threads, reordered events) adds nothing rather than
        // panicking or going backwards.
        let elapsed = now.saturating_duration_since(self.refilled_at);
        if now > self.refilled_at {
            self.refilled_at = now;
        }
        // Elapsed nanoseconds times tokens per second is billionths of a
        // token; u128 cannot overflow for any Duration times any u32.
        let refill = elapsed.as_nanos() * u128::from(self.per_second);
        self.nano_tokens = self
            .nano_tokens
            .saturating_add(refill)
            .min(Self::burst_of(self.per_second));
        if self.nano_tokens >= NANO_PER_TOKEN {
            self.nano_tokens -= NANO_PER_TOKEN;
            true
        } else {
            false
        }
    }

    fn violation(&mut self) -> Admission {
        self.violations += 1;
        if self.violations >= MAX_VIOLATIONS {
            Admission::Close
        } else {
            Admission::Dropped {
                violations: self.violations,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MAX: usize = 65_536;

    fn decode_str(s: &str) -> Result<SignalMessage, DecodeError> {
        decode(s.as_bytes(), MAX)
    }

    #[test]
    fn decodes_the_api_example_offer() {
        let msg = decode_str(
            r#"{"id": 7, "type": 1, "data": {"number": 3, "sdp": {"type": "offer", "sdp": "v=0\r\n..."}}}"#,
        );
        assert_eq!(
            msg,
            Ok(SignalMessage::Offer {
                id: 7,
                number: 3,
                sdp: "v=0\r\n...".into(),
                whep: None,
            })
        );
    }

    #[test]
    fn decodes_a_server_offer_with_whep() {
        let msg = decode_str(
            r#"{"id":1,"type":1,"data":{"number":1,"whep":"w-123","sdp":{"type":"offer","sdp":"v=0"}}}"#,
        );
        assert_eq!(
            msg,
            Ok(SignalMessage::Offer {
                id: 1,
                number: 1,
                sdp: "v=0".into(),
                whep: Some("w-123".into()),
            })
        );
    }

    #[test]
    fn accepts_bare_sdp_string_type_string_and_missing_id() {
        let msg = decode_str(r#"{"type":"2","data":{"number":4,"sdp":"v=0\r\n"}}"#);
        assert_eq!(
            msg,
            Ok(SignalMessage::Answer {
                id: 0,
                number: 4,
                sdp: "v=0\r\n".into(),
            })
        );
    }

    #[test]
    fn ignores_unknown_fields_and_malformed_ids() {
        let msg = decode_str(
            r#"{"id":"x","type":3,"extra":[1,2],"data":{"mid":"0","mute":true,"why":"cough"}}"#,
        );
        assert_eq!(
            msg,
            Ok(SignalMessage::Mute {
                id: 0,
                mid: "0".into(),
                mute: true,
            })
        );
        for id in [r#""12""#, "12"] {
            let text = format!(r#"{{"id":{id},"type":3,"data":{{"mid":"a","mute":false}}}}"#);
            assert_eq!(decode_str(&text).map(|m| m.id()), Ok(12), "{id}");
        }
        for id in ["-1", "1.5", "null", "{}"] {
            let text = format!(r#"{{"id":{id},"type":3,"data":{{"mid":"a","mute":false}}}}"#);
            assert_eq!(decode_str(&text).map(|m| m.id()), Ok(0), "{id}");
        }
    }

    #[test]
    fn sdp_type_inside_the_description_does_not_decide_the_message() {
        let msg =
            decode_str(r#"{"id":2,"type":2,"data":{"number":1,"sdp":{"type":"offer","sdp":"x"}}}"#);
        assert!(matches!(msg, Ok(SignalMessage::Answer { .. })));
    }

    #[test]
    fn text_and_binary_are_the_same_bytes() {
        let text = r#"{"id":1,"type":3,"data":{"mid":"1","mute":false}}"#;
        let binary: Vec<u8> = text.bytes().collect();
        assert_eq!(decode(&binary, MAX), decode_str(text));
        assert!(decode(&binary, MAX).is_ok());
    }

    #[test]
    fn each_error_has_its_reason() {
        let cases: [(&[u8], DecodeError, &str); 15] = [
            (b"{\"type\":1}", DecodeError::TooLarge, "too_large"),
            (b"\xff\xfe{}", DecodeError::NotUtf8, "not_utf8"),
            (b"{\"type\":", DecodeError::NotJson, "not_json"),
            (b"[1,2]", DecodeError::NotJson, "not_json"),
            (b"\"offer\"", DecodeError::NotJson, "not_json"),
            (b"", DecodeError::NotJson, "not_json"),
            (
                b"{\"type\":4,\"data\":{}}",
                DecodeError::UnknownType,
                "unknown_type",
            ),
            (
                b"{\"type\":\"offer\",\"data\":{}}",
                DecodeError::UnknownType,
                "unknown_type",
            ),
            (
                b"{\"type\":1.0,\"data\":{}}",
                DecodeError::UnknownType,
                "unknown_type",
            ),
            (
                b"{\"data\":{}}",
                DecodeError::MissingField("type"),
                "missing_field",
            ),
            (
                b"{\"type\":1}",
                DecodeError::MissingField("data"),
                "missing_field",
            ),
            (
                b"{\"type\":1,\"data\":{\"sdp\":\"v=0\"}}",
                DecodeError::MissingField("number"),
                "missing_field",
            ),
            (
                b"{\"type\":2,\"data\":{\"number\":1,\"sdp\":{\"type\":\"answer\"}}}",
                DecodeError::MissingField("sdp"),
                "missing_field",
            ),
            (
                b"{\"type\":3,\"data\":{\"mute\":true}}",
                DecodeError::MissingField("mid"),
                "missing_field",
            ),
            (
                b"{\"type\":3,\"data\":{\"mid\":\"0\",\"mute\":\"yes\"}}",
                DecodeError::MissingField("mute"),
                "missing_field",
            ),
        ];
        for (i, (bytes, err, reason)) in cases.into_iter().enumerate() {
            // The first case is only too large because of the tiny limit.
            let max = if i == 0 { 4 } else { MAX };
            assert_eq!(
                decode(bytes, max),
                Err(err),
                "{}",
                String::from_utf8_lossy(bytes)
            );
            assert_eq!(err.reason(), reason);
        }
    }

    #[test]
    fn size_limit_is_inclusive_and_checked_before_parsing() {
        let text = r#"{"id":1,"type":3,"data":{"mid":"1","mute":false}}"#;
        assert!(decode(text.as_bytes(), text.len()).is_ok());
        assert_eq!(
            decode(text.as_bytes(), text.len() - 1),
            Err(DecodeError::TooLarge)
        );
        // Not even UTF-8, but the size is what is reported.
        assert_eq!(decode(&[0xff; 10], 9), Err(DecodeError::TooLarge));
    }

    fn all_kinds() -> Vec<SignalMessage> {
        vec![
            SignalMessage::Offer {
                id: 1,
                number: 1,
                sdp: "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n".into(),
                whep: Some("3f2a".into()),
            },
            SignalMessage::Offer {
                id: u64::MAX,
                number: 0,
                sdp: "quotes \" and \\ and é 🦀".into(),
                whep: None,
            },
            SignalMessage::Answer {
                id: 7,
                number: 3,
                sdp: "v=0\r\n".into(),
            },
            SignalMessage::Mute {
                id: 9,
                mid: "0".into(),
                mute: true,
            },
            SignalMessage::Mute {
                id: 0,
                mid: String::new(),
                mute: false,
            },
        ]
    }

    #[test]
    fn encode_then_decode_round_trips() {
        for msg in all_kinds() {
            let bytes = encode(&msg);
            assert_eq!(decode(&bytes, MAX), Ok(msg.clone()), "{msg:?}");
        }
    }

    #[test]
    fn encode_uses_numeric_type_and_the_object_sdp_form() {
        let offer = SignalMessage::Offer {
            id: 7,
            number: 3,
            sdp: "v=0\r\n".into(),
            whep: Some("w1".into()),
        };
        assert_eq!(
            String::from_utf8(encode(&offer)).expect("utf-8"),
            r#"{"id":7,"type":1,"data":{"number":3,"sdp":{"type":"offer","sdp":"v=0\r\n"},"whep":"w1"}}"#
        );
        let answer = SignalMessage::Answer {
            id: 7,
            number: 3,
            sdp: "v=0".into(),
        };
        assert_eq!(
            String::from_utf8(encode(&answer)).expect("utf-8"),
            r#"{"id":7,"type":2,"data":{"number":3,"sdp":{"type":"answer","sdp":"v=0"}}}"#
        );
        let offer_without_whep = SignalMessage::Offer {
            id: 1,
            number: 1,
            sdp: String::new(),
            whep: None,
        };
        let text = String::from_utf8(encode(&offer_without_whep)).expect("utf-8");
        assert!(!text.contains("whep"), "{text}");
        let mute = SignalMessage::Mute {
            id: 2,
            mid: "1".into(),
            mute: false,
        };
        assert_eq!(
            String::from_utf8(encode(&mute)).expect("utf-8"),
            r#"{"id":2,"type":3,"data":{"mid":"1","mute":false}}"#
        );
    }

    #[test]
    fn garbage_never_panics() {
        let mut state: u64 = 0x1234_5678_9abc_def1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let pieces: [&[u8]; 16] = [
            b"{",
            b"}",
            b"[",
            b"]",
            b"\"type\":",
            b"\"data\":",
            b"\"sdp\":",
            b"1",
            b"\"1\"",
            b",",
            b"\"mid\":\"0\"",
            b"\"mute\":true",
            b"null",
            b"\\u0000",
            b"\xff",
            b"\"",
        ];
        for _ in 0..20_000 {
            let mut bytes = Vec::new();
            for _ in 0..(next() % 24) {
                if next() % 3 == 0 {
                    bytes.push(next() as u8);
                } else {
                    bytes.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize]);
                }
            }
            if let Ok(msg) = decode(&bytes, MAX) {
                // Whatever decodes re-encodes to something that decodes the same.
                assert_eq!(decode(&encode(&msg), MAX), Ok(msg));
            }
        }
        // Deep nesting is refused, not a stack overflow.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(
            decode(deep.as_bytes(), usize::MAX),
            Err(DecodeError::NotJson)
        );
        let deep_data = format!(
            r#"{{"type":1,"data":{{"number":1,"sdp":{}"x"{}}}}}"#,
            "{\"sdp\":".repeat(10_000),
            "}".repeat(10_000)
        );
        assert!(decode(deep_data.as_bytes(), usize::MAX).is_err());
    }

    #[test]
    fn burst_of_forty_then_drops() {
        let t0 = Instant::now();
        let mut limit = SignalRateLimit::new(MAX, 20, t0);
        for i in 0..40 {
            assert_eq!(limit.admit(t0, 100), Admission::Accepted, "message {i}");
        }
        assert_eq!(limit.admit(t0, 100), Admission::Dropped { violations: 1 });
        assert_eq!(limit.violations(), 1);
    }

    #[test]
    fn tokens_refill_with_time_up_to_the_burst() {
        let t0 = Instant::now();
        let mut limit = SignalRateLimit::new(MAX, 20, t0);
        for _ in 0..40 {
            assert_eq!(limit.admit(t0, 1), Admission::Accepted);
        }
        // 20/s: one token every 50 ms.
        let t1 = t0 + Duration::from_millis(49);
        assert_eq!(limit.admit(t1, 1), Admission::Dropped { violations: 1 });
        let t2 = t0 + Duration::from_millis(50);
        assert_eq!(limit.admit(t2, 1), Admission::Accepted);
        assert_eq!(limit.admit(t2, 1), Admission::Dropped { violations: 2 });
        // A long pause refills to the burst, not beyond.
        let t3 = t2 + Duration::from_secs(3_600);
        for i in 0..40 {
            assert_eq!(limit.admit(t3, 1), Admission::Accepted, "message {i}");
        }
        assert_eq!(limit.admit(t3, 1), Admission::Close);
    }

    #[test]
    fn steady_rate_at_the_limit_is_never_dropped() {
        let t0 = Instant::now();
        let mut limit = SignalRateLimit::new(MAX, 20, t0);
        for i in 0..10_000u32 {
            let now = t0 + Duration::from_millis(50) * i;
            assert_eq!(limit.admit(now, 10), Admission::Accepted, "message {i}");
        }
        assert_eq!(limit.violations(), 0);
    }

    #[test]
    fn third_violation_closes_and_stays_closed() {
        let t0 = Instant::now();
        let mut limit = SignalRateLimit::new(MAX, 1, t0);
        assert_eq!(limit.admit(t0, 1), Admission::Accepted);
        assert_eq!(limit.admit(t0, 1), Admission::Accepted);
        assert_eq!(limit.admit(t0, 1), Admission::Dropped { violations: 1 });
        assert_eq!(limit.admit(t0, 1), Admission::Dropped { violations: 2 });
        assert_eq!(limit.admit(t0, 1), Admission::Close);
        // Even a well-behaved message much later: the session is going away.
        assert_eq!(
            limit.admit(t0 + Duration::from_secs(60), 1),
            Admission::Close
        );
        assert_eq!(limit.violations(), MAX_VIOLATIONS);
    }

    #[test]
    fn oversized_messages_count_as_violations_without_using_tokens() {
        let t0 = Instant::now();
        let mut limit = SignalRateLimit::new(1_000, 1, t0);
        assert_eq!(limit.admit(t0, 1_001), Admission::Dropped { violations: 1 });
        assert_eq!(limit.admit(t0, 1_000), Admission::Accepted);
        assert_eq!(limit.admit(t0, 1_000), Admission::Accepted);
        assert_eq!(
            limit.admit(t0, usize::MAX),
            Admission::Dropped { violations: 2 }
        );
        assert_eq!(limit.admit(t0, 1), Admission::Close);
    }

    #[test]
    fn zero_rate_means_unlimited_but_size_still_counts() {
        let t0 = Instant::now();
        let mut limit = SignalRateLimit::new(10, 0, t0);
        for _ in 0..100_000 {
            assert_eq!(limit.admit(t0, 10), Admission::Accepted);
        }
        assert_eq!(limit.admit(t0, 11), Admission::Dropped { violations: 1 });
    }

    #[test]
    fn a_clock_going_backwards_neither_panics_nor_refills() {
        let t1 = Instant::now() + Duration::from_secs(10);
        let mut limit = SignalRateLimit::new(MAX, 1, t1);
        assert_eq!(limit.admit(t1, 1), Admission::Accepted);
        assert_eq!(limit.admit(t1, 1), Admission::Accepted);
        let earlier = t1 - Duration::from_secs(5);
        assert_eq!(
            limit.admit(earlier, 1),
            Admission::Dropped { violations: 1 }
        );
        // Time is measured from t1, not from the earlier instant.
        assert_eq!(
            limit.admit(t1 + Duration::from_millis(999), 1),
            Admission::Dropped { violations: 2 }
        );
        assert_eq!(
            limit.admit(t1 + Duration::from_secs(1), 1),
            Admission::Accepted
        );
        assert_eq!(
            limit.admit(t1 + Duration::from_secs(1), 1),
            Admission::Close
        );
    }
}
