//! SubscribeToShard: a registered consumer's push subscription to one shard, answered as an
//! event stream (event_stream.rs) on the request's own connection (HTTP/2 or HTTP/1.1).
//!
//! The stream opens with `initial-response`, then sends a `SubscribeToShardEvent` whenever the
//! shard's committed tip moves (the engine's commit watch wakes it; nothing polls), and an empty
//! one every `HEARTBEAT` so the client's ContinuationSequenceNumber and MillisBehindLatest stay
//! current. It ends after `SUBSCRIPTION_LIFETIME` (clients subscribe again from their
//! continuation), at the end of a closed shard (with ChildShards), or with an exception event
//! when the consumer or stream goes away.
//!
//! One subscription per consumer and shard at a time: a second within `TAKEOVER_AFTER` of the
//! first is refused, a later one takes over and the first ends with ResourceInUseException (so a
//! client whose connection broke can always come back).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::response::Response;
use framelog_store::{StreamHandle, StreamMeta};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::context::{KdsCtx, child_shards, parse_shard_id, shard_id};
use super::event_stream;
use super::records::{IteratorRequest, record_json, start_position};
use super::stream_consumers::find_by_arn;
use crate::background::Background;
use crate::document::Document;
use crate::error::{ApiError, ErrorType};
use crate::streamed::{ChunkSender, send_chunk, streamed_response};

/// AWS ends every subscription after five minutes.
const SUBSCRIPTION_LIFETIME: Duration = Duration::from_secs(300);
const HEARTBEAT: Duration = Duration::from_secs(5);
const TAKEOVER_AFTER: Duration = Duration::from_secs(5);
/// Bounds of one event: well under the event stream's 16 MiB message limit.
const MAX_EVENT_RECORDS: usize = 10_000;
const MAX_EVENT_BYTES: usize = 2 << 20;

/// A live subscription's id and when it started, by (consumer ARN, shard).
type LiveSubscriptions = HashMap<(String, u32), (u64, Instant)>;

/// The live subscription of each consumer and shard on this server.
#[derive(Debug, Clone, Default)]
pub struct Subscriptions {
    live: Arc<Mutex<LiveSubscriptions>>,
    next_id: Arc<AtomicU64>,
}

/// Held by a live subscription; frees its (consumer, shard) pair when dropped, unless a newer
/// subscription took the pair over.
#[derive(Debug)]
struct Claim {
    subscriptions: Subscriptions,
    key: (String, u32),
    id: u64,
}

