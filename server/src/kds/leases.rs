//! Framelog's lease API for consumer groups (docs/consumer-groups.md): what the KCL keeps in a
//! DynamoDB table, kept in the stream's metadata instead, one table per application. Six
//! operations under the KDS endpoint and target prefix: DescribeLeases, AcquireLease,
//! RenewLease, CheckpointLease, ReleaseLease and DeleteLeases, authorized as
//! `kinesis:<Operation>` on the stream. Each change is one atomic metadata update, so two
//! workers racing for a lease cannot both win; expiry is judged by the server's clock, so
//! workers' clocks need not agree.

use framelog_store::{StreamHandle, StreamMeta};
use serde_json::{Value, json};

use super::context::{KdsCtx, parse_shard_id, shard_id, visible_shards};
use super::lease_table::{Lease, LeaseRefusal, LeaseTable, SHARD_END, ShardLink, Take};
use crate::document::Document;
use crate::error::{ApiError, ErrorType};

const SETTING_PREFIX: &str = "kds.leases.";
const MAX_APPLICATION_CHARS: usize = 128;
const MAX_WORKER_CHARS: usize = 256;
/// Lease tables (consuming applications) one stream may hold; DeleteLeases removes one.
pub const MAX_TABLES_PER_STREAM: usize = 50;
const DEFAULT_LEASE_MS: i64 = 10_000;
const MIN_LEASE_MS: i64 = 1_000;
const MAX_LEASE_MS: i64 = 600_000;

/// DescribeLeases: every lease of the application, after adding leases for new shards.
pub fn describe_leases(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let handle = ctx.stream(&body)?;
    let key = table_key(&body)?;
    let now_ms = ctx.engine.now_ms();
    let links = shard_links(&handle.meta(), now_ms);
    let mut table = load(&handle.meta(), &key);
    if table.clone().sync(&links) {
        table = change(ctx, &handle, &key, |table| {
            table.sync(&links);
            Ok(())
        })?
        .0;
    }
    let leases: Vec<Value> = table.leases.iter().map(|(index, lease)| lease_json(*index, lease, now_ms)).collect();
    Ok(json!({"Leases": leases}))
}

/// DeleteLeases: removes the application's table (its leases and checkpoints).
pub fn delete_leases(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let handle = ctx.stream(&body)?;
    let key = table_key(&body)?;
    let (_, existed) =
        ctx.engine.update_meta(&handle, |meta| meta.settings.remove(&key).is_some()).map_err(|e| ctx.store_error(e))?;
    if !existed {
        let app = key.strip_prefix(SETTING_PREFIX).unwrap_or_default();
        return Err(ApiError::new(
            ErrorType::ResourceNotFound,
            format!("Application {app} has no leases on stream {}.", handle.meta().name),
        ));
    }
    Ok(json!({}))
}

/// AcquireLease: takes a free or expired lease, or steals one with `Steal`, if the caller's
/// `LeaseCounter` is still current.
pub fn acquire_lease(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let (handle, key, shard, worker) = lease_call(ctx, &body)?;
    let expected_counter = required_counter(&body)?;
    let duration_ms = lease_duration_ms(&body)?;
    let steal = body.bool("Steal")?.unwrap_or(false);
    let now_ms = ctx.engine.now_ms();
    let take = Take { worker: &worker, expected_counter, duration_ms, steal };
    let (_, lease) = change(ctx, &handle, &key, |table| table.take(shard, &take, now_ms).cloned())?;
    Ok(lease_json(shard, &lease, now_ms))
}

/// RenewLease: extends the caller's hold.
pub fn renew_lease(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let (handle, key, shard, worker) = lease_call(ctx, &body)?;
    let duration_ms = lease_duration_ms(&body)?;
    let now_ms = ctx.engine.now_ms();
    let (_, lease) = change(ctx, &handle, &key, |table| table.renew(shard, &worker, duration_ms, now_ms).cloned())?;
    Ok(lease_json(shard, &lease, now_ms))
}

/// CheckpointLease: records the last record processed (`SequenceNumber`, `SubSequenceNumber`),
/// or `SHARD_END`.
pub fn checkpoint_lease(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let (handle, key, shard, worker) = lease_call(ctx, &body)?;
    let sequence = body.str("SequenceNumber")?.ok_or_else(|| ApiError::invalid("SequenceNumber is required."))?;
    if sequence != SHARD_END && (sequence.is_empty() || !sequence.bytes().all(|b| b.is_ascii_digit())) {
        return Err(ApiError::invalid(format!(
            "SequenceNumber {sequence} is neither a sequence number nor SHARD_END."
        )));
    }
    let sub_sequence = non_negative(&body, "SubSequenceNumber")?.unwrap_or(0);
    let now_ms = ctx.engine.now_ms();
    let (_, lease) =
        change(ctx, &handle, &key, |table| table.checkpoint(shard, &worker, &sequence, sub_sequence).cloned())?;
    Ok(lease_json(shard, &lease, now_ms))
}

/// ReleaseLease: gives the lease up so another worker may take it at once.
pub fn release_lease(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let (handle, key, shard, worker) = lease_call(ctx, &body)?;
    let now_ms = ctx.engine.now_ms();
    let (_, lease) = change(ctx, &handle, &key, |table| table.release(shard, &worker).cloned())?;
    Ok(lease_json(shard, &lease, now_ms))
}

