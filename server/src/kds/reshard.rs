//! SplitShard, MergeShards and UpdateShardCount (docs/kds.md "Resharding").
//!
//! A request is checked, then recorded in the stream's metadata as a pending plan, which turns
//! the stream UPDATING; the plan takes effect after `reshard_delay_ms` (at once by default), when
//! the engine closes the parents and opens the children in one durable write. The plan records
//! how many shards the stream had, so applying it twice (after a crash between the engine's
//! write and the plan's removal) is recognised and skipped. A plan left by a crash is applied at
//! start-up (`resume_pending`).

use framelog_store::{ReshardStep, ShardMeta, StreamHandle, StreamMeta, even_scaling_steps};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::context::{KdsCtx, open_shard_count, parse_shard_id, shard_id};
use super::hashkey;
use super::stream_settings::is_on_demand;
use crate::document::Document;
use crate::error::{ApiError, ErrorType};

/// The stream's status while a plan is pending; absent means ACTIVE.
pub const SETTING_STATUS: &str = "kds.status";
const SETTING_PENDING: &str = "kds.pending_reshard";
/// When the stream's recent UpdateShardCount calls were made (ms, comma-separated).
const SETTING_SCALINGS: &str = "kds.scalings";
const MAX_SCALINGS_PER_DAY: usize = 10;
const DAY_MS: u64 = 86_400_000;

/// A reshard waiting to take effect.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    /// Shards the stream had when the plan was made; any other count means it was applied.
    from_shards: usize,
    due_ms: u64,
    steps: Vec<PlannedStep>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum PlannedStep {
    /// The hash key is decimal text: JSON numbers cannot hold 128 bits.
    Split {
        shard: u32,
        at_hash: String,
    },
    Merge {
        shard: u32,
        adjacent: u32,
    },
}

impl PlannedStep {
    fn from_step(step: ReshardStep) -> Self {
        match step {
            ReshardStep::Split { shard, at_hash } => PlannedStep::Split { shard, at_hash: at_hash.to_string() },
            ReshardStep::Merge { shard, adjacent } => PlannedStep::Merge { shard, adjacent },
        }
    }

    fn to_step(&self) -> Option<ReshardStep> {
        Some(match self {
            PlannedStep::Split { shard, at_hash } => {
                ReshardStep::Split { shard: *shard, at_hash: at_hash.parse().ok()? }
            }
            PlannedStep::Merge { shard, adjacent } => ReshardStep::Merge { shard: *shard, adjacent: *adjacent },
        })
    }
}

/// The status KDS shows for a stream.
pub fn status(meta: &StreamMeta) -> &str {
    meta.settings.get(SETTING_STATUS).map_or("ACTIVE", String::as_str)
}

pub fn split_shard(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let shard_text = body.str("ShardToSplit")?;
    let key_text = body.str("NewStartingHashKey")?;
    let name = ctx.stream_name(&body)?;
    let handle = ctx.lookup(&name)?;
    let meta = handle.meta();
    check_reshardable(ctx, &meta, "SplitShard")?;
    let parent = open_shard(ctx, &meta, &shard_text.unwrap_or_default())?;
    let key_text = key_text.unwrap_or_default();
    let at_hash = hashkey::parse_explicit(&key_text);
    let inside =
        at_hash.is_some_and(|k| parent.start_hash.checked_add(1).is_some_and(|s| k > s) && k < parent.end_hash);
    let Some(at_hash) = at_hash.filter(|_| inside) else {
        return Err(ApiError::invalid(format!(
            "NewStartingHashKey {key_text} used in SplitShard() on shard {} in stream {name} under account {} is not both \
             greater than one plus the shard's StartingHashKey {} and less than the shard's EndingHashKey {}.",
            shard_id(parent.index),
            ctx.settings.account_id,
            parent.start_hash,
            parent.end_hash
        )));
    };
    check_shard_limit(ctx, 1)?;
    begin(ctx, &handle, &meta, vec![ReshardStep::Split { shard: parent.index, at_hash }], None)?;
    Ok(json!({}))
}

pub fn merge_shards(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let first_text = body.str("ShardToMerge")?;
    let second_text = body.str("AdjacentShardToMerge")?;
    let name = ctx.stream_name(&body)?;
    let handle = ctx.lookup(&name)?;
    let meta = handle.meta();
    check_reshardable(ctx, &meta, "MergeShards")?;
    let first = open_shard(ctx, &meta, &first_text.unwrap_or_default())?;
    let second = open_shard(ctx, &meta, &second_text.unwrap_or_default())?;
    let adjacent = first.end_hash.checked_add(1) == Some(second.start_hash)
        || second.end_hash.checked_add(1) == Some(first.start_hash);
    if !adjacent {
        return Err(ApiError::invalid(format!(
            "Shards {} and {} in stream {name} under account {} are not an adjacent pair of shards eligible for merging",
            shard_id(first.index),
            shard_id(second.index),
            ctx.settings.account_id
        )));
    }
    begin(ctx, &handle, &meta, vec![ReshardStep::Merge { shard: first.index, adjacent: second.index }], None)?;
    Ok(json!({}))
}

