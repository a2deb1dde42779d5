//! KVS control-plane operations on streams: create, describe, list, update, retention, data
//! endpoint, delete and tags. Video streams are engine streams of kind `Video` with one shard.

use std::collections::BTreeMap;

use base64::Engine as _;
use framelog_store::{StreamEncryption, StreamKind, StreamMeta, new_stream_meta};
use rand::Rng;
use serde_json::{Value, json};

use super::context::{KvsCtx, check_name, not_found};
use super::video_stream::{engine_name, public_name};
use crate::document::Document;
use crate::error::{ApiError, ErrorType};

const MAX_RETENTION_HOURS: i64 = 87_600;
const MAX_TAGS: usize = 50;
const SET_VERSION: &str = "kvs.version";
const SET_DEVICE: &str = "kvs.device_name";
const SET_MEDIA_TYPE: &str = "kvs.media_type";
const SET_KMS_KEY: &str = "kvs.kms_key_id";
const API_NAMES: &[&str] = &[
    "PUT_MEDIA",
    "GET_MEDIA",
    "LIST_FRAGMENTS",
    "GET_MEDIA_FOR_FRAGMENT_LIST",
    "GET_HLS_STREAMING_SESSION_URL",
    "GET_DASH_STREAMING_SESSION_URL",
    "GET_CLIP",
    "GET_IMAGES",
];

/// A fresh 20-character stream version, as KVS issues on every change.
fn new_version() -> String {
    rand::rng().sample_iter(&rand::distr::Alphanumeric).take(20).map(char::from).collect()
}

fn stream_info(meta: &StreamMeta) -> Value {
    let setting = |key: &str| meta.settings.get(key).cloned().map_or(Value::Null, Value::String);
    json!({
        "DeviceName": setting(SET_DEVICE),
        "StreamName": public_name(&meta.name),
        "StreamARN": meta.arn,
        "MediaType": setting(SET_MEDIA_TYPE),
        "KmsKeyId": setting(SET_KMS_KEY),
        "Version": setting(SET_VERSION),
        "Status": "ACTIVE",
        "CreationTime": meta.created_ms as f64 / 1000.0,
        "DataRetentionInHours": meta.retention_hours,
    })
}

fn check_tags(tags: &[(String, String)]) -> Result<(), ApiError> {
    for (key, value) in tags {
        if key.is_empty() || key.chars().count() > 128 || value.chars().count() > 256 {
            return Err(ApiError::invalid(format!(
                "Tag {key} must have a key of 1 to 128 characters and a value of at most 256."
            )));
        }
    }
    Ok(())
}

fn merge_tags(
    ctx: &KvsCtx,
    handle: &framelog_store::StreamHandle,
    tags: Vec<(String, String)>,
) -> Result<Value, ApiError> {
    check_tags(&tags)?;
    let mut merged = handle.meta().tags;
    merged.extend(tags.iter().cloned());
    if merged.len() > MAX_TAGS {
        return Err(ApiError::new(
            ErrorType::TagsPerResourceExceededLimit,
            format!("A stream can have at most {MAX_TAGS} tags."),
        ));
    }
    // Merged again into the newest tags: another node may have changed them meanwhile.
    ctx.engine.update_meta(handle, |m| m.tags.extend(tags.iter().cloned()))?;
    Ok(json!({}))
}

pub fn create_stream(ctx: &KvsCtx, body: Document) -> Result<Value, ApiError> {
    let name = body.str("StreamName")?.ok_or_else(|| ApiError::invalid("StreamName is required."))?;
    check_name(&name)?;
    let retention = body.int("DataRetentionInHours")?.unwrap_or(i64::from(ctx.settings.default_retention_hours));
    if !(0..=MAX_RETENTION_HOURS).contains(&retention) {
        return Err(ApiError::invalid(format!("DataRetentionInHours must be between 0 and {MAX_RETENTION_HOURS}.")));
    }
    let tags = body.string_map("Tags")?.unwrap_or_default();
    check_tags(&tags)?;
    if tags.len() > MAX_TAGS {
        return Err(ApiError::new(
            ErrorType::TagsPerResourceExceededLimit,
            format!("A stream can have at most {MAX_TAGS} tags."),
        ));
    }
    let now_ms = ctx.engine.now_ms();
    let arn = ctx.arn(&name, now_ms);
    let mut meta = new_stream_meta(&engine_name(&name), StreamKind::Video, &arn, 1, retention as u32, now_ms);
    meta.tags.extend(tags);
    meta.settings.insert(SET_VERSION.into(), new_version());
    let requested_key = body.str("KmsKeyId")?;
    if let Some(key_id) = &requested_key {
        // A stream created with a key is stored encrypted; docs/security.md says why the default is not.
        let wrapped_key_hex = ctx.engine.new_wrapped_data_key_hex().map_err(|e| ApiError::internal(&e))?;
        meta.encryption = Some(StreamEncryption { enabled: true, key_id: key_id.clone(), wrapped_key_hex });
    }
    let kms = requested_key.unwrap_or_else(|| {
        format!("arn:aws:kms:{}:{}:alias/aws/kinesisvideo", ctx.settings.region, ctx.settings.account_id)
    });
    meta.settings.insert(SET_KMS_KEY.into(), kms);
    check_device_and_media_type(body.str("DeviceName")?.as_deref(), body.str("MediaType")?.as_deref())?;
    for (field, key) in [("DeviceName", SET_DEVICE), ("MediaType", SET_MEDIA_TYPE)] {
        if let Some(value) = body.str(field)? {
            meta.settings.insert(key.into(), value);
        }
    }
    ctx.engine.create_stream(meta).map_err(|error| match error {
        framelog_store::StoreError::StreamExists(_) => {
            ApiError::new(ErrorType::ResourceInUse, format!("The stream {name} already exists."))
        }
        other => ApiError::internal(&other),
    })?;
    Ok(json!({"StreamARN": arn}))
}

