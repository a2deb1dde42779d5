//! Retention: removes entries older than their stream's retention period.
//!
//! The cost is proportional to what expires: the sparse arrival index says where the first kept
//! entry is, the expired headers are walked once to drop their producer-time index keys, and the
//! entries themselves go with range deletes (no per-key tombstones for payloads). Segment files
//! are deleted whole once every payload in them is below the first entry kept.

use rocksdb::WriteBatch;

use crate::entry::decode_header;
use crate::error::Result;
use crate::handle::StreamHandle;
use crate::keys::{self, CF_ENTRIES, CF_META, CF_PAYLOADS, CF_TIME_INDEX, TimeKind};
use crate::local::{LocalEngine, cf, synced};

/// What one trim pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TrimStats {
    pub entries_removed: u64,
    pub shards_trimmed: u64,
    /// Segment files deleted because every payload in them expired.
    pub segments_deleted: u64,
}

impl LocalEngine {
    /// Trims every stream once. Safe to call at any time; the server calls it periodically.
    pub fn trim_expired(&self) -> Result<TrimStats> {
        let mut stats = TrimStats::default();
        for handle in self.streams() {
            for shard in 0..handle.shard_count() {
                // One cutoff for the index and the files, so no file goes while its entries stay.
                let keep_from = self.first_retained_seq(&handle, shard)?;
                let removed = self.trim_shard(&handle, shard, keep_from)?;
                if removed > 0 {
                    stats.entries_removed += removed;
                    stats.shards_trimmed += 1;
                }
                // Also when nothing was trimmed now: the segment being written when an earlier
                // trim ran may have filled with expired payloads since.
                stats.segments_deleted += self.inner.segments.delete_below(handle.id(), shard, keep_from)?;
            }
        }
        Ok(stats)
    }

    fn trim_shard(&self, handle: &StreamHandle, shard: u32, keep_from: u64) -> Result<u64> {
        let db = &self.inner.db;
        let id = handle.id();
        let cutoff = self.cutoff_ms(handle);
        let shard_start = keys::entry_key(id, shard, 0);
        let keep_key = keys::entry_key(id, shard, keep_from);

        let mut batch = WriteBatch::default();
        let mut removed = 0u64;
        let mut iter = db.raw_iterator_cf(cf(db, CF_ENTRIES));
        iter.seek(shard_start);
        while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            if key >= &keep_key[..] {
                break;
            }
            let seq = keys::entry_key_seq(key).unwrap_or(0);
            if let Some(producer_ms) = decode_header(key, value)?.producer_ts_ms {
                batch.delete_cf(cf(db, CF_TIME_INDEX), keys::time_key(id, shard, TimeKind::Producer, producer_ms, seq));
            }
            removed += 1;
            iter.next();
        }
        iter.status()?;
        if removed == 0 {
            return Ok(0);
        }
        batch.delete_range_cf(cf(db, CF_ENTRIES), shard_start, keep_key);
        batch.delete_range_cf(cf(db, CF_PAYLOADS), shard_start, keep_key);
        batch.delete_range_cf(
            cf(db, CF_TIME_INDEX),
            keys::time_key(id, shard, TimeKind::Arrival, 0, 0),
            keys::time_key(id, shard, TimeKind::Arrival, cutoff, 0),
        );
        // The floor only rises: recovery may have raised it past the trim (recovery.rs).
        let floor_key = keys::trim_floor_key(id, shard);
        let floor = db.get_cf(cf(db, CF_META), &floor_key)?.and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok());
        let floor = floor.map_or(keep_from, |bytes| u64::from_be_bytes(bytes).max(keep_from));
        batch.put_cf(cf(db, CF_META), floor_key, floor.to_be_bytes());
        db.write_opt(batch, &synced())?;
        // Blob files are never rewritten (blob GC is off, see LocalEngine::open): one is deleted when
        // no SST refers to it any more. Compacting the trimmed range drops those references now;
        // the SSTs hold only small blob indexes, so this is cheap.
        db.compact_range_cf(cf(db, CF_PAYLOADS), Some(&shard_start[..]), Some(&keep_key[..]));
        Ok(removed)
    }
}
