//! TagDeliveryStream, UntagDeliveryStream and ListTagsForDeliveryStream: tags live in the engine
//! stream's metadata, at most 50 per delivery stream.

use serde_json::{Value, json};

use super::api::name_of;
use super::context::FirehoseCtx;
use crate::document::{Document, as_string};
use crate::error::{ApiError, ErrorType};

const MAX_TAGS: usize = 50;

/// A `Tags` list of `{Key, Value}`; absent means none.
pub fn parse_tags(body: &Document) -> Result<Vec<(String, String)>, ApiError> {
    let Some(items) = body.list("Tags")? else { return Ok(Vec::new()) };
    items
        .iter()
        .map(|item| {
            let key = item.get("Key").map(as_string).transpose()?.unwrap_or_default();
            let value = item.get("Value").filter(|v| !v.is_null()).map(as_string).transpose()?.unwrap_or_default();
            Ok((key, value))
        })
        .collect()
}

pub fn tag_delivery_stream(ctx: &FirehoseCtx, body: Document) -> Result<Value, ApiError> {
    let name = name_of(&body)?;
    let tags = parse_tags(&body)?;
    let (handle, _) = ctx.lookup(&name)?;
    let (_, outcome) = ctx
        .engine
        .update_meta(&handle, |meta| {
            let mut next = meta.tags.clone();
            next.extend(tags.iter().cloned());
            if next.len() > MAX_TAGS {
                return Err(ApiError::new(
                    ErrorType::LimitExceeded,
                    format!(
                        "A delivery stream can have at most {MAX_TAGS} tags; this call would leave {}.",
                        next.len()
                    ),
                ));
            }
            meta.tags = next;
            Ok(())
        })
        .map_err(|e| ctx.store_error(&name, e))?;
    outcome.map(|()| json!({}))
}

pub fn untag_delivery_stream(ctx: &FirehoseCtx, body: Document) -> Result<Value, ApiError> {
    let name = name_of(&body)?;
    let keys: Vec<String> = body.list("TagKeys")?.into_iter().flatten().map(as_string).collect::<Result<_, _>>()?;
    let (handle, _) = ctx.lookup(&name)?;
    ctx.engine
        .update_meta(&handle, |meta| {
            for key in &keys {
                meta.tags.remove(key);
            }
        })
        .map_err(|e| ctx.store_error(&name, e))?;
    Ok(json!({}))
}

pub fn list_tags(ctx: &FirehoseCtx, body: Document) -> Result<Value, ApiError> {
    let name = name_of(&body)?;
    let limit = body.int("Limit")?.unwrap_or(MAX_TAGS as i64).max(1) as usize;
    let after = body.str("ExclusiveStartTagKey")?;
    let (handle, _) = ctx.lookup(&name)?;
    let tags: Vec<Value> = handle
        .meta()
        .tags
        .into_iter()
        .filter(|(key, _)| after.as_ref().is_none_or(|after| key > after))
        .map(|(key, value)| json!({"Key": key, "Value": value}))
        .collect();
    let more = tags.len() > limit;
    Ok(json!({"Tags": tags.into_iter().take(limit).collect::<Vec<_>>(), "HasMoreTags": more}))
}
