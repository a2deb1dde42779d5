//! The entry header stored in the `entries` column family, apart from the payload so that
//! listing entries (fragment lists, sizes, timestamps) never reads payload bytes.
//!
//! Layout: `version u8 (1) | arrival_ms u64 | flags u8 | [producer_ts_ms u64 if flags&1] |
//! attrs_len u32 | attrs | payload_len u64 | [payload if flags&2] | [segment u64 | offset u64 if
//! flags&8]`; flags&4 marks an encrypted payload, whose stored length (`payload_len`) includes
//! the GCM tag; flags&8 a payload in a segment file (segments.rs).
//!
//! Small payloads (below the blob threshold) are stored inline after the header: one key per
//! record instead of two halves the write work for the small-record (KDS) workload, while large
//! payloads go to the blob-file column family, and the largest (video fragments) to segment
//! files.

use crate::segments::SegmentRef;

use crate::error::{Result, StoreError};

const VERSION: u8 = 1;
const FLAG_PRODUCER_TS: u8 = 1;
const FLAG_INLINE_PAYLOAD: u8 = 2;
/// The stored payload is sealed (crypto.rs): its stored length is the plaintext's plus the tag.
const FLAG_ENCRYPTED: u8 = 4;
/// The stored payload is a record of a segment file, at the place that follows the length.
const FLAG_SEGMENT: u8 = 8;

/// What a writer supplies for one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    pub shard: u32,
    /// Timestamp the producer assigned, in ms since the epoch (video fragments have one).
    pub producer_ts_ms: Option<u64>,
    /// Small per-entry attributes: a partition key, or a fragment's sample index and tags.
    pub attrs: Vec<u8>,
    pub payload: Vec<u8>,
}

/// Where an appended entry landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub shard: u32,
    pub seq: u64,
    pub arrival_ms: u64,
}

/// An entry as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub arrival_ms: u64,
    pub producer_ts_ms: Option<u64>,
    pub attrs: Vec<u8>,
    pub payload: Vec<u8>,
}

/// A decoded header (everything but the payload bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryHeader {
    pub arrival_ms: u64,
    pub producer_ts_ms: Option<u64>,
    pub attrs: Vec<u8>,
    pub payload_len: u64,
    /// The payload itself when it is stored inline; `None` when it lives in the payloads family.
    /// Still sealed when `encrypted`.
    pub inline_payload: Option<Vec<u8>>,
    /// The stored payload is sealed; `payload_len` is the plaintext's length.
    pub encrypted: bool,
    /// Where the payload lies when it is in a segment file.
    pub segment: Option<SegmentRef>,
}

impl EntryHeader {
    /// The stored payload's length: the plaintext's, plus the GCM tag when it is sealed.
    pub fn stored_len(&self) -> u64 {
        self.payload_len + if self.encrypted { crate::crypto::OVERHEAD_BYTES as u64 } else { 0 }
    }
}

/// How a payload is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Storage {
    /// The payload bytes follow the header in the same value.
    pub inline: bool,
    /// The payload bytes are sealed.
    pub encrypted: bool,
    /// The payload bytes are in a segment file, here.
    pub segment: Option<SegmentRef>,
}

/// Encodes a header; `payload` is the stored form (sealed when encrypted).
pub fn encode_header(
    arrival_ms: u64,
    producer_ts_ms: Option<u64>,
    attrs: &[u8],
    payload: &[u8],
    storage: Storage,
) -> Vec<u8> {
    let inline = storage.inline;
    let mut out = Vec::with_capacity(30 + attrs.len() + if inline { payload.len() } else { 0 });
    out.push(VERSION);
    out.extend_from_slice(&arrival_ms.to_be_bytes());
    let flags = if producer_ts_ms.is_some() { FLAG_PRODUCER_TS } else { 0 }
        | if inline { FLAG_INLINE_PAYLOAD } else { 0 }
        | if storage.encrypted { FLAG_ENCRYPTED } else { 0 }
        | if storage.segment.is_some() { FLAG_SEGMENT } else { 0 };
    out.push(flags);
    if let Some(ts) = producer_ts_ms {
        out.extend_from_slice(&ts.to_be_bytes());
    }
    out.extend_from_slice(&(attrs.len() as u32).to_be_bytes());
    out.extend_from_slice(attrs);
    out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    if inline {
        out.extend_from_slice(payload);
    }
    if let Some(place) = storage.segment {
        out.extend_from_slice(&place.segment.to_be_bytes());
        out.extend_from_slice(&place.offset.to_be_bytes());
    }
    out
}