pub fn describe_stream(ctx: &KvsCtx, body: Document) -> Result<Value, ApiError> {
    Ok(json!({"StreamInfo": stream_info(&ctx.stream(&body, "StreamARN")?.meta())}))
}

pub fn list_streams(ctx: &KvsCtx, body: Document) -> Result<Value, ApiError> {
    let max = body.int("MaxResults")?.unwrap_or(10_000);
    if !(1..=10_000).contains(&max) {
        return Err(ApiError::invalid("MaxResults must be between 1 and 10000."));
    }
    let after = match body.str("NextToken")? {
        Some(token) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(&token)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| ApiError::invalid("Invalid NextToken."))?,
        ),
        None => None,
    };
    let prefix = match body.object("StreamNameCondition")? {
        Some(condition) => {
            let operator = condition.str("ComparisonOperator")?;
            if operator.as_deref().is_some_and(|o| o != "BEGINS_WITH") {
                return Err(ApiError::invalid("ComparisonOperator must be BEGINS_WITH."));
            }
            condition.str("ComparisonValue")?
        }
        None => None,
    };
    let matching: Vec<StreamMeta> = ctx
        .engine
        .streams()
        .into_iter()
        .map(|h| h.meta())
        .filter(|m| m.kind == StreamKind::Video)
        .filter(|m| {
            let name = public_name(&m.name);
            prefix.as_deref().is_none_or(|p| name.starts_with(p)) && after.as_deref().is_none_or(|a| name > a)
        })
        .collect();
    let max = max as usize;
    let page = &matching[..matching.len().min(max)];
    let mut out = json!({"StreamInfoList": page.iter().map(stream_info).collect::<Vec<_>>()});
    if matching.len() > max
        && let Some(last) = page.last()
    {
        let name = public_name(&last.name);
        out["NextToken"] = base64::engine::general_purpose::STANDARD.encode(name).into();
    }
    Ok(out)
}

fn check_version(meta: &StreamMeta, body: &Document, required: bool) -> Result<(), ApiError> {
    let given = body.str("CurrentVersion")?;
    if required && given.is_none() {
        return Err(ApiError::invalid("CurrentVersion is required."));
    }
    match given {
        Some(version) if meta.settings.get(SET_VERSION) != Some(&version) => Err(ApiError::new(
            ErrorType::VersionMismatch,
            format!("The stream version {version} does not match the current version."),
        )),
        _ => Ok(()),
    }
}

pub fn delete_stream(ctx: &KvsCtx, body: Document) -> Result<Value, ApiError> {
    if body.str("StreamARN")?.is_none() {
        return Err(ApiError::invalid("StreamARN is required."));
    }
    let handle = ctx.stream(&body, "StreamARN")?;
    let meta = handle.meta();
    check_version(&meta, &body, false)?;
    ctx.engine.delete_stream(&meta.name).map_err(|_| not_found())?;
    Ok(json!({}))
}

/// AWS's limits: DeviceName and MediaType are 1 to 128 characters.
fn check_device_and_media_type(device: Option<&str>, media_type: Option<&str>) -> Result<(), ApiError> {
    for (field, value) in [("DeviceName", device), ("MediaType", media_type)] {
        if value.is_some_and(|v| v.is_empty() || v.chars().count() > 128) {
            return Err(ApiError::invalid(format!("{field} must be 1 to 128 characters long.")));
        }
    }
    Ok(())
}

