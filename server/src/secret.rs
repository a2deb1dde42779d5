//! The server's key files. The signing secret is made once per data directory so that what it signed (shard
//! iterators, HLS/DASH session tokens) survives restarts. Each use gets its own key derived from
//! it (HMAC-SHA256 of the purpose's name), so a token of one kind can never pass for another.
//! The at-rest master key (which wraps each encrypted stream's data key) is kept the same way,
//! or read from a file the configuration names (kept off the data disk).

use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::ServerError;

const SECRET_BYTES: usize = 32;
const FILE_NAME: &str = "iterator-secret";

/// The root secret; only derived keys leave this module.
pub struct Secret([u8; SECRET_BYTES]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// The key for one purpose, e.g. `"kds shard iterator"`.
    pub fn derive(&self, purpose: &str) -> Vec<u8> {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
        mac.update(b"framelog key v1\0");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
}

/// Reads `<data_dir>/iterator-secret`, or creates it when it does not exist. Any other read
/// failure, or a file of the wrong size, stops start-up: quietly making a new secret would
/// invalidate every outstanding token and hide a damaged data directory.
pub fn load_or_create(data_dir: &Path) -> Result<Secret, ServerError> {
    key_file(&data_dir.join(FILE_NAME), true).map(Secret)
}

/// The signing secret shared by a cluster's nodes: `configured` (which must exist and not be
/// readable by others), else this data directory's own.
pub fn load_shared(data_dir: &Path, configured: Option<&Path>) -> Result<Secret, ServerError> {
    match configured {
        Some(path) => {
            refuse_shared(path)?;
            key_file(path, false).map(Secret)
        }
        None => load_or_create(data_dir),
    }
}

/// The at-rest master key: `configured` (which must exist), else `<data_dir>/master-key`,
/// created on first use like the signing secret.
pub fn master_key(data_dir: &Path, configured: Option<&Path>) -> Result<[u8; SECRET_BYTES], ServerError> {
    match configured {
        Some(path) => {
            refuse_shared(path)?;
            key_file(path, false)
        }
        None => key_file(&data_dir.join("master-key"), true),
    }
}

/// A configured key file others can read is refused, as the credentials file is.
fn refuse_shared(path: &Path) -> Result<(), ServerError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let metadata = std::fs::metadata(path).map_err(|e| ServerError::io("reading", path, e))?;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            let message = format!("mode {mode:o}: other users can read the master key; run chmod 600 on it");
            return Err(ServerError::io(
                "reading",
                path,
                std::io::Error::new(std::io::ErrorKind::PermissionDenied, message),
            ));
        }
    }
    Ok(())
}

/// 32 random bytes kept in `path`, made when `create` and the file does not exist.
fn key_file(path: &Path, create: bool) -> Result<[u8; SECRET_BYTES], ServerError> {
    match std::fs::read(path) {
        Ok(bytes) => bytes.try_into().map_err(|bytes: Vec<u8>| {
            let message = format!("{} bytes instead of {SECRET_BYTES}", bytes.len());
            ServerError::io("reading", path, std::io::Error::new(std::io::ErrorKind::InvalidData, message))
        }),
        Err(error) if create && error.kind() == std::io::ErrorKind::NotFound => create_key_file(path),
        Err(error) => Err(ServerError::io("reading", path, error)),
    }
}

/// Writes a new secret 0600 from its first byte (file_write.rs).
fn create_key_file(path: &Path) -> Result<[u8; SECRET_BYTES], ServerError> {
    let secret: [u8; SECRET_BYTES] = rand::random();
    crate::file_write::replace_file(path, &secret, 0o600).map_err(|e| ServerError::io("writing", path, e))?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_private_stable_and_derives_distinct_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = load_or_create(dir.path()).expect("created");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(FILE_NAME)).expect("file").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let again = load_or_create(dir.path()).expect("read back");
        assert_eq!(first.derive("a"), again.derive("a"));
        assert_ne!(first.derive("a"), first.derive("b"));
        assert!(!format!("{first:?}").contains(&format!("{:?}", first.0)));
    }

    #[test]
    fn a_damaged_secret_stops_start_up_instead_of_being_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(FILE_NAME), b"short").expect("written");
        assert!(load_or_create(dir.path()).is_err());
        assert_eq!(std::fs::read(dir.path().join(FILE_NAME)).expect("kept"), b"short", "the file is not replaced");
        #[cfg(unix)]
        {
            std::fs::remove_file(dir.path().join(FILE_NAME)).expect("removed");
            std::fs::create_dir(dir.path().join(FILE_NAME)).expect("a directory where the file should be");
            assert!(load_or_create(dir.path()).is_err(), "a read error other than not-found fails");
        }
    }
}
