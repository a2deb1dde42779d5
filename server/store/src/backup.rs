//! A consistent copy of a live local engine: a RocksDB checkpoint (hard links where it can, a
//! flush first so nothing rests only in the WAL) plus the segment files its index names.
//!
//! Segment files are append-only and a payload is synced before the index entry naming it
//! commits, so every file copied after the checkpoint holds at least what the checkpoint's index
//! names; bytes past that (appends after the checkpoint, perhaps a torn record) are what start-up
//! recovery cuts from any crashed engine. The one thing that could break the copy is a segment
//! deleted between the checkpoint and its copy (retention, DeleteStream): deletions wait while a
//! backup runs.

use std::fs::File;
use std::path::Path;

use rocksdb::DB;
use rocksdb::checkpoint::Checkpoint;

use crate::error::{Result, StoreError};
use crate::segments::SegmentStore;

/// What a backup wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackupStats {
    pub files: u64,
    pub bytes: u64,
}

/// Copies the engine (`db` and `segments`) to `to`, which must not exist yet.
pub(crate) fn backup_local(db: &DB, segments: &SegmentStore, to: &Path) -> Result<BackupStats> {
    let _no_deletions = segments.hold_deletions();
    Checkpoint::new(db)?.create_checkpoint(to)?;
    let mut stats = BackupStats::default();
    for entry in std::fs::read_dir(to).map_err(io("listing the checkpoint"))? {
        let entry = entry.map_err(io("listing the checkpoint"))?;
        stats.files += 1;
        stats.bytes += entry.metadata().map_err(io("reading the checkpoint"))?.len();
    }
    copy_tree(segments.root(), &to.join("segments"), &mut stats)?;
    sync_dir(to)?;
    Ok(stats)
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
            match std::fs::copy(entry.path(), &target) {
                Ok(bytes) => stats.bytes += bytes,
                // A file of a failed group commit, which the index never named, removed meanwhile.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::Io { what: "copying a segment", source: e }),
            }
            stats.files += 1;
            File::open(&target).and_then(|f| f.sync_all()).map_err(io("syncing a copied segment"))?;
        }
    }
    sync_dir(to)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io("syncing a backup directory"))
}

fn io(what: &'static str) -> impl Fn(std::io::Error) -> StoreError {
    move |source| StoreError::Io { what, source }
}
