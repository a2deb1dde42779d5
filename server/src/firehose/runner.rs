//! Delivery of one delivery stream: per source shard (a DirectPut stream has one; a Kinesis
//! source has its stream's), read from the checkpoint, cut a buffer (buffer.rs), record the
//! buffer's range as in flight (synced), write it as one object, and only then move the
//! checkpoint past it. A few buffers are written at once (in_flight.rs); the checkpoint moves
//! past them in order. After a crash each range in flight is written again, the same records
//! under the same key (object_key.rs): a write of the dead process that lands late carries the
//! same bytes, so whichever lands last, the object is whole and no record is doubled.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use framelog_store::{Entry, Position, ReadBatch, StreamHandle};
use framelog_wire::Backoff;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

use super::buckets::Sink;
use super::buffer::{Cut, cut};
use super::context::FirehoseCtx;
use super::format_conversion::{self, ConversionPlan};
use super::http_endpoint::{self, Outcome};
use super::in_flight::{self, InFlight, Summary};
use super::object_key::{KeyInputs, PartitionKeys, Prefix, object_name, seeded_uuid};
use super::processing::lambda::Invocation;
use super::processing::{self, Failure, Item};
use super::spec::{DeliveryStreamSpec, Plan, S3Plan};
use crate::consumers::webhook_url::WebhookUrl;

pub const CHECKPOINT_KEY: &str = "firehose.checkpoint";
/// Firehose's records are at most this large; a read asks for one more than the buffer's size.
const MAX_RECORD_BYTES: usize = 1_024_000;
/// Records per object at most (a bound on a buffer's memory for tiny records).
const MAX_RECORDS_PER_OBJECT: usize = 500_000;
/// Waits between failed writes: 1 s doubling to a minute, as Firehose's retries go (`step`,
/// not jittered: one delivery per stream retries, no fleet to spread).
const RETRY: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));

/// Where each source shard's delivery resumes, and what was delivered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub next_seq: BTreeMap<u32, u64>,
    /// Per shard, the buffers being written, oldest first: `[first_seq, end_seq)` each.
    #[serde(default, deserialize_with = "in_flight::ranges_by_shard")]
    pub in_flight: in_flight::RangesByShard,
    pub delivered_objects: u64,
    pub delivered_records: u64,
    pub delivered_bytes: u64,
    pub failed_attempts: u64,
    /// When the newest delivered object's oldest record arrived.
    pub freshness_arrival_ms: u64,
    /// Partitions (objects) of the newest delivered buffer: 1 without dynamic partitioning.
    #[serde(default)]
    pub partition_count: u64,
}

impl Checkpoint {
    pub fn of(settings: &BTreeMap<String, String>) -> Checkpoint {
        settings.get(CHECKPOINT_KEY).and_then(|text| serde_json::from_str(text).ok()).unwrap_or_default()
    }
}

/// Records read from a shard and not delivered yet.
struct Pending {
    entries: Vec<Entry>,
    bytes: usize,
    /// Where the next read starts.
    read_from: u64,
}

/// What every shard's delivery shares.
#[derive(Debug, Clone)]
struct Delivery {
    ctx: FirehoseCtx,
    /// The delivery stream (its settings hold the checkpoint).
    stream: StreamHandle,
    name: String,
    version: u64,
    plan: Plan,
    /// The bucket objects go to: the destination's, or an HTTP endpoint's backup.
    sink: Sink,
    /// The delivery stream's ARN (an HTTP request's `X-Amz-Firehose-Source-Arn`).
    arn: String,
    /// Whether records come from a Kinesis stream (KPL records are unpacked, and the Lambda
    /// event carries their Kinesis metadata).
    kinesis_source: bool,
}

