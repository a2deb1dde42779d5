//! The credentials file: access keys, their secrets, optional session tokens and each key's
//! policy, as JSON (IAM's member names). The file is the only copy of the secrets: it is written
//! 0600 through a temp file, fsync and rename, and read again when it changes on disk.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::policy::{Policy, PolicyError};

/// How often the file's modification time is checked for a reload.
pub const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// One key as the file stores it.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StoredKey {
    pub user_name: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<String>,
    /// When a temporary key stops working (seconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_epoch_secs: Option<u64>,
    pub policy: serde_json::Value,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("user_name", &self.user_name)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CredentialsFile {
    #[serde(default)]
    keys: Vec<StoredKey>,
}

/// A key ready for checking requests.
#[derive(Clone)]
pub struct Key {
    pub user_name: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    pub expiration_epoch_secs: Option<u64>,
    pub policy: Policy,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key").field("user_name", &self.user_name).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("reading {path}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("writing {path}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a credentials file: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: the policy of key {access_key_id} is refused")]
    Policy { path: PathBuf, access_key_id: String, source: PolicyError },
    #[error("{path}: access key id {0} appears twice", path = .1.display())]
    Duplicate(String, PathBuf),
    #[error("{path} is readable by other users (mode {mode:o}); run chmod 600 on it", path = .path.display())]
    Permissions { path: PathBuf, mode: u32 },
}

/// Every key by access key id.
#[derive(Debug, Default)]
pub struct KeyTable {
    by_id: HashMap<String, Key>,
}

