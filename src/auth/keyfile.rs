//! The HS256 key: configured, or generated on first start and kept in
//! `data_dir/jwt.key` with mode 0600. A server never starts with a
//! well-known key.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;

/// File name of the generated key inside `server.data_dir`.
pub const KEY_FILE: &str = "jwt.key";

/// Where the key came from; a generated key means a development setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// `security.jwt.key`.
    Configured,
    /// `data_dir/jwt.key`, created now or on an earlier start.
    Generated,
}

/// Why the key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing the key file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The key file is readable by group or others.
    #[error("key file {0} is readable by other users; run `chmod 600` on it")]
    Permissions(PathBuf),
    /// The key file holds too little key material.
    #[error("key file {0} holds fewer than 32 bytes")]
    TooShort(PathBuf),
}

/// Returns the configured key, or the one in `data_dir`, generating it on
/// first use.
pub fn load_or_generate_key(
    configured: Option<&str>,
    data_dir: &Path,
) -> Result<(Vec<u8>, KeySource), KeyError> {
    if let Some(key) = configured {
        return Ok((key.as_bytes().to_vec(), KeySource::Configured));
    }
    let path = data_dir.join(KEY_FILE);
    let io = |source| KeyError::Io {
        path: path.clone(),
        source,
    };
    create_private_dir(data_dir).map_err(io)?;
    let mut material = [0u8; 32];
    rand::rng().fill_bytes(&mut material);
    let encoded = URL_SAFE_NO_PAD.encode(material);
    // create_new + mode 0600: the file never exists with wider permissions,
    // and two processes racing on first start cannot both write a key.
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut file) => {
            file.write_all(encoded.as_bytes()).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(e)),
    }
    let mode = fs::metadata(&path).map_err(io)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions(path));
    }
    let text = fs::read_to_string(&path).map_err(io)?;
    let key = text.trim().as_bytes().to_vec();
    if key.len() < 32 {
        return Err(KeyError::TooShort(path));
    }
    Ok((key, KeySource::Generated))
}

/// Creates `dir` (and parents) with mode 0700 when missing: it holds the
/// key and the database. An existing folder keeps its permissions.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_with_0600_and_reuses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (k1, s1) = load_or_generate_key(None, dir.path()).expect("generated");
        let (k2, _) = load_or_generate_key(None, dir.path()).expect("reloaded");
        assert_eq!(s1, KeySource::Generated);
        assert_eq!(k1, k2);
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn refuses_a_world_readable_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        load_or_generate_key(None, dir.path()).expect("generated");
        let path = dir.path().join(KEY_FILE);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(
            load_or_generate_key(None, dir.path()),
            Err(KeyError::Permissions(_))
        ));
    }
}
