//! Stream-level operations: create, delete, describe, list, retention and tags.

use base64::Engine as _;
use framelog_store::{StreamKind, new_stream_meta};
use serde_json::{Value, json};

use super::context::{KdsCtx, epoch_secs, open_shard_count, parse_shard_id, shard_json, visible_shards};
use super::reshard::status;
use crate::document::Document;
use crate::error::{ApiError, ErrorType};

pub const MIN_RETENTION_HOURS: i64 = 24;
pub const MAX_RETENTION_HOURS: i64 = 8760;
const ON_DEMAND_SHARDS: u32 = 4;
const MAX_TAGS_PER_STREAM: usize = 50;
pub const SETTING_MODE: &str = "kds.stream_mode";
pub const SETTING_MAX_RECORD_KIB: &str = "kds.max_record_size_kib";
pub const DEFAULT_MAX_RECORD_KIB: i64 = 1024;

pub fn create_stream(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let name = body.str("StreamName")?.unwrap_or_default();
    let shard_count = body.int("ShardCount")?;
    let mode = match body.object("StreamModeDetails")? {
        Some(details) => details.str("StreamMode")?.unwrap_or_default(),
        None => "PROVISIONED".to_string(),
    };
    let max_record_kib = body.int("MaxRecordSizeInKiB")?;
    let tags = body.string_map("Tags")?.unwrap_or_default();

    let shards = match (mode.as_str(), shard_count) {
        (_, Some(n)) => u32::try_from(n).unwrap_or(u32::MAX),
        ("ON_DEMAND", None) => ON_DEMAND_SHARDS,
        _ => return Err(ApiError::invalid("ShardCount is required for a stream in PROVISIONED mode.")),
    };
    let current: u32 = ctx.data_streams().iter().map(|s| open_shard_count(s) as u32).sum();
    if current.saturating_add(shards) > ctx.settings.shard_limit {
        return Err(ApiError::new(ErrorType::LimitExceeded, shard_limit_message(ctx, current, shards)));
    }
    let now_ms = ctx.engine.now_ms();
    let mut meta =
        new_stream_meta(&name, StreamKind::Data, &ctx.arn(&name), shards, ctx.settings.default_retention_hours, now_ms);
    meta.settings.insert(SETTING_MODE.into(), mode);
    meta.settings.insert(SETTING_MAX_RECORD_KIB.into(), max_record_kib.unwrap_or(DEFAULT_MAX_RECORD_KIB).to_string());
    meta.tags.extend(tags);
    ctx.engine.create_stream(meta).map_err(|e| ctx.store_error(e))?;
    Ok(json!({}))
}

pub fn shard_limit_message(ctx: &KdsCtx, current: u32, added: u32) -> String {
    format!(
        "This request would exceed the shard limit for the account {} in {}. Current shard count for the account: {}. \
         Limit: {}. Number of additional shards that would have resulted from this request: {}. Refer to the AWS Service \
         Limits page (http://docs.aws.amazon.com/general/latest/gr/aws_service_limits.html) for current limits and how \
         to request higher limits.",
        ctx.settings.account_id, ctx.settings.region, current, ctx.settings.shard_limit, added
    )
}

pub fn delete_stream(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let handle = ctx.stream(&body)?;
    let enforce = body.bool("EnforceConsumerDeletion")?.unwrap_or(false);
    let meta = handle.meta();
    let consumers = super::stream_consumers::consumers(&meta).len();
    if consumers > 0 && !enforce {
        return Err(ApiError::new(
            ErrorType::ResourceInUse,
            format!(
                "Stream {} under account {} has {consumers} registered consumers; deregister them or set EnforceConsumerDeletion.",
                meta.name, ctx.settings.account_id
            ),
        ));
    }
    let name = meta.name;
    ctx.engine.delete_stream(&name).map_err(|e| ctx.store_error(e))?;
    Ok(json!({}))
}

fn mode_details(meta: &framelog_store::StreamMeta) -> Value {
    json!({"StreamMode": meta.settings.get(SETTING_MODE).map_or("PROVISIONED", String::as_str)})
}

