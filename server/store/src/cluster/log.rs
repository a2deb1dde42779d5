//! Shard logs on JetStream: one stream per shard, entry `seq` stored as JetStream sequence
//! `seq + 1` (docs/cluster.md section 2). Gets go to the stream's leader, so an entry
//! acknowledged through any node is visible at once.

use std::time::Duration;

use async_nats::jetstream::stream::{Config, DiscardPolicy, LastRawMessageErrorKind, StorageType, Stream};

use super::names;
use super::node::{Node, nats_error};
use crate::entry::{EntryHeader, decode_header};
use crate::error::Result;

/// How long JetStream remembers a message id: a node's retry of a publish within this window
/// stores nothing twice.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// Room in a log message for the header besides an inline payload.
const HEADER_ROOM_BYTES: u64 = 64 << 10;

/// One log entry as stored: its header, and the object holding its payload if it is not inline.
#[derive(Debug, Clone)]
pub(crate) struct LogEntry {
    pub(crate) seq: u64,
    pub(crate) header: EntryHeader,
    pub(crate) object: Option<String>,
    /// The nonce of a sealed payload.
    pub(crate) nonce: Option<[u8; 12]>,
}

/// A shard's sequence range: the first entry still in the log and one past the newest.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogRange {
    pub(crate) first: u64,
    pub(crate) tip: u64,
}

pub(crate) async fn create(node: &Node, id: u64, shard: u32) -> Result<()> {
    let config = Config {
        name: names::log_stream(id, shard),
        subjects: vec![names::log_subject(id, shard)],
        num_replicas: node.options.replicas,
        storage: StorageType::File,
        duplicate_window: DUPLICATE_WINDOW,
        discard: DiscardPolicy::New,
        max_message_size: i32::try_from(node.options.object_min_bytes + HEADER_ROOM_BYTES).unwrap_or(i32::MAX),
        ..Default::default()
    };
    node.js.get_or_create_stream(config).await.map_err(|e| nats_error("creating a shard log")(&e))?;
    Ok(())
}

pub(crate) async fn delete(node: &Node, id: u64, shard: u32) -> Result<()> {
    match node.js.delete_stream(names::log_stream(id, shard)).await {
        Ok(_) => Ok(()),
        Err(error) if error.to_string().contains("not found") => Ok(()),
        Err(error) => Err(nats_error("deleting a shard log")(&error)),
    }
}

async fn stream(node: &Node, id: u64, shard: u32) -> Result<Stream<()>> {
    node.js.get_stream_no_info(names::log_stream(id, shard)).await.map_err(|e| nats_error("a shard log")(&e))
}

/// The shard's current range, from the stream's leader.
pub(crate) async fn range(node: &Node, id: u64, shard: u32) -> Result<LogRange> {
    let info = node
        .js
        .get_stream(names::log_stream(id, shard))
        .await
        .map_err(|e| nats_error("reading a shard log's state")(&e))?
        .cached_info()
        .state
        .clone();
    let tip = info.last_sequence;
    // An empty new stream reports first 0; a purged one first = last + 1.
    let first = info.first_sequence.saturating_sub(1).min(tip);
    Ok(LogRange { first, tip })
}

/// The entry at `seq`, or `None` when the log does not hold it (purged by retention, or not
/// written yet).
pub(crate) async fn get(node: &Node, id: u64, shard: u32, seq: u64) -> Result<Option<LogEntry>> {
    let message = match stream(node, id, shard).await?.get_raw_message(seq + 1).await {
        Ok(message) => message,
        Err(error) if matches!(error.kind(), LastRawMessageErrorKind::NoMessageFound) => return Ok(None),
        Err(error) => return Err(nats_error("reading a shard log")(&error)),
    };
    let header = decode_header(names::log_stream(id, shard).as_bytes(), &message.payload)?;
    let object = message.headers.get(names::OBJECT_HEADER).map(|value| value.as_str().to_string());
    let nonce = message.headers.get(names::NONCE_HEADER).and_then(|value| {
        hex::decode(value.as_str()).ok().and_then(|bytes| <[u8; 12]>::try_from(bytes.as_slice()).ok())
    });
    Ok(Some(LogEntry { seq, header, object, nonce }))
}

/// Entries `[from, to)` that the log holds, fetched with several gets in flight.
pub(crate) async fn get_run(node: &Node, id: u64, shard: u32, from: u64, to: u64) -> Result<Vec<LogEntry>> {
    use futures::StreamExt as _;
    let gets = futures::stream::iter(from..to).map(|seq| get(node, id, shard, seq)).buffered(32);
    let found: Vec<Result<Option<LogEntry>>> = gets.collect().await;
    let mut entries = Vec::with_capacity(found.len());
    for item in found {
        entries.extend(item?);
    }
    Ok(entries)
}

/// The first sequence number in `[lo, hi)` whose entry satisfies `reached` (a property that,
/// once true, stays true for later entries), or `hi`. Entries the log no longer holds count as
/// not reached: they were purged, so they are older than anything kept.
pub(crate) async fn search(
    node: &Node,
    id: u64,
    shard: u32,
    mut lo: u64,
    mut hi: u64,
    reached: impl Fn(&EntryHeader) -> bool,
) -> Result<u64> {
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let at_mid = get(node, id, shard, mid).await?;
        if at_mid.is_some_and(|entry| reached(&entry.header)) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(lo)
}

/// Removes entries below `keep_from` from the log.
pub(crate) async fn purge_below(node: &Node, id: u64, shard: u32, keep_from: u64) -> Result<u64> {
    let purged = stream(node, id, shard)
        .await?
        .purge()
        .sequence(keep_from + 1)
        .await
        .map_err(|e| nats_error("purging a shard log")(&e))?;
    Ok(purged.purged)
}
