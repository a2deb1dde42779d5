//! Record operations: PutRecord(s), GetShardIterator and GetRecords.

use base64::Engine as _;
use framelog_store::{NewEntry, Position, StreamHandle, StreamMeta};
use serde_json::{Value, json};

use super::context::{KdsCtx, epoch_secs, shard_id};
use super::hashkey;
use super::iterator::{ITERATOR_TTL_MS, IteratorState};
use super::seqnum;
use super::streams::{DEFAULT_MAX_RECORD_KIB, SETTING_MAX_RECORD_KIB, shard_index_for};
use crate::document::{Document, Violations};
use crate::error::{ApiError, ErrorType};

const MAX_REQUEST_BYTES: usize = 10 << 20;
const MAX_GET_RECORDS: i64 = 10_000;
const MAX_GET_BYTES: usize = 10 << 20;
/// Largest record any stream may allow (MaxRecordSizeInKiB's upper bound).
const MAX_RECORD_BYTES: usize = 10240 * 1024;

fn max_record_bytes(meta: &StreamMeta) -> usize {
    let kib: i64 =
        meta.settings.get(SETTING_MAX_RECORD_KIB).and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_MAX_RECORD_KIB);
    kib as usize * 1024
}

/// One record of a put (its members were checked against the model before the handler ran).
struct PutInput {
    data: Vec<u8>,
    partition_key: String,
    /// AWS's current model lets a record leave out its partition key; only an ON_DEMAND stream
    /// with the AUTO distribution strategy accepts that (`check_record` refuses it elsewhere).
    has_partition_key: bool,
    explicit_hash_key: Option<String>,
}

fn read_put_input(body: &Document) -> Result<PutInput, ApiError> {
    let data = body.blob("Data")?.unwrap_or_default();
    let partition_key = body.str("PartitionKey")?;
    let has_partition_key = partition_key.is_some();
    let explicit_hash_key = body.str("ExplicitHashKey")?;
    Ok(PutInput { data, partition_key: partition_key.unwrap_or_default(), has_partition_key, explicit_hash_key })
}

/// The record's hash key: its ExplicitHashKey, or the MD5 of its partition key.
fn hash_of(input: &PutInput) -> Result<u128, ApiError> {
    match &input.explicit_hash_key {
        Some(text) => hashkey::parse_explicit(text).ok_or_else(|| {
            ApiError::invalid(format!(
                "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {text}"
            ))
        }),
        // AUTO distribution spreads keyless records evenly.
        None if !input.has_partition_key => Ok(rand::random::<u128>()),
        None => Ok(hashkey::partition_hash(&input.partition_key)),
    }
}

/// Picks, for each hash, the open shard whose hash key range holds it.
fn route(meta: &StreamMeta, hashes: &[u128]) -> Result<Vec<u32>, ApiError> {
    let mut open: Vec<&framelog_store::ShardMeta> = meta.shards.iter().filter(|s| s.is_open()).collect();
    open.sort_by_key(|s| s.start_hash);
    hashes
        .iter()
        .map(|&hash| {
            let found = open.partition_point(|s| s.end_hash < hash);
            open.get(found)
                .filter(|s| s.start_hash <= hash)
                .map(|s| s.index)
                .ok_or_else(|| ApiError::bare(ErrorType::InternalFailure))
        })
        .collect()
}

/// Each record's admission under the shard write quotas: `Err` holds the throttling message.
/// Without quotas only ON_DEMAND streams need their writes metered (on_demand.rs).
fn admit_writes(
    ctx: &KdsCtx,
    meta: &StreamMeta,
    inputs: &[PutInput],
    hashes: &[u128],
) -> Result<Vec<Result<(), String>>, ApiError> {
    if !ctx.quotas.enforced() && !super::stream_settings::is_on_demand(meta) {
        return Ok(vec![Ok(()); inputs.len()]);
    }
    let shards = route(meta, hashes)?;
    let sizes: Vec<(u32, u64)> =
        shards.iter().zip(inputs).map(|(&s, i)| (s, (i.data.len() + i.partition_key.len()) as u64)).collect();
    let admitted = ctx.quotas.admit_writes(meta.id, &sizes, ctx.engine.now_ms());
    Ok(admitted
        .into_iter()
        .zip(&shards)
        .map(|(ok, &shard)| if ok { Ok(()) } else { Err(ctx.throttled_message(&meta.name, shard)) })
        .collect())
}

