//! Interop shim for ICE checks without a PRIORITY attribute. FFmpeg 8's
//! WHIP muxer sends Binding requests with USERNAME, USE-CANDIDATE,
//! MESSAGE-INTEGRITY and FINGERPRINT but no PRIORITY (RFC 8445 makes it
//! mandatory); str0m's STUN parser refuses such a request, so FFmpeg's ICE
//! would time out. Only on that refusal, a request whose MESSAGE-INTEGRITY
//! verifies with our own password for its ufrag is rebuilt with a PRIORITY
//! (a peer-reflexive candidate's) and re-signed with the same password.
//! Nothing is laundered: a request that does not verify stays refused.

use aws_lc_rs::hmac;

const HEADER: usize = 20;
const MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const BINDING_REQUEST: u16 = 0x0001;
const USERNAME: u16 = 0x0006;
const MESSAGE_INTEGRITY: u16 = 0x0008;
const PRIORITY: u16 = 0x0024;
const FINGERPRINT: u16 = 0x8028;
const FINGERPRINT_XOR: u32 = 0x5354_554e;
/// RFC 8445 §5.1.2.1 for a peer-reflexive candidate, component 1:
/// (110 << 24) | (65535 << 8) | (256 - 1).
const PRFLX_PRIORITY: u32 = 0x6eff_ffff;

/// The USERNAME's local part (our ufrag) of a Binding request that lacks
/// PRIORITY but carries MESSAGE-INTEGRITY; `None` for anything else.
pub fn needs_priority(datagram: &[u8]) -> Option<&str> {
    let attrs = parse(datagram)?;
    if u16::from_be_bytes([datagram[0], datagram[1]]) != BINDING_REQUEST
        || attrs.iter().any(|a| a.kind == PRIORITY)
        || !attrs.iter().any(|a| a.kind == MESSAGE_INTEGRITY)
    {
        return None;
    }
    let username = attrs.iter().find(|a| a.kind == USERNAME)?;
    let text = std::str::from_utf8(&datagram[username.value.clone()]).ok()?;
    text.split(':').next()
}

/// The request rebuilt with PRIORITY, when its integrity verifies with `pwd`.
pub fn add_priority(datagram: &[u8], pwd: &str) -> Option<Vec<u8>> {
    let attrs = parse(datagram)?;
    let integrity = attrs.iter().find(|a| a.kind == MESSAGE_INTEGRITY)?;
    let mi_start = integrity.value.start - 4;
    let expected = &datagram[integrity.value.clone()];
    let signed = sign(&datagram[..mi_start], (mi_start + 24 - HEADER) as u16, pwd);
    if expected.len() != 20 || !bool::from(subtle_eq(expected, &signed)) {
        return None;
    }
    // Everything before MESSAGE-INTEGRITY, then PRIORITY, a new integrity
    // and a new fingerprint.
    let mut out = Vec::with_capacity(datagram.len() + 8);
    out.extend_from_slice(&datagram[..mi_start]);
    out.extend_from_slice(&PRIORITY.to_be_bytes());
    out.extend_from_slice(&4u16.to_be_bytes());
    out.extend_from_slice(&PRFLX_PRIORITY.to_be_bytes());
    let with_mi = out.len() + 24 - HEADER;
    let mac = sign(&out, with_mi as u16, pwd);
    out.extend_from_slice(&MESSAGE_INTEGRITY.to_be_bytes());
    out.extend_from_slice(&20u16.to_be_bytes());
    out.extend_from_slice(&mac);
    let total = out.len() + 8 - HEADER;
    out[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    let crc = crc32fast::hash(&out) ^ FINGERPRINT_XOR;
    out.extend_from_slice(&FINGERPRINT.to_be_bytes());
    out.extend_from_slice(&4u16.to_be_bytes());
    out.extend_from_slice(&crc.to_be_bytes());
    Some(out)
}

/// HMAC-SHA1 over `prefix` with its header length set to `length`.
fn sign(prefix: &[u8], length: u16, pwd: &str) -> [u8; 20] {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, pwd.as_bytes());
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(&prefix[..2]);
    ctx.update(&length.to_be_bytes());
    ctx.update(&prefix[4..]);
    let mut out = [0u8; 20];
    out.copy_from_slice(ctx.sign().as_ref());
    out
}