pub fn describe_stream(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let limit = body.int("Limit")?;
    let start = body.str("ExclusiveStartShardId")?;
    let name = ctx.stream_name(&body)?;
    let meta = ctx.lookup(&name)?.meta();
    let limit = limit.unwrap_or(100) as usize;
    let after = start.as_deref().and_then(parse_shard_id);
    let eligible: Vec<usize> = visible_shards(&meta, ctx.engine.now_ms())
        .filter(|s| after.is_none_or(|a| s.index > a))
        .map(|s| s.index as usize)
        .collect();
    let shards: Vec<Value> = eligible.iter().take(limit).map(|&i| shard_json(&meta, i)).collect();
    Ok(json!({"StreamDescription": {
        "StreamName": meta.name,
        "StreamARN": meta.arn,
        "StreamStatus": status(&meta),
        "StreamModeDetails": mode_details(&meta),
        "Shards": shards,
        "HasMoreShards": eligible.len() > limit,
        "RetentionPeriodHours": meta.retention_hours,
        "StreamCreationTimestamp": epoch_secs(meta.created_ms),
        "EnhancedMonitoring": super::stream_settings::monitoring_json(&meta),
        "EncryptionType": super::encryption::shown(&meta).0,
        "KeyId": super::encryption::shown(&meta).1,
    }}))
}

pub fn describe_stream_summary(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let meta = ctx.stream(&body)?.meta();
    let max_kib: i64 =
        meta.settings.get(SETTING_MAX_RECORD_KIB).and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_MAX_RECORD_KIB);
    let mut summary = json!({
        "StreamName": meta.name,
        "StreamARN": meta.arn,
        "StreamStatus": status(&meta),
        "StreamModeDetails": mode_details(&meta),
        "RetentionPeriodHours": meta.retention_hours,
        "StreamCreationTimestamp": epoch_secs(meta.created_ms),
        "EnhancedMonitoring": super::stream_settings::monitoring_json(&meta),
        "EncryptionType": super::encryption::shown(&meta).0,
        "KeyId": super::encryption::shown(&meta).1,
        "OpenShardCount": open_shard_count(&meta),
        "ConsumerCount": super::stream_consumers::consumers(&meta).len(),
        "MaxRecordSizeInKiB": max_kib,
    });
    super::stream_settings::on_demand_summary(&meta, &mut summary);
    Ok(json!({"StreamDescriptionSummary": summary}))
}

pub fn list_streams(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let limit = body.int("Limit")?;
    let start = body.str("ExclusiveStartStreamName")?;
    let token = body.str("NextToken")?;
    let after = match token {
        Some(token) => Some(decode_token(&token, "streams")?.0),
        None => start,
    };
    let limit = limit.unwrap_or(100) as usize;
    let all: Vec<_> =
        ctx.data_streams().into_iter().filter(|m| after.as_deref().is_none_or(|a| m.name.as_str() > a)).collect();
    let page = &all[..all.len().min(limit)];
    let more = all.len() > limit;
    let mut out = json!({
        "StreamNames": page.iter().map(|m| m.name.clone()).collect::<Vec<_>>(),
        "HasMoreStreams": more,
        "StreamSummaries": page.iter().map(|m| json!({
            "StreamName": m.name,
            "StreamARN": m.arn,
            "StreamStatus": status(m),
            "StreamModeDetails": mode_details(m),
            "StreamCreationTimestamp": epoch_secs(m.created_ms),
        })).collect::<Vec<_>>(),
    });
    if more && let Some(last) = page.last() {
        out["NextToken"] = encode_token(&last.name, "streams", ctx.engine.now_ms()).into();
    }
    Ok(out)
}

/// Pagination tokens: base64 of `kind|issued_ms|payload`. Not secret: they only name a position.
pub(super) fn encode_token(payload: &str, kind: &str, now_ms: u64) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{kind}|{now_ms}|{payload}"))
}

pub(super) fn decode_token(token: &str, kind: &str) -> Result<(String, u64), ApiError> {
    let invalid = || ApiError::invalid("Invalid NextToken.");
    let bytes = base64::engine::general_purpose::STANDARD.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let mut parts = text.splitn(3, '|');
    match (parts.next(), parts.next().and_then(|t| t.parse().ok()), parts.next()) {
        (Some(k), Some(issued), Some(payload)) if k == kind => Ok((payload.to_string(), issued)),
        _ => Err(invalid()),
    }
}

