//! The JWT claims Vestibule reads and issues.

use serde::{Deserialize, Serialize};

/// Claims of a Vestibule token. Unknown claims are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id, `^[A-Za-z0-9._@:+-]{1,128}$`.
    #[serde(rename = "userId")]
    pub user_id: String,
    /// The user's home server domain; absent means this server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<String>,
    /// Expiry, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// Issued at, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// `"admin"` for admin routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// `"<spaceId>/<streamId>"`: may watch that stream as a plain viewer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view: Option<String>,
}

/// Whether `user_id` matches `^[A-Za-z0-9._@:+-]{1,128}$`.
pub fn is_valid_user_id(user_id: &str) -> bool {
    (1..=128).contains(&user_id.len())
        && user_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_@:+".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_id_syntax() {
        assert!(is_valid_user_id("alice"));
        assert!(is_valid_user_id("a.b_c-d@e:f+g"));
        assert!(!is_valid_user_id(""));
        assert!(!is_valid_user_id("has space"));
        assert!(!is_valid_user_id("slash/no"));
        assert!(!is_valid_user_id("ünï"));
        assert!(!is_valid_user_id(&"x".repeat(129)));
        assert!(is_valid_user_id(&"x".repeat(128)));
    }
}