fn subtle_eq(a: &[u8], b: &[u8]) -> subtle::Choice {
    use subtle::ConstantTimeEq as _;
    a.ct_eq(b)
}

struct Attr {
    kind: u16,
    value: std::ops::Range<usize>,
}

/// The attributes of a well-formed STUN message.
fn parse(datagram: &[u8]) -> Option<Vec<Attr>> {
    if datagram.len() < HEADER || datagram[4..8] != MAGIC {
        return None;
    }
    let length = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    if HEADER + length != datagram.len() {
        return None;
    }
    let mut attrs = Vec::new();
    let mut at = HEADER;
    while at + 4 <= datagram.len() {
        let kind = u16::from_be_bytes([datagram[at], datagram[at + 1]]);
        let len = usize::from(u16::from_be_bytes([datagram[at + 2], datagram[at + 3]]));
        let start = at + 4;
        let end = start.checked_add(len)?;
        if end > datagram.len() {
            return None;
        }
        attrs.push(Attr {
            kind,
            value: start..end,
        });
        at = start + len.div_ceil(4) * 4;
    }
    Some(attrs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use str0m::ice::{StunMessage, TransId};

    fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> [u8; 20] {
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
        let mut ctx = hmac::Context::with_key(&key);
        for p in parts {
            ctx.update(p);
        }
        let mut out = [0u8; 20];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// A Binding request like FFmpeg 8's: USERNAME, USE-CANDIDATE,
    /// MESSAGE-INTEGRITY, FINGERPRINT.
    fn ffmpeg_request(username: &str, pwd: &str) -> Vec<u8> {
        let mut m = vec![0x00, 0x01, 0, 0];
        m.extend_from_slice(&MAGIC);
        m.extend_from_slice(&[7u8; 12]);
        let name = username.as_bytes();
        m.extend_from_slice(&USERNAME.to_be_bytes());
        m.extend_from_slice(&(name.len() as u16).to_be_bytes());
        m.extend_from_slice(name);
        m.resize(m.len() + (4 - name.len() % 4) % 4, 0);
        m.extend_from_slice(&0x0025u16.to_be_bytes()); // USE-CANDIDATE
        m.extend_from_slice(&0u16.to_be_bytes());
        let len = m.len() + 24 - HEADER;
        let mac = sign(&m, len as u16, pwd);
        m.extend_from_slice(&MESSAGE_INTEGRITY.to_be_bytes());
        m.extend_from_slice(&20u16.to_be_bytes());
        m.extend_from_slice(&mac);
        let total = m.len() + 8 - HEADER;
        m[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        let crc = crc32fast::hash(&m) ^ FINGERPRINT_XOR;
        m.extend_from_slice(&FINGERPRINT.to_be_bytes());
        m.extend_from_slice(&4u16.to_be_bytes());
        m.extend_from_slice(&crc.to_be_bytes());
        m
    }

    #[test]
    fn a_request_without_priority_is_repaired_only_with_our_password() {
        let request = ffmpeg_request("serverufrag:ffmpeg", "serverpassword");
        assert!(
            StunMessage::parse(&request).is_err(),
            "str0m refuses it as sent"
        );
        assert_eq!(needs_priority(&request), Some("serverufrag"));
        assert!(add_priority(&request, "wrongpassword").is_none());
        let fixed = add_priority(&request, "serverpassword").expect("verifies");
        let parsed = StunMessage::parse(&fixed).expect("str0m takes it now");
        assert!(parsed.verify(b"serverpassword", hmac_sha1));
        assert_eq!(needs_priority(&fixed), None);
        let normal = StunMessage::binding_request("a:b", TransId::new(), true, 1, 5, false);
        let mut buf = [0u8; 200];
        let n = normal.to_bytes(Some(b"pw"), &mut buf, hmac_sha1).unwrap();
        assert_eq!(
            needs_priority(&buf[..n]),
            None,
            "requests with PRIORITY are left alone"
        );
        assert_eq!(needs_priority(b"garbage"), None);
    }
}
