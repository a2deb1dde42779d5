//! Reference data: a table an application joins against, read from an object in a bucket the
//! server knows (`[buckets.NAME]`, or the data dir's `buckets/NAME/` directory) when the
//! application starts, and checked readable when it is added.

use framelog_analytics::arrow::record_batch::RecordBatch;
use framelog_analytics::read_reference;

use super::context::AnalyticsCtx;
use super::schema::input_schema;
use super::spec::ReferenceSpec;
use crate::error::ApiError;

/// AWS's limit on a reference object.
const MAX_REFERENCE_BYTES: usize = 1 << 30;

/// The bucket an S3 ARN (`arn:aws:s3:::NAME`) names.
pub fn bucket_name(arn: &str) -> Result<&str, ApiError> {
    arn.strip_prefix("arn:aws:s3:::")
        .filter(|name| !name.is_empty())
        .ok_or_else(|| ApiError::invalid(format!("{arn} is not an S3 bucket ARN.")))
}

/// Reads the reference table's rows; rows that do not fit its schema are left out and counted.
pub async fn load(ctx: &AnalyticsCtx, reference: &ReferenceSpec) -> Result<(RecordBatch, usize), ApiError> {
    let sink = ctx.firehose.buckets.sink(bucket_name(&reference.bucket_arn)?).map_err(ApiError::invalid)?;
    let bytes = sink.get(&reference.file_key).await.map_err(|e| {
        ApiError::invalid(format!(
            "Reference data {} could not be read: {e}. Please check the bucket and the file exist.",
            reference.file_key
        ))
    })?;
    if bytes.len() > MAX_REFERENCE_BYTES {
        return Err(ApiError::invalid(format!("Reference data {} is larger than 1 GiB.", reference.file_key)));
    }
    let (batch, rejected) = read_reference(&input_schema(&reference.schema)?, &bytes);
    Ok((batch, rejected.len()))
}

/// AddApplicationReferenceDataSource's check that the object can be read.
pub fn check_readable(ctx: &AnalyticsCtx, reference: &ReferenceSpec) -> Result<(), ApiError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|e| ApiError::internal(&e))?;
    runtime.block_on(load(ctx, reference)).map(drop)
}
