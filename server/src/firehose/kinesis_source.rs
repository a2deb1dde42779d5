//! KinesisStreamAsSource: a delivery stream that reads a Framelog KDS stream instead of taking
//! PutRecord calls. The records are not copied: delivery reads the KDS stream's shards and keeps
//! its checkpoint per shard.

use framelog_store::{StreamHandle, StreamKind};

use super::context::FirehoseCtx;
use super::spec::KinesisSource;
use crate::error::ApiError;

/// The KDS stream an ARN names, when it exists.
pub fn source_stream(ctx: &FirehoseCtx, source: &KinesisSource) -> Option<StreamHandle> {
    let (_, name) = source.stream_arn.rsplit_once(":stream/")?;
    ctx.engine.stream(name).ok().filter(|handle| handle.meta().kind == StreamKind::Data)
}

/// Refuses a source that names no KDS stream here.
pub fn check(ctx: &FirehoseCtx, source: &KinesisSource) -> Result<(), ApiError> {
    match source_stream(ctx, source) {
        Some(_) => Ok(()),
        None => Err(ApiError::invalid(format!("The Kinesis stream {} does not exist.", source.stream_arn))),
    }
}
