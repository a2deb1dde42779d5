//! Reading an entry whose payload is only passed through (GetMedia, GetMediaForFragmentList)
//! without loading the payload whole: a payload in a segment file is handed out as the open file
//! and the record's place, for positioned reads of a bounded size. Payloads elsewhere (inline,
//! blob files) and sealed ones (which must be opened whole) come loaded. The cluster backend
//! hands out a payload in the object store the same way, read with ranged GETs.

use std::fs::File;
use std::os::unix::fs::FileExt as _;

use crate::error::{Result, StoreError};
use crate::handle::StreamHandle;
use crate::local::LocalEngine;
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

/// The payload bytes of one stored record, read in bounded pieces: `len_bytes` from `offset` in
/// a segment file (which stays readable while this lives, even if retention deletes it
/// meanwhile), or one object of the cluster's object store.
#[derive(Debug)]
pub struct PayloadFile {
    source: Source,
    len_bytes: u64,
}

#[derive(Debug)]
enum Source {
    Segment { file: File, offset: u64 },
    Object(Box<dyn RangeRead>),
}

/// A stored payload outside this machine that can be read by byte range.
pub(crate) trait RangeRead: Send + Sync + std::fmt::Debug {
    fn read_range(&self, from: u64, len_bytes: u64) -> Result<Vec<u8>>;
}

impl PayloadFile {
    pub fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    pub(crate) fn object(object: Box<dyn RangeRead>, len_bytes: u64) -> Self {
        Self { source: Source::Object(object), len_bytes }
    }

    /// Up to `max_bytes` of the payload from `from` (relative to the payload's start); fewer only
    /// at its end.
    pub fn read(&self, from: u64, max_bytes: usize) -> Result<Vec<u8>> {
        let available = self.len_bytes.saturating_sub(from);
        let len = usize::try_from(available).unwrap_or(usize::MAX).min(max_bytes);
        match &self.source {
            Source::Segment { file, offset } => {
                let mut bytes = vec![0u8; len];
                file.read_exact_at(&mut bytes, offset + from)
                    .map_err(|e| StoreError::Io { what: "reading a segment", source: e })?;
                Ok(bytes)
            }
            Source::Object(_) if len == 0 => Ok(Vec::new()),
            Source::Object(object) => object.read_range(from, len as u64),
        }
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

impl LocalEngine {
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
                Payload::InFile(PayloadFile { source: Source::Segment { file, offset }, len_bytes: header.payload_len })
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