/// Runs every shard's delivery until aborted.
pub async fn run(ctx: FirehoseCtx, stream: StreamHandle, name: String, spec: DeliveryStreamSpec) {
    let plan = match Plan::of(spec.destination_kind, &spec.destination, &ctx.glue_tables) {
        Ok(plan) => plan,
        Err(error) => return tracing::error!(delivery_stream = %name, %error, "cannot deliver"),
    };
    let sink = match ctx.buckets.sink(plan.bucket()) {
        Ok(sink) => sink,
        Err(error) => return tracing::error!(delivery_stream = %name, %error, "cannot deliver"),
    };
    let (source, start) = match &spec.kinesis_source {
        None => (stream.clone(), Position::TrimHorizon),
        Some(kinesis) => match super::kinesis_source::source_stream(&ctx, kinesis) {
            Some(source) if kinesis.from_trim_horizon => (source, Position::TrimHorizon),
            // Records from the delivery stream's creation on, as LATEST was then.
            Some(source) => (source, Position::AtArrivalMs(kinesis.started_ms)),
            None => return tracing::warn!(delivery_stream = %name, "its Kinesis source stream is gone"),
        },
    };
    let arn = stream.meta().arn;
    let kinesis_source = spec.kinesis_source.is_some();
    let delivery = Arc::new(Delivery { ctx, stream, name, version: spec.version, plan, sink, arn, kinesis_source });
    let mut shards = JoinSet::new();
    let mut changes = delivery.ctx.engine.meta_changes();
    let mut started = 0;
    loop {
        let count = source.shard_count();
        for shard in started..count {
            shards.spawn(delivery.clone().run_shard(source.clone(), shard, start));
        }
        started = count;
        if changes.changed().await.is_err() {
            break;
        }
        while shards.try_join_next().is_some() {}
    }
    while shards.join_next().await.is_some() {}
}

impl Delivery {
    async fn run_shard(self: Arc<Self>, source: StreamHandle, shard: u32, start: Position) {
        let engine = self.ctx.engine.clone();
        let checkpoint = Checkpoint::of(&self.stream.meta().settings);
        let next = match checkpoint.next_seq.get(&shard) {
            Some(seq) => *seq,
            None => match engine.resolve(&source, shard, start) {
                Ok(seq) => seq,
                Err(error) => return tracing::warn!(delivery_stream = %self.name, %error, "cannot start delivery"),
            },
        };
        let in_flight = checkpoint.in_flight.get(&shard).cloned().unwrap_or_default();
        let Some(mut next) = self.rewrite(&source, shard, &in_flight, next).await else { return };
        let Ok(mut tip) = source.subscribe(shard) else { return };
        // Records read but not delivered yet: each wake reads only what arrived since.
        let mut pending = Pending { entries: Vec::new(), bytes: 0, read_from: next };
        let mut flights = InFlight::new();
        loop {
            while let Some((landed, partitions)) = flights.pop_done(!flights.has_room()).await {
                self.land(shard, landed, partitions).await;
            }
            let Some(read_all) = self.read_more(&source, shard, &mut pending).await else { return };
            let records: Vec<(u64, usize)> = pending.entries.iter().map(|e| (e.arrival_ms, e.payload.len())).collect();
            let wait_ms = match cut(&records, self.plan.hints(), engine.now_ms(), read_all) {
                Cut::Empty => 1000,
                Cut::WaitUntil { ms } => ms.saturating_sub(engine.now_ms()).max(1),
                Cut::Deliver { count } => {
                    let buffer: Vec<Entry> = pending.entries.drain(..count).collect();
                    pending.bytes -= buffer.iter().map(|e| e.payload.len()).sum::<usize>();
                    if buffer.first().is_some_and(|e| e.seq > next) {
                        tracing::warn!(delivery_stream = %self.name, shard, from = next, "records expired before delivery");
                    }
                    let (first, end) =
                        (buffer.first().map_or(next, |e| e.seq), buffer.last().map_or(next, |e| e.seq + 1));
                    self.update(true, move |checkpoint| {
                        checkpoint.in_flight.entry(shard).or_default().push((first, end))
                    })
                    .await;
                    let (delivery, source) = (self.clone(), source.clone());
                    flights.start(summary(first, end, &buffer), async move {
                        delivery.deliver(&source, shard, &buffer).await
                    });
                    next = end;
                    continue;
                }
            };
            tokio::select! {
                _ = tokio::time::timeout(Duration::from_millis(wait_ms), tip.changed()) => {}
                () = flights.finished() => {}
            }
        }
    }

    /// Writes again the buffers that were on the wire at a crash, each as it was cut; where
    /// delivery goes on from (`None` when the source cannot be read).
    async fn rewrite(&self, source: &StreamHandle, shard: u32, ranges: &[(u64, u64)], mut next: u64) -> Option<u64> {
        for &(first, end) in ranges {
            let buffer = self.read_range(source, shard, first, end).await?;
            // Empty when every record of the range expired meanwhile: nothing to write.
            let partitions = if buffer.is_empty() { 0 } else { self.deliver(source, shard, &buffer).await };
            self.commit(shard, summary(first, end, &buffer), partitions).await;
            next = next.max(end);
        }
        Some(next)
    }

