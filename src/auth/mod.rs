//! Bearer tokens: HS256 JWTs with Vestibule's claims, the signing key, and
//! the rules of API.md "Identity and credentials".

mod claims;
mod keyfile;
mod verifier;

pub use claims::{Claims, is_valid_user_id};
pub use keyfile::{KeyError, KeySource, create_private_dir, load_or_generate_key};
pub use verifier::{AuthError, AuthUser, TokenKeys};
