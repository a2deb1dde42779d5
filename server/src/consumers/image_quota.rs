//! A byte quota for the images root: image generation runs unattended, and a stream tagged for
//! pictures must not fill the server's disk. Usage is counted once by walking the root, then kept
//! up to date by the writes; when a write would go over, the root is walked again (at most every
//! few seconds), so pictures deleted by someone else make room again.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The default quota of the images root: 1 GiB.
pub const DEFAULT_IMAGES_QUOTA_BYTES: u64 = 1 << 30;
const RESCAN_EVERY: Duration = Duration::from_secs(10);

/// A write that does not fit.
#[derive(Debug, thiserror::Error)]
#[error("the images quota of {limit} bytes is used up ({used} used, {wanted} more wanted)")]
pub struct QuotaExceeded {
    pub limit: u64,
    pub used: u64,
    pub wanted: u64,
}

#[derive(Debug)]
pub struct Quota {
    limit: u64,
    rescan_every: Duration,
    usage: Mutex<Usage>,
}

#[derive(Debug, Default)]
struct Usage {
    /// Bytes of the files under the root; `None` until first counted.
    used: Option<u64>,
    counted_at: Option<Instant>,
}

/// Bytes taken from the quota for one file; given back on drop unless the file was written.
#[derive(Debug)]
pub struct Reservation<'a> {
    quota: &'a Quota,
    added: u64,
    replaced: u64,
    kept: bool,
}

impl Reservation<'_> {
    /// The file is written: the bytes stay counted.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.kept {
            let mut usage = self.quota.lock();
            usage.used = usage.used.map(|used| (used + self.replaced).saturating_sub(self.added));
        }
    }
}

impl Quota {
    pub fn new(limit: u64) -> Quota {
        Quota::with_rescan(limit, RESCAN_EVERY)
    }

    fn with_rescan(limit: u64, rescan_every: Duration) -> Quota {
        Quota { limit, rescan_every, usage: Mutex::new(Usage::default()) }
    }

    fn lock(&self) -> MutexGuard<'_, Usage> {
        // The counter is plain numbers: a panic elsewhere cannot leave it half-updated.
        self.usage.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes `added` bytes for a file under `root` that replaces one of `replaced` bytes.
    pub fn reserve(&self, root: &Path, added: u64, replaced: u64) -> Result<Reservation<'_>, QuotaExceeded> {
        let mut usage = self.lock();
        let fits = |used: u64| used.saturating_sub(replaced).saturating_add(added) <= self.limit;
        let stale = usage.counted_at.is_none_or(|at| at.elapsed() >= self.rescan_every);
        let used = match usage.used {
            Some(used) if fits(used) || !stale => used,
            _ => {
                usage.counted_at = Some(Instant::now());
                bytes_under(root)
            }
        };
        if !fits(used) {
            usage.used = Some(used);
            return Err(QuotaExceeded { limit: self.limit, used, wanted: added });
        }
        usage.used = Some(used.saturating_sub(replaced) + added);
        Ok(Reservation { quota: self, added, replaced, kept: false })
    }
}

/// The bytes of the regular files under `root`, symlinks not followed.
fn bytes_under(root: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => pending.push(entry.path()),
                Ok(kind) if kind.is_file() => total += entry.metadata().map_or(0, |m| m.len()),
                _ => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_stop_at_the_quota_replacements_count_their_difference_and_deletions_make_room() {
        let temp = tempfile::tempdir().expect("tempdir");
        let root = temp.path();
        let write = |name: &str, len: usize| std::fs::write(root.join(name), vec![0u8; len]).expect("write");
        write("old.jpg", 40);
        let quota = Quota::with_rescan(100, Duration::ZERO);

        quota.reserve(root, 50, 0).expect("40 + 50 fits in 100").keep();
        write("new.jpg", 50);
        let refused = quota.reserve(root, 20, 0).expect_err("40 + 50 + 20 does not");
        assert_eq!((refused.limit, refused.used, refused.wanted), (100, 90, 20));
        // Replacing the 40-byte file with a 50-byte one: 90 - 40 + 50.
        quota.reserve(root, 50, 40).expect("the replacement fits").keep();
        write("old.jpg", 50);
        assert!(quota.reserve(root, 1, 0).is_err());
        // Files deleted behind the server's back are found by the recount.
        std::fs::remove_file(root.join("old.jpg")).expect("remove");
        quota.reserve(root, 50, 0).expect("the recount finds 50 bytes used").keep();
    }

    #[test]
    fn a_reservation_that_is_not_kept_gives_its_bytes_back() {
        let temp = tempfile::tempdir().expect("tempdir");
        let quota = Quota::with_rescan(100, Duration::from_secs(3600));
        quota.reserve(temp.path(), 60, 0).expect("fits").keep();
        assert!(quota.reserve(temp.path(), 50, 0).is_err());
        drop(quota.reserve(temp.path(), 30, 0).expect("fits"));
        quota.reserve(temp.path(), 40, 0).expect("the 30 dropped bytes are free again").keep();
    }

    #[test]
    fn symlinks_are_not_counted_and_a_missing_root_is_empty() {
        let temp = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(temp.path().join("a")).expect("dir");
        std::fs::write(temp.path().join("a/one"), [0u8; 7]).expect("write");
        std::os::unix::fs::symlink(temp.path().join("a/one"), temp.path().join("link")).expect("symlink");
        std::os::unix::fs::symlink(temp.path(), temp.path().join("a/loop")).expect("symlink");
        assert_eq!(bytes_under(temp.path()), 7);
        assert_eq!(bytes_under(&temp.path().join("missing")), 0);
    }
}
