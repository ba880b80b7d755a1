//! Token verification and issuing.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use vestibule_actors::Identity;

use super::claims::{Claims, is_valid_user_id};

/// Why a token was refused. The variants are for logs and tests; clients
/// only ever see a generic 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("no bearer token")]
    Missing,
    /// Bad signature, wrong algorithm, malformed, missing claims.
    #[error("invalid token")]
    Invalid,
    /// `exp` is in the past.
    #[error("token expired")]
    Expired,
    /// `userId` does not match the allowed syntax.
    #[error("invalid userId")]
    BadUserId,
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    /// `(home, userId)`.
    pub identity: Identity,
    /// `role: "admin"`.
    pub admin: bool,
    /// `view` claim.
    pub view: Option<String>,
}

/// Signing and verification keys plus the token rules from configuration.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    require_exp: bool,
    teardown_grace: Duration,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("key", &"***")
            .field("require_exp", &self.require_exp)
            .finish()
    }
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TokenKeys {
    /// Keys over `secret`.
    pub fn new(secret: &[u8], require_exp: bool, teardown_grace: Duration) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            require_exp,
            teardown_grace,
        }
    }

    fn validation(&self, check_exp: bool) -> Validation {
        let mut v = Validation::new(Algorithm::HS256);
        v.validate_exp = check_exp;
        v.validate_aud = false;
        // Clock skew between issuer and server; expiry is otherwise exact.
        v.leeway = 5;
        v.required_spec_claims.clear();
        if self.require_exp {
            v.required_spec_claims.insert("exp".to_string());
        }
        v
    }

    fn decode(&self, token: &str, check_exp: bool) -> Result<Claims, AuthError> {
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation(check_exp))
                .map_err(|e| match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                    _ => AuthError::Invalid,
                })?;
        if !is_valid_user_id(&data.claims.user_id) {
            return Err(AuthError::BadUserId);
        }
        Ok(data.claims)
    }

    /// Verifies a token for any request.
    pub fn verify(&self, token: &str) -> Result<AuthUser, AuthError> {
        self.decode(token, true).map(Self::user)
    }

    /// Verifies a token for DELETE of the caller's own resource: a correctly
    /// signed token expired by less than the teardown grace still counts.
    pub fn verify_for_teardown(&self, token: &str) -> Result<AuthUser, AuthError> {
        let claims = self.decode(token, false)?;
        if let Some(exp) = claims.exp
            && exp.saturating_add(self.teardown_grace.as_secs()) < now_s()
        {
            return Err(AuthError::Expired);
        }
        Ok(Self::user(claims))
    }

    fn user(claims: Claims) -> AuthUser {
        AuthUser {
            identity: Identity {
                home: claims.home,
                user_id: claims.user_id,
            },
            admin: claims.role.as_deref() == Some("admin"),
            view: claims.view,
        }
    }

    /// Issues a token for `claims`-to-be, valid for `ttl`.
    pub fn issue(
        &self,
        user_id: &str,
        home: Option<&str>,
        admin: bool,
        view: Option<&str>,
        ttl: Duration,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = now_s();
        let claims = Claims {
            user_id: user_id.to_string(),
            home: home.map(str::to_string),
            exp: Some(now.saturating_add(ttl.as_secs())),
            iat: Some(now),
            role: admin.then(|| "admin".to_string()),
            view: view.map(str::to_string),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::new(&[7u8; 32], true, Duration::from_secs(86400))
    }

    #[test]
    fn issued_tokens_verify() {
        let k = keys();
        let t = k
            .issue(
                "alice",
                Some("example.org"),
                true,
                None,
                Duration::from_secs(60),
            )
            .expect("issued");
        let u = k.verify(&t).expect("valid");
        assert_eq!(u.identity.user_id, "alice");
        assert_eq!(u.identity.home.as_deref(), Some("example.org"));
        assert!(u.admin);
    }

    #[test]
    fn wrong_key_and_alg_none_fail() {
        let t = keys()
            .issue("alice", None, false, None, Duration::from_secs(60))
            .expect("issued");
        let other = TokenKeys::new(&[8u8; 32], true, Duration::ZERO);
        assert_eq!(other.verify(&t), Err(AuthError::Invalid));
        // alg: none with the same claims.
        let parts: Vec<&str> = t.split('.').collect();
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1]);
        assert_eq!(keys().verify(&none), Err(AuthError::Invalid));
    }

    #[test]
    fn expired_within_grace_is_accepted_for_teardown_only() {
        let k = keys();
        let claims = Claims {
            user_id: "bob".into(),
            home: None,
            exp: Some(now_s() - 3600),
            iat: None,
            role: None,
            view: None,
        };
        let t = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &k.encoding)
            .expect("encoded");
        assert_eq!(k.verify(&t), Err(AuthError::Expired));
        assert!(k.verify_for_teardown(&t).is_ok());
        let strict = TokenKeys::new(&[7u8; 32], true, Duration::from_secs(60));
        assert_eq!(strict.verify_for_teardown(&t), Err(AuthError::Expired));
    }
}
