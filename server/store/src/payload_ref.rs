//! Reading an entry whose payload is only passed through (GetMedia, GetMediaForFragmentList)
//! without loading the payload whole: a payload in a segment file is handed out as the open file
//! and the record's place, for positioned reads of a bounded size. Payloads elsewhere (inline,
//! blob files) and sealed ones (which must be opened whole) come loaded.

use std::fs::File;
use std::os::unix::fs::FileExt as _;

use crate::engine::{Engine, StreamHandle};
use crate::error::{Result, StoreError};
use crate::segments::RECORD_HEADER_BYTES;

/// An entry with its payload where it lies.
#[derive(Debug)]
pub struct EntryRef {
    pub seq: u64,
    pub arrival_ms: u64,
    pub producer_ts_ms: Option<u64>,
    pub attrs: Vec<u8>,
    pub payload: Payload,
}

/// An entry's payload: in memory, or a record of an open segment file.
#[derive(Debug)]
pub enum Payload {
    Loaded(Vec<u8>),
    InFile(PayloadFile),
}

/// The payload bytes of one segment record: `len_bytes` from `offset` in `file`. The file stays
/// readable while this lives, even if retention deletes it meanwhile.
#[derive(Debug)]
pub struct PayloadFile {
    file: File,
    offset: u64,
    len_bytes: u64,
}

impl PayloadFile {
    pub fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    /// Up to `max_bytes` of the payload from `from` (relative to the payload's start); fewer only
    /// at its end.
    pub fn read(&self, from: u64, max_bytes: usize) -> Result<Vec<u8>> {
        let available = self.len_bytes.saturating_sub(from);
        let mut bytes = vec![0u8; usize::try_from(available).unwrap_or(usize::MAX).min(max_bytes)];
        self.file
            .read_exact_at(&mut bytes, self.offset + from)
            .map_err(|e| StoreError::Io { what: "reading a segment", source: e })?;
        Ok(bytes)
    }
}

impl Payload {
    pub fn len_bytes(&self) -> u64 {
        match self {
            Payload::Loaded(bytes) => bytes.len() as u64,
            Payload::InFile(file) => file.len_bytes,
        }
    }
}

impl Engine {
    /// The first retained entry at or after `from_seq` with its payload where it lies, and the
    /// sequence number to continue from (like `read` with a count of one). Streamed payloads are
    /// checked by their record header (sequence number and length), not by checksum: the bytes
    /// are sent as they are read.
    pub fn entry_ref(&self, handle: &StreamHandle, shard: u32, from_seq: u64) -> Result<(Option<EntryRef>, u64)> {
        let tip = handle.tip_seq(shard)?;
        let Some(item) = self.list_headers(handle, shard, from_seq, tip, 1)?.into_iter().next() else {
            return Ok((None, from_seq.max(tip)));
        };
        let header = item.header;
        let payload = match header.segment {
            Some(place) if !header.encrypted => {
                let segments = &self.inner.segments;
                let (file, _) = segments.open_record(handle.id(), shard, item.seq, place, header.payload_len)?;
                let offset = place.offset + RECORD_HEADER_BYTES;
                Payload::InFile(PayloadFile { file, offset, len_bytes: header.payload_len })
            }
            _ => match self.entry(handle, shard, item.seq)? {
                Some(entry) => Payload::Loaded(entry.payload),
                // Expired between the two reads: continue after it.
                None => return Ok((None, item.seq + 1)),
            },
        };
        let entry = EntryRef {
            seq: item.seq,
            arrival_ms: header.arrival_ms,
            producer_ts_ms: header.producer_ts_ms,
            attrs: header.attrs,
            payload,
        };
        Ok((Some(entry), item.seq + 1))
    }
}
