//! Reads in cluster mode: positions resolved by binary search over the log, runs of entries
//! fetched with several gets in flight, payloads from the log or the object store
//! (docs/cluster.md section 4). Expired entries are never returned, trimmed or not.

use std::ops::RangeInclusive;
use std::sync::Arc;

use super::bridge::Bridge;
use super::log::{self, LogEntry, LogRange};
use super::node::{FirstKept, Node};
use super::objects::ObjectRange;
use crate::entry::Entry;
use crate::error::{Result, StoreError};
use crate::handle::StreamHandle;
use crate::payload_ref::{EntryRef, Payload, PayloadFile};
use crate::read::{HeaderItem, Position, ReadBatch};

/// Entries fetched per round of gets.
const WINDOW: u64 = 64;

/// The shard's range as the log's leader reports it; moves this node's tip if it lagged.
async fn current_range(node: &Node, handle: &StreamHandle, shard: u32) -> Result<LogRange> {
    let range = log::range(node, handle.id(), shard).await?;
    handle.shard(shard)?.advance(range.tip, 0);
    Ok(range)
}

/// The first sequence number whose entry is not expired (the tip when all are).
pub(crate) async fn first_kept(node: &Node, handle: &StreamHandle, shard: u32, range: LogRange) -> Result<u64> {
    let id = handle.id();
    let cutoff_ms = node.cutoff_ms(handle);
    let retention_ms = handle.retention_ms();
    let cached = node.first_kept.lock().unwrap_or_else(|e| e.into_inner()).get(&(id, shard)).copied();
    let mut from = range.first;
    if let Some(known) = cached.filter(|known| known.retention_ms == retention_ms && known.seq >= range.first) {
        if known.arrival_ms >= cutoff_ms {
            return Ok(known.seq);
        }
        // Everything before the cached entry had expired already; it has expired since.
        from = known.seq;
    }
    let seq = log::search(node, id, shard, from, range.tip, |header| header.arrival_ms >= cutoff_ms).await?;
    if let Some(entry) = log::get(node, id, shard, seq).await? {
        let known = FirstKept { seq, arrival_ms: entry.header.arrival_ms, retention_ms };
        node.first_kept.lock().unwrap_or_else(|e| e.into_inner()).insert((id, shard), known);
    }
    Ok(seq)
}

pub(crate) async fn resolve(node: Arc<Node>, handle: StreamHandle, shard: u32, position: Position) -> Result<u64> {
    let range = current_range(&node, &handle, shard).await?;
    let first = first_kept(&node, &handle, shard, range).await?;
    let id = handle.id();
    Ok(match position {
        Position::TrimHorizon => first,
        Position::Latest => range.tip,
        Position::AtSeq(seq) => seq.max(first),
        Position::AfterSeq(seq) => seq.saturating_add(1).max(first),
        Position::AtArrivalMs(ms) => log::search(&node, id, shard, first, range.tip, |h| h.arrival_ms >= ms).await?,
        Position::AtProducerMs(ms) => {
            log::search(&node, id, shard, first, range.tip, |h| h.producer_ts_ms.is_some_and(|p| p >= ms)).await?
        }
    })
}

/// Kept entries in `[from, to)`, up to `max_count`, attributes amended, and where to go on.
async fn kept_entries(
    node: &Node,
    handle: &StreamHandle,
    shard: u32,
    from: u64,
    to: u64,
    max_count: usize,
) -> Result<(Vec<LogEntry>, u64)> {
    let id = handle.id();
    let cutoff_ms = node.cutoff_ms(handle);
    let mut kept = Vec::new();
    let mut seq = from;
    while seq < to && kept.len() < max_count {
        let window_end = to.min(seq + WINDOW);
        for mut entry in log::get_run(node, id, shard, seq, window_end).await? {
            seq = entry.seq + 1;
            if entry.header.arrival_ms < cutoff_ms {
                continue;
            }
            entry.header.attrs = node.attrs_of(id, shard, entry.seq, std::mem::take(&mut entry.header.attrs));
            kept.push(entry);
            if kept.len() >= max_count {
                return Ok((kept, seq));
            }
        }
        seq = window_end;
    }
    Ok((kept, seq))
}

pub(crate) async fn read(
    node: Arc<Node>,
    handle: StreamHandle,
    shard: u32,
    from_seq: u64,
    max_count: usize,
    max_bytes: usize,
) -> Result<ReadBatch> {
    let range = current_range(&node, &handle, shard).await?;
    let start = from_seq.max(first_kept(&node, &handle, shard, range).await?);
    let mut entries = Vec::new();
    let mut next_seq = start;
    let mut bytes = 0usize;
    while next_seq < range.tip && entries.len() < max_count {
        let (found, after) =
            kept_entries(&node, &handle, shard, next_seq, range.tip, max_count - entries.len()).await?;
        next_seq = after;
        for entry in found {
            let len = entry.header.payload_len as usize;
            if !entries.is_empty() && bytes + len > max_bytes {
                return Ok(batch(&handle, shard, entries, entry.seq, range.tip));
            }
            // Deleted by retention since the cutoff was taken: skipped like any expired entry.
            let Some(payload) = payload_of(&node, &handle, shard, &entry).await? else { continue };
            bytes += len;
            entries.push(Entry {
                seq: entry.seq,
                arrival_ms: entry.header.arrival_ms,
                producer_ts_ms: entry.header.producer_ts_ms,
                attrs: entry.header.attrs,
                payload,
            });
        }
    }
    Ok(batch(&handle, shard, entries, next_seq.max(start), range.tip))
}

