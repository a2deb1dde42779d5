//! The server's signing secret (shard iterators, HLS/DASH session tokens): random, made once per
//! data directory so that what it signed survives restarts.

use std::path::Path;

use crate::error::ServerError;

const SECRET_BYTES: usize = 32;

/// Reads `<data_dir>/iterator-secret`, or writes a new one (temp file, fsync, rename).
pub fn load_or_create(data_dir: &Path) -> Result<Vec<u8>, ServerError> {
    let path = data_dir.join("iterator-secret");
    match std::fs::read(&path) {
        Ok(secret) if secret.len() == SECRET_BYTES => Ok(secret),
        _ => {
            let secret: [u8; SECRET_BYTES] = rand::random();
            let temp = data_dir.join("iterator-secret.tmp");
            let write = || -> std::io::Result<()> {
                std::fs::write(&temp, secret)?;
                std::fs::File::open(&temp)?.sync_all()?;
                std::fs::rename(&temp, &path)
            };
            write().map_err(|e| ServerError::io("writing", &path, e))?;
            Ok(secret.to_vec())
        }
    }
}
