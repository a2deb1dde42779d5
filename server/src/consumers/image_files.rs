//! Where image generation may write pictures: under the images root only (image_root.rs), within
//! its byte quota (image_quota.rs), and never through a symlink planted at the file's name.
//! Readers see a whole picture or none (temporary file, fsync, rename), and the picture survives a
//! crash before the checkpoint that counts it as delivered.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::image_quota::{Quota, QuotaExceeded};
use super::image_root::{Escape, confine, ensure_dir};

/// The images root and its quota, shared by every image-generation consumer.
#[derive(Debug, Clone)]
pub struct ImageFiles {
    root: PathBuf,
    quota: Arc<Quota>,
}

/// Why a picture was not written.
#[derive(Debug, thiserror::Error)]
pub enum ImageWriteError {
    #[error("the picture was not written: {0}")]
    Escape(#[from] Escape),
    #[error("the picture was not written: {error} under {root}")]
    Quota { error: QuotaExceeded, root: PathBuf },
    #[error("the picture was not written: {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl ImageFiles {
    pub fn new(root: PathBuf, quota_bytes: u64) -> ImageFiles {
        ImageFiles { root, quota: Arc::new(Quota::new(quota_bytes)) }
    }

    /// The root as configured (for messages).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The root's canonical path; the root is created when missing.
    fn canonical_root(&self) -> Result<PathBuf, Escape> {
        let io = |source| Escape::Io { path: self.root.clone(), source };
        std::fs::create_dir_all(&self.root).map_err(io)?;
        std::fs::canonicalize(&self.root).map_err(io)
    }

    /// The canonical form of a configured destination directory, when it is under the root.
    pub fn destination(&self, dir: &Path) -> Result<PathBuf, Escape> {
        confine(&self.canonical_root()?, dir)
    }

    /// Writes picture `path` (a file under a destination directory) when it is still under the
    /// root and fits in the quota.
    pub fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), ImageWriteError> {
        let root = self.canonical_root()?;
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(Escape::NotPlain { path: path.to_path_buf() }.into());
        };
        let dir = ensure_dir(&root, dir)?;
        let target = dir.join(name);
        let replaced = std::fs::symlink_metadata(&target).ok().filter(|m| m.is_file()).map_or(0, |m| m.len());
        let reservation = self
            .quota
            .reserve(&root, bytes.len() as u64, replaced)
            .map_err(|error| ImageWriteError::Quota { error, root: root.clone() })?;
        write_new(&dir, &target, bytes).map_err(|source| ImageWriteError::Io { path: target, source })?;
        reservation.keep();
        Ok(())
    }
}

/// Writes `bytes` to a new temporary file beside `target`, then renames it over `target`.
fn write_new(dir: &Path, target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temp = target.with_extension("partial");
    // A crash can leave the temporary file behind. remove_file removes a symlink itself, never
    // what it points to.
    match std::fs::remove_file(&temp) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    // create_new is O_CREAT | O_EXCL: it fails on any entry already there, a symlink planted
    // since the removal included, instead of following it.
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    // rename replaces the entry at `target` (a symlink there is replaced, not followed).
    std::fs::rename(&temp, target)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn files(quota: u64) -> (tempfile::TempDir, ImageFiles, PathBuf) {
        let temp = tempfile::tempdir().expect("tempdir");
        let base = std::fs::canonicalize(temp.path()).expect("canonical");
        let outside = base.join("outside");
        std::fs::create_dir(&outside).expect("outside");
        (temp, ImageFiles::new(base.join("images"), quota), outside)
    }

    #[test]
    fn pictures_are_written_under_the_root_and_symlinks_at_their_names_are_replaced_not_followed() {
        let (_temp, images, outside) = files(1 << 20);
        let destination = images.destination(&images.root().join("front")).expect("under the root");
        let picture = destination.join("cam/2026/01/01/00/1.jpg");
        images.write(&picture, b"first").expect("written");
        assert_eq!(std::fs::read(&picture).expect("read"), b"first");

        let victim = outside.join("victim");
        std::fs::write(&victim, b"keep me").expect("victim");
        std::fs::remove_file(&picture).expect("remove");
        symlink(&victim, &picture).expect("planted at the name");
        symlink(&victim, picture.with_extension("partial")).expect("planted at the temporary name");
        images.write(&picture, b"second").expect("written");
        assert_eq!(std::fs::read(&victim).expect("read"), b"keep me");
        assert!(std::fs::symlink_metadata(&picture).expect("entry").is_file());
        assert_eq!(std::fs::read(&picture).expect("read"), b"second");
    }

    #[test]
    fn escapes_are_refused_at_configuration_and_at_write_time() {
        let (_temp, images, outside) = files(1 << 20);
        assert!(matches!(images.destination(&outside), Err(Escape::Outside { .. })));
        assert!(matches!(images.destination(&images.root().join("..")), Err(Escape::NotPlain { .. })));
        let destination = images.destination(&images.root().join("front")).expect("under the root");
        symlink(&outside, &destination).expect("the destination replaced by a symlink after configuration");
        let error = images.write(&destination.join("cam/1.jpg"), b"x").expect_err("refused");
        assert!(matches!(error, ImageWriteError::Escape(Escape::Outside { .. })), "{error}");
        assert_eq!(std::fs::read_dir(&outside).expect("list").count(), 0);
    }

    #[test]
    fn a_full_quota_stops_new_pictures_with_a_recorded_error() {
        let (_temp, images, _) = files(10);
        let destination = images.destination(&images.root().join("front")).expect("under the root");
        images.write(&destination.join("1.jpg"), b"12345678").expect("8 of 10 bytes");
        let error = images.write(&destination.join("2.jpg"), b"123").expect_err("11 of 10 bytes");
        assert!(error.to_string().contains("the images quota of 10 bytes is used up"), "{error}");
        assert!(!destination.join("2.jpg").exists());
        images.write(&destination.join("1.jpg"), b"123456789").expect("a redelivered picture replaces its own file");
    }
}