/// Whether retention may have deleted this entry's object: its key time is no earlier than the
/// entry's arrival, so only for an entry about to expire, allowing the retention node's clock to
/// run up to one request timeout ahead of this one's.
fn expired_or_nearly(node: &Node, handle: &StreamHandle, entry: &LogEntry) -> bool {
    let skew_ms = u64::try_from(node.options.request_timeout.as_millis()).unwrap_or(u64::MAX);
    entry.header.arrival_ms < node.cutoff_ms(handle).saturating_add(skew_ms)
}

fn batch(handle: &StreamHandle, shard: u32, entries: Vec<Entry>, next_seq: u64, tip_seq: u64) -> ReadBatch {
    let tip_arrival_ms = handle.last_arrival_ms(shard).unwrap_or(0);
    ReadBatch { entries, next_seq, tip_seq, tip_arrival_ms }
}

/// The payload of a stored entry, opened if sealed; `None` when its object is gone (expired
/// meanwhile).
async fn payload_of(node: &Node, handle: &StreamHandle, shard: u32, entry: &LogEntry) -> Result<Option<Vec<u8>>> {
    let stored = match (&entry.header.inline_payload, entry.object.as_deref()) {
        (Some(inline), _) => inline.clone(),
        (None, Some(key)) => match node.objects.get(key).await? {
            Some(bytes) => bytes.to_vec(),
            // Retention deletes an object once its key time has expired; the key time is no
            // earlier than the entry's arrival, so a younger entry's object must still be there.
            None if expired_or_nearly(node, handle, entry) => return Ok(None),
            None => {
                return Err(StoreError::CorruptEntry { key_hex: key.to_string(), reason: "payload object missing" });
            }
        },
        (None, None) => {
            return Err(StoreError::CorruptEntry { key_hex: format!("seq {}", entry.seq), reason: "no payload" });
        }
    };
    if !entry.header.encrypted {
        return Ok(Some(stored));
    }
    let nonce = entry
        .nonce
        .ok_or(StoreError::CorruptEntry { key_hex: format!("seq {}", entry.seq), reason: "sealed without a nonce" })?;
    let key = node.data_key(&handle.meta())?;
    Ok(Some(key.open_unplaced(handle.id(), shard, nonce, stored)?))
}

pub(crate) async fn list_headers(
    node: Arc<Node>,
    handle: StreamHandle,
    shard: u32,
    from_seq: u64,
    to_seq: u64,
    max_count: usize,
) -> Result<Vec<HeaderItem>> {
    let range = current_range(&node, &handle, shard).await?;
    let start = from_seq.max(first_kept(&node, &handle, shard, range).await?);
    let (found, _) = kept_entries(&node, &handle, shard, start, to_seq.min(range.tip), max_count).await?;
    Ok(found.into_iter().map(|entry| HeaderItem { seq: entry.seq, header: entry.header }).collect())
}

pub(crate) async fn producer_range(
    node: Arc<Node>,
    handle: StreamHandle,
    shard: u32,
    wanted_ms: RangeInclusive<u64>,
    after: Option<(u64, u64)>,
    max_count: usize,
) -> Result<Vec<(u64, u64)>> {
    let range = current_range(&node, &handle, shard).await?;
    let first = first_kept(&node, &handle, shard, range).await?;
    let from_ms = after.map_or(*wanted_ms.start(), |(ms, _)| ms.max(*wanted_ms.start()));
    let id = handle.id();
    let mut seq =
        log::search(&node, id, shard, first, range.tip, |h| h.producer_ts_ms.is_some_and(|p| p >= from_ms)).await?;
    let mut out = Vec::new();
    while seq < range.tip && out.len() < max_count {
        let (found, next) = kept_entries(&node, &handle, shard, seq, range.tip, max_count - out.len()).await?;
        seq = next;
        for entry in found {
            let Some(producer_ms) = entry.header.producer_ts_ms else { continue };
            if producer_ms > *wanted_ms.end() {
                return Ok(out);
            }
            let pair = (producer_ms, entry.seq);
            if after.is_some_and(|previous| pair <= previous) || producer_ms < *wanted_ms.start() {
                continue;
            }
            out.push(pair);
        }
    }
    Ok(out)
}

pub(crate) async fn entry_ref(
    node: Arc<Node>,
    bridge: Arc<Bridge>,
    handle: StreamHandle,
    shard: u32,
    from_seq: u64,
) -> Result<(Option<EntryRef>, u64)> {
    let range = current_range(&node, &handle, shard).await?;
    let start = from_seq.max(first_kept(&node, &handle, shard, range).await?);
    let (found, next) = kept_entries(&node, &handle, shard, start, range.tip, 1).await?;
    let Some(entry) = found.into_iter().next() else { return Ok((None, next.max(start))) };
    let payload = match (&entry.object, entry.header.encrypted) {
        // Streamed by range as it is read; a sealed payload must be opened whole.
        (Some(key), false) => {
            let object = ObjectRange { objects: node.objects.clone(), key: key.clone(), bridge };
            Payload::InFile(PayloadFile::object(Box::new(object), entry.header.payload_len))
        }
        _ => match payload_of(&node, &handle, shard, &entry).await? {
            Some(bytes) => Payload::Loaded(bytes),
            None => return Ok((None, entry.seq + 1)),
        },
    };
    let seq = entry.seq;
    let found = EntryRef {
        seq,
        arrival_ms: entry.header.arrival_ms,
        producer_ts_ms: entry.header.producer_ts_ms,
        attrs: entry.header.attrs,
        payload,
    };
    Ok((Some(found), seq + 1))
}
