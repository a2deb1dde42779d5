//! Per-stream settings: capacity mode (UpdateStreamMode, UpdateStreamWarmThroughput,
//! UpdateStreamRecordDistributionStrategy), record size (UpdateMaxRecordSize) and the
//! shard-level metrics chosen with Enable/DisableEnhancedMonitoring. All live in the stream's
//! metadata, so every node and every restart sees them.

use framelog_store::StreamMeta;
use serde_json::{Value, json};

use super::context::KdsCtx;
use super::streams::{SETTING_MAX_RECORD_KIB, SETTING_MODE};
use crate::document::Document;
use crate::error::ApiError;

const SETTING_METRICS: &str = "kds.shard_level_metrics";
const SETTING_WARM_MIBPS: &str = "kds.warm_throughput_mibps";
const SETTING_DISTRIBUTION: &str = "kds.record_distribution";

/// The shard-level metrics, in the order AWS lists them; `ALL` means every one.
pub const SHARD_LEVEL_METRICS: [&str; 7] = [
    "IncomingBytes",
    "IncomingRecords",
    "OutgoingBytes",
    "OutgoingRecords",
    "WriteProvisionedThroughputExceeded",
    "ReadProvisionedThroughputExceeded",
    "IteratorAgeMilliseconds",
];

/// The enabled shard-level metrics.
pub fn enabled_metrics(meta: &StreamMeta) -> Vec<String> {
    let stored = meta.settings.get(SETTING_METRICS).map_or("", String::as_str);
    SHARD_LEVEL_METRICS.iter().filter(|m| stored.split(',').any(|s| s == **m)).map(|m| m.to_string()).collect()
}

/// `EnhancedMonitoring` as DescribeStream and DescribeStreamSummary show it.
pub fn monitoring_json(meta: &StreamMeta) -> Value {
    json!([{"ShardLevelMetrics": enabled_metrics(meta)}])
}

/// An ON_DEMAND stream with the AUTO record distribution strategy.
pub fn distributes_automatically(meta: &StreamMeta) -> bool {
    is_on_demand(meta) && meta.settings.get(SETTING_DISTRIBUTION).is_some_and(|s| s == "AUTO")
}

pub fn is_on_demand(meta: &StreamMeta) -> bool {
    meta.settings.get(SETTING_MODE).is_some_and(|m| m == "ON_DEMAND")
}

/// The summary members that only on-demand streams have.
pub fn on_demand_summary(meta: &StreamMeta, summary: &mut Value) {
    if !is_on_demand(meta) {
        return;
    }
    if let Some(mibps) = meta.settings.get(SETTING_WARM_MIBPS).and_then(|v| v.parse::<u64>().ok()) {
        summary["WarmThroughput"] = json!({"TargetMiBps": mibps, "CurrentMiBps": mibps});
    }
    let strategy = meta.settings.get(SETTING_DISTRIBUTION).map_or("USER_PARTITION_KEY", String::as_str);
    summary["RecordDistributionStrategy"] = strategy.into();
}

fn change_monitoring(ctx: &KdsCtx, body: Document, enable: bool) -> Result<Value, ApiError> {
    let metrics = body.list("ShardLevelMetrics")?.cloned().unwrap_or_default();
    let metrics: Vec<String> = metrics.iter().map(crate::document::as_string).collect::<Result<_, _>>()?;
    let name = ctx.stream_name(&body)?;
    let handle = ctx.lookup(&name)?;
    let named = |m: &str| metrics.iter().any(|x| x == m || x == "ALL");
    let before = enabled_metrics(&handle.meta());
    let (meta, ()) = ctx
        .engine
        .update_meta(&handle, |m| {
            let current = enabled_metrics(m);
            let next: Vec<&str> = SHARD_LEVEL_METRICS
                .iter()
                .copied()
                .filter(|metric| {
                    if enable {
                        current.iter().any(|c| c == metric) || named(metric)
                    } else {
                        current.iter().any(|c| c == metric) && !named(metric)
                    }
                })
                .collect();
            m.settings.insert(SETTING_METRICS.into(), next.join(","));
        })
        .map_err(|e| ctx.store_error(e))?;
    Ok(json!({
        "StreamName": meta.name,
        "StreamARN": meta.arn,
        "CurrentShardLevelMetrics": before,
        "DesiredShardLevelMetrics": enabled_metrics(&meta),
    }))
}

