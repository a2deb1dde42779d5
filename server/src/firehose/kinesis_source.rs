//! KinesisStreamAsSource: a delivery stream that reads a Framelog KDS stream instead of taking
//! PutRecord calls. The records are not copied: delivery reads the KDS stream's shards and keeps
//! its checkpoint per shard. Reading starts at the delivery stream's creation (LATEST, as AWS
//! does) or, with the creation tag `framelog:StartingPosition=TRIM_HORIZON`, at the oldest record.

use framelog_store::{StreamHandle, StreamKind};

use super::context::FirehoseCtx;
use super::spec::KinesisSource;
use crate::error::ApiError;

/// The KDS stream an ARN names, when it exists.
pub fn source_stream(ctx: &FirehoseCtx, source: &KinesisSource) -> Option<StreamHandle> {
    let (_, name) = source.stream_arn.rsplit_once(":stream/")?;
    ctx.engine.stream(name).ok().filter(|handle| handle.meta().kind == StreamKind::Data)
}

/// The creation tag choosing where reading starts. Firehose's API has no member for it (AWS
/// reads from LATEST): a tag keeps unmodified clients able to ask.
pub const STARTING_POSITION_TAG: &str = "framelog:StartingPosition";

/// Whether the creation `tags` ask to read from TRIM_HORIZON.
pub fn from_trim_horizon(tags: &[(String, String)]) -> Result<bool, ApiError> {
    match tags.iter().find(|(key, _)| key == STARTING_POSITION_TAG).map(|(_, value)| value.as_str()) {
        None | Some("LATEST") => Ok(false),
        Some("TRIM_HORIZON") => Ok(true),
        Some(other) => Err(ApiError::invalid(format!(
            "Tag {STARTING_POSITION_TAG} is {other}; it must be TRIM_HORIZON or LATEST."
        ))),
    }
}

/// Refuses a source that names no KDS stream here.
pub fn check(ctx: &FirehoseCtx, source: &KinesisSource) -> Result<(), ApiError> {
    match source_stream(ctx, source) {
        Some(_) => Ok(()),
        None => Err(ApiError::invalid(format!("The Kinesis stream {} does not exist.", source.stream_arn))),
    }
}