    /// A buffer's write ended: its checkpoint moves, or, if its task died, its range stays in
    /// flight to be written again after a restart.
    async fn land(&self, shard: u32, landed: Summary, partitions: Option<u64>) {
        match partitions {
            Some(partitions) => self.commit(shard, landed, partitions).await,
            None => {
                tracing::error!(delivery_stream = %self.name, shard, first = landed.first_seq, "a delivery task died; its records are written again after a restart")
            }
        }
    }

    /// Reads what arrived after `pending`, up to what one buffer can hold; whether the reads
    /// reached the shard's tip (`None` when the source cannot be read).
    async fn read_more(&self, source: &StreamHandle, shard: u32, pending: &mut Pending) -> Option<bool> {
        let room_bytes = (self.plan.hints().size_bytes as usize + MAX_RECORD_BYTES).saturating_sub(pending.bytes);
        let room_records = MAX_RECORDS_PER_OBJECT.saturating_sub(pending.entries.len());
        if room_bytes == 0 || room_records == 0 {
            return Some(false);
        }
        let batch = self.read_batch(source, shard, pending.read_from, room_records, room_bytes).await?;
        pending.read_from = batch.next_seq.max(pending.read_from);
        pending.bytes += batch.entries.iter().map(|e| e.payload.len()).sum::<usize>();
        pending.entries.extend(batch.entries);
        Some(batch.next_seq >= batch.tip_seq)
    }

    /// One engine read, off the async threads; `None` (logged) when the source cannot be read.
    async fn read_batch(
        &self,
        source: &StreamHandle,
        shard: u32,
        from: u64,
        max_count: usize,
        max_bytes: usize,
    ) -> Option<ReadBatch> {
        let (engine, source) = (self.ctx.engine.clone(), source.clone());
        match tokio::task::spawn_blocking(move || engine.read(&source, shard, from, max_count, max_bytes)).await {
            Ok(Ok(batch)) => Some(batch),
            Ok(Err(error)) => {
                tracing::warn!(delivery_stream = %self.name, %error, "reading records for delivery failed");
                None
            }
            Err(_) => None,
        }
    }

    /// The records of `[first, end)` still retained: a buffer that was in flight at a crash.
    async fn read_range(&self, source: &StreamHandle, shard: u32, first: u64, end: u64) -> Option<Vec<Entry>> {
        let mut pending = Pending { entries: Vec::new(), bytes: 0, read_from: first };
        while pending.read_from < end {
            let before = pending.read_from;
            let count = (end - before) as usize;
            let batch = self.read_batch(source, shard, before, count, usize::MAX).await?;
            pending.read_from = batch.next_seq;
            pending.entries.extend(batch.entries.into_iter().filter(|e| e.seq < end));
            if pending.read_from <= before || batch.next_seq >= batch.tip_seq {
                break;
            }
        }
        Some(pending.entries)
    }