/// The stream, table, shard and worker every per-lease call names.
fn lease_call(ctx: &KdsCtx, body: &Document) -> Result<(StreamHandle, String, u32, String), ApiError> {
    let handle = ctx.stream(body)?;
    let key = table_key(body)?;
    let shard_text = body.str("ShardId")?.ok_or_else(|| ApiError::invalid("ShardId is required."))?;
    let shard =
        parse_shard_id(&shard_text).ok_or_else(|| ApiError::invalid(format!("Invalid ShardId {shard_text}.")))?;
    let worker = body.str("WorkerId")?.unwrap_or_default();
    if worker.is_empty() || worker.chars().count() > MAX_WORKER_CHARS || worker.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!("WorkerId must be 1 to {MAX_WORKER_CHARS} printable characters.")));
    }
    Ok((handle, key, shard, worker))
}

fn table_key(body: &Document) -> Result<String, ApiError> {
    let app = body.str("ApplicationName")?.unwrap_or_default();
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if app.is_empty() || app.len() > MAX_APPLICATION_CHARS || !app.chars().all(valid) {
        return Err(ApiError::invalid(format!(
            "ApplicationName must be 1 to {MAX_APPLICATION_CHARS} characters of [a-zA-Z0-9_.-]."
        )));
    }
    Ok(format!("{SETTING_PREFIX}{app}"))
}

fn required_counter(body: &Document) -> Result<u64, ApiError> {
    non_negative(body, "LeaseCounter")?.ok_or_else(|| ApiError::invalid("LeaseCounter is required."))
}

fn non_negative(body: &Document, name: &str) -> Result<Option<u64>, ApiError> {
    match body.int(name)? {
        Some(value) => {
            u64::try_from(value).map(Some).map_err(|_| ApiError::invalid(format!("{name} must not be negative.")))
        }
        None => Ok(None),
    }
}

fn lease_duration_ms(body: &Document) -> Result<u64, ApiError> {
    let duration = body.int("LeaseDurationMillis")?.unwrap_or(DEFAULT_LEASE_MS);
    if !(MIN_LEASE_MS..=MAX_LEASE_MS).contains(&duration) {
        return Err(ApiError::invalid(format!(
            "LeaseDurationMillis must be between {MIN_LEASE_MS} and {MAX_LEASE_MS}."
        )));
    }
    Ok(duration.unsigned_abs())
}

fn shard_links(meta: &StreamMeta, now_ms: u64) -> Vec<ShardLink> {
    visible_shards(meta, now_ms)
        .map(|s| ShardLink { index: s.index, parent: s.parent, adjacent_parent: s.adjacent_parent })
        .collect()
}

fn load(meta: &StreamMeta, key: &str) -> LeaseTable {
    meta.settings.get(key).and_then(|text| serde_json::from_str(text).ok()).unwrap_or_default()
}

/// Applies `apply` to the table inside one metadata update, storing it only when it succeeded.
/// Durable against a crash of the process, not of the machine: a lost renewal or checkpoint
/// means a record processed again, never one skipped.
fn change<T>(
    ctx: &KdsCtx,
    handle: &StreamHandle,
    key: &str,
    mut apply: impl FnMut(&mut LeaseTable) -> Result<T, LeaseRefusal>,
) -> Result<(LeaseTable, T), ApiError> {
    let (_, outcome) = ctx
        .engine
        .update_meta_unsynced(handle, |meta| {
            let tables = meta.settings.keys().filter(|k| k.starts_with(SETTING_PREFIX)).count();
            if !meta.settings.contains_key(key) && tables >= MAX_TABLES_PER_STREAM {
                return Err(LeaseRefusal::TooManyTables);
            }
            let mut table = load(meta, key);
            let outcome = apply(&mut table);
            if outcome.is_ok() {
                meta.settings.insert(key.to_string(), serde_json::to_string(&table).unwrap_or_default());
            }
            outcome.map(|value| (table, value))
        })
        .map_err(|e| ctx.store_error(e))?;
    outcome.map_err(refusal)
}

fn refusal(refusal: LeaseRefusal) -> ApiError {
    let message = match refusal {
        LeaseRefusal::NoLease => {
            return ApiError::new(ErrorType::ResourceNotFound, "No lease for that shard: call DescribeLeases first.");
        }
        LeaseRefusal::CounterMoved { current } => format!("The lease changed: its counter is now {current}."),
        LeaseRefusal::HeldBy(owner) => format!("The lease is held by {owner}."),
        LeaseRefusal::NotOwner => "The lease is not held by this worker.".to_string(),
        LeaseRefusal::ParentUnfinished(parent) => {
            format!("Parent shard {} has not been processed to SHARD_END.", shard_id(parent))
        }
        LeaseRefusal::TooManyTables => {
            return ApiError::new(
                ErrorType::LimitExceeded,
                format!("A stream holds at most {MAX_TABLES_PER_STREAM} applications' leases: DeleteLeases one first."),
            );
        }
    };
    ApiError::new(ErrorType::ConditionalCheckFailed, message)
}

fn lease_json(index: u32, lease: &Lease, now_ms: u64) -> Value {
    let mut out = json!({
        "ShardId": shard_id(index),
        "ParentShardIds": lease.parents.iter().map(|p| shard_id(*p)).collect::<Vec<_>>(),
        "LeaseCounter": lease.counter,
        "SubSequenceNumber": lease.sub_sequence,
    });
    if let Some(checkpoint) = &lease.checkpoint {
        out["Checkpoint"] = checkpoint.clone().into();
    }
    if let Some(owner) = lease.owner.as_ref().filter(|_| lease.is_held(now_ms)) {
        out["LeaseOwner"] = owner.clone().into();
        out["LeaseExpiresInMillis"] = lease.expires_ms.saturating_sub(now_ms).into();
    }
    out
}
