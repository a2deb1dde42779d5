//! TagResource, UntagResource and ListTagsForResource for applications, by ARN; at most 50
//! tags each.

use serde_json::{Value, json};

use super::context::AnalyticsCtx;
use super::spec::{ApplicationSpec, SPEC_KEY};
use crate::document::Document;
use crate::error::{ApiError, ErrorType};
use crate::firehose::parse_tags;

const MAX_TAGS: usize = 50;

pub fn check_count(count: usize) -> Result<(), ApiError> {
    if count > MAX_TAGS {
        return Err(ApiError::new(
            ErrorType::TooManyTags,
            format!(
                "Application created with too many tags, or too many tags added to an application: at most {MAX_TAGS}, this call would leave {count}."
            ),
        ));
    }
    Ok(())
}

/// The application a ResourceARN names.
fn application_of(ctx: &AnalyticsCtx, body: &Document) -> Result<String, ApiError> {
    let arn = body.str("ResourceARN")?.unwrap_or_default();
    let name = arn.rsplit_once(":application/").map(|(_, name)| name.to_string());
    name.filter(|name| arn == ctx.arn(name))
        .ok_or_else(|| ApiError::new(ErrorType::ResourceNotFound, format!("Resource {arn} is not found")))
}

/// Changes an application's tags (not its version: tags are not its configuration).
fn retag(
    ctx: &AnalyticsCtx,
    name: &str,
    edit: impl Fn(&mut ApplicationSpec) -> Result<(), ApiError>,
) -> Result<Value, ApiError> {
    let (handle, _) = ctx.lookup(name)?;
    let (_, outcome) = ctx
        .engine
        .update_meta(&handle, |meta| {
            let mut spec = ApplicationSpec::from_settings(&meta.settings).ok_or_else(|| ctx.not_found(name))?;
            edit(&mut spec)?;
            meta.settings.insert(SPEC_KEY.into(), spec.to_setting());
            Ok(())
        })
        .map_err(|e| ctx.store_error(name, e))?;
    outcome.map(|()| json!({}))
}

pub fn tag_resource(ctx: &AnalyticsCtx, body: Document) -> Result<Value, ApiError> {
    let name = application_of(ctx, &body)?;
    let tags = parse_tags(&body)?;
    retag(ctx, &name, |spec| {
        let mut next = spec.tags.clone();
        next.extend(tags.iter().cloned());
        check_count(next.len())?;
        spec.tags = next;
        Ok(())
    })
}

pub fn untag_resource(ctx: &AnalyticsCtx, body: Document) -> Result<Value, ApiError> {
    let name = application_of(ctx, &body)?;
    let keys = super::api::strings(&body, "TagKeys")?;
    retag(ctx, &name, |spec| {
        for key in &keys {
            spec.tags.remove(key);
        }
        Ok(())
    })
}

pub fn list_tags_for_resource(ctx: &AnalyticsCtx, body: Document) -> Result<Value, ApiError> {
    let name = application_of(ctx, &body)?;
    let (_, spec) = ctx.lookup(&name)?;
    let tags: Vec<Value> = spec.tags.iter().map(|(key, value)| json!({"Key": key, "Value": value})).collect();
    Ok(json!({"Tags": tags}))
}
