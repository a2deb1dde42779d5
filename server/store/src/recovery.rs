//! Start-up: make each shard's segment files agree with its index before the engine serves.
//!
//! After a crash a segment can end in a torn record (its write was cut) or in whole records
//! whose index batch never committed; both were never acknowledged. Because payloads are synced
//! before their index entries commit, an index entry naming bytes that are not there means the
//! disk lost them: that entry (and any newer one in the same state) is dropped from the index
//! rather than served as garbage. Only the newest entries and the newest file are looked at, so
//! start-up costs little whatever the retention.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt as _;
use std::path::Path;

use rocksdb::{DB, WriteBatch};

use crate::engine::{cf, synced};
use crate::entry::{EntryHeader, decode_header};
use crate::error::{Result, StoreError};
use crate::keys::{self, CF_ENTRIES, CF_TIME_INDEX, TimeKind};
use crate::segments::{RECORD_HEADER_BYTES, RecordHeader, SegmentStore};

/// What recovering one shard changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recovered {
    /// Index entries dropped because their payload was missing or damaged.
    pub(crate) entries_dropped: u64,
    /// Bytes cut from the end of the newest segment (torn or never indexed).
    pub(crate) bytes_truncated: u64,
    /// Whole segment files holding only never-indexed records.
    pub(crate) files_removed: u64,
}

/// Recovers one shard of stream `stream_id`.
pub(crate) fn recover_shard(db: &DB, segments: &SegmentStore, stream_id: u64, shard: u32) -> Result<Recovered> {
    let mut recovered = Recovered::default();
    let tip = loop {
        let Some((seq, header)) = newest_entry(db, stream_id, shard)? else { break 0 };
        let Some(place) = header.segment else { break seq + 1 };
        let stored_len = header.payload_len + if header.encrypted { crate::crypto::OVERHEAD_BYTES as u64 } else { 0 };
        match segments.read(stream_id, shard, seq, place, stored_len) {
            Ok(_) => break seq + 1,
            Err(error) => {
                tracing::warn!(stream_id, shard, seq, %error, "dropping an index entry whose payload is not on disk");
                drop_entry(db, stream_id, shard, seq, &header)?;
                recovered.entries_dropped += 1;
            }
        }
    };
    let mut files = segments.shard_segments(stream_id, shard)?;
    while let Some(&newest) = files.last() {
        // A file started at or after the tip holds nothing the index names.
        if newest < tip {
            break;
        }
        std::fs::remove_file(segments.segment_file(stream_id, shard, newest))
            .map_err(|e| StoreError::Io { what: "removing an unindexed segment", source: e })?;
        recovered.files_removed += 1;
        files.pop();
    }
    if let Some(&newest) = files.last() {
        recovered.bytes_truncated = truncate_after(&segments.segment_file(stream_id, shard, newest), tip)?;
    }
    Ok(recovered)
}

fn newest_entry(db: &DB, stream_id: u64, shard: u32) -> Result<Option<(u64, EntryHeader)>> {
    let upper = keys::entry_key(stream_id, shard, u64::MAX);
    let mut iter = db.raw_iterator_cf(cf(db, CF_ENTRIES));
    iter.seek_for_prev(upper);
    let found = match (iter.key(), iter.value()) {
        (Some(key), Some(value)) if key[..12] == upper[..12] => {
            Some((keys::entry_key_seq(key).unwrap_or(0), decode_header(key, value)?))
        }
        _ => None,
    };
    iter.status()?;
    Ok(found)
}

fn drop_entry(db: &DB, stream_id: u64, shard: u32, seq: u64, header: &EntryHeader) -> Result<()> {
    let mut batch = WriteBatch::default();
    batch.delete_cf(cf(db, CF_ENTRIES), keys::entry_key(stream_id, shard, seq));
    let arrival = keys::time_key(stream_id, shard, TimeKind::Arrival, header.arrival_ms, seq);
    batch.delete_cf(cf(db, CF_TIME_INDEX), arrival);
    if let Some(producer_ms) = header.producer_ts_ms {
        batch.delete_cf(cf(db, CF_TIME_INDEX), keys::time_key(stream_id, shard, TimeKind::Producer, producer_ms, seq));
    }
    db.write_opt(batch, &synced())?;
    Ok(())
}

/// Cuts `path` after its last complete record below `tip`; returns the bytes cut.
fn truncate_after(path: &Path, tip: u64) -> Result<u64> {
    let records = complete_records(path)?;
    let keep_bytes = records
        .iter()
        .rfind(|(header, _)| header.seq < tip)
        .map_or(0, |(header, offset)| offset + RECORD_HEADER_BYTES + u64::from(header.len));
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| StoreError::Io { what: "opening a segment for recovery", source: e })?;
    let len_bytes = file.metadata().map_err(|e| StoreError::Io { what: "sizing a segment", source: e })?.len();
    if len_bytes <= keep_bytes {
        return Ok(0);
    }
    file.set_len(keep_bytes).map_err(|e| StoreError::Io { what: "truncating a segment", source: e })?;
    file.sync_all().map_err(|e| StoreError::Io { what: "syncing a truncated segment", source: e })?;
    Ok(len_bytes - keep_bytes)
}

/// The records of a segment whose header and payload lie wholly in the file, with their
/// offsets, in order; the walk stops at the first record that does not (a torn tail) or whose
/// sequence number does not increase. Reads only the headers.
pub(crate) fn complete_records(path: &Path) -> Result<Vec<(RecordHeader, u64)>> {
    let file = File::open(path).map_err(|e| StoreError::Io { what: "opening a segment", source: e })?;
    let len_bytes = file.metadata().map_err(|e| StoreError::Io { what: "sizing a segment", source: e })?.len();
    let mut records: Vec<(RecordHeader, u64)> = Vec::new();
    let mut offset = 0u64;
    let mut bytes = [0u8; RECORD_HEADER_BYTES as usize];
    while offset + RECORD_HEADER_BYTES <= len_bytes {
        file.read_exact_at(&mut bytes, offset).map_err(|e| StoreError::Io { what: "reading a segment", source: e })?;
        let Some(header) = RecordHeader::parse(&bytes) else { break };
        let end = offset + RECORD_HEADER_BYTES + u64::from(header.len);
        let increasing = records.last().is_none_or(|(last, _)| header.seq > last.seq);
        if end > len_bytes || !increasing {
            break;
        }
        records.push((header, offset));
        offset = end;
    }
    Ok(records)
}
