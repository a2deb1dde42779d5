//! Enhanced fan-out consumers: RegisterStreamConsumer, DescribeStreamConsumer,
//! ListStreamConsumers and DeregisterStreamConsumer. A consumer is a name registered on a stream,
//! kept in the stream's metadata; SubscribeToShard (subscribe.rs) pushes records to it.
//!
//! Registration takes effect at once, so a consumer is ACTIVE as soon as it is registered (AWS
//! shows CREATING for a few seconds; clients wait for ACTIVE either way).

use std::collections::BTreeMap;

use framelog_store::{StreamHandle, StreamMeta};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::context::{KdsCtx, epoch_secs};
use super::streams::{decode_token, encode_token};
use crate::document::Document;
use crate::error::{ApiError, ErrorType};

const SETTING_PREFIX: &str = "kds.consumer.";
/// Consumers one stream may have (AWS's default quota).
pub const MAX_CONSUMERS_PER_STREAM: usize = 20;
const TOKEN_TTL_MS: u64 = 300_000;

/// What is stored about one consumer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stored {
    pub created_ms: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// A resource policy (PutResourcePolicy), as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

/// A registered consumer as the API shows it.
#[derive(Debug, Clone)]
pub struct StreamConsumer {
    pub name: String,
    pub arn: String,
    pub created_ms: u64,
}

impl StreamConsumer {
    fn json(&self) -> Value {
        json!({
            "ConsumerName": self.name,
            "ConsumerARN": self.arn,
            "ConsumerStatus": "ACTIVE",
            "ConsumerCreationTimestamp": epoch_secs(self.created_ms),
        })
    }
}

/// `arn:aws:kinesis:<region>:<account>:stream/<stream>/consumer/<name>:<creation epoch seconds>`.
pub fn consumer_arn(stream_arn: &str, name: &str, created_ms: u64) -> String {
    format!("{stream_arn}/consumer/{name}:{}", created_ms / 1000)
}

/// The stream and consumer names an ARN of ours holds.
pub fn parse_consumer_arn(arn: &str) -> Option<(String, String)> {
    let (_, rest) = arn.split_once(":stream/")?;
    let (stream, rest) = rest.split_once("/consumer/")?;
    let (name, created) = rest.rsplit_once(':')?;
    created.parse::<u64>().ok()?;
    Some((stream.to_string(), name.to_string()))
}

/// Every consumer of a stream, by name.
pub fn consumers(meta: &StreamMeta) -> Vec<StreamConsumer> {
    meta.settings
        .iter()
        .filter_map(|(key, value)| {
            let name = key.strip_prefix(SETTING_PREFIX)?;
            let stored: Stored = serde_json::from_str(value).ok()?;
            Some(StreamConsumer {
                name: name.to_string(),
                arn: consumer_arn(&meta.arn, name, stored.created_ms),
                created_ms: stored.created_ms,
            })
        })
        .collect()
}

/// The consumer a ConsumerARN names, if it is registered (an ARN of an older registration of
/// the same name names nothing).
pub fn find_by_arn(ctx: &KdsCtx, arn: &str) -> Result<(StreamHandle, StreamConsumer), ApiError> {
    let missing = || {
        ApiError::new(
            ErrorType::ResourceNotFound,
            format!("Consumer {arn} under account {} not found.", ctx.settings.account_id),
        )
    };
    let (stream, name) = parse_consumer_arn(arn).ok_or_else(missing)?;
    let handle = ctx.lookup(&stream).map_err(|_| missing())?;
    let consumer =
        consumers(&handle.meta()).into_iter().find(|c| c.name == name && c.arn == arn).ok_or_else(missing)?;
    Ok((handle, consumer))
}

/// The stream a StreamARN names.
fn stream_of(ctx: &KdsCtx, arn: &str) -> Result<StreamHandle, ApiError> {
    ctx.lookup(&super::context::stream_name_in_arn(arn, "StreamARN")?)
}

pub fn register(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let arn = body.str("StreamARN")?;
    let name = body.str("ConsumerName")?;
    let tags = body.string_map("Tags")?.unwrap_or_default();
    let (arn, name) = (arn.unwrap_or_default(), name.unwrap_or_default());
    let handle = stream_of(ctx, &arn)?;
    let created_ms = ctx.engine.now_ms();
    let stored = Stored { created_ms, tags: tags.into_iter().collect(), policy: None };
    let stored = serde_json::to_string(&stored).map_err(|e| ApiError::internal(&e))?;
    let key = format!("{SETTING_PREFIX}{name}");
    let (meta, outcome) = ctx
        .engine
        .update_meta(&handle, |m| {
            if m.settings.contains_key(&key) {
                return Err(ErrorType::ResourceInUse);
            }
            if consumers(m).len() >= MAX_CONSUMERS_PER_STREAM {
                return Err(ErrorType::LimitExceeded);
            }
            m.settings.insert(key.clone(), stored.clone());
            Ok(())
        })
        .map_err(|e| ctx.store_error(e))?;
    let account = &ctx.settings.account_id;
    match outcome {
        Err(ErrorType::ResourceInUse) => {
            return Err(ApiError::new(
                ErrorType::ResourceInUse,
                format!("Consumer {name} under stream {} under account {account} already exists.", meta.name),
            ));
        }
        Err(kind) => {
            return Err(ApiError::new(
                kind,
                format!(
                    "Stream {} under account {account} already has {MAX_CONSUMERS_PER_STREAM} registered consumers, the most a stream may have.",
                    meta.name
                ),
            ));
        }
        Ok(()) => {}
    }
    let consumer = StreamConsumer { arn: consumer_arn(&meta.arn, &name, created_ms), name, created_ms };
    Ok(json!({"Consumer": consumer.json()}))
}

