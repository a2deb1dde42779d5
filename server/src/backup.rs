//! `framelog backup` and `framelog restore`: a data dir copied while the server serves, and
//! brought back into a new data dir. docs/operations.md says what a backup holds and how to use it.
//!
//! A backup directory holds `engine/` (the engine's consistent copy, framelog_store's
//! `Engine::backup`), the data dir's keys (`iterator-secret`, `master-key`), the credentials file
//! and the config file when the server has them, and `backup.json` saying what was copied.
//! Images written by consumers and the audit log are not part of it.

use std::path::{Path, PathBuf};

use framelog_store::Engine;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::ServerError;
use crate::file_write::replace_file;

/// The data dir's own key files, copied as they are.
const KEY_FILES: [&str; 2] = ["iterator-secret", "master-key"];
const MANIFEST: &str = "backup.json";
const ENGINE_DIR: &str = "engine";

/// What a backup wrote (and `backup.json` records).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct BackupManifest {
    pub format_version: u32,
    pub started_ms: u64,
    pub engine_files: u64,
    pub engine_bytes: u64,
    /// Files copied besides the engine, by their name in the backup.
    pub files: Vec<String>,
}

/// Copies the running engine and the files a server needs besides it to `to`, which must not
/// exist or be empty.
pub fn backup(engine: &Engine, config: &Config, to: &Path) -> Result<BackupManifest, ServerError> {
    refuse_inside(to, &config.data_dir)?;
    let created = prepare_private(to)?;
    let made = copy_everything(engine, config, to);
    if made.is_err() && created {
        // Nothing half-made stays behind to be mistaken for a backup.
        let _ = std::fs::remove_dir_all(to);
    }
    made
}

fn copy_everything(engine: &Engine, config: &Config, to: &Path) -> Result<BackupManifest, ServerError> {
    let started_ms = engine.now_ms();
    let stats = engine.backup(&to.join(ENGINE_DIR))?;
    let mut files = Vec::new();
    for name in KEY_FILES {
        let configured = (name == "master-key").then_some(config.master_key_file.as_deref()).flatten();
        let from = configured.map_or_else(|| config.data_dir.join(name), Path::to_path_buf);
        copy_private(&from, &to.join(name), &mut files)?;
    }
    if let Some(credentials) = &config.auth.credentials_file {
        copy_private(credentials, &to.join("credentials.json"), &mut files)?;
    }
    if let Some(config_file) = &config.config_file {
        copy_private(config_file, &to.join("config.toml"), &mut files)?;
    }
    let manifest = BackupManifest {
        format_version: framelog_store::FORMAT_VERSION,
        started_ms,
        engine_files: stats.files,
        engine_bytes: stats.bytes,
        files,
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| ServerError::Backup(e.to_string()))?;
    replace_file(&to.join(MANIFEST), &json, 0o600).map_err(|e| ServerError::io("writing", &to.join(MANIFEST), e))?;
    Ok(manifest)
}

/// Brings the backup in `from` back into `data_dir`, which must not exist or be empty. Returns
/// the manifest, whose `files` says which of the credentials and config files the backup holds
/// (they stay in the backup: where they go is the operator's choice).
pub fn restore(from: &Path, data_dir: &Path) -> Result<BackupManifest, ServerError> {
    let manifest_path = from.join(MANIFEST);
    let text = std::fs::read(&manifest_path).map_err(|e| ServerError::io("reading", &manifest_path, e))?;
    let manifest: BackupManifest = serde_json::from_slice(&text).map_err(|e| {
        ServerError::Backup(format!("{} is not a Framelog backup manifest: {e}", manifest_path.display()))
    })?;
    prepare_private(data_dir)?;
    copy_tree(&from.join(ENGINE_DIR), &data_dir.join(ENGINE_DIR))?;
    for name in KEY_FILES {
        let mut copied = Vec::new();
        copy_private(&from.join(name), &data_dir.join(name), &mut copied)?;
    }
    sync_dir(data_dir)?;
    Ok(manifest)
}

/// A backup inside the data dir would copy itself (and be deleted with it).
fn refuse_inside(to: &Path, data_dir: &Path) -> Result<(), ServerError> {
    let data_dir = std::path::absolute(data_dir).map_err(|e| ServerError::io("resolving", data_dir, e))?;
    let to_abs = std::path::absolute(to).map_err(|e| ServerError::io("resolving", to, e))?;
    if to_abs.starts_with(&data_dir) {
        return Err(ServerError::Backup(format!(
            "{} is inside the data dir; name a directory outside it",
            to.display()
        )));
    }
    Ok(())
}

/// Makes `dir` a new directory only its owner can enter (0700), or takes an existing one that is
/// empty, a real directory (not a link someone planted) and this user's own. Returns whether it
/// was made here.
fn prepare_private(dir: &Path) -> Result<bool, ServerError> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| ServerError::io("creating", parent, e))?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(ServerError::io("creating", dir, e)),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| ServerError::io("reading", dir, e))?;
    let own_uid = rustix::process::geteuid().as_raw();
    if !meta.is_dir() || meta.uid() != own_uid {
        return Err(ServerError::Backup(format!("{} is not a directory of this user; name a new one", dir.display())));
    }
    prepare_empty(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| ServerError::io("securing", dir, e))?;
    Ok(false)
}

/// Creates `dir` (and its parents); refuses one that already holds anything.
fn prepare_empty(dir: &Path) -> Result<(), ServerError> {
    std::fs::create_dir_all(dir).map_err(|e| ServerError::io("creating", dir, e))?;
    let mut entries = std::fs::read_dir(dir).map_err(|e| ServerError::io("listing", dir, e))?;
    if entries.next().is_some() {
        return Err(ServerError::Backup(format!("{} is not empty; name a new directory", dir.display())));
    }
    Ok(())
}

/// Copies a key or config file with owner-only permissions; a missing file is skipped (a data
/// dir that never made one).
fn copy_private(from: &Path, to: &Path, copied: &mut Vec<String>) -> Result<(), ServerError> {
    let bytes = match std::fs::read(from) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ServerError::io("reading", from, e)),
    };
    replace_file(to, &bytes, 0o600).map_err(|e| ServerError::io("writing", to, e))?;
    copied.extend(to.file_name().map(|n| n.to_string_lossy().into_owned()));
    Ok(())
}

/// Copies a directory tree of regular files, syncing what it writes.
fn copy_tree(from: &Path, to: &Path) -> Result<(), ServerError> {
    std::fs::create_dir_all(to).map_err(|e| ServerError::io("creating", to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| ServerError::io("listing", from, e))? {
        let entry = entry.map_err(|e| ServerError::io("listing", from, e))?;
        let (source, target): (PathBuf, PathBuf) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type().map_err(|e| ServerError::io("reading", &source, e))?.is_dir() {
            copy_tree(&source, &target)?;
        } else {
            std::fs::copy(&source, &target).map_err(|e| ServerError::io("copying", &source, e))?;
            std::fs::File::open(&target)
                .and_then(|f| f.sync_all())
                .map_err(|e| ServerError::io("syncing", &target, e))?;
        }
    }
    sync_dir(to)
}

fn sync_dir(dir: &Path) -> Result<(), ServerError> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| ServerError::io("syncing", dir, e))
}
