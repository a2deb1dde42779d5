//! A consistent copy of a live local engine: a RocksDB checkpoint (hard links where it can, a
//! flush first so nothing rests only in the WAL) plus the segment files its index names.
//!
//! Segment files are append-only and a payload is synced before the index entry naming it
//! commits, so every file copied after the checkpoint holds at least what the checkpoint's index
//! names; bytes past that (appends after the checkpoint, perhaps a torn record) are what start-up
//! recovery cuts from any crashed engine. The one thing that could break the copy is a segment
//! deleted between the checkpoint and its copy (retention, DeleteStream): deletions wait while the
//! checkpoint is made and every segment file is hard-linked into a staging directory, and the
//! copy is made from the links.

use std::fs::File;
use std::path::Path;

use rocksdb::DB;
use rocksdb::checkpoint::Checkpoint;

use crate::error::{Result, StoreError};
use crate::segments::{SegmentStore, sync_dir};

/// What a backup wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackupStats {
    pub files: u64,
    pub bytes: u64,
}

/// Copies the engine (`db` and `segments`) to `to`, which must not exist yet.
pub(crate) fn backup_local(db: &DB, segments: &SegmentStore, to: &Path) -> Result<BackupStats> {
    let staging = segments.backup_staging();
    segments.remove_backup_staging()?;
    {
        // Only while the checkpoint is made and the segment files are linked (milliseconds):
        // a DeleteStream waits on the commit thread, and with it every append.
        let _no_deletions = segments.hold_deletions();
        Checkpoint::new(db)?.create_checkpoint(to)?;
        link_tree(segments.root(), &staging)?;
    }
    let mut stats = BackupStats::default();
    for entry in std::fs::read_dir(to).map_err(io("listing the checkpoint"))? {
        let entry = entry.map_err(io("listing the checkpoint"))?;
        stats.files += 1;
        stats.bytes += entry.metadata().map_err(io("reading the checkpoint"))?.len();
    }
    // The links keep each file whole (a deletion since only removed the other name); the
    // newest files may have grown, which recovery of the copy cuts.
    copy_tree(&staging, &to.join("segments"), &mut stats)?;
    segments.remove_backup_staging()?;
    sync_dir(to)?;
    Ok(stats)
}

/// Hard-links every file of a directory tree into `to` (same filesystem).
fn link_tree(from: &Path, to: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(from) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::Io { what: "listing segments", source: e }),
    };
    std::fs::create_dir_all(to).map_err(io("creating the backup's staging directory"))?;
    for entry in entries {
        let entry = entry.map_err(io("listing segments"))?;
        let target = to.join(entry.file_name());
        if entry.file_type().map_err(io("listing segments"))?.is_dir() {
            link_tree(&entry.path(), &target)?;
        } else {
            match std::fs::hard_link(entry.path(), &target) {
                // A file of a failed group commit, which the index never named, removed meanwhile.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                linked => linked.map_err(io("linking a segment for the backup"))?,
            }
        }
    }
    Ok(())
}

/// Copies a directory tree of regular files, syncing each file and directory it writes.
fn copy_tree(from: &Path, to: &Path, stats: &mut BackupStats) -> Result<()> {
    let entries = match std::fs::read_dir(from) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::Io { what: "listing segments", source: e }),
    };
    std::fs::create_dir_all(to).map_err(io("creating a backup directory"))?;
    for entry in entries {
        let entry = entry.map_err(io("listing segments"))?;
        let target = to.join(entry.file_name());
        if entry.file_type().map_err(io("listing segments"))?.is_dir() {
            copy_tree(&entry.path(), &target, stats)?;
        } else {
            stats.bytes += std::fs::copy(entry.path(), &target).map_err(io("copying a segment"))?;
            stats.files += 1;
            File::open(&target).and_then(|f| f.sync_all()).map_err(io("syncing a copied segment"))?;
        }
    }
    sync_dir(to)
}

fn io(what: &'static str) -> impl Fn(std::io::Error) -> StoreError {
    move |source| StoreError::Io { what, source }
}
