//! Delivery of a record consumer: one task per shard (records of a shard stay in order; shards
//! do not wait for each other), each reading from its checkpoint, batching up to MaxRecords or
//! MaxWaitMs, posting a Lambda-shaped Kinesis event and committing its shard's position.
//!
//! Resharding: shards a reshard opens get tasks as they appear. A child whose parents this
//! consumer was reading starts only once they were delivered to their end, and from the child's
//! first record, so records of a key arrive in order across the reshard (as KCL does it).

use std::time::Duration;

use axum::body::Bytes;
use base64::Engine as _;
use framelog_store::{Entry, Position, StreamHandle};
use framelog_wire::kpl_aggregate;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::ConsumersCtx;
use super::deliver::{BodyKind, Delivery, deliver};
use super::record_spec::{MAX_BATCH_BYTES, RecordCheckpoint, RecordConsumerSpec};
use super::spec::Start;
use super::state::{self, DeadLetter};
use crate::background::Background;

/// Each shard's first record for a new consumer.
pub fn start_seqs(
    ctx: &ConsumersCtx,
    handle: &StreamHandle,
    start: &Start,
) -> Result<std::collections::BTreeMap<u32, u64>, crate::error::ApiError> {
    let position = match start {
        Start::Earliest => Position::TrimHorizon,
        Start::ServerTimestamp(ms) => Position::AtArrivalMs(*ms),
        _ => Position::Latest,
    };
    (0..handle.meta().shards.len() as u32)
        .map(|shard| {
            let seq = ctx.video.engine.resolve(handle, shard, position)?;
            Ok((shard, seq))
        })
        .collect()
}

/// Runs every shard's delivery until the task is aborted (which aborts the shard tasks too).
pub async fn run(ctx: ConsumersCtx, handle: StreamHandle, spec: RecordConsumerSpec, background: Background) {
    let mut shards = JoinSet::new();
    let mut changes = ctx.video.engine.meta_changes();
    let mut started = 0;
    loop {
        let count = handle.shard_count();
        for shard in started..count {
            let shard_runner = ShardRunner {
                ctx: ctx.clone(),
                handle: handle.clone(),
                spec: spec.clone(),
                shard,
                background: background.clone(),
            };
            shards.spawn(shard_runner.run());
        }
        started = count;
        if changes.changed().await.is_err() {
            break;
        }
        // Finished shard tasks (closed shards delivered to their end) are reaped as we go.
        while shards.try_join_next().is_some() {}
    }
    while shards.join_next().await.is_some() {}
}

struct ShardRunner {
    ctx: ConsumersCtx,
    handle: StreamHandle,
    spec: RecordConsumerSpec,
    shard: u32,
    /// Checkpoint writes go through it, so shutdown waits for a commit already under way.
    background: Background,
}

impl ShardRunner {
    async fn run(self) {
        let Some(mut next) = self.first_seq().await else { return };
        let Ok(mut tip) = self.handle.subscribe(self.shard) else { return };
        loop {
            let Ok(newest) = self.handle.tip_seq(self.shard) else { return };
            if let Some(end_seq) = self.end_seq()
                && next >= end_seq
            {
                // Delivered to the end of a closed shard: record it, so its children may start.
                self.commit_position(end_seq).await;
                return;
            }
            if next >= newest {
                let _ = tokio::time::timeout(Duration::from_secs(1), tip.changed()).await;
                continue;
            }
            let Some(entries) = self.read(next).await else { return };
            let Some(first) = entries.first() else {
                // Everything from `next` expired before it was delivered.
                next = newest;
                continue;
            };
            if entries.first().is_some_and(|e| e.seq > next) {
                tracing::warn!(consumer = %self.spec.name, shard = self.shard, from = next, to = first.seq, "records expired before delivery");
            }
            let bytes: usize = entries.iter().map(|e| e.payload.len()).sum();
            let waited_ms = self.ctx.video.engine.now_ms().saturating_sub(first.arrival_ms);
            if entries.len() < self.spec.max_records && bytes < MAX_BATCH_BYTES && waited_ms < self.spec.max_wait_ms {
                // Wait for the batch to fill, at most until its oldest record has waited MaxWaitMs.
                let rest = Duration::from_millis(self.spec.max_wait_ms - waited_ms);
                let _ = tokio::time::timeout(rest, tip.changed()).await;
                continue;
            }
            let after = entries.last().map_or(next, |e| e.seq + 1);
            self.deliver_and_commit(&entries, after).await;
            next = after;
        }
    }