/// How often a put is routed again after a reshard closed a shard it was routed to.
const ROUTE_ATTEMPTS: usize = 4;

/// Routes and appends records by `meta`, routing again by the newest shard map when a reshard
/// closed a shard in between: a put never fails, and never lands in a closed shard, because of
/// a reshard.
fn append_routed(
    ctx: &KdsCtx,
    handle: &StreamHandle,
    meta: StreamMeta,
    inputs: &[PutInput],
    hashes: &[u128],
) -> Result<(StreamMeta, Vec<framelog_store::Appended>), ApiError> {
    let mut meta = meta;
    let mut attempt = 0;
    loop {
        let shards = route(&meta, hashes)?;
        let entries = inputs
            .iter()
            .zip(&shards)
            .map(|(input, &shard)| NewEntry {
                shard,
                producer_ts_ms: None,
                attrs: input.partition_key.clone().into_bytes(),
                payload: input.data.clone(),
            })
            .collect();
        attempt += 1;
        match ctx.engine.append(handle, entries).and_then(|wait| wait.wait_blocking()) {
            Err(framelog_store::StoreError::ShardClosed { .. }) if attempt < ROUTE_ATTEMPTS => meta = handle.meta(),
            Err(error) => return Err(ctx.store_error(error)),
            Ok(landed) => return Ok((meta, landed)),
        }
    }
}

/// A record's size as the shard quotas and CloudWatch's byte metrics count it: data and key.
fn record_bytes(input: &PutInput) -> u64 {
    (input.data.len() + input.partition_key.len()) as u64
}

/// What depends on the stream: the record's size against its MaxRecordSizeInKiB, and a partition
/// key, which only AUTO distribution may go without.
fn check_record(meta: &StreamMeta, input: &PutInput, v: &mut Violations, path: &str) {
    if !input.has_partition_key && !super::stream_settings::distributes_automatically(meta) {
        v.add(None, &format!("{path}partitionKey"), "not be null");
    }
    let limit = max_record_bytes(meta);
    if input.data.len() + input.partition_key.len() > limit && input.data.len() <= MAX_RECORD_BYTES {
        v.blob_max(&input.data, &format!("{path}data"), limit.saturating_sub(input.partition_key.len()));
    }
}

/// A stored record as GetRecords and SubscribeToShard show it.
pub fn record_json(meta: &StreamMeta, shard: u32, entry: &framelog_store::Entry) -> Value {
    json!({
        "SequenceNumber": sequence_number(meta, shard, entry.seq, entry.arrival_ms),
        "ApproximateArrivalTimestamp": epoch_secs(entry.arrival_ms),
        "Data": base64::engine::general_purpose::STANDARD.encode(&entry.payload),
        "PartitionKey": String::from_utf8_lossy(&entry.attrs),
    })
}

pub(crate) fn sequence_number(meta: &StreamMeta, shard: u32, seq: u64, arrival_ms: u64) -> String {
    let created_secs = meta.shards[shard as usize].created_ms / 1000;
    seqnum::encode(created_secs, shard, Some(seq), arrival_ms / 1000)
}

pub fn put_record(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let input = read_put_input(&body)?;
    let ordering = body.str("SequenceNumberForOrdering")?;
    let name = ctx.stream_name(&body)?;
    let handle = ctx.lookup(&name)?;
    let meta = handle.meta();
    let mut v = Violations::default();
    check_record(&meta, &input, &mut v, "");
    v.finish()?;
    if let Some(o) = &ordering
        && seqnum::decode(o).is_none()
    {
        return Err(ApiError::invalid(format!(
            "ExclusiveMinimumSequenceNumber {o} used in PutRecord on stream {name} under account {} is invalid.",
            ctx.settings.account_id
        )));
    }
    let hash = hash_of(&input)?;
    if let Some(Err(message)) = admit_writes(ctx, &meta, std::slice::from_ref(&input), &[hash])?.pop() {
        super::metrics::write_throttled(&ctx.metrics, &name, 1);
        return Err(ApiError::new(ErrorType::ProvisionedThroughputExceeded, message));
    }
    let (meta, landed) = append_routed(ctx, &handle, meta, std::slice::from_ref(&input), &[hash])?;
    let first = landed.first().ok_or_else(|| ApiError::bare(ErrorType::InternalFailure))?;
    super::metrics::put_record(&ctx.metrics, &name, first.shard, record_bytes(&input));
    Ok(json!({
        "ShardId": shard_id(first.shard),
        "SequenceNumber": sequence_number(&meta, first.shard, first.seq, first.arrival_ms),
        "EncryptionType": super::encryption::shown(&meta).0,
    }))
}

