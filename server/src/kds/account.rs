//! Account-level operations: DescribeLimits, DescribeAccountSettings and UpdateAccountSettings,
//! and the answer for the operations of AWS's model this server does not implement.

use serde_json::{Value, json};

use super::context::{KdsCtx, open_shard_count};
use super::stream_settings::is_on_demand;
use crate::document::Document;
use crate::error::ApiError;

/// AWS's default quota of on-demand streams per account.
const ON_DEMAND_STREAM_LIMIT: usize = 50;

pub fn describe_limits(ctx: &KdsCtx, _body: Document) -> Result<Value, ApiError> {
    let streams = ctx.data_streams();
    let open: usize = streams.iter().map(open_shard_count).sum();
    Ok(json!({
        "ShardLimit": ctx.settings.shard_limit,
        "OpenShardCount": open,
        "OnDemandStreamCount": streams.iter().filter(|m| is_on_demand(m)).count(),
        "OnDemandStreamCountLimit": ON_DEMAND_STREAM_LIMIT,
        "ChannelCount": 0,
        "ChannelCountLimit": 0,
    }))
}

/// A self-hosted server bills nothing, so it has no minimum throughput commitment.
pub fn describe_account_settings(_ctx: &KdsCtx, _body: Document) -> Result<Value, ApiError> {
    Ok(json!({"MinimumThroughputBillingCommitment": {"Status": "DISABLED"}}))
}

pub fn update_account_settings(_ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let commitment = body.object("MinimumThroughputBillingCommitment")?;
    let status = match &commitment {
        Some(c) => c.str("Status")?,
        None => None,
    };
    if status.as_deref() == Some("ENABLED") {
        return Err(ApiError::invalid(
            "Framelog bills nothing, so a minimum throughput billing commitment cannot be enabled.",
        ));
    }
    Ok(json!({"MinimumThroughputBillingCommitment": {"Status": "DISABLED"}}))
}

/// Operations of AWS's current model that this server does not implement (docs/kds.md lists
/// them): a typed error naming the operation, never UnknownOperationException.
pub const NOT_IMPLEMENTED: &[&str] = &[
    "CreateQueue",
    "DeleteQueue",
    "DescribeQueue",
    "ListQueues",
    "UpdateQueue",
    "ReceiveQueueRecords",
    "AcknowledgeQueueRecords",
    "UpdateQueueRecordsVisibility",
    "ReceiveDeadLetterQueueRecords",
    "AcknowledgeDeadLetterQueueRecords",
    "RestoreDeadLetterQueueRecords",
    "UpdateDeadLetterQueueRecordsVisibility",
    "CreateChannel",
    "DeleteChannel",
    "DescribeChannel",
    "ListChannels",
    "UpdateChannel",
];

pub fn not_implemented(operation: &str) -> ApiError {
    ApiError::invalid(format!(
        "{operation} is not implemented by this server (Framelog); see docs/kds.md for the operations it serves."
    ))
}