pub fn update_stream(ctx: &KvsCtx, body: Document) -> Result<Value, ApiError> {
    let handle = ctx.stream(&body, "StreamARN")?;
    check_version(&handle.meta(), &body, true)?;
    let device = body.str("DeviceName")?;
    let media_type = body.str("MediaType")?;
    check_device_and_media_type(device.as_deref(), media_type.as_deref())?;
    ctx.engine.update_meta(&handle, |m| {
        if let Some(device) = device.clone() {
            m.settings.insert(SET_DEVICE.into(), device);
        }
        if let Some(media_type) = media_type.clone() {
            m.settings.insert(SET_MEDIA_TYPE.into(), media_type);
        }
        m.settings.insert(SET_VERSION.into(), new_version());
    })?;
    Ok(json!({}))
}

pub fn update_data_retention(ctx: &KvsCtx, body: Document) -> Result<Value, ApiError> {
    let handle = ctx.stream(&body, "StreamARN")?;
    let meta = handle.meta();
    check_version(&meta, &body, true)?;
    let change = body
        .int("DataRetentionChangeInHours")?
        .ok_or_else(|| ApiError::invalid("DataRetentionChangeInHours is required."))?;
    if change < 1 {
        return Err(ApiError::invalid("DataRetentionChangeInHours must be at least 1."));
    }
    let current = i64::from(meta.retention_hours);
    let target = match body.str("Operation")?.as_deref() {
        Some("INCREASE_DATA_RETENTION") => current + change,
        Some("DECREASE_DATA_RETENTION") => current - change,
        _ => return Err(ApiError::invalid("Operation must be INCREASE_DATA_RETENTION or DECREASE_DATA_RETENTION.")),
    };
    if !(0..=MAX_RETENTION_HOURS).contains(&target) {
        return Err(ApiError::invalid(format!(
            "The resulting retention of {target} hours is outside 0 to {MAX_RETENTION_HOURS} hours."
        )));
    }
    ctx.engine.update_meta(&handle, |m| {
        m.retention_hours = target as u32;
        m.settings.insert(SET_VERSION.into(), new_version());
    })?;
    Ok(json!({}))
}

pub fn get_data_endpoint(ctx: &KvsCtx, body: Document) -> Result<Value, ApiError> {
    let api = body.str("APIName")?;
    if !api.as_deref().is_some_and(|a| API_NAMES.contains(&a)) {
        return Err(ApiError::invalid(format!("APIName must be one of {}.", API_NAMES.join(", "))));
    }
    ctx.stream(&body, "StreamARN")?;
    Ok(json!({"DataEndpoint": ctx.settings.data_endpoint}))
}

pub fn tag_stream(ctx: &KvsCtx, body: Document) -> Result<Value, ApiError> {
    let handle = ctx.stream(&body, "StreamARN")?;
    let tags = body.string_map("Tags")?.ok_or_else(|| ApiError::invalid("Tags is required."))?;
    merge_tags(ctx, &handle, tags)
}

fn remove_tags(ctx: &KvsCtx, body: &Document, arn_field: &str) -> Result<Value, ApiError> {
    let handle = ctx.stream(body, arn_field)?;
    let keys = body.list("TagKeyList")?.ok_or_else(|| ApiError::invalid("TagKeyList is required."))?;
    let keys: Vec<String> = keys.iter().map(crate::document::as_string).collect::<Result<_, _>>()?;
    ctx.engine.update_meta(&handle, |m| keys.iter().for_each(|k| drop(m.tags.remove(k))))?;
    Ok(json!({}))
}

pub fn untag_stream(ctx: &KvsCtx, body: Document) -> Result<Value, ApiError> {
    remove_tags(ctx, &body, "StreamARN")
}

fn tags_json(tags: &BTreeMap<String, String>) -> Value {
    json!({"Tags": tags})
}

pub fn list_tags_for_stream(ctx: &KvsCtx, body: Document) -> Result<Value, ApiError> {
    Ok(tags_json(&ctx.stream(&body, "StreamARN")?.meta().tags))
}

pub fn tag_resource(ctx: &KvsCtx, body: Document) -> Result<Value, ApiError> {
    let handle = ctx.stream(&body, "ResourceARN")?;
    let list = body.list("Tags")?.ok_or_else(|| ApiError::invalid("Tags is required."))?;
    let mut tags = Vec::with_capacity(list.len());
    for item in list {
        let tag = Document::parse(item.clone())?;
        let key = tag.str("Key")?.ok_or_else(|| ApiError::invalid("Tag Key is required."))?;
        tags.push((key, tag.str("Value")?.unwrap_or_default()));
    }
    merge_tags(ctx, &handle, tags)
}

pub fn untag_resource(ctx: &KvsCtx, body: Document) -> Result<Value, ApiError> {
    remove_tags(ctx, &body, "ResourceARN")
}

pub fn list_tags_for_resource(ctx: &KvsCtx, body: Document) -> Result<Value, ApiError> {
    Ok(tags_json(&ctx.stream(&body, "ResourceARN")?.meta().tags))
}