pub fn put_records(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let records = body.list("Records")?.cloned().unwrap_or_default();
    let mut inputs = Vec::with_capacity(records.len());
    for record in records {
        inputs.push(read_put_input(&Document::parse(record)?)?);
    }
    let name = ctx.stream_name(&body)?;
    let total: usize = inputs.iter().map(|r| r.data.len() + r.partition_key.len()).sum();
    if total > MAX_REQUEST_BYTES {
        return Err(ApiError::invalid(format!("Records size exceeds {} MB limit", MAX_REQUEST_BYTES >> 20)));
    }
    let handle = ctx.lookup(&name)?;
    let meta = handle.meta();
    let mut v = Violations::default();
    for (i, input) in inputs.iter().enumerate() {
        check_record(&meta, input, &mut v, &format!("records.{}.member.", i + 1));
    }
    v.finish()?;
    let hashes = inputs.iter().map(hash_of).collect::<Result<Vec<_>, _>>()?;
    let admitted = admit_writes(ctx, &meta, &inputs, &hashes)?;
    let (kept_inputs, kept_hashes): (Vec<PutInput>, Vec<u128>) =
        inputs.into_iter().zip(hashes).zip(&admitted).filter(|(_, ok)| ok.is_ok()).map(|(pair, _)| pair).unzip();
    // One engine append per request: the whole batch shares one group commit. If it fails, every
    // entry reports InternalFailure, as KDS's per-record results allow.
    let encryption = super::encryption::shown(&meta).0;
    let mut outcome = super::metrics::PutRecordsOutcome {
        throttled: admitted.iter().filter(|a| a.is_err()).count() as u64,
        ..Default::default()
    };
    let appended: Vec<Value> = match append_routed(ctx, &handle, meta, &kept_inputs, &kept_hashes) {
        Ok((meta, landed)) => {
            outcome.stored = landed.iter().zip(&kept_inputs).map(|(a, input)| (a.shard, record_bytes(input))).collect();
            landed
                .iter()
                .map(|a| json!({"SequenceNumber": sequence_number(&meta, a.shard, a.seq, a.arrival_ms), "ShardId": shard_id(a.shard)}))
                .collect()
        }
        Err(error) if error.kind == ErrorType::InternalFailure => {
            outcome.failed = kept_hashes.len() as u64;
            let message = error.message.as_deref().unwrap_or("Internal service failure.");
            kept_hashes.iter().map(|_| json!({"ErrorCode": "InternalFailure", "ErrorMessage": message})).collect()
        }
        Err(error) => return Err(error),
    };
    let mut appended = appended.into_iter();
    let results: Vec<Value> = admitted
        .into_iter()
        .map(|outcome| match outcome {
            Ok(()) => appended.next().unwrap_or_else(|| json!({"ErrorCode": "InternalFailure"})),
            Err(message) => json!({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": message}),
        })
        .collect();
    super::metrics::put_records(&ctx.metrics, &name, &outcome);
    let failed = results.iter().filter(|r| r.get("ErrorCode").is_some()).count();
    Ok(json!({"FailedRecordCount": failed, "Records": results, "EncryptionType": encryption}))
}

pub fn get_shard_iterator(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let request = read_iterator_request(ctx, &body)?;
    let handle = ctx.lookup(&request.name)?;
    let meta = handle.meta();
    let (name, shard_text, account) = (&request.name, &request.shard_text, &ctx.settings.account_id);
    let shard = shard_index_for(&meta, shard_text).ok_or_else(|| {
        ApiError::new(
            ErrorType::ResourceNotFound,
            format!("Shard {shard_text} in stream {name} under account {account} does not exist"),
        )
    })?;
    let position = start_position(ctx, &meta, shard, &request)?;
    let seq = ctx.engine.resolve(&handle, shard, position).map_err(|e| ctx.store_error(e))?;
    let token = ctx.iterators.encode(&IteratorState {
        issued_ms: ctx.engine.now_ms(),
        stream_id: meta.id,
        stream_name: meta.name,
        shard,
        seq,
    });
    Ok(json!({"ShardIterator": token}))
}

/// Where a reader starts (GetShardIterator, SubscribeToShard's StartingPosition), checked.
pub(super) fn start_position(
    ctx: &KdsCtx,
    meta: &StreamMeta,
    shard: u32,
    request: &IteratorRequest,
) -> Result<Position, ApiError> {
    check_starting_sequence_number(request)?;
    Ok(match request.kind.as_str() {
        "TRIM_HORIZON" => Position::TrimHorizon,
        "LATEST" => Position::Latest,
        "AT_TIMESTAMP" => timestamp_position(ctx, request.timestamp_ms)?,
        _ => sequence_position(ctx, meta, shard, request)?,
    })
}

/// A request for a starting position whose fields passed the syntax checks.
pub(super) struct IteratorRequest {
    pub(super) name: String,
    pub(super) shard_text: String,
    pub(super) kind: String,
    pub(super) starting: Option<String>,
    pub(super) timestamp_ms: Option<u64>,
}

/// Reads a GetShardIterator request (its members were checked against the model).
fn read_iterator_request(ctx: &KdsCtx, body: &Document) -> Result<IteratorRequest, ApiError> {
    let shard_text = body.str("ShardId")?;
    let kind = body.str("ShardIteratorType")?;
    let starting = body.str("StartingSequenceNumber")?;
    let timestamp_ms = body.timestamp_ms("Timestamp")?;
    let name = ctx.stream_name(body)?;
    Ok(IteratorRequest {
        name,
        shard_text: shard_text.unwrap_or_default(),
        kind: kind.unwrap_or_default(),
        starting,
        timestamp_ms,
    })
}

/// A StartingSequenceNumber goes with the *_SEQUENCE_NUMBER types and with no other
/// (AT_TIMESTAMP ignores one).
fn check_starting_sequence_number(request: &IteratorRequest) -> Result<(), ApiError> {
    let (kind, starting) = (&request.kind, &request.starting);
    let needs_seq = kind.ends_with("SEQUENCE_NUMBER");
    if needs_seq != starting.is_some() && kind != "AT_TIMESTAMP" {
        let what =
            if starting.is_some() { "and also a StartingSequenceNumber" } else { "and no StartingSequenceNumber" };
        return Err(ApiError::invalid(format!(
            "Must either specify (1) AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER and StartingSequenceNumber or (2) TRIM_HORIZON or LATEST and no StartingSequenceNumber. Request specified {kind} {what}."
        )));
    }
    Ok(())
}

/// AT_TIMESTAMP: the first record that arrived at or after a time not in the future.
fn timestamp_position(ctx: &KdsCtx, timestamp_ms: Option<u64>) -> Result<Position, ApiError> {
    let now_ms = ctx.engine.now_ms();
    let ms = timestamp_ms.ok_or_else(|| {
        ApiError::invalid("Must specify timestampInMillis parameter for iterator of type AT_TIMESTAMP. Current request has no timestamp parameter.")
    })?;
    if ms > now_ms {
        return Err(ApiError::invalid(format!(
            "The timestampInMillis parameter cannot be greater than the currentTimestampInMillis. timestampInMillis: {ms}, currentTimestampInMillis: {now_ms}"
        )));
    }
    Ok(Position::AtArrivalMs(ms))
}

/// AT_ and AFTER_SEQUENCE_NUMBER: the StartingSequenceNumber must decode and must have been
/// issued by this shard of this incarnation of the stream.
fn sequence_position(
    ctx: &KdsCtx,
    meta: &StreamMeta,
    shard: u32,
    request: &IteratorRequest,
) -> Result<Position, ApiError> {
    let (name, account) = (&request.name, &ctx.settings.account_id);
    let text = request.starting.clone().unwrap_or_default();
    let invalid = |suffix: &str| {
        ApiError::invalid(format!(
            "StartingSequenceNumber {text} used in GetShardIterator on shard {} in stream {name} under account {account} is invalid{suffix}.",
            shard_id(shard)
        ))
    };
    let decoded = seqnum::decode(&text).ok_or_else(|| invalid(""))?;
    if decoded.shard_index != shard {
        return Err(ApiError::invalid(format!(
            "Invalid StartingSequenceNumber. It encodes {}, while it was used in a call to a shard with {}",
            shard_id(decoded.shard_index),
            shard_id(shard)
        )));
    }
    if decoded.shard_created_secs != (meta.shards[shard as usize].created_ms / 1000) & 0xf_ffff_ffff {
        return Err(invalid(" because it did not come from this stream"));
    }
    Ok(match (decoded.record_seq, request.kind.as_str()) {
        (None, _) => Position::TrimHorizon,
        (Some(seq), "AT_SEQUENCE_NUMBER") => Position::AtSeq(seq),
        (Some(seq), _) => Position::AfterSeq(seq),
    })
}

pub fn get_records(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let token = body.str("ShardIterator")?;
    let limit = body.int("Limit")?;
    let state =
        ctx.iterators.decode(&token.unwrap_or_default()).ok_or_else(|| ApiError::invalid("Invalid ShardIterator."))?;
    let now_ms = ctx.engine.now_ms();
    if now_ms.saturating_sub(state.issued_ms) > ITERATOR_TTL_MS {
        return Err(ApiError::new(
            ErrorType::ExpiredIterator,
            format!(
                "Iterator expired. The iterator was created at time {} while right now it is {} which is further in the future than the tolerated delay of {ITERATOR_TTL_MS} milliseconds.",
                java_date(state.issued_ms),
                java_date(now_ms)
            ),
        ));
    }
    let handle = ctx.lookup(&state.stream_name)?;
    if handle.id() != state.stream_id {
        return Err(ctx.not_found(&state.stream_name));
    }
    let limit = limit.unwrap_or(MAX_GET_RECORDS) as usize;
    if !ctx.quotas.admit_read(state.stream_id, state.shard, now_ms) {
        super::metrics::read_throttled(&ctx.metrics, &state.stream_name, state.shard);
        return Err(ctx.throttled(&state.stream_name, state.shard));
    }
    let batch =
        ctx.engine.read(&handle, state.shard, state.seq, limit, MAX_GET_BYTES).map_err(|e| ctx.store_error(e))?;
    let read_bytes: usize = batch.entries.iter().map(|e| e.payload.len() + e.attrs.len()).sum();
    ctx.quotas.charge_read(state.stream_id, state.shard, read_bytes as u64, now_ms);
    let meta = handle.meta();
    let millis_behind = match batch.entries.last() {
        _ if batch.next_seq >= batch.tip_seq => 0,
        Some(last) => batch.tip_arrival_ms.saturating_sub(last.arrival_ms),
        None => now_ms.saturating_sub(batch.tip_arrival_ms),
    };
    let read = super::metrics::Read {
        stream: &state.stream_name,
        shard: state.shard,
        records: batch.entries.len() as u64,
        bytes: read_bytes as u64,
        age_ms: millis_behind,
    };
    super::metrics::got_records(&ctx.metrics, read);
    let records: Vec<Value> = batch.entries.iter().map(|e| record_json(&meta, state.shard, e)).collect();
    let shard_end = meta.shards[state.shard as usize].closed.filter(|c| batch.next_seq >= c.end_seq);
    if shard_end.is_some() {
        // The end of a closed shard: no iterator to go on with, and where its keys went.
        let children = super::context::child_shards(&meta, state.shard);
        return Ok(
            json!({"Records": records, "NextShardIterator": null, "MillisBehindLatest": 0, "ChildShards": children}),
        );
    }
    let next = ctx.iterators.encode(&IteratorState { issued_ms: now_ms, seq: batch.next_seq, ..state });
    Ok(json!({"Records": records, "NextShardIterator": next, "MillisBehindLatest": millis_behind}))
}

/// Formats like Java's `Date.toString()` in UTC, which KDS uses in its expiry message:
/// `Thu Jan 22 01:22:02 UTC 2015`.
fn java_date(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (year, month, day) = crate::civil_date::civil_from_days(days);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!(
        "{} {} {:02} {:02}:{:02}:{:02} UTC {}",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        year
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_dates_are_formatted_like_java() {
        // The example in KDS's ExpiredIteratorException message.
        assert_eq!(java_date(1_421_889_722_000), "Thu Jan 22 01:22:02 UTC 2015");
        assert_eq!(java_date(1_795_651_512_000), "Thu Nov 26 00:05:12 UTC 2026");
    }
}
