//! What an application's input reads, as parts: each shard of a KDS stream or delivery stream,
//! or each video stream an input's ARN (or pattern) names. A part is known by a key the
//! checkpoint uses: the shard's number (`"0"`, `"1"`), or `video/<name>` for a video stream, so
//! checkpoints written before video inputs existed read unchanged.

use std::collections::BTreeMap;

use framelog_media::FragmentRecord;
use framelog_store::{Engine, Position, StreamHandle, StreamKind};
use serde_json::{Value, json};

use super::context::AnalyticsCtx;
use super::video_input::{fragment_document, is_ready, matching_streams, video_pattern};
use crate::background::Background;
use crate::consumers::labelled_before;
use crate::kds::{record_sequence_number, shard_id};
use crate::kvs::{VIDEO_SHARD, VideoStream};

const READ_RECORDS: usize = 10_000;
const READ_BYTES: usize = 8 << 20;
/// Fragments listed per video stream per read.
const READ_FRAGMENTS: usize = 1_000;
/// How often a pattern is matched against the video streams again.
const REMATCH_EVERY_MS: u64 = 1_000;

#[derive(Debug, Clone)]
enum Source {
    Records(StreamHandle),
    Video { pattern: String, matched_ms: Option<u64> },
}

#[derive(Debug, Clone)]
struct Part {
    handle: StreamHandle,
    shard: u32,
    video: bool,
}

/// One record (or one fragment's document) of a part.
#[derive(Debug, Clone)]
pub struct Item {
    pub part: String,
    pub seq: u64,
    pub arrival_ms: u64,
    pub data: Vec<u8>,
    /// A KDS record's partition key (the entry's attributes); empty otherwise.
    pub attrs: Vec<u8>,
}

/// One read of a part: its items, where the next read starts, and, when the part has more
/// than it gave, the ROWTIME before which all of it is read (later items come no earlier).
pub struct PartRead {
    pub items: Vec<Item>,
    pub next_seq: u64,
    pub behind_ms: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Feed {
    source: Source,
    parts: BTreeMap<String, Part>,
}

impl Feed {
    /// The feed of an input ARN, or why there is none.
    pub fn open(ctx: &AnalyticsCtx, arn: &str) -> Result<Feed, String> {
        let source = match video_pattern(arn) {
            Some(pattern) => Source::Video { pattern, matched_ms: None },
            None => Source::Records(ctx.stream_of_arn(arn).ok_or(format!("its input {arn} is gone"))?),
        };
        let mut feed = Feed { source, parts: BTreeMap::new() };
        feed.refresh(&ctx.engine);
        Ok(feed)
    }

    /// Takes in shards added by a reshard and video streams created since the last look.
    pub fn refresh(&mut self, engine: &Engine) {
        match &mut self.source {
            Source::Records(handle) => {
                for shard in 0..handle.shard_count() {
                    let part = Part { handle: handle.clone(), shard, video: false };
                    self.parts.entry(shard.to_string()).or_insert(part);
                }
            }
            Source::Video { pattern, matched_ms } => {
                let now_ms = engine.now_ms();
                if matched_ms.is_some_and(|at| now_ms < at + REMATCH_EVERY_MS) {
                    return;
                }
                *matched_ms = Some(now_ms);
                // A deleted camera's part goes; its checkpoint position stays with the runner.
                self.parts.retain(|_, part| {
                    let meta = part.handle.meta();
                    engine.stream(&meta.name).is_ok_and(|now| now.meta().id == meta.id)
                });
                for (name, handle) in matching_streams(engine, pattern) {
                    let part = Part { handle, shard: VIDEO_SHARD, video: true };
                    self.parts.entry(format!("video/{name}")).or_insert(part);
                }
            }
        }
    }

    pub fn has(&self, key: &str) -> bool {
        self.parts.contains_key(key)
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.parts.keys()
    }

    /// The sequence number `position` names in part `key`.
    pub fn resolve(&self, engine: &Engine, key: &str, position: Position) -> Option<u64> {
        let part = self.parts.get(key)?;
        engine.resolve(&part.handle, part.shard, position).ok()
    }