/// The consumer a Describe or Deregister request names: by ConsumerARN, or by StreamARN and
/// ConsumerName.
fn named(ctx: &KdsCtx, body: &Document) -> Result<(StreamHandle, StreamConsumer), ApiError> {
    let stream_arn = body.str("StreamARN")?;
    let name = body.str("ConsumerName")?;
    let consumer_arn = body.str("ConsumerARN")?;
    match (consumer_arn, stream_arn, name) {
        (Some(arn), _, _) => find_by_arn(ctx, &arn),
        (None, Some(stream_arn), Some(name)) => {
            let handle = stream_of(ctx, &stream_arn)?;
            let consumer = consumers(&handle.meta()).into_iter().find(|c| c.name == name).ok_or_else(|| {
                ApiError::new(
                    ErrorType::ResourceNotFound,
                    format!(
                        "Consumer {name} under stream {stream_arn} under account {} not found.",
                        ctx.settings.account_id
                    ),
                )
            })?;
            Ok((handle, consumer))
        }
        _ => Err(ApiError::invalid("Either ConsumerARN or both ConsumerName and StreamARN must be provided.")),
    }
}

pub fn describe(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let (handle, consumer) = named(ctx, &body)?;
    let mut description = consumer.json();
    description["StreamARN"] = handle.meta().arn.into();
    Ok(json!({"ConsumerDescription": description}))
}

pub fn deregister(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let (handle, consumer) = named(ctx, &body)?;
    let key = format!("{SETTING_PREFIX}{}", consumer.name);
    ctx.engine.update_meta(&handle, |m| drop(m.settings.remove(&key))).map_err(|e| ctx.store_error(e))?;
    Ok(json!({}))
}

pub fn list(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let arn = body.str("StreamARN")?;
    let max = body.int("MaxResults")?;
    let token = body.str("NextToken")?;
    let created_ms = body.timestamp_ms("StreamCreationTimestamp")?;
    let handle = stream_of(ctx, &arn.unwrap_or_default())?;
    let meta = handle.meta();
    if created_ms.is_some_and(|ms| ms / 1000 != meta.created_ms / 1000) {
        return Err(ctx.not_found(&meta.name));
    }
    let now_ms = ctx.engine.now_ms();
    let after = match token {
        Some(token) => {
            let (after, issued_ms) = decode_token(&token, "consumers")?;
            if now_ms.saturating_sub(issued_ms) > TOKEN_TTL_MS {
                return Err(ApiError::new(
                    ErrorType::ExpiredNextToken,
                    "The timestamp of the given NextToken has expired",
                ));
            }
            Some(after)
        }
        None => None,
    };
    let max = max.map_or(100, |m| m as usize);
    let all: Vec<StreamConsumer> =
        consumers(&meta).into_iter().filter(|c| after.as_deref().is_none_or(|a| c.name.as_str() > a)).collect();
    let page = &all[..all.len().min(max)];
    let mut out = json!({"Consumers": page.iter().map(StreamConsumer::json).collect::<Vec<_>>()});
    if all.len() > max
        && let Some(last) = page.last()
    {
        out["NextToken"] = encode_token(&last.name, "consumers", now_ms).into();
    }
    Ok(out)
}

/// Applies `change` to a registered consumer's stored state; false when it is not registered.
pub fn update_stored(
    ctx: &KdsCtx,
    handle: &StreamHandle,
    name: &str,
    mut change: impl FnMut(&mut Stored),
) -> Result<bool, ApiError> {
    let key = format!("{SETTING_PREFIX}{name}");
    let (_, found) = ctx
        .engine
        .update_meta(handle, |m| {
            let Some(mut stored) = m.settings.get(&key).and_then(|v| serde_json::from_str::<Stored>(v).ok()) else {
                return false;
            };
            change(&mut stored);
            m.settings.insert(key.clone(), serde_json::to_string(&stored).unwrap_or_default());
            true
        })
        .map_err(|e| ctx.store_error(e))?;
    Ok(found)
}

/// A registered consumer's stored state.
pub fn stored(meta: &StreamMeta, name: &str) -> Option<Stored> {
    meta.settings.get(&format!("{SETTING_PREFIX}{name}")).and_then(|v| serde_json::from_str(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_arns_round_trip_to_their_stream_and_name() {
        let arn = consumer_arn("arn:aws:kinesis:us-east-1:000000000000:stream/orders", "fan.out-1", 1_700_000_123_456);
        assert_eq!(arn, "arn:aws:kinesis:us-east-1:000000000000:stream/orders/consumer/fan.out-1:1700000123");
        assert_eq!(parse_consumer_arn(&arn), Some(("orders".into(), "fan.out-1".into())));
        assert_eq!(parse_consumer_arn("arn:aws:kinesis:us-east-1:0:stream/orders"), None);
        assert_eq!(parse_consumer_arn("arn:aws:kinesis:us-east-1:0:stream/o/consumer/c:x"), None);
    }
}
