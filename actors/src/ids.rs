//! Identifiers: public ids that may be shown and logged, and secrets that
//! may not.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;

/// Length of a 128-bit id in unpadded base64url.
pub const ENCODED_ID_LEN: usize = 22;

fn random_bytes() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

fn decode(text: &str) -> Option<[u8; 16]> {
    if text.len() != ENCODED_ID_LEN {
        return None;
    }
    let mut out = [0u8; 16];
    let n = URL_SAFE_NO_PAD.decode_slice(text, &mut out).ok()?;
    (n == 16).then_some(out)
}

macro_rules! public_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; 16]);

        impl $name {
            /// A fresh random id (128 bits).
            pub fn random() -> Self {
                Self(random_bytes())
            }
            /// Parses the 22-character base64url form.
            pub fn parse(text: &str) -> Option<Self> {
                decode(text).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&URL_SAFE_NO_PAD.encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
}

macro_rules! secret_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name([u8; 16]);

        impl $name {
            /// A fresh random secret (128 bits).
            pub fn random() -> Self {
                Self(random_bytes())
            }
            /// Parses the 22-character base64url form.
            pub fn parse(text: &str) -> Option<Self> {
                decode(text).map(Self)
            }
            /// The wire form. Deliberately not `Display`: call sites that
            /// reveal a secret say so by name.
            pub fn reveal(&self) -> String {
                URL_SAFE_NO_PAD.encode(self.0)
            }
            /// A stable bucket in `0..n` derived from the random bits (for
            /// placement); `n` must be non-zero.
            pub fn bucket(&self, n: usize) -> usize {
                let low = u64::from_le_bytes([
                    self.0[0], self.0[1], self.0[2], self.0[3], self.0[4], self.0[5], self.0[6], self.0[7],
                ]);
                (low % n.max(1) as u64) as usize
            }
            /// Constant-time comparison with a presented value.
            pub fn matches(&self, presented: &str) -> bool {
                use subtle::ConstantTimeEq as _;
                let expected = self.reveal();
                // Lengths are public (always 22); only content is compared in constant time.
                expected.len() == presented.len()
                    && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}(***)", stringify!($name))
            }
        }
    };
}

secret_id!(
    /// A session's secret id: the last segment of its WHIP resource URL.
    SessionId
);
secret_id!(
    /// The opaque value of a session's `vestibule_session` cookie.
    CookieSecret
);
secret_id!(
    /// A session's fixed `X-Req-Token`.
    ReqToken
);
secret_id!(
    /// A WHEP connection's secret id: the last segment of its resource URL.
    WhepId
);
secret_id!(
    /// A live restream's secret id: the last segment of its resource URL.
    LiveId
);
public_id!(
    /// A session's public id: what other participants see (SDP msid, lobby state).
    ParticipantId
);
public_id!(
    /// A published track's public id (SDP msid track id, lobby state).
    TrackId
);

/// A stream's address: `(spaceId, streamId)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    /// Space id.
    pub space: String,
    /// Stream id within the space.
    pub stream: String,
}

impl StreamKey {
    /// Builds a key from its parts.
    pub fn new(space: impl Into<String>, stream: impl Into<String>) -> Self {
        Self {
            space: space.into(),
            stream: stream.into(),
        }
    }
}

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.space, self.stream)
    }
}

/// Who a caller is: `(home, userId)`. `home = None` means this server.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    /// The user's home server domain; `None` = this server.
    pub home: Option<String>,
    /// The user id, syntax-checked by the token verifier.
    pub user_id: String,
}

impl Identity {
    /// A user of this server.
    pub fn local(user_id: impl Into<String>) -> Self {
        Self {
            home: None,
            user_id: user_id.into(),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.home {
            Some(home) => write!(f, "{} [{home}]", self.user_id),
            None => f.write_str(&self.user_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_have_22_chars() {
        let p = ParticipantId::random();
        let text = p.to_string();
        assert_eq!(text.len(), ENCODED_ID_LEN);
        assert_eq!(ParticipantId::parse(&text), Some(p));
        let s = SessionId::random();
        assert_eq!(SessionId::parse(&s.reveal()), Some(s));
    }

    #[test]
    fn secrets_do_not_debug_print() {
        let s = SessionId::random();
        assert_eq!(format!("{s:?}"), "SessionId(***)");
    }

    #[test]
    fn secret_match_is_exact() {
        let t = ReqToken::random();
        assert!(t.matches(&t.reveal()));
        assert!(!t.matches(&ReqToken::random().reveal()));
        assert!(!t.matches(""));
    }

    #[test]
    fn parse_rejects_wrong_length_and_alphabet() {
        assert!(SessionId::parse("short").is_none());
        assert!(SessionId::parse("!!!!!!!!!!!!!!!!!!!!!!").is_none());
    }
}