pub fn change_retention(ctx: &KdsCtx, body: Document, increase: bool) -> Result<Value, ApiError> {
    let hours = body.int("RetentionPeriodHours")?;
    let name = ctx.stream_name(&body)?;
    let hours = hours.unwrap_or_default();
    if hours < MIN_RETENTION_HOURS {
        return Err(ApiError::invalid(format!(
            "Minimum allowed retention period is {MIN_RETENTION_HOURS} hours. Requested retention period ({hours} hours) is too short."
        )));
    }
    if hours > MAX_RETENTION_HOURS {
        return Err(ApiError::invalid(format!(
            "Maximum allowed retention period is {MAX_RETENTION_HOURS} hours. Requested retention period ({hours} hours) is too long."
        )));
    }
    let handle = ctx.lookup(&name)?;
    let current = i64::from(handle.meta().retention_hours);
    if increase && hours < current {
        return Err(ApiError::invalid(format!(
            "Requested retention period ({hours} hours) for stream {name} can not be shorter than existing retention period ({current} hours). Use DecreaseRetentionPeriod API."
        )));
    }
    if !increase && hours > current {
        return Err(ApiError::invalid(format!(
            "Requested retention period ({hours} hours) for stream {name} can not be longer than existing retention period ({current} hours). Use IncreaseRetentionPeriod API."
        )));
    }
    ctx.engine.update_meta(&handle, |m| m.retention_hours = hours as u32).map_err(|e| ctx.store_error(e))?;
    Ok(json!({}))
}

pub(super) fn tag_chars_ok(text: &str) -> bool {
    text.chars().all(|c| c.is_alphanumeric() || c.is_whitespace() || "_./=+-%@:".contains(c))
}

pub fn add_tags(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let tags = body.string_map("Tags")?.unwrap_or_default();
    let name = ctx.stream_name(&body)?;
    if tags.iter().any(|(k, v)| !tag_chars_ok(k) || !tag_chars_ok(v)) {
        return Err(ApiError::invalid(
            "Some tags contain invalid characters. Valid characters: Unicode letters, digits, white space, _ . / = + - % @.",
        ));
    }
    let handle = ctx.lookup(&name)?;
    let mut merged = handle.meta().tags;
    merged.extend(tags.iter().cloned());
    if merged.len() > MAX_TAGS_PER_STREAM {
        return Err(ApiError::new(
            ErrorType::LimitExceeded,
            format!(
                "Failed to add tags to stream {name} under account {} because a given stream cannot have more than {MAX_TAGS_PER_STREAM} tags.",
                ctx.settings.account_id
            ),
        ));
    }
    // Merged again into the newest tags: another node may have changed them meanwhile.
    ctx.engine.update_meta(&handle, |m| m.tags.extend(tags.iter().cloned())).map_err(|e| ctx.store_error(e))?;
    Ok(json!({}))
}

pub fn remove_tags(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let keys = body.list("TagKeys")?.cloned().unwrap_or_default();
    let keys: Vec<String> = keys.iter().map(crate::document::as_string).collect::<Result<_, _>>()?;
    let name = ctx.stream_name(&body)?;
    let handle = ctx.lookup(&name)?;
    ctx.engine
        .update_meta(&handle, |m| keys.iter().for_each(|k| drop(m.tags.remove(k))))
        .map_err(|e| ctx.store_error(e))?;
    Ok(json!({}))
}

pub fn list_tags(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let limit = body.int("Limit")?;
    let start = body.str("ExclusiveStartTagKey")?;
    let name = ctx.stream_name(&body)?;
    let tags = ctx.lookup(&name)?.meta().tags;
    let limit = limit.unwrap_or(50) as usize;
    let eligible: Vec<_> = tags.iter().filter(|(k, _)| start.as_deref().is_none_or(|s| k.as_str() > s)).collect();
    Ok(json!({
        "Tags": eligible.iter().take(limit).map(|(k, v)| json!({"Key": k, "Value": v})).collect::<Vec<_>>(),
        "HasMoreTags": eligible.len() > limit,
    }))
}

pub fn shard_index_for(meta: &framelog_store::StreamMeta, shard_id_text: &str) -> Option<u32> {
    parse_shard_id(shard_id_text).filter(|&i| (i as usize) < meta.shards.len())
}