impl Subscriptions {
    fn claim(&self, consumer_arn: &str, shard: u32) -> Option<Claim> {
        let key = (consumer_arn.to_string(), shard);
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if live.get(&key).is_some_and(|(_, started)| started.elapsed() < TAKEOVER_AFTER) {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        live.insert(key.clone(), (id, Instant::now()));
        Some(Claim { subscriptions: self.clone(), key, id })
    }
}

impl Claim {
    /// False once a newer subscription took this one's consumer and shard over.
    fn current(&self) -> bool {
        let live = self.subscriptions.live.lock().unwrap_or_else(|e| e.into_inner());
        live.get(&self.key).is_some_and(|(id, _)| *id == self.id)
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut live = self.subscriptions.live.lock().unwrap_or_else(|e| e.into_inner());
        if live.get(&self.key).is_some_and(|(id, _)| *id == self.id) {
            live.remove(&self.key);
        }
    }
}

/// A checked subscription, ready to stream.
#[derive(Debug)]
struct Subscription {
    handle: StreamHandle,
    shard: u32,
    next_seq: u64,
    /// The sequence number of the record before `next_seq`, which a client resubscribes after.
    continuation: String,
    consumer_arn: String,
    claim: Claim,
}

/// Handles SubscribeToShard: checks the request on a blocking thread, then streams events.
pub async fn handle(ctx: KdsCtx, background: Background, document: Document, cbor: bool) -> Result<Response, ApiError> {
    let checked = ctx.clone();
    let subscription = background
        .spawn_blocking(move || start(&checked, &document))
        .await
        .unwrap_or_else(|join| Err(ApiError::internal(&join)))?;
    super::metrics::subscribed(&ctx.metrics, &subscription.handle.meta().name, true);
    let (chunks, response) = streamed_response(event_stream::CONTENT_TYPE, 4);
    crate::access_log::spawn_in_request(pump(ctx, subscription, chunks, cbor));
    Ok(response)
}

fn start(ctx: &KdsCtx, body: &Document) -> Result<Subscription, ApiError> {
    let consumer_arn = body.str("ConsumerARN")?;
    let shard_text = body.str("ShardId")?;
    let (kind, starting, timestamp_ms) = match body.object("StartingPosition")? {
        Some(position) => (position.str("Type")?, position.str("SequenceNumber")?, position.timestamp_ms("Timestamp")?),
        None => (None, None, None),
    };
    let consumer_arn = consumer_arn.unwrap_or_default();
    let (handle, consumer) = find_by_arn(ctx, &consumer_arn)?;
    let meta = handle.meta();
    let shard_text = shard_text.unwrap_or_default();
    let shard = parse_shard_id(&shard_text).filter(|&i| (i as usize) < meta.shards.len()).ok_or_else(|| {
        ApiError::new(
            ErrorType::ResourceNotFound,
            format!(
                "Shard {shard_text} in stream {} under account {} does not exist",
                meta.name, ctx.settings.account_id
            ),
        )
    })?;
    let request =
        IteratorRequest { name: meta.name.clone(), shard_text, kind: kind.unwrap_or_default(), starting, timestamp_ms };
    let position = start_position(ctx, &meta, shard, &request)?;
    let next_seq = ctx.engine.resolve(&handle, shard, position).map_err(|e| ctx.store_error(e))?;
    let claim = ctx.subscriptions.claim(&consumer.arn, shard).ok_or_else(|| {
        ApiError::new(
            ErrorType::ResourceInUse,
            format!(
                "Another active subscription exists for this consumer: {}:{}:{}:{}",
                ctx.settings.account_id,
                meta.name,
                shard_id(shard),
                consumer.name
            ),
        )
    })?;
    let continuation = continuation_before(ctx, &handle, &meta, shard, next_seq)?;
    Ok(Subscription { handle, shard, next_seq, continuation, consumer_arn: consumer.arn, claim })
}

/// What one pass of the pump found to send.
enum Step {
    /// Records (or none, for a heartbeat) and whether they reach the end of a closed shard.
    Event { document: Value, shard_end: bool },
    /// An error that ends the subscription.
    Exception(&'static str, String),
}

async fn pump(ctx: KdsCtx, mut subscription: Subscription, chunks: ChunkSender, cbor: bool) {
    if !send_chunk(&chunks, event_stream::event("initial-response", &json!({}), cbor)).await {
        return;
    }
    let Ok(mut tip) = subscription.handle.subscribe(subscription.shard) else { return };
    let ends_at = Instant::now() + SUBSCRIPTION_LIFETIME;
    let mut last_sent = Instant::now();
    let mut first = true;
    let mut pace = super::quotas::FanOutPace::new(ctx.quotas.enforced(), ctx.engine.now_ms());
    while Instant::now() < ends_at {
        if !subscription.claim.current() {
            let message = "Another subscription of this consumer and shard took over.";
            let _ = send_chunk(&chunks, event_stream::exception("ResourceInUseException", message, cbor)).await;
            return;
        }
        let has_news = *tip.borrow_and_update() > subscription.next_seq
            || subscription.handle.is_closed(subscription.shard).unwrap_or(false);
        if first || has_news || last_sent.elapsed() >= HEARTBEAT {
            first = false;
            let step = next_step(&ctx, &mut subscription).await;
            let (bytes, last) = match step {
                Step::Event { document, shard_end } => {
                    (event_stream::event("SubscribeToShardEvent", &document, cbor), shard_end)
                }
                Step::Exception(kind, message) => (event_stream::exception(kind, &message, cbor), true),
            };
            let sent_bytes = bytes.len() as u64;
            if !send_chunk(&chunks, bytes).await || last {
                return;
            }
            last_sent = Instant::now();
            // Over the consumer's 2 MiB/s for this shard: wait until it is paid back.
            let pause_ms = pace.charge(sent_bytes, ctx.engine.now_ms());
            if pause_ms > 0 {
                tokio::time::sleep(Duration::from_millis(pause_ms)).await;
            }
            if *tip.borrow() > subscription.next_seq {
                continue;
            }
        }
        let wake_at = (last_sent + HEARTBEAT).min(ends_at);
        tokio::select! {
            _ = tokio::time::sleep_until(wake_at) => {}
            _ = tip.changed() => {}
            // The client went away: free the consumer and shard at once.
            () = chunks.closed() => return,
        }
    }
}

/// Reads what is new since the subscription's position and moves the position past it.
async fn next_step(ctx: &KdsCtx, subscription: &mut Subscription) -> Step {
    if let Err(error) = find_by_arn(ctx, &subscription.consumer_arn) {
        return Step::Exception("ResourceNotFoundException", error.message.unwrap_or_default());
    }
    let (engine, handle, shard, from) =
        (ctx.engine.clone(), subscription.handle.clone(), subscription.shard, subscription.next_seq);
    let read =
        tokio::task::spawn_blocking(move || engine.read(&handle, shard, from, MAX_EVENT_RECORDS, MAX_EVENT_BYTES));
    let batch = match read.await {
        Ok(Ok(batch)) => batch,
        Ok(Err(error)) => return Step::Exception("InternalFailureException", error.to_string()),
        Err(join) => return Step::Exception("InternalFailureException", join.to_string()),
    };
    let meta = subscription.handle.meta();
    let records: Vec<Value> = batch.entries.iter().map(|e| record_json(&meta, shard, e)).collect();
    let millis_behind = match batch.entries.last() {
        _ if batch.next_seq >= batch.tip_seq => 0,
        Some(last) => batch.tip_arrival_ms.saturating_sub(last.arrival_ms),
        None => 0,
    };
    let read = super::metrics::Read {
        stream: &meta.name,
        shard,
        records: batch.entries.len() as u64,
        bytes: batch.entries.iter().map(|e| (e.payload.len() + e.attrs.len()) as u64).sum(),
        age_ms: millis_behind,
    };
    super::metrics::subscription_event(&ctx.metrics, read);
    subscription.next_seq = batch.next_seq;
    if let Some(last) = records.last() {
        subscription.continuation = last["SequenceNumber"].as_str().unwrap_or_default().to_string();
    }
    let mut document = json!({
        "Records": records,
        "ContinuationSequenceNumber": subscription.continuation,
        "MillisBehindLatest": millis_behind,
    });
    let shard_end = meta.shards[shard as usize].closed.is_some_and(|c| batch.next_seq >= c.end_seq);
    if shard_end {
        // As AWS sends it: no continuation, only where the keys went (the KCL reads a
        // continuation beside ChildShards as an invalid event).
        document["ContinuationSequenceNumber"] = Value::Null;
        document["ChildShards"] = child_shards(&meta, shard).into();
    }
    Step::Event { document, shard_end }
}

/// The sequence number a client resubscribes AFTER to continue at `next_seq`: the record
/// before it, or the shard's starting number (which AFTER_SEQUENCE_NUMBER reads from the start).
fn continuation_before(
    ctx: &KdsCtx,
    handle: &StreamHandle,
    meta: &StreamMeta,
    shard: u32,
    next_seq: u64,
) -> Result<String, ApiError> {
    let Some(last) = next_seq.checked_sub(1) else {
        return Ok(super::seqnum::starting(meta.shards[shard as usize].created_ms / 1000, shard));
    };
    // An expired record's arrival is gone; its number still sorts and decodes right without it.
    let arrival_ms =
        ctx.engine.header(handle, shard, last).map_err(|e| ctx.store_error(e))?.map_or(0, |h| h.arrival_ms);
    Ok(super::records::sequence_number(meta, shard, last, arrival_ms))
}