pub fn decode_header(key: &[u8], bytes: &[u8]) -> Result<EntryHeader> {
    let corrupt = |reason| StoreError::CorruptEntry { key_hex: hex_of(key), reason };
    let mut rest = bytes;
    let mut take = |n: usize, what: &'static str| -> Result<&[u8]> {
        if rest.len() < n {
            return Err(corrupt(what));
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    if take(1, "missing version")?[0] != VERSION {
        return Err(corrupt("unknown header version"));
    }
    let arrival_ms = be_u64(take(8, "missing arrival time")?);
    let flags = take(1, "missing flags")?[0];
    let producer_ts_ms =
        if flags & FLAG_PRODUCER_TS != 0 { Some(be_u64(take(8, "missing producer time")?)) } else { None };
    let attrs_len =
        u32::from_be_bytes(take(4, "missing attrs length")?.try_into().map_err(|_| corrupt("attrs length"))?) as usize;
    let attrs = take(attrs_len, "attrs shorter than their length")?.to_vec();
    let stored_len = be_u64(take(8, "missing payload length")?);
    let inline_payload = if flags & FLAG_INLINE_PAYLOAD != 0 {
        let len = usize::try_from(stored_len).map_err(|_| corrupt("payload length"))?;
        Some(take(len, "inline payload shorter than its length")?.to_vec())
    } else {
        None
    };
    let segment = if flags & FLAG_SEGMENT != 0 {
        let segment = be_u64(take(8, "missing segment")?);
        Some(SegmentRef { segment, offset: be_u64(take(8, "missing segment offset")?) })
    } else {
        None
    };
    let encrypted = flags & FLAG_ENCRYPTED != 0;
    let payload_len = if encrypted {
        stored_len
            .checked_sub(crate::crypto::OVERHEAD_BYTES as u64)
            .ok_or_else(|| corrupt("sealed payload too short"))?
    } else {
        stored_len
    };
    Ok(EntryHeader { arrival_ms, producer_ts_ms, attrs, payload_len, inline_payload, encrypted, segment })
}

fn be_u64(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    buf.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(buf)
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn header_round_trips(arrival in any::<u64>(), producer in proptest::option::of(any::<u64>()),
                              attrs in proptest::collection::vec(any::<u8>(), 0..300),
                              payload in proptest::collection::vec(any::<u8>(), 16..300), inline in any::<bool>(),
                              encrypted in any::<bool>(), place in proptest::option::of((any::<u64>(), any::<u64>()))) {
            // A payload is either inline or elsewhere, never both.
            let segment = place.filter(|_| !inline).map(|(segment, offset)| SegmentRef { segment, offset });
            let bytes = encode_header(arrival, producer, &attrs, &payload, Storage { inline, encrypted, segment });
            let header = decode_header(b"k", &bytes).expect("decodes");
            let tag = if encrypted { crate::crypto::OVERHEAD_BYTES as u64 } else { 0 };
            let expected = EntryHeader {
                arrival_ms: arrival,
                producer_ts_ms: producer,
                attrs,
                payload_len: payload.len() as u64 - tag,
                inline_payload: inline.then(|| payload.clone()),
                encrypted,
                segment,
            };
            prop_assert_eq!(header, expected);
        }

        #[test]
        fn truncated_headers_are_errors_not_panics(cut in 0usize..40) {
            let bytes = encode_header(5, Some(6), b"abc", b"payload", Storage { inline: true, encrypted: false, segment: None });
            if cut < bytes.len() {
                prop_assert!(decode_header(b"k", &bytes[..cut]).is_err());
            }
        }
    }
}
