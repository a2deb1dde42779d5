//! Operations on a resource named by its ARN, a stream or a stream consumer: TagResource,
//! UntagResource, ListTagsForResource, PutResourcePolicy, GetResourcePolicy and
//! DeleteResourcePolicy.
//!
//! Resource policies are checked to be IAM policy documents and kept with their resource. This
//! server has one account, whose identity policies (docs/security.md) already decide every
//! request, so a resource policy grants nothing more; it is stored for the tools that manage it.

use framelog_store::StreamHandle;
use serde_json::{Value, json};

use super::context::{KdsCtx, stream_name_in_arn};
use super::stream_consumers::{self, find_by_arn};
use super::streams::tag_chars_ok;
use crate::document::Document;
use crate::error::{ApiError, ErrorType};

const SETTING_POLICY: &str = "kds.resource_policy";
const MAX_TAGS: usize = 50;

/// What a ResourceARN names.
enum Resource {
    Stream(StreamHandle),
    Consumer(StreamHandle, String),
}

fn resource(ctx: &KdsCtx, body: &Document) -> Result<Resource, ApiError> {
    let arn = body.str("ResourceARN")?.unwrap_or_default();
    if arn.contains("/consumer/") {
        let (handle, consumer) = find_by_arn(ctx, &arn)?;
        return Ok(Resource::Consumer(handle, consumer.name));
    }
    Ok(Resource::Stream(ctx.lookup(&stream_name_in_arn(&arn, "ResourceARN")?)?))
}

fn tags_of(resource: &Resource) -> std::collections::BTreeMap<String, String> {
    match resource {
        Resource::Stream(handle) => handle.meta().tags,
        Resource::Consumer(handle, name) => stream_consumers::stored(&handle.meta(), name).unwrap_or_default().tags,
    }
}

/// Applies `change` to the resource's tags.
fn change_tags(
    ctx: &KdsCtx,
    resource: &Resource,
    mut change: impl FnMut(&mut std::collections::BTreeMap<String, String>),
) -> Result<(), ApiError> {
    match resource {
        Resource::Stream(handle) => {
            ctx.engine.update_meta(handle, |m| change(&mut m.tags)).map_err(|e| ctx.store_error(e))?;
        }
        Resource::Consumer(handle, name) => {
            stream_consumers::update_stored(ctx, handle, name, |stored| change(&mut stored.tags))?;
        }
    }
    Ok(())
}

pub fn tag_resource(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let tags = body.string_map("Tags")?.unwrap_or_default();
    let target = resource(ctx, &body)?;
    if tags.iter().any(|(k, v)| !tag_chars_ok(k) || !tag_chars_ok(v)) {
        return Err(ApiError::invalid(
            "Some tags contain invalid characters. Valid characters: Unicode letters, digits, white space, _ . / = + - % @.",
        ));
    }
    let mut merged = tags_of(&target);
    merged.extend(tags.iter().cloned());
    if merged.len() > MAX_TAGS {
        return Err(ApiError::new(
            ErrorType::LimitExceeded,
            format!("A resource cannot have more than {MAX_TAGS} tags; this request would give it {}.", merged.len()),
        ));
    }
    change_tags(ctx, &target, |current| current.extend(tags.iter().cloned()))?;
    Ok(json!({}))
}

pub fn untag_resource(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let keys = body.list("TagKeys")?.cloned().unwrap_or_default();
    let keys: Vec<String> = keys.iter().map(crate::document::as_string).collect::<Result<_, _>>()?;
    let target = resource(ctx, &body)?;
    change_tags(ctx, &target, |current| keys.iter().for_each(|k| drop(current.remove(k))))?;
    Ok(json!({}))
}

pub fn list_tags_for_resource(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let target = resource(ctx, &body)?;
    let tags: Vec<Value> = tags_of(&target).iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect();
    Ok(json!({"Tags": tags}))
}

pub fn put_resource_policy(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let policy = body.str("Policy")?.unwrap_or_default();
    let document: Value = serde_json::from_str(&policy)
        .map_err(|e| ApiError::invalid(format!("The policy is not a JSON document: {e}")))?;
    if document.get("Statement").is_none_or(|s| !(s.is_array() || s.is_object())) {
        return Err(ApiError::invalid("The policy must have a Statement (an object or a list of objects)."));
    }
    let target = resource(ctx, &body)?;
    match &target {
        Resource::Stream(handle) => {
            let change =
                |m: &mut framelog_store::StreamMeta| drop(m.settings.insert(SETTING_POLICY.into(), policy.clone()));
            ctx.engine.update_meta(handle, change).map_err(|e| ctx.store_error(e))?;
        }
        Resource::Consumer(handle, name) => {
            stream_consumers::update_stored(ctx, handle, name, |stored| stored.policy = Some(policy.clone()))?;
        }
    }
    Ok(json!({}))
}

pub fn get_resource_policy(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let policy = match resource(ctx, &body)? {
        Resource::Stream(handle) => handle.meta().settings.get(SETTING_POLICY).cloned(),
        Resource::Consumer(handle, name) => stream_consumers::stored(&handle.meta(), &name).and_then(|s| s.policy),
    };
    // AWS answers an empty document for a resource without a policy.
    Ok(json!({"Policy": policy.unwrap_or_else(|| "{}".into())}))
}

pub fn delete_resource_policy(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let target = resource(ctx, &body)?;
    let had = match &target {
        Resource::Stream(handle) => handle.meta().settings.contains_key(SETTING_POLICY),
        Resource::Consumer(handle, name) => {
            stream_consumers::stored(&handle.meta(), name).is_some_and(|s| s.policy.is_some())
        }
    };
    if !had {
        return Err(ApiError::new(ErrorType::ResourceNotFound, "No resource policy found for the given resource."));
    }
    match &target {
        Resource::Stream(handle) => {
            ctx.engine
                .update_meta(handle, |m| drop(m.settings.remove(SETTING_POLICY)))
                .map_err(|e| ctx.store_error(e))?;
        }
        Resource::Consumer(handle, name) => {
            stream_consumers::update_stored(ctx, handle, name, |stored| stored.policy = None)?;
        }
    }
    Ok(json!({}))
}