    /// Delivers the buffer: one object in the bucket (one per partition with dynamic
    /// partitioning), or a POST to the endpoint (with its backup objects); how many partitions
    /// it had. Writes to a bucket are retried (waits doubling to a minute) until they succeed or
    /// the task is stopped: records are only dropped when their retention ends.
    async fn deliver(&self, source: &StreamHandle, shard: u32, buffer: &[Entry]) -> u64 {
        let Some(first) = buffer.first() else { return 0 };
        let no_keys = PartitionKeys::default();
        let seed = seed(source.id(), shard, first.seq);
        let inputs =
            KeyInputs { arrival_ms: first.arrival_ms, seed, error_output_type: None, partition_keys: &no_keys };
        let payloads = || buffer.iter().map(|entry| entry.payload.as_slice());
        match &self.plan {
            // A Kinesis source's records may be KPL aggregates, unpacked by processing.
            Plan::S3(plan) if plan.processing.is_plain() && plan.conversion.is_none() && !self.kinesis_source => {
                let bytes = joined(payloads(), plan.processing.delimiter.as_deref());
                self.write_object(plan, plan.prefixes.data(), &inputs, bytes).await;
            }
            Plan::S3(plan) => return self.deliver_processed(plan, source, shard, buffer, seed).await,
            Plan::Http { http, backup, .. } => {
                if http.backup_all {
                    let bytes = joined(payloads(), backup.processing.delimiter.as_deref());
                    self.write_object(backup, backup.prefixes.data(), &inputs, bytes).await;
                }
                let now_ms = self.ctx.engine.now_ms();
                let outcome =
                    http_endpoint::deliver(&self.ctx.destinations, http, &self.arn, &seeded_uuid(seed), now_ms, buffer)
                        .await;
                match outcome {
                    Outcome::Delivered { attempts } => self.count_failures(u64::from(attempts) - 1).await,
                    Outcome::TooLarge => {
                        tracing::warn!(delivery_stream = %self.name, records = buffer.len(), "the endpoint refused the batch as too large (413); as AWS does, it is not retried");
                    }
                    Outcome::Failed { attempts, error_code, message } => {
                        tracing::warn!(delivery_stream = %self.name, error_code, %message, "delivery to the endpoint gave up; the records go to the backup bucket");
                        self.count_failures(u64::from(attempts)).await;
                        let failed = KeyInputs { error_output_type: Some("http-endpoint-failed"), ..inputs };
                        let errors = http_endpoint::error_records(
                            buffer,
                            attempts,
                            error_code,
                            &message,
                            self.ctx.engine.now_ms(),
                        );
                        self.write_object(backup, backup.prefixes.error(), &failed, errors).await;
                    }
                }
            }
        }
        1
    }

    /// A buffer through the destination's processors: an object per partition, and the failed
    /// records as error records under the error prefix, an object per kind of failure.
    async fn deliver_processed(
        &self,
        plan: &S3Plan,
        source: &StreamHandle,
        shard: u32,
        buffer: &[Entry],
        seed: u64,
    ) -> u64 {
        let items = self.items(source, shard, buffer);
        let source_arn = source.meta().arn;
        let first_arrival_ms = buffer.first().map_or(0, |e| e.arrival_ms);
        let url = match &plan.processing.lambda {
            Some(lambda) => Some(self.lambda_url(&lambda.function).await),
            None => None,
        };
        let lambda = plan.processing.lambda.as_ref().zip(url.as_ref()).map(|(lambda, url)| Invocation {
            policy: &self.ctx.destinations,
            url,
            plan: lambda,
            stream_arn: &self.arn,
            region: &self.ctx.region,
            source_stream_arn: self.kinesis_source.then_some(source_arn.as_str()),
            invocation_id: seeded_uuid(seed),
        });
        let context = processing::Context { lambda, kinesis_source: self.kinesis_source };
        let processed = processing::process(&plan.processing, plan.prefixes.data(), &context, items).await;
        let mut failures = processed.failures;
        for (keys, items) in &processed.groups {
            // Without partitions the one object keeps the buffer's own seed, as a plain delivery's.
            let group_seed = if plan.processing.dynamic_partitioning {
                mixed_seed(seed, &serde_json::to_string(&(&keys.from_query, &keys.from_lambda)).unwrap_or_default())
            } else {
                seed
            };
            let inputs = KeyInputs {
                arrival_ms: first_arrival_ms,
                seed: group_seed,
                error_output_type: None,
                partition_keys: keys,
            };
            let bytes = match &plan.conversion {
                None => {
                    Some(joined(items.iter().map(|item| item.data.as_slice()), plan.processing.delimiter.as_deref()))
                }
                Some(conversion) => {
                    let (bytes, failed) = self.converted(conversion, items).await;
                    failures.extend(failed);
                    bytes
                }
            };
            if let Some(bytes) = bytes {
                self.write_object(plan, plan.prefixes.data(), &inputs, bytes).await;
            }
        }
        let mut by_kind: BTreeMap<&'static str, Vec<&Failure>> = BTreeMap::new();
        for failure in &failures {
            by_kind.entry(failure.output_type).or_default().push(failure);
        }
        let no_keys = PartitionKeys::default();
        for (kind, failures) in by_kind {
            tracing::warn!(delivery_stream = %self.name, kind, records = failures.len(), "records failed processing; they go to the error prefix");
            let inputs = KeyInputs {
                arrival_ms: first_arrival_ms,
                seed: mixed_seed(seed, kind),
                error_output_type: Some(kind),
                partition_keys: &no_keys,
            };
            let bytes = processing::error_records(&failures, self.ctx.engine.now_ms());
            self.write_object(plan, plan.prefixes.error(), &inputs, bytes).await;
        }
        processed.groups.len() as u64
    }