pub fn enable_enhanced_monitoring(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    change_monitoring(ctx, body, true)
}

pub fn disable_enhanced_monitoring(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    change_monitoring(ctx, body, false)
}

pub fn update_stream_mode(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let mode = match body.object("StreamModeDetails")? {
        Some(details) => details.str("StreamMode")?,
        None => None,
    };
    let warm = body.int("WarmThroughputMiBps")?;
    let name = ctx.stream_name(&body)?;
    let handle = ctx.lookup(&name)?;
    super::reshard::check_active(ctx, &handle.meta())?;
    let mode = mode.unwrap_or_default();
    if warm.is_some() && mode != "ON_DEMAND" {
        return Err(ApiError::invalid("WarmThroughputMiBps can only be set for streams in ON_DEMAND mode."));
    }
    ctx.engine
        .update_meta(&handle, |m| {
            m.settings.insert(SETTING_MODE.into(), mode.clone());
            match warm {
                Some(mibps) => drop(m.settings.insert(SETTING_WARM_MIBPS.into(), mibps.to_string())),
                None if mode != "ON_DEMAND" => drop(m.settings.remove(SETTING_WARM_MIBPS)),
                None => {}
            }
        })
        .map_err(|e| ctx.store_error(e))?;
    Ok(json!({}))
}

pub fn update_warm_throughput(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let warm = body.int("WarmThroughputMiBps")?;
    let name = ctx.stream_name(&body)?;
    let handle = ctx.lookup(&name)?;
    if !is_on_demand(&handle.meta()) {
        return Err(ApiError::invalid("Warm throughput can only be set for streams in ON_DEMAND mode."));
    }
    let mibps = warm.unwrap_or_default();
    let (meta, ()) = ctx
        .engine
        .update_meta(&handle, |m| drop(m.settings.insert(SETTING_WARM_MIBPS.into(), mibps.to_string())))
        .map_err(|e| ctx.store_error(e))?;
    Ok(json!({
        "StreamARN": meta.arn,
        "StreamName": meta.name,
        "WarmThroughput": {"TargetMiBps": mibps, "CurrentMiBps": mibps},
    }))
}

/// Framelog routes every record by its partition key (or ExplicitHashKey) under either
/// strategy; AUTO is recorded and shown, as AWS may spread a hot key and is not obliged to.
pub fn update_record_distribution(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let strategy = body.str("RecordDistributionStrategy")?;
    let name = ctx.stream_name(&body)?;
    let handle = ctx.lookup(&name)?;
    if !is_on_demand(&handle.meta()) {
        return Err(ApiError::invalid(
            "The record distribution strategy can only be set for streams in ON_DEMAND mode.",
        ));
    }
    let strategy = strategy.unwrap_or_default();
    ctx.engine
        .update_meta(&handle, |m| drop(m.settings.insert(SETTING_DISTRIBUTION.into(), strategy.clone())))
        .map_err(|e| ctx.store_error(e))?;
    Ok(json!({}))
}

pub fn update_max_record_size(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let kib = body.int("MaxRecordSizeInKiB")?;
    let name = ctx.stream_name(&body)?;
    let handle = ctx.lookup(&name)?;
    let kib = kib.unwrap_or_default();
    ctx.engine
        .update_meta(&handle, |m| drop(m.settings.insert(SETTING_MAX_RECORD_KIB.into(), kib.to_string())))
        .map_err(|e| ctx.store_error(e))?;
    Ok(json!({}))
}
