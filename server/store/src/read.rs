//! Reads: resolving a start position to a sequence number, and reading a bounded run of entries.
//! Expired entries are never returned, whether or not the background trim has removed them yet.

use rocksdb::{DB, ReadOptions};

use crate::entry::{Entry, EntryHeader, decode_header};
use crate::error::{Result, StoreError};
use crate::handle::StreamHandle;
use crate::keys::{self, CF_ENTRIES, CF_PAYLOADS, CF_TIME_INDEX, TimeKind};
use crate::local::{LocalEngine, cf};

/// Where a reader starts in a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The oldest entry still retained.
    TrimHorizon,
    /// Just after the newest entry: only entries appended from now on.
    Latest,
    AtSeq(u64),
    AfterSeq(u64),
    /// The first entry that arrived at or after this time.
    AtArrivalMs(u64),
    /// The entry with the smallest producer timestamp at or after this time.
    AtProducerMs(u64),
}

/// A run of entries and where the next read continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBatch {
    pub entries: Vec<Entry>,
    /// The sequence number to continue from.
    pub next_seq: u64,
    /// The shard's tip when the read ran (one past the newest entry).
    pub tip_seq: u64,
    /// Arrival time of the newest entry in the shard (0 if empty).
    pub tip_arrival_ms: u64,
}

/// An entry header without its payload, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderItem {
    pub seq: u64,
    pub header: EntryHeader,
}

impl LocalEngine {
    /// Turns a position into the sequence number a reader starts at.
    pub fn resolve(&self, handle: &StreamHandle, shard: u32, position: Position) -> Result<u64> {
        let tip = handle.tip_seq(shard)?;
        let first = self.first_retained_seq(handle, shard)?;
        let id = handle.id();
        Ok(match position {
            Position::TrimHorizon => first,
            Position::Latest => tip,
            Position::AtSeq(seq) => seq.max(first),
            Position::AfterSeq(seq) => seq.saturating_add(1).max(first),
            Position::AtArrivalMs(ms) => {
                let cutoff = self.cutoff_ms(handle);
                first_time_key_at_or_after(&self.inner.db, id, shard, TimeKind::Arrival, ms.max(cutoff))?
                    .map_or(tip, |seq| seq.max(first))
            }
            Position::AtProducerMs(ms) => {
                let mut found = tip;
                let mut iter = self.inner.db.raw_iterator_cf(cf(&self.inner.db, CF_TIME_INDEX));
                iter.seek(keys::time_key(id, shard, TimeKind::Producer, ms, 0));
                // Skip index entries of expired entries that the trim has not reached yet.
                while let Some(key) = iter.key() {
                    let Some((_, seq)) = keys::parse_time_key(key, id, shard, TimeKind::Producer) else { break };
                    if seq >= first {
                        found = seq;
                        break;
                    }
                    iter.next();
                }
                iter.status()?;
                found
            }
        })
    }

    /// Reads up to `max_count` entries from `from_seq`, stopping before `max_bytes` of payload
    /// (but always returning at least one entry when one is available).
    pub fn read(
        &self,
        handle: &StreamHandle,
        shard: u32,
        from_seq: u64,
        max_count: usize,
        max_bytes: usize,
    ) -> Result<ReadBatch> {
        let tip_seq = handle.tip_seq(shard)?;
        let tip_arrival_ms = handle.last_arrival_ms(shard)?;
        let start = from_seq.max(self.first_retained_seq(handle, shard)?);
        let cutoff = self.cutoff_ms(handle);
        let id = handle.id();
        let mut entries = Vec::new();
        let mut next_seq = start.max(from_seq);
        if start < tip_seq && max_count > 0 {
            let db = &self.inner.db;
            let mut headers = db.raw_iterator_cf_opt(cf(db, CF_ENTRIES), bounded(id, shard, start, tip_seq));
            headers.seek(keys::entry_key(id, shard, start));
            let mut bytes = 0usize;
            let mut data_key = None;
            while let (Some(key), Some(value)) = (headers.key(), headers.value()) {
                let seq = keys::entry_key_seq(key).unwrap_or(u64::MAX);
                let header = decode_header(key, value)?;
                if !entries.is_empty() && bytes + header.payload_len as usize > max_bytes {
                    break;
                }
                if header.arrival_ms >= cutoff {
                    bytes += header.payload_len as usize;
                    let stored_len = header.stored_len();
                    let stored = match (header.inline_payload, header.segment) {
                        (Some(inline), _) => inline,
                        (None, Some(place)) => {
                            match self.inner.segments.read(id, shard, seq, place, stored_len) {
                                Ok(stored) => stored,
                                // Expired since this read's cutoff, and its file deleted by
                                // retention: skipped, like any expired entry.
                                Err(error) if self.expired_meanwhile(handle, shard, seq, &error)? => {
                                    next_seq = seq + 1;
                                    headers.next();
                                    continue;
                                }
                                Err(error) => return Err(error),
                            }
                        }
                        (None, None) => db.get_cf(cf(db, CF_PAYLOADS), key)?.ok_or_else(|| {
                            StoreError::CorruptEntry { key_hex: format!("{key:02x?}"), reason: "payload missing" }
                        })?,
                    };
                    let payload = if header.encrypted {
                        if data_key.is_none() {
                            data_key = Some(self.data_key(&handle.meta())?);
                        }
                        let key = data_key.as_ref().ok_or(StoreError::Crypto("no data key"))?;
                        key.open(id, shard, seq, stored)?
                    } else {
                        stored
                    };
                    entries.push(Entry {
                        seq,
                        arrival_ms: header.arrival_ms,
                        producer_ts_ms: header.producer_ts_ms,
                        attrs: header.attrs,
                        payload,
                    });
                }
                next_seq = seq + 1;
                if entries.len() >= max_count {
                    break;
                }
                headers.next();
            }
            headers.status()?;
            if entries.len() < max_count && headers.key().is_none() {
                next_seq = next_seq.max(tip_seq);
            }
        }
        Ok(ReadBatch { entries, next_seq, tip_seq, tip_arrival_ms })
    }

