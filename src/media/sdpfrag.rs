//! Trickle ICE SDP fragments (RFC 8840 `application/trickle-ice-sdpfrag`,
//! as RFC 9725 §4.3 uses them): reading a client's fragment (credentials,
//! candidates, end-of-candidates) and writing the server's fragment after
//! an ICE restart. Only the ICE lines matter; everything else is skipped.

use str0m::Candidate;

/// Why a fragment is refused (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpFragError {
    /// Not UTF-8 text of SDP lines.
    #[error("the fragment is not SDP text")]
    NotSdp,
    /// A candidate line str0m cannot read.
    #[error("malformed candidate: {0}")]
    Candidate(String),
    /// `a=ice-ufrag` without `a=ice-pwd` or the other way round.
    #[error("a fragment with new credentials needs both a=ice-ufrag and a=ice-pwd")]
    HalfCredentials,
    /// Conflicting credentials in one fragment.
    #[error("the fragment names more than one ICE ufrag")]
    MixedCredentials,
}

/// What a client's fragment carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SdpFrag {
    /// `a=ice-ufrag`, when present.
    pub ufrag: Option<String>,
    /// `a=ice-pwd`, when present.
    pub pwd: Option<String>,
    /// Candidate attributes without the `a=` (`candidate:...`), validated.
    pub candidates: Vec<String>,
    /// `a=end-of-candidates` was present.
    pub end_of_candidates: bool,
}

/// Reads a fragment. Lines other than ICE attributes (`m=`, `a=mid`,
/// `a=group`, ...) are allowed and ignored: candidates of a bundled
/// connection apply to the one transport whatever their section.
pub fn parse(body: &[u8]) -> Result<SdpFrag, SdpFragError> {
    let text = std::str::from_utf8(body).map_err(|_| SdpFragError::NotSdp)?;
    let mut frag = SdpFrag::default();
    for line in text.lines().map(str::trim_end) {
        if line.is_empty() {
            continue;
        }
        if line.len() < 2 || line.as_bytes()[1] != b'=' {
            return Err(SdpFragError::NotSdp);
        }
        if let Some(ufrag) = line.strip_prefix("a=ice-ufrag:") {
            let ufrag = ufrag.trim().to_string();
            if frag.ufrag.as_ref().is_some_and(|u| *u != ufrag) {
                return Err(SdpFragError::MixedCredentials);
            }
            frag.ufrag = Some(ufrag);
        } else if let Some(pwd) = line.strip_prefix("a=ice-pwd:") {
            frag.pwd = Some(pwd.trim().to_string());
        } else if let Some(candidate) = line.strip_prefix("a=") {
            if candidate.starts_with("candidate:") {
                Candidate::from_sdp_string(candidate)
                    .map_err(|e| SdpFragError::Candidate(e.to_string()))?;
                frag.candidates.push(candidate.to_string());
            } else if candidate == "end-of-candidates" {
                frag.end_of_candidates = true;
            }
        }
    }
    if frag.ufrag.is_some() != frag.pwd.is_some() && frag.pwd.is_some() {
        return Err(SdpFragError::HalfCredentials);
    }
    Ok(frag)
}

/// The server's fragment after an ICE restart: ICE-lite, the new
/// credentials, and our candidates in the bundle's first section.
pub fn restart_answer(ufrag: &str, pwd: &str, mid: Option<&str>, candidates: &[String]) -> String {
    let mut out = format!("a=ice-lite\r\na=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\n");
    if let Some(mid) = mid {
        out.push_str(&format!("m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:{mid}\r\n"));
        out.push_str(&format!("a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\n"));
    }
    for candidate in candidates {
        out.push_str("a=");
        out.push_str(candidate);
        out.push_str("\r\n");
    }
    out.push_str("a=end-of-candidates\r\n");
    out
}

/// The first `a=ice-ufrag` of an SDP (session or media level).
pub fn ice_ufrag(sdp: &str) -> Option<&str> {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=ice-ufrag:"))
        .map(str::trim)
}

/// The first `a=mid` of an SDP: the bundle's transport section.
pub fn first_mid(sdp: &str) -> Option<&str> {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=mid:"))
        .map(str::trim)
}

/// Whether an `If-Match` value names `etag` (quoted; `W/` ignored).
pub fn if_match_names(if_match: &str, etag: &str) -> bool {
    if_match.split(',').map(str::trim).any(|tag| {
        let tag = tag.strip_prefix("W/").unwrap_or(tag);
        tag == etag || tag.trim_matches('"') == etag.trim_matches('"')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trickle_fragment_is_read() {
        let body = b"a=ice-options:trickle ice2\r\na=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\na=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0 ufrag EsAw network-id 1\r\na=end-of-candidates\r\n";
        let frag = parse(body).unwrap();
        assert_eq!(frag.ufrag.as_deref(), Some("EsAw"));
        assert_eq!(frag.candidates.len(), 1);
        assert!(frag.end_of_candidates);
    }

    #[test]
    fn bad_fragments_are_refused() {
        assert_eq!(parse(b"hello"), Err(SdpFragError::NotSdp));
        assert_eq!(parse(&[0xff, 0xfe]), Err(SdpFragError::NotSdp));
        assert!(matches!(
            parse(b"a=candidate:garbage\r\n"),
            Err(SdpFragError::Candidate(_))
        ));
        assert_eq!(
            parse(b"a=ice-pwd:abcdefghijklmnopqrstuv\r\n"),
            Err(SdpFragError::HalfCredentials)
        );
        assert_eq!(
            parse(b"a=ice-ufrag:a\r\na=ice-ufrag:b\r\n"),
            Err(SdpFragError::MixedCredentials)
        );
        assert_eq!(parse(b""), Ok(SdpFrag::default()));
    }

    #[test]
    fn etags_and_answers() {
        assert!(if_match_names("\"abc\"", "\"abc\""));
        assert!(if_match_names("W/\"abc\", \"x\"", "\"abc\""));
        assert!(!if_match_names("\"abd\"", "\"abc\""));
        let frag = restart_answer(
            "u",
            "p",
            Some("0"),
            &["candidate:1 1 udp 1 127.0.0.1 5 typ host".into()],
        );
        assert!(frag.starts_with("a=ice-lite\r\na=ice-ufrag:u\r\na=ice-pwd:p\r\n"));
        assert!(frag.contains("a=mid:0\r\n"));
        assert!(frag.ends_with("typ host\r\na=end-of-candidates\r\n"));
        assert_eq!(ice_ufrag("v=0\r\na=ice-ufrag:x\r\n"), Some("x"));
    }
}