    /// The record metadata a preprocessing Lambda event gives `item`: the member's name and
    /// value (`kinesisStreamRecordMetadata` or `kinesisFirehoseRecordMetadata`).
    pub fn lambda_metadata(&self, item: &Item) -> (&'static str, Value) {
        let part = self.parts.get(&item.part);
        match part {
            Some(part) if !part.video && part.handle.meta().kind == StreamKind::Data => {
                let meta = part.handle.meta();
                let metadata = json!({
                    "shardId": shard_id(part.shard),
                    "partitionKey": String::from_utf8_lossy(&item.attrs),
                    "sequenceNumber": record_sequence_number(&meta, part.shard, item.seq, item.arrival_ms),
                    "approximateArrivalTimestamp": item.arrival_ms,
                });
                ("kinesisStreamRecordMetadata", metadata)
            }
            _ => arrival_metadata(item),
        }
    }

    /// Reads part `key` from `from_seq`, off the async threads.
    pub async fn read(
        &self,
        engine: &Engine,
        background: &Background,
        key: &str,
        from_seq: u64,
    ) -> Result<PartRead, String> {
        let part = self.parts.get(key).ok_or("no such part")?.clone();
        let (engine, key) = (engine.clone(), key.to_string());
        let read = background.spawn_blocking(move || match part.video {
            true => read_fragments(&engine, &part.handle, &key, from_seq),
            false => read_records(&engine, &part, &key, from_seq),
        });
        read.await.map_err(|_| "the read was cancelled".to_string())?
    }
}

/// The metadata of a record known only by its arrival (a delivery stream's, a fragment's).
pub fn arrival_metadata(item: &Item) -> (&'static str, Value) {
    ("kinesisFirehoseRecordMetadata", json!({"approximateArrivalTimestamp": item.arrival_ms}))
}

fn read_records(engine: &Engine, part: &Part, key: &str, from_seq: u64) -> Result<PartRead, String> {
    let batch = engine.read(&part.handle, part.shard, from_seq, READ_RECORDS, READ_BYTES).map_err(|e| e.to_string())?;
    let behind_ms = (batch.next_seq < batch.tip_seq).then(|| batch.entries.last().map_or(0, |e| e.arrival_ms));
    let items = batch
        .entries
        .into_iter()
        .map(|e| Item { part: key.to_string(), seq: e.seq, arrival_ms: e.arrival_ms, data: e.payload, attrs: e.attrs })
        .collect();
    Ok(PartRead { items, next_seq: batch.next_seq, behind_ms })
}

/// The fragments from `from_seq` that are ready (labelled, or waited for long enough), as
/// documents. The first one not ready holds the part back: its ROWTIME is not passed.
fn read_fragments(engine: &Engine, handle: &StreamHandle, key: &str, from_seq: u64) -> Result<PartRead, String> {
    let tip_seq = handle.tip_seq(VIDEO_SHARD).map_err(|e| e.to_string())?;
    let headers =
        engine.list_headers(handle, VIDEO_SHARD, from_seq, tip_seq, READ_FRAGMENTS).map_err(|e| e.to_string())?;
    if headers.is_empty() {
        return Ok(PartRead { items: Vec::new(), next_seq: from_seq, behind_ms: None });
    }
    let (stream, now_ms) = (VideoStream::new(handle.clone()), engine.now_ms());
    // The consumers' specs are parsed only when there are fragments to decide on.
    let labelled = labelled_before(&handle.meta().settings);
    let full = headers.len() == READ_FRAGMENTS;
    let mut read = PartRead { items: Vec::new(), next_seq: from_seq, behind_ms: None };
    for item in headers {
        let header = &item.header;
        if !is_ready(item.seq, header.arrival_ms, labelled, now_ms) {
            read.behind_ms = Some(header.arrival_ms.saturating_sub(1));
            return Ok(read);
        }
        read.next_seq = item.seq + 1;
        // A fragment whose record does not read (never written by this server) has no row.
        let Ok(record) = FragmentRecord::decode(&header.attrs) else { continue };
        let data = fragment_document(&stream, item.seq, &record, header.payload_len);
        let arrival_ms = header.arrival_ms;
        read.items.push(Item { part: key.to_string(), seq: item.seq, arrival_ms, data, attrs: Vec::new() });
    }
    if full {
        read.behind_ms = read.items.last().map(|i| i.arrival_ms);
    }
    Ok(read)
}