    /// A partition's records as one Parquet file (off the async threads: conversion is CPU work),
    /// and the records that did not fit the table.
    async fn converted(&self, conversion: &ConversionPlan, items: &[Item]) -> (Option<Vec<u8>>, Vec<Failure>) {
        let (plan, records) = (conversion.clone(), items.iter().map(|item| item.data.clone()).collect::<Vec<_>>());
        let converted = tokio::task::spawn_blocking(move || {
            let slices: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
            plan.convert(&slices)
        })
        .await;
        let (bytes, failed) = converted
            .unwrap_or_else(|_| (None, (0..items.len()).map(|i| (i, "The conversion stopped.".to_string())).collect()));
        let table = format_conversion::catalog_table(conversion, &self.ctx.region);
        let failures = failed
            .into_iter()
            .filter_map(|(index, reason)| items.get(index).map(|item| (item, reason)))
            .map(|(item, reason)| Failure {
                output_type: "format-conversion-failed",
                error_code: "DataFormatConversion.MalformedData".into(),
                message: reason,
                raw: item.data.clone(),
                arrival_ms: item.arrival_ms,
                attempts: 1,
                lambda_arn: None,
                catalog_table: Some(table.clone()),
            })
            .collect();
        (bytes, failures)
    }

    /// The buffer's records as processing takes them; a Kinesis source's with their metadata.
    fn items(&self, source: &StreamHandle, shard: u32, buffer: &[Entry]) -> Vec<Item> {
        let meta = self.kinesis_source.then(|| source.meta());
        buffer
            .iter()
            .map(|entry| Item {
                record_id: entry.seq.to_string(),
                data: entry.payload.clone(),
                arrival_ms: entry.arrival_ms,
                kinesis: meta.as_ref().map(|meta| kinesis_record_metadata(meta, shard, entry)),
                partition_keys: PartitionKeys::default(),
            })
            .collect()
    }

