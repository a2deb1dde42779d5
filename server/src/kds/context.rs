//! What every KDS operation needs: the engine, the account settings, the iterator codec, and the
//! shared request checks (which stream is meant, shard id syntax).

use framelog_store::{Engine, ShardMeta, StreamHandle, StreamKind, StreamMeta};
use serde_json::{Value, json};

use super::iterator::IteratorCodec;
use super::seqnum;
use crate::document::Document;
use crate::error::{ApiError, ErrorType, from_store};

/// Account-level settings of the KDS personality.
#[derive(Debug, Clone)]
pub struct KdsSettings {
    pub account_id: String,
    pub region: String,
    /// Most shards all streams together may have (LimitExceededException beyond).
    pub shard_limit: u32,
    pub default_retention_hours: u32,
    /// How long a stream stays UPDATING before a reshard takes effect (0: before the call
    /// returns). AWS takes seconds; clients must cope with either.
    pub reshard_delay_ms: u64,
}

#[derive(Debug, Clone)]
pub struct KdsCtx {
    pub engine: Engine,
    pub settings: KdsSettings,
    pub iterators: IteratorCodec,
    /// Live SubscribeToShard streams, one per consumer and shard.
    pub subscriptions: super::subscribe::Subscriptions,
    /// Per-shard throughput: enforced quotas (when configured) and the write meter.
    pub quotas: super::quotas::Quotas,
    /// Where CloudWatch's AWS/Kinesis metrics are recorded.
    pub metrics: crate::cloudwatch::Recorder,
}

impl KdsCtx {
    pub fn arn(&self, name: &str) -> String {
        format!("arn:aws:kinesis:{}:{}:stream/{}", self.settings.region, self.settings.account_id, name)
    }

    pub fn store_error(&self, error: framelog_store::StoreError) -> ApiError {
        from_store(error, &self.settings.account_id)
    }

    /// KDS's throttling error for a shard.
    pub fn throttled(&self, stream: &str, shard: u32) -> ApiError {
        ApiError::new(ErrorType::ProvisionedThroughputExceeded, self.throttled_message(stream, shard))
    }

    pub fn throttled_message(&self, stream: &str, shard: u32) -> String {
        format!(
            "Rate exceeded for shard {} in stream {stream} under account {}.",
            shard_id(shard),
            self.settings.account_id
        )
    }

    pub fn not_found(&self, name: &str) -> ApiError {
        self.store_error(framelog_store::StoreError::StreamNotFound(name.to_string()))
    }

    /// Reads `StreamName` / `StreamARN`, validates them, and finds the stream.
    pub fn stream(&self, body: &Document) -> Result<StreamHandle, ApiError> {
        let name = self.stream_name(body)?;
        self.lookup(&name)
    }

    /// Finds a data stream by name. Video streams share the engine but are not KDS streams,
    /// whatever an ARN says.
    pub fn lookup(&self, name: &str) -> Result<StreamHandle, ApiError> {
        match self.engine.stream(name) {
            Ok(handle) if handle.meta().kind == StreamKind::Data => Ok(handle),
            Ok(_) => Err(self.not_found(name)),
            Err(error) => Err(self.store_error(error)),
        }
    }

    /// Every data stream, ordered by name.
    pub fn data_streams(&self) -> Vec<StreamMeta> {
        self.engine.streams().into_iter().map(|h| h.meta()).filter(|m| m.kind == StreamKind::Data).collect()
    }

    /// The stream a request names by `StreamName` or `StreamARN` (their syntax was checked
    /// against the model before the handler ran); both must name the same stream.
    pub fn stream_name(&self, body: &Document) -> Result<String, ApiError> {
        let name = body.str("StreamName")?;
        let arn = body.str("StreamARN")?;
        let from_arn = arn.as_deref().map(|a| stream_name_in_arn(a, "StreamARN"));
        match (name, from_arn) {
            (Some(name), Some(Ok(from_arn))) if name != from_arn => Err(ApiError::invalid(format!(
                "StreamARN {} and StreamName {name} name different streams.",
                arn.unwrap_or_default()
            ))),
            (Some(name), _) => Ok(name),
            (None, Some(from_arn)) => from_arn,
            (None, None) => Err(ApiError::invalid("Either StreamName or StreamARN should be provided.")),
        }
    }
}

/// The stream a stream ARN names: the name after `:stream/` (auth/target.rs judges a request by
/// the same reading). `member` names the ARN in the error.
pub fn stream_name_in_arn(arn: &str, member: &str) -> Result<String, ApiError> {
    arn.rsplit_once(":stream/")
        .map(|(_, name)| name.to_string())
        .ok_or_else(|| ApiError::invalid(format!("Invalid {member} {arn}")))
}

pub fn shard_id(index: u32) -> String {
    format!("shardId-{index:012}")
}

/// Parses `shardId-000000000003`, and also the short forms kinesalite accepts (`shardId-3`, `3`).
pub fn parse_shard_id(text: &str) -> Option<u32> {
    text.strip_prefix("shardId-").unwrap_or(text).parse().ok()
}

pub fn shard_json(meta: &StreamMeta, index: usize) -> Value {
    let shard = &meta.shards[index];
    let created_secs = shard.created_ms / 1000;
    let mut range = json!({"StartingSequenceNumber": seqnum::starting(created_secs, shard.index)});
    if let Some(closed) = shard.closed {
        // One past the last record: every record of the shard sorts below it.
        range["EndingSequenceNumber"] =
            seqnum::encode(created_secs, shard.index, Some(closed.end_seq), closed.closed_ms / 1000).into();
    }
    let mut out = json!({
        "ShardId": shard_id(shard.index),
        "HashKeyRange": hash_range_json(shard),
        "SequenceNumberRange": range,
    });
    if let Some(parent) = shard.parent {
        out["ParentShardId"] = shard_id(parent).into();
    }
    if let Some(adjacent) = shard.adjacent_parent {
        out["AdjacentParentShardId"] = shard_id(adjacent).into();
    }
    out
}

pub fn hash_range_json(shard: &ShardMeta) -> Value {
    json!({"StartingHashKey": shard.start_hash.to_string(), "EndingHashKey": shard.end_hash.to_string()})
}

/// The shards KDS still shows: open ones, and closed ones until retention has expired all
/// their records (nothing in them can be read after that).
pub fn visible_shards(meta: &StreamMeta, now_ms: u64) -> impl Iterator<Item = &ShardMeta> {
    let retention_ms = meta.retention_ms();
    meta.shards.iter().filter(move |s| s.closed.is_none_or(|c| c.closed_ms.saturating_add(retention_ms) > now_ms))
}

/// The shards a closed shard's keys went to, as GetRecords and SubscribeToShard show them.
pub fn child_shards(meta: &StreamMeta, parent: u32) -> Vec<Value> {
    meta.shards
        .iter()
        .filter(|s| s.parent == Some(parent) || s.adjacent_parent == Some(parent))
        .map(|s| {
            let parents: Vec<String> = s.parent.into_iter().chain(s.adjacent_parent).map(shard_id).collect();
            json!({"ShardId": shard_id(s.index), "ParentShards": parents, "HashKeyRange": hash_range_json(s)})
        })
        .collect()
}

pub fn open_shard_count(meta: &StreamMeta) -> usize {
    meta.shards.iter().filter(|s| s.is_open()).count()
}

pub fn epoch_secs(ms: u64) -> Value {
    // JSON timestamps are epoch seconds with millisecond fractions, as KDS sends them.
    json!(ms as f64 / 1000.0)
}
