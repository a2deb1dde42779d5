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

use crate::entry::{EntryHeader, decode_header};
use crate::error::{Result, StoreError};
use crate::keys::{self, CF_ENTRIES, CF_META, CF_TIME_INDEX, TimeKind};
use crate::local::{cf, synced};
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
        match segments.read(stream_id, shard, seq, place, header.stored_len()) {
            Ok(_) => break seq + 1,
            // Only bytes that are missing or wrong drop an entry; any other failure (permissions,
            // too many open files, a disk error) stops start-up rather than deleting data.
            Err(error) if bytes_lost(&error) => {
                tracing::warn!(stream_id, shard, seq, %error, "dropping an index entry whose payload is not on disk");
                drop_entry(db, stream_id, shard, seq, &header)?;
                recovered.entries_dropped += 1;
            }
            Err(error) => return Err(error),
        }
    };
    // One past the highest sequence number any file holds a record of, indexed or not.
    let mut written_end = tip;
    let mut files = segments.shard_segments(stream_id, shard)?;
    while let Some(&newest) = files.last() {
        // A file started at or after the tip holds nothing the index names.
        if newest < tip {
            break;
        }
        let path = segments.segment_file(stream_id, shard, newest);
        written_end = written_end.max(walk_records(&path)?.end_seq(newest));
        std::fs::remove_file(&path).map_err(|e| StoreError::Io { what: "removing an unindexed segment", source: e })?;
        recovered.files_removed += 1;
        files.pop();
    }
    if let Some(&newest) = files.last() {
        let path = segments.segment_file(stream_id, shard, newest);
        let walk = walk_records(&path)?;
        written_end = written_end.max(walk.end_seq(newest));
        recovered.bytes_truncated = truncate_after(&path, &walk.complete, tip)?;
    }
    if written_end > tip {
        raise_seq_floor(db, stream_id, shard, written_end)?;
    }
    Ok(recovered)
}

fn bytes_lost(error: &StoreError) -> bool {
    match error {
        StoreError::CorruptEntry { .. } => true,
        StoreError::Io { source, .. } => {
            matches!(source.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::UnexpectedEof)
        }
        _ => false,
    }
}

/// Sequence numbers below `floor` are never assigned again (restore_stream starts at least
/// there): records for them reached a file, and an encrypted payload's nonce is its shard and
/// sequence number, so reusing one would seal a second plaintext under the same nonce.
fn raise_seq_floor(db: &DB, stream_id: u64, shard: u32, floor: u64) -> Result<()> {
    let key = keys::trim_floor_key(stream_id, shard);
    let current = db.get_cf(cf(db, CF_META), &key)?.and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok());
    if current.map(u64::from_be_bytes).is_none_or(|current| current < floor) {
        db.put_cf_opt(cf(db, CF_META), key, floor.to_be_bytes(), &synced())?;
    }
    Ok(())
}

fn newest_entry(db: &DB, stream_id: u64, shard: u32) -> Result<Option<(u64, EntryHeader)>> {
    let upper = keys::entry_key(stream_id, shard, u64::MAX);
    let mut iter = db.raw_iterator_cf(cf(db, CF_ENTRIES));
    iter.seek_for_prev(upper);
    let found = match (iter.key(), iter.value()) {
        (Some(key), Some(value)) if key.get(..12) == upper.get(..12) => {
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

/// Cuts `path` after its last complete record (of `records`, the file's walk) below `tip`;
/// returns the bytes cut.
fn truncate_after(path: &Path, records: &[(RecordHeader, u64)], tip: u64) -> Result<u64> {
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

/// A segment file's records as far as they are whole, and the header of a torn one after them.
pub(crate) struct Walk {
    pub(crate) complete: Vec<(RecordHeader, u64)>,
    torn: Option<RecordHeader>,
}

impl Walk {
    /// One past the highest sequence number the file holds a record (or a torn record) of.
    fn end_seq(&self, first_seq: u64) -> u64 {
        let last = self.complete.last().map(|(header, _)| header.seq);
        let torn = self.torn.map(|header| header.seq);
        last.max(torn).map_or(first_seq, |seq| seq.saturating_add(1))
    }
}

/// The records of a segment whose header and payload lie wholly in the file, with their
/// offsets, in order; the walk stops at the first record that does not (a torn tail) or whose
/// sequence number does not increase. Reads only the headers.
pub(crate) fn complete_records(path: &Path) -> Result<Vec<(RecordHeader, u64)>> {
    Ok(walk_records(path)?.complete)
}

pub(crate) fn walk_records(path: &Path) -> Result<Walk> {
    let file = File::open(path).map_err(|e| StoreError::Io { what: "opening a segment", source: e })?;
    let len_bytes = file.metadata().map_err(|e| StoreError::Io { what: "sizing a segment", source: e })?.len();
    let mut complete: Vec<(RecordHeader, u64)> = Vec::new();
    let mut torn = None;
    let mut offset = 0u64;
    let mut bytes = [0u8; RECORD_HEADER_BYTES as usize];
    while offset + RECORD_HEADER_BYTES <= len_bytes {
        file.read_exact_at(&mut bytes, offset).map_err(|e| StoreError::Io { what: "reading a segment", source: e })?;
        let Some(header) = RecordHeader::parse(&bytes) else { break };
        let increasing = complete.last().is_none_or(|(last, _)| header.seq > last.seq);
        if !increasing {
            break;
        }
        let end = offset + RECORD_HEADER_BYTES + u64::from(header.len);
        if end > len_bytes {
            torn = Some(header);
            break;
        }
        complete.push((header, offset));
        offset = end;
    }
    Ok(Walk { complete, torn })
}