    /// The Lambda function's URL; while the server's config does not name it (it changed since
    /// the stream was created), delivery waits and looks again: the records stay retained.
    async fn lambda_url(&self, function: &str) -> WebhookUrl {
        let mut attempt = 0;
        loop {
            match self.ctx.lambda_url(function) {
                Ok(url) => return url,
                Err(error) => {
                    tracing::error!(delivery_stream = %self.name, error = error.message.as_deref().unwrap_or_default(), "cannot call the Lambda processor; delivery waits");
                    self.count_failures(1).await;
                    tokio::time::sleep(RETRY.step(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Writes `bytes` (compressed as the plan says) under `prefix` and the object's name.
    async fn write_object(&self, plan: &S3Plan, prefix: &Prefix, inputs: &KeyInputs<'_>, bytes: Vec<u8>) {
        // A ZIP archive's entry is the object's name without its extension.
        let entry_name = object_name(&self.name, self.version, inputs, "");
        // Error records are JSON lines even when the data objects are Parquet.
        let extension = match (&plan.conversion, inputs.error_output_type) {
            (Some(_), Some(_)) => plan.compression.extension(),
            _ => plan.extension.as_str(),
        };
        let body = match plan.compression.compress(&bytes, &entry_name) {
            Ok(body) => body,
            Err(error) => return tracing::error!(delivery_stream = %self.name, %error, "compressing an object failed"),
        };
        let key = format!("{}{}", prefix.render(inputs), object_name(&self.name, self.version, inputs, extension));
        tracing::debug!(delivery_stream = %self.name, %key, bytes = body.len(), "writing an object");
        let body = Bytes::from(body);
        let mut attempt = 0;
        while let Err(error) = self.sink.put(&key, body.clone()).await {
            tracing::warn!(delivery_stream = %self.name, %key, error = %error, source = ?std::error::Error::source(&error).map(ToString::to_string), "delivery failed; retrying");
            self.count_failures(1).await;
            tokio::time::sleep(RETRY.step(attempt)).await;
            attempt += 1;
        }
    }

    /// Moves the shard's checkpoint past a delivered buffer (buffers land oldest first).
    async fn commit(&self, shard: u32, landed: Summary, partitions: u64) {
        let batches = u64::from(landed.records > 0);
        self.update(false, move |checkpoint| {
            if let Some(ranges) = checkpoint.in_flight.get_mut(&shard) {
                ranges.retain(|&(first, _)| first != landed.first_seq);
                if ranges.is_empty() {
                    checkpoint.in_flight.remove(&shard);
                }
            }
            let next = checkpoint.next_seq.entry(shard).or_default();
            *next = (*next).max(landed.end_seq);
            checkpoint.delivered_objects += batches;
            checkpoint.delivered_records += landed.records;
            checkpoint.delivered_bytes += landed.bytes;
            checkpoint.freshness_arrival_ms = checkpoint.freshness_arrival_ms.max(landed.oldest_arrival_ms);
            if batches > 0 {
                checkpoint.partition_count = partitions;
            }
        })
        .await;
    }

    async fn count_failures(&self, failures: u64) {
        if failures > 0 {
            self.update(false, move |checkpoint| checkpoint.failed_attempts += failures).await;
        }
    }

    /// Changes the checkpoint: `synced` for a range put in flight (it must outlive a power cut,
    /// or a write of this process could land after a different cut of the same first record);
    /// otherwise durable against a crash of this process only (a lost position means the range
    /// in flight is written again, never a gap).
    async fn update(&self, synced: bool, change: impl Fn(&mut Checkpoint) + Send + 'static) {
        let (engine, stream, name) = (self.ctx.engine.clone(), self.stream.clone(), self.name.clone());
        let write = move || {
            let apply = |meta: &mut framelog_store::StreamMeta| {
                let mut checkpoint = Checkpoint::of(&meta.settings);
                change(&mut checkpoint);
                if let Ok(text) = serde_json::to_string(&checkpoint) {
                    meta.settings.insert(CHECKPOINT_KEY.into(), text);
                }
            };
            if synced { engine.update_meta(&stream, apply) } else { engine.update_meta_unsynced(&stream, apply) }
        };
        match tokio::task::spawn_blocking(write).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(delivery_stream = %name, %error, "a delivery checkpoint was not stored"),
            Err(_) => {}
        }
    }
}

/// What the checkpoint counts of the buffer `[first, end)` once it is delivered.
fn summary(first_seq: u64, end_seq: u64, buffer: &[Entry]) -> Summary {
    Summary {
        first_seq,
        end_seq,
        records: buffer.len() as u64,
        bytes: buffer.iter().map(|e| e.payload.len() as u64).sum(),
        oldest_arrival_ms: buffer.first().map_or(0, |e| e.arrival_ms),
    }
}

/// The records one after another, each followed by the delimiter if there is one.
fn joined<'a>(records: impl Iterator<Item = &'a [u8]>, delimiter: Option<&[u8]>) -> Vec<u8> {
    let mut bytes = Vec::new();
    for record in records {
        bytes.extend_from_slice(record);
        bytes.extend_from_slice(delimiter.unwrap_or_default());
    }
    bytes
}

/// A Kinesis source record's `kinesisRecordMetadata`, as a Lambda event shows it.
fn kinesis_record_metadata(meta: &framelog_store::StreamMeta, shard: u32, entry: &Entry) -> serde_json::Value {
    serde_json::json!({
        "shardId": crate::kds::shard_id(shard),
        "partitionKey": String::from_utf8_lossy(&entry.attrs),
        "approximateArrivalTimestamp": crate::civil_date::iso8601(entry.arrival_ms),
        "sequenceNumber": crate::kds::sequence_number(meta, shard, entry.seq, entry.arrival_ms),
        "subsequenceNumber": "",
    })
}

/// A part of a buffer's objects (a partition, a kind of error): its own seed from the buffer's.
fn mixed_seed(seed: u64, part: &str) -> u64 {
    digest_u64(&[&seed.to_be_bytes(), part.as_bytes()])
}

/// The buffer's identity: its source stream, shard and first record.
fn seed(source_id: u64, shard: u32, first_seq: u64) -> u64 {
    digest_u64(&[&source_id.to_be_bytes(), &shard.to_be_bytes(), &first_seq.to_be_bytes()])
}

/// The first 8 bytes of the SHA-256 of `parts` one after another.
fn digest_u64(parts: &[&[u8]]) -> u64 {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part);
    }
    let digest = hash.finalize();
    u64::from_be_bytes(digest[..8].try_into().unwrap_or_default())
}