pub fn update_shard_count(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let target = body.int("TargetShardCount")?;
    let name = ctx.stream_name(&body)?;
    let target = u32::try_from(target.unwrap_or_default()).unwrap_or(u32::MAX);
    let handle = ctx.lookup(&name)?;
    let meta = handle.meta();
    check_reshardable(ctx, &meta, "UpdateShardCount")?;
    let current = open_shard_count(&meta) as u32;
    if target > current.saturating_mul(2) {
        return Err(limit(format!(
            "UpdateShardCount cannot scale up over double your current open shard count. Current open shard count: {current} Target shard count: {target}"
        )));
    }
    if target.saturating_mul(2) < current {
        return Err(limit(format!(
            "UpdateShardCount cannot scale down below half your current open shard count. Current open shard count: {current} Target shard count: {target}"
        )));
    }
    let now_ms = ctx.engine.now_ms();
    let recent = recent_scalings(&meta, now_ms);
    if recent.len() >= MAX_SCALINGS_PER_DAY {
        return Err(limit(format!(
            "Stream {name} under account {} has already been scaled {MAX_SCALINGS_PER_DAY} times in the last 24 hours; \
             UpdateShardCount allows {MAX_SCALINGS_PER_DAY} scaling operations per rolling 24 hours.",
            ctx.settings.account_id
        )));
    }
    check_shard_limit(ctx, target.saturating_sub(current))?;
    let steps = even_scaling_steps(&meta, target).map_err(|e| ctx.store_error(e))?;
    let mut scalings = recent;
    scalings.push(now_ms);
    begin(ctx, &handle, &meta, steps, Some(scalings))?;
    Ok(
        json!({"StreamName": meta.name, "StreamARN": meta.arn, "CurrentShardCount": current, "TargetShardCount": target}),
    )
}

/// Splits an open shard at the middle of its hash key range (ON_DEMAND scaling), as a
/// SplitShard would: the stream must be ACTIVE and within the shard limit.
pub fn split_in_half(ctx: &KdsCtx, handle: &StreamHandle, shard: u32) -> Result<(), ApiError> {
    let meta = handle.meta();
    check_active(ctx, &meta)?;
    let parent = open_shard(ctx, &meta, &shard_id(shard))?;
    let middle = (parent.start_hash + (parent.end_hash - parent.start_hash) / 2).checked_add(1);
    let Some(at_hash) = middle.filter(|&at| at <= parent.end_hash) else {
        return Err(ApiError::invalid(format!("Shard {} has a single hash key and cannot be split.", shard_id(shard))));
    };
    check_shard_limit(ctx, 1)?;
    begin(ctx, handle, &meta, vec![ReshardStep::Split { shard, at_hash }], None)
}

fn limit(message: String) -> ApiError {
    ApiError::new(ErrorType::LimitExceeded, message)
}

fn recent_scalings(meta: &StreamMeta, now_ms: u64) -> Vec<u64> {
    let list = meta.settings.get(SETTING_SCALINGS).map_or("", String::as_str);
    list.split(',').filter_map(|t| t.parse::<u64>().ok()).filter(|&ms| ms + DAY_MS > now_ms).collect()
}

/// Resharding needs an ACTIVE stream in provisioned mode, on a backend that can reshard.
fn check_reshardable(ctx: &KdsCtx, meta: &StreamMeta, operation: &str) -> Result<(), ApiError> {
    if is_on_demand(meta) {
        return Err(ApiError::new(
            ErrorType::Validation,
            format!("{operation} is only supported for streams in the PROVISIONED capacity mode."),
        ));
    }
    check_active(ctx, meta)?;
    if !ctx.engine.can_reshard() {
        return Err(ApiError::invalid(format!("{operation} is not available on this server's cluster backend yet.")));
    }
    Ok(())
}

/// Changes to a stream's shards or mode need it ACTIVE (ResourceInUseException otherwise).
pub fn check_active(ctx: &KdsCtx, meta: &StreamMeta) -> Result<(), ApiError> {
    match status(meta) {
        "ACTIVE" => Ok(()),
        state => Err(not_active(ctx, &meta.name, state)),
    }
}

fn not_active(ctx: &KdsCtx, name: &str, state: &str) -> ApiError {
    ApiError::new(
        ErrorType::ResourceInUse,
        format!("Stream {name} under account {} not ACTIVE, instead in state {state}", ctx.settings.account_id),
    )
}

fn open_shard<'a>(ctx: &KdsCtx, meta: &'a StreamMeta, text: &str) -> Result<&'a ShardMeta, ApiError> {
    let account = &ctx.settings.account_id;
    let shard = parse_shard_id(text).and_then(|i| meta.shards.get(i as usize)).ok_or_else(|| {
        ApiError::new(
            ErrorType::ResourceNotFound,
            format!("Could not find shard {text} in stream {} under account {account}.", meta.name),
        )
    })?;
    if !shard.is_open() {
        return Err(ApiError::invalid(format!(
            "Shard {} in stream {} under account {account} has already been merged or split, and thus is not eligible for merging or splitting.",
            shard_id(shard.index),
            meta.name
        )));
    }
    Ok(shard)
}

