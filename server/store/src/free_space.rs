//! The free-space watermark: appends are refused, with a typed error, while the disk holding the
//! engine has less than a configured headroom. RocksDB meeting a full disk in a flush or a
//! compaction stops all writes until the process restarts; refusing earlier keeps the server
//! up, reads working and every acknowledged entry intact, and writes resume by themselves once
//! retention or a deleted stream frees space.

use std::path::PathBuf;

use rocksdb::DB;

use crate::error::{Result, StoreError};
use crate::keys::ALL_CFS;
use crate::local::cf;

/// The default headroom (`EngineOptions::min_free_disk_bytes`): room for RocksDB to flush its
/// memtables and finish a compaction.
pub const DEFAULT_MIN_FREE_DISK_BYTES: u64 = 256 << 20;

pub(crate) struct FreeSpace {
    path: PathBuf,
    min_free_bytes: u64,
}

impl FreeSpace {
    pub(crate) fn new(path: PathBuf, min_free_bytes: u64) -> FreeSpace {
        FreeSpace { path, min_free_bytes }
    }

    /// Whether `incoming_bytes` more may be written. Memtables not yet flushed count as used:
    /// their flush needs that much disk.
    pub(crate) fn admit(&self, db: &DB, incoming_bytes: u64) -> Result<()> {
        if self.min_free_bytes == 0 {
            return Ok(());
        }
        let stat = rustix::fs::statvfs(&self.path)
            .map_err(|e| StoreError::Io { what: "reading the data dir's free space", source: e.into() })?;
        let available_bytes = stat.f_bavail.saturating_mul(stat.f_frsize);
        let unflushed_bytes: u64 = ALL_CFS
            .iter()
            .filter_map(|name| db.property_int_value_cf(cf(db, name), "rocksdb.cur-size-all-mem-tables").ok().flatten())
            .sum();
        let left_bytes = available_bytes.saturating_sub(unflushed_bytes).saturating_sub(incoming_bytes);
        if left_bytes < self.min_free_bytes {
            return Err(StoreError::DiskFull { available_bytes, min_free_bytes: self.min_free_bytes });
        }
        Ok(())
    }
}