impl KeyTable {
    pub fn get(&self, access_key_id: &str) -> Option<&Key> {
        self.by_id.get(access_key_id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Reads and checks the whole file; any bad key refuses the whole file.
    pub fn load(path: &Path) -> Result<Self, KeysError> {
        check_private(path)?;
        let text = std::fs::read_to_string(path).map_err(|source| KeysError::Read { path: path.into(), source })?;
        let file: CredentialsFile =
            serde_json::from_str(&text).map_err(|e| KeysError::Syntax { path: path.into(), message: e.to_string() })?;
        let mut by_id = HashMap::with_capacity(file.keys.len());
        for stored in file.keys {
            let policy = Policy::parse(stored.policy).map_err(|source| KeysError::Policy {
                path: path.into(),
                access_key_id: stored.access_key_id.clone(),
                source,
            })?;
            let key = Key {
                user_name: stored.user_name,
                secret_access_key: stored.secret_access_key,
                session_token: stored.session_token,
                expiration_epoch_secs: stored.expiration_epoch_secs,
                policy,
            };
            if by_id.insert(stored.access_key_id.clone(), key).is_some() {
                return Err(KeysError::Duplicate(stored.access_key_id, path.into()));
            }
        }
        Ok(KeyTable { by_id })
    }
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), KeysError> {
    use std::os::unix::fs::PermissionsExt as _;
    let metadata = std::fs::metadata(path).map_err(|source| KeysError::Read { path: path.into(), source })?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeysError::Permissions { path: path.into(), mode });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<(), KeysError> {
    Ok(())
}

/// The key table of a credentials file, reloaded when the file changes.
#[derive(Debug, Clone)]
pub struct Keys {
    path: Arc<PathBuf>,
    table: Arc<RwLock<Arc<KeyTable>>>,
    seen: Arc<RwLock<Option<(SystemTime, u64)>>>,
}

impl Keys {
    pub fn open(path: &Path) -> Result<Self, KeysError> {
        let table = KeyTable::load(path)?;
        let keys = Keys {
            path: Arc::new(path.to_path_buf()),
            table: Arc::new(RwLock::new(Arc::new(table))),
            seen: Arc::new(RwLock::new(None)),
        };
        *keys.seen.write().unwrap_or_else(|e| e.into_inner()) = file_stamp(path);
        Ok(keys)
    }

    pub fn current(&self) -> Arc<KeyTable> {
        self.table.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reloads if the file's time or size changed; a file that does not load keeps the old keys.
    pub fn reload_if_changed(&self) {
        let stamp = file_stamp(&self.path);
        if stamp == *self.seen.read().unwrap_or_else(|e| e.into_inner()) {
            return;
        }
        *self.seen.write().unwrap_or_else(|e| e.into_inner()) = stamp;
        match KeyTable::load(&self.path) {
            Ok(table) => {
                tracing::info!(path = %self.path.display(), keys = table.len(), "credentials reloaded");
                *self.table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
            }
            Err(error) => tracing::error!(%error, "credentials file not reloaded; the previous keys stay in force"),
        }
    }

    /// Checks the file every `RELOAD_EVERY` until the task is dropped.
    pub async fn watch(self) {
        let mut ticks = tokio::time::interval(RELOAD_EVERY);
        loop {
            ticks.tick().await;
            let keys = self.clone();
            let _ = tokio::task::spawn_blocking(move || keys.reload_if_changed()).await;
        }
    }
}

fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

/// A new key pair for `user_name`, appended to the file at `path` (created if absent).
pub fn add_key(path: &Path, user_name: &str, policy: serde_json::Value) -> Result<StoredKey, KeysError> {
    Policy::parse(policy.clone()).map_err(|source| KeysError::Policy {
        path: path.into(),
        access_key_id: "(new)".into(),
        source,
    })?;
    let mut file = match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str::<CredentialsFile>(&text)
            .map_err(|e| KeysError::Syntax { path: path.into(), message: e.to_string() })?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => CredentialsFile::default(),
        Err(source) => return Err(KeysError::Read { path: path.into(), source }),
    };
    let key = StoredKey {
        user_name: user_name.to_string(),
        access_key_id: new_access_key_id(),
        secret_access_key: new_secret(),
        session_token: None,
        expiration_epoch_secs: None,
        policy,
    };
    file.keys.push(key.clone());
    write_private(path, &file).map_err(|source| KeysError::Write { path: path.into(), source })?;
    Ok(key)
}

/// 20 characters like AWS's: a fixed prefix then upper-case letters and digits.
fn new_access_key_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let bytes: [u8; 16] = rand::random();
    let tail: String = bytes.iter().map(|b| char::from(ALPHABET[usize::from(b % 32)])).collect();
    format!("FLAK{tail}")
}

/// 40 characters of base64 (30 random bytes), like AWS's secret keys.
fn new_secret() -> String {
    use base64::Engine as _;
    let bytes: [u8; 30] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Writes the file 0600 from its first byte (docs/security.md: the file is the only copy).
fn write_private(path: &Path, file: &CredentialsFile) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(file).map_err(std::io::Error::other)?;
    crate::file_write::replace_file(path, &bytes, 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_keys_load_back_and_the_file_is_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("credentials.json");
        let first = add_key(&path, "camera", Policy::allow_all_json()).expect("added");
        let second = add_key(&path, "viewer", Policy::allow_all_json()).expect("added");
        assert_eq!(first.access_key_id.len(), 20);
        assert_eq!(first.secret_access_key.len(), 40);
        assert_ne!(first.access_key_id, second.access_key_id);
        let table = KeyTable::load(&path).expect("loads");
        assert_eq!(table.len(), 2);
        assert_eq!(table.get(&second.access_key_id).map(|k| k.user_name.as_str()), Some("viewer"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("exists").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("credentials.json");
        add_key(&path, "camera", Policy::allow_all_json()).expect("added");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(KeyTable::load(&path), Err(KeysError::Permissions { mode: 0o644, .. })));
    }

    #[test]
    fn a_changed_file_reloads_and_a_broken_one_keeps_the_old_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("credentials.json");
        let first = add_key(&path, "camera", Policy::allow_all_json()).expect("added");
        let keys = Keys::open(&path).expect("opens");
        let second = add_key(&path, "viewer", Policy::allow_all_json()).expect("added");
        keys.reload_if_changed();
        assert!(keys.current().get(&second.access_key_id).is_some());
        write_private(&path, &CredentialsFile::default()).expect("rewritten");
        std::fs::write(&path, b"{ not json").expect("broken");
        keys.reload_if_changed();
        assert!(keys.current().get(&first.access_key_id).is_some(), "the broken file must not drop the keys");
    }
}