/// Open shards of all streams may not pass the account's shard limit.
fn check_shard_limit(ctx: &KdsCtx, added: u32) -> Result<(), ApiError> {
    let current: u32 = ctx.data_streams().iter().map(|m| open_shard_count(m) as u32).sum();
    if current.saturating_add(added) > ctx.settings.shard_limit {
        return Err(limit(super::streams::shard_limit_message(ctx, current, added)));
    }
    Ok(())
}

/// Records the plan (the stream turns UPDATING) and applies it now or schedules it.
fn begin(
    ctx: &KdsCtx,
    handle: &StreamHandle,
    meta: &StreamMeta,
    steps: Vec<ReshardStep>,
    scalings: Option<Vec<u64>>,
) -> Result<(), ApiError> {
    let delay_ms = ctx.settings.reshard_delay_ms;
    let pending = Pending {
        from_shards: meta.shards.len(),
        due_ms: ctx.engine.now_ms() + delay_ms,
        steps: steps.into_iter().map(PlannedStep::from_step).collect(),
    };
    let pending_json = serde_json::to_string(&pending).map_err(|e| ApiError::internal(&e))?;
    let (_, started) = ctx
        .engine
        .update_meta(handle, |m| {
            // Checked again inside the change: two reshards may have raced past the first check.
            if m.settings.contains_key(SETTING_PENDING) || m.shards.len() != pending.from_shards {
                return false;
            }
            m.settings.insert(SETTING_PENDING.into(), pending_json.clone());
            m.settings.insert(SETTING_STATUS.into(), "UPDATING".into());
            if let Some(times) = &scalings {
                let text: Vec<String> = times.iter().map(u64::to_string).collect();
                m.settings.insert(SETTING_SCALINGS.into(), text.join(","));
            }
            true
        })
        .map_err(|e| ctx.store_error(e))?;
    if !started {
        return Err(not_active(ctx, &meta.name, "UPDATING"));
    }
    if delay_ms == 0 {
        let applied = finish(ctx, handle);
        if applied.is_err() {
            // The plan (or its status) is still recorded: keep trying in the background.
            schedule(ctx.clone(), handle.clone(), RETRY_AFTER_MS);
        }
        return applied;
    }
    schedule(ctx.clone(), handle.clone(), delay_ms);
    Ok(())
}

/// How long a plan that failed to apply waits before the next attempt.
const RETRY_AFTER_MS: u64 = 1_000;
const MAX_ATTEMPTS: u32 = 30;

fn schedule(ctx: KdsCtx, handle: StreamHandle, delay_ms: u64) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        // Outside a runtime (a synchronous test) the plan is applied at once.
        let _ = finish(&ctx, &handle);
        return;
    };
    runtime.spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
        let name = handle.meta().name;
        for attempt in 1..=MAX_ATTEMPTS {
            let (ctx, handle) = (ctx.clone(), handle.clone());
            let applied = tokio::task::spawn_blocking(move || finish(&ctx, &handle)).await;
            if matches!(applied, Ok(Ok(()))) {
                return;
            }
            tracing::error!(stream = %name, attempt, ?applied, "a pending reshard could not be applied");
            tokio::time::sleep(std::time::Duration::from_millis(RETRY_AFTER_MS)).await;
        }
    });
}

/// Applies the stream's pending plan, unless it was applied already, and makes it ACTIVE.
fn finish(ctx: &KdsCtx, handle: &StreamHandle) -> Result<(), ApiError> {
    let meta = handle.meta();
    let Some(text) = meta.settings.get(SETTING_PENDING) else { return Ok(()) };
    let pending: Option<Pending> = serde_json::from_str(text).ok();
    let steps: Option<Vec<ReshardStep>> =
        pending.as_ref().and_then(|p| p.steps.iter().map(PlannedStep::to_step).collect());
    let outcome = match (&pending, steps) {
        (Some(p), Some(steps)) if p.from_shards == meta.shards.len() => {
            ctx.engine.reshard(handle, steps).map(drop).map_err(|e| ctx.store_error(e))
        }
        // Applied before a crash, or unreadable: only the status is left to clear.
        _ => Ok(()),
    };
    ctx.engine
        .update_meta(handle, |m| {
            m.settings.remove(SETTING_PENDING);
            m.settings.remove(SETTING_STATUS);
        })
        .map_err(|e| ctx.store_error(e))?;
    outcome
}

/// Schedules the plans a crash or restart left pending, each at its due time.
pub fn resume_pending(ctx: &KdsCtx) {
    let now_ms = ctx.engine.now_ms();
    for handle in ctx.engine.streams() {
        let meta = handle.meta();
        let Some(text) = meta.settings.get(SETTING_PENDING) else { continue };
        let due_ms = serde_json::from_str::<Pending>(text).map_or(now_ms, |p| p.due_ms);
        tracing::info!(stream = %meta.name, "resuming a reshard left pending");
        schedule(ctx.clone(), handle, due_ms.saturating_sub(now_ms));
    }
}