    /// Lists entry headers (no payloads) in `[from_seq, to_seq)`, up to `max_count`.
    pub fn list_headers(
        &self,
        handle: &StreamHandle,
        shard: u32,
        from_seq: u64,
        to_seq: u64,
        max_count: usize,
    ) -> Result<Vec<HeaderItem>> {
        let start = from_seq.max(self.first_retained_seq(handle, shard)?);
        let end = to_seq.min(handle.tip_seq(shard)?);
        let cutoff = self.cutoff_ms(handle);
        let id = handle.id();
        let mut out = Vec::new();
        if start >= end {
            return Ok(out);
        }
        let db = &self.inner.db;
        let mut iter = db.raw_iterator_cf_opt(cf(db, CF_ENTRIES), bounded(id, shard, start, end));
        iter.seek(keys::entry_key(id, shard, start));
        while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            if out.len() >= max_count {
                break;
            }
            let header = decode_header(key, value)?;
            if header.arrival_ms >= cutoff {
                out.push(HeaderItem { seq: keys::entry_key_seq(key).unwrap_or(u64::MAX), header });
            }
            iter.next();
        }
        iter.status()?;
        Ok(out)
    }

    /// One entry by sequence number, if it exists and has not expired.
    pub fn entry(&self, handle: &StreamHandle, shard: u32, seq: u64) -> Result<Option<Entry>> {
        Ok(self.read(handle, shard, seq, 1, usize::MAX)?.entries.into_iter().next().filter(|e| e.seq == seq))
    }

    /// Entries whose producer time lies in `[start_ms, end_ms]`, in producer-time order, as
    /// `(producer_ms, seq)`; `after` continues a previous page after that pair.
    pub fn producer_range(
        &self,
        handle: &StreamHandle,
        shard: u32,
        start_ms: u64,
        end_ms: u64,
        after: Option<(u64, u64)>,
        max_count: usize,
    ) -> Result<Vec<(u64, u64)>> {
        let first = self.first_retained_seq(handle, shard)?;
        let tip = handle.tip_seq(shard)?;
        let id = handle.id();
        let mut iter = self.inner.db.raw_iterator_cf(cf(&self.inner.db, CF_TIME_INDEX));
        match after {
            Some((ms, seq)) => iter.seek(keys::time_key(id, shard, TimeKind::Producer, ms, seq.saturating_add(1))),
            None => iter.seek(keys::time_key(id, shard, TimeKind::Producer, start_ms, 0)),
        }
        let mut out = Vec::new();
        while let Some(key) = iter.key() {
            let Some((ms, seq)) = keys::parse_time_key(key, id, shard, TimeKind::Producer) else { break };
            if ms > end_ms || out.len() >= max_count {
                break;
            }
            // Skip entries that expired but are not trimmed yet, and ones not yet committed.
            if seq >= first && seq < tip {
                out.push((ms, seq));
            }
            iter.next();
        }
        iter.status()?;
        Ok(out)
    }

    /// Whether `error` reading entry `seq` means only that retention removed it after the read
    /// began.
    fn expired_meanwhile(&self, handle: &StreamHandle, shard: u32, seq: u64, error: &StoreError) -> Result<bool> {
        let missing = matches!(error, StoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound);
        Ok(missing && seq < self.first_retained_seq(handle, shard)?)
    }

    /// Oldest arrival time a read may still return.
    pub(crate) fn cutoff_ms(&self, handle: &StreamHandle) -> u64 {
        self.now_ms().saturating_sub(handle.retention_ms())
    }

    /// The first sequence number whose entry is not expired (the tip when all are).
    pub(crate) fn first_retained_seq(&self, handle: &StreamHandle, shard: u32) -> Result<u64> {
        let tip = handle.tip_seq(shard)?;
        let cutoff = self.cutoff_ms(handle);
        let found = first_time_key_at_or_after(&self.inner.db, handle.id(), shard, TimeKind::Arrival, cutoff)?;
        Ok(found.unwrap_or(tip))
    }
}

fn first_time_key_at_or_after(db: &DB, id: u64, shard: u32, kind: TimeKind, ts_ms: u64) -> Result<Option<u64>> {
    let mut iter = db.raw_iterator_cf(cf(db, CF_TIME_INDEX));
    iter.seek(keys::time_key(id, shard, kind, ts_ms, 0));
    let found = iter.key().and_then(|key| keys::parse_time_key(key, id, shard, kind)).map(|(_, seq)| seq);
    iter.status()?;
    Ok(found)
}

fn bounded(id: u64, shard: u32, from: u64, to: u64) -> ReadOptions {
    let mut opts = ReadOptions::default();
    opts.set_iterate_lower_bound(keys::entry_key(id, shard, from).to_vec());
    opts.set_iterate_upper_bound(keys::entry_key(id, shard, to).to_vec());
    opts
}