    /// Where this shard's delivery starts: its checkpoint (a consumer's checkpoint names every
    /// shard that existed when it was created), or, for a shard a reshard opened later, its first
    /// record. A child shard that has delivered nothing yet starts only once its parents were
    /// delivered to their end, so a key's records stay in order across the reshard. `None` when
    /// the stream went away.
    async fn first_seq(&self) -> Option<u64> {
        let meta = self.handle.meta();
        let checkpoint: RecordCheckpoint = state::checkpoint_of(&meta.settings, &self.spec.name);
        let shard = meta.shards.get(self.shard as usize)?;
        let parents: Vec<u32> = shard.parent.into_iter().chain(shard.adjacent_parent).collect();
        let engine = &self.ctx.video.engine;
        let horizon = engine.resolve(&self.handle, self.shard, Position::TrimHorizon).ok()?;
        let delivered_some = checkpoint.next_seq.get(&self.shard).is_some_and(|&seq| seq > horizon);
        if !parents.is_empty() && !delivered_some {
            self.wait_for_parents(&parents).await?;
        }
        match checkpoint.next_seq.get(&self.shard) {
            Some(seq) => Some(*seq),
            None if !parents.is_empty() => engine.resolve(&self.handle, self.shard, Position::TrimHorizon).ok(),
            None => start_seqs(&self.ctx, &self.handle, &self.spec.start).ok()?.get(&self.shard).copied(),
        }
    }

    /// Waits until every parent was delivered to its end (its checkpoint reached its end).
    async fn wait_for_parents(&self, parents: &[u32]) -> Option<()> {
        let mut changes = self.ctx.video.engine.meta_changes();
        loop {
            let meta = self.handle.meta();
            let checkpoint: RecordCheckpoint = state::checkpoint_of(&meta.settings, &self.spec.name);
            let drained = parents.iter().all(|p| {
                let end = meta.shards.get(*p as usize).and_then(|s| s.closed).map(|c| c.end_seq);
                end.is_some_and(|end| checkpoint.next_seq.get(p).is_some_and(|&next| next >= end))
            });
            if drained {
                return Some(());
            }
            if self.ctx.video.engine.stream(&meta.name).is_err() {
                return None;
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), changes.changed()).await;
        }
    }

    /// One past the last record of this shard, once a reshard closed it.
    fn end_seq(&self) -> Option<u64> {
        self.handle.meta().shards.get(self.shard as usize).and_then(|s| s.closed).map(|c| c.end_seq)
    }

    /// Stores this shard's position without a delivery (the end of a closed shard).
    async fn commit_position(&self, next_seq: u64) {
        let (engine, handle, name, shard) =
            (self.ctx.video.engine.clone(), self.handle.clone(), self.spec.name.clone(), self.shard);
        let consumer = name.clone();
        state::commit_unsynced(&self.background, engine, handle, name, None, move |settings| {
            let mut checkpoint: RecordCheckpoint = state::checkpoint_of(settings, &consumer);
            if checkpoint.next_seq.get(&shard).is_some_and(|&seq| seq >= next_seq) {
                return;
            }
            checkpoint.next_seq.insert(shard, next_seq);
            settings.insert(state::checkpoint_key(&consumer), serde_json::to_string(&checkpoint).unwrap_or_default());
        })
        .await;
    }

    async fn read(&self, from_seq: u64) -> Option<Vec<Entry>> {
        let (engine, handle, shard, max) =
            (self.ctx.video.engine.clone(), self.handle.clone(), self.shard, self.spec.max_records);
        let batch = tokio::task::spawn_blocking(move || engine.read(&handle, shard, from_seq, max, MAX_BATCH_BYTES))
            .await
            .ok()?
            .ok()?;
        Some(batch.entries)
    }

    /// The Lambda-shaped records of one stored record: one, or with `Deaggregate` one per user
    /// record of a KPL aggregated record. A record that only looks aggregated (its digest does
    /// not match) goes whole, as AWS's library passes it.
    fn events(&self, entry: &Entry) -> Vec<Value> {
        let meta = self.handle.meta();
        let sequence_number = crate::kds::sequence_number(&meta, self.shard, entry.seq, entry.arrival_ms);
        let engine = base64::engine::general_purpose::STANDARD;
        let users = (self.spec.deaggregate && kpl_aggregate::is_aggregated(&entry.payload))
            .then(|| kpl_aggregate::deaggregate(&entry.payload).ok())
            .flatten();
        let Some(users) = users else {
            let kinesis = json!({
                "kinesisSchemaVersion": "1.0",
                "partitionKey": String::from_utf8_lossy(&entry.attrs),
                "sequenceNumber": sequence_number,
                "data": engine.encode(&entry.payload),
                "approximateArrivalTimestamp": crate::kds::epoch_secs(entry.arrival_ms),
            });
            return vec![self.envelope(kinesis, format!("{}:{sequence_number}", crate::kds::shard_id(self.shard)))];
        };
        users
            .into_iter()
            .enumerate()
            .map(|(sub, user)| {
                let kinesis = json!({
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": &*user.partition_key,
                    "explicitHashKey": user.explicit_hash_key.as_deref(),
                    "sequenceNumber": sequence_number,
                    "subSequenceNumber": sub,
                    "aggregated": true,
                    "data": engine.encode(&user.data),
                    "approximateArrivalTimestamp": crate::kds::epoch_secs(entry.arrival_ms),
                });
                self.envelope(kinesis, format!("{}:{sequence_number}:{sub}", crate::kds::shard_id(self.shard)))
            })
            .collect()
    }

    fn envelope(&self, kinesis: Value, event_id: String) -> Value {
        let settings = &self.ctx.video.settings;
        json!({
            "kinesis": kinesis,
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": event_id,
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": format!("arn:aws:iam::{}:role/framelog-consumer", settings.account_id),
            "awsRegion": settings.region,
            "eventSourceARN": self.handle.meta().arn,
        })
    }

    /// Posts the batch (or dead-letters it) and commits this shard's position after it.
    async fn deliver_and_commit(&self, entries: &[Entry], after: u64) {
        let events: Vec<Value> = entries.iter().flat_map(|e| self.events(e)).collect();
        let body = Bytes::from(json!({"Records": events}).to_string());
        let delivery =
            deliver(&self.ctx.destinations, &self.spec.webhook_url, BodyKind::Json, body, self.spec.max_attempts).await;
        let (delivered, retried, dead) = match delivery {
            Delivery::Delivered { retries, .. } => (true, retries, None),
            Delivery::Failed { attempts, error } => {
                let url = &self.spec.webhook_url;
                tracing::warn!(consumer = %self.spec.name, %url, shard = self.shard, attempts, %error, "a batch of records went to the dead-letter log");
                let mut sequence_numbers: Vec<String> =
                    events.iter().filter_map(|e| e["kinesis"]["sequenceNumber"].as_str().map(str::to_string)).collect();
                // The user records of one aggregated record share its sequence number.
                sequence_numbers.dedup();
                let letter = DeadLetter {
                    at_ms: self.ctx.video.engine.now_ms(),
                    attempts,
                    error,
                    fragment_numbers: Vec::new(),
                    frame_timestamps_ms: Vec::new(),
                    shard_id: Some(crate::kds::shard_id(self.shard)),
                    sequence_numbers,
                };
                (false, attempts.saturating_sub(1), Some(letter))
            }
        };
        let (engine, handle, name, shard, count) = (
            self.ctx.video.engine.clone(),
            self.handle.clone(),
            self.spec.name.clone(),
            self.shard,
            events.len() as u64,
        );
        let consumer = name.clone();
        state::commit_unsynced(&self.background, engine, handle, name, dead, move |settings| {
            // Shards commit independently: each changes only its own position.
            let mut checkpoint: RecordCheckpoint = state::checkpoint_of(settings, &consumer);
            checkpoint.next_seq.insert(shard, after);
            checkpoint.retried_calls += u64::from(retried);
            if delivered {
                checkpoint.delivered_records += count;
                checkpoint.delivered_batches += 1;
            } else {
                checkpoint.dead_lettered_batches += 1;
            }
            settings.insert(state::checkpoint_key(&consumer), serde_json::to_string(&checkpoint).unwrap_or_default());
        })
        .await;
    }
}
