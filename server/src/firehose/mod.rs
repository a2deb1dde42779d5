//! Amazon Data Firehose (awsJson1_1, `POST /` with `X-Amz-Target: Firehose_20150804.<Operation>`):
//! delivery streams that take records (PutRecord, PutRecordBatch) or read a KDS stream, keep
//! them in the engine until delivered, and write them in buffers to S3-compatible buckets or
//! directories. See docs/firehose.md.

mod api;
mod batch_input;
mod buckets;
mod buffer;
mod compression;
mod context;
mod format_conversion;
mod http_endpoint;
mod in_flight;
mod kinesis_source;
pub mod metrics;
mod object_key;
mod processing;
mod quotas;
mod records;
mod runner;
mod spec;
pub mod supervisor;
mod tags;
#[cfg(test)]
mod tests;
mod timestamp_pattern;

use std::sync::LazyLock;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde_json::Value;

pub use buckets::BucketFile;
pub use buckets::Buckets;
pub use context::FirehoseCtx;
pub use format_conversion::{ConversionPlan, GlueTableFile, GlueTables};
pub use processing::lambda::LambdaFunctionFile;
pub use quotas::{FirehoseConfig, PutQuotas};
pub use tags::parse_tags;

use crate::background::Background;
use crate::document::Document;
use crate::error::ApiError;
use crate::kds::{EnvelopeError, answer, envelope, error_answer, json_answer, plain_json_call, xml_error};
use crate::validation::Table;

pub const TARGET_PREFIX: &str = "Firehose_20150804.";

type Operation = fn(&FirehoseCtx, Document) -> Result<Value, ApiError>;

static CONSTRAINTS: LazyLock<Table> = LazyLock::new(|| Table::from_json(include_str!("constraints.json")));

fn operation(name: &str) -> Option<Operation> {
    Some(match name {
        "CreateDeliveryStream" => api::create_delivery_stream,
        "DescribeDeliveryStream" => api::describe_delivery_stream,
        "ListDeliveryStreams" => api::list_delivery_streams,
        "DeleteDeliveryStream" => api::delete_delivery_stream,
        "UpdateDestination" => api::update_destination,
        "StartDeliveryStreamEncryption" => api::start_encryption,
        "StopDeliveryStreamEncryption" => api::stop_encryption,
        "PutRecord" => records::put_record,
        "PutRecordBatch" => records::put_record_batch,
        "TagDeliveryStream" => tags::tag_delivery_stream,
        "UntagDeliveryStream" => tags::untag_delivery_stream,
        "ListTagsForDeliveryStream" => tags::list_tags,
        _ => return None,
    })
}

/// Whether a request's `X-Amz-Target` names a Firehose operation (or tries to).
pub fn is_firehose(headers: &HeaderMap) -> bool {
    headers.get("x-amz-target").and_then(|v| v.to_str().ok()).is_some_and(|t| t.starts_with(TARGET_PREFIX))
}

/// Runs one operation: the model's constraints first, then the handler.
pub fn call(ctx: &FirehoseCtx, name: &str, document: Document) -> Result<Value, ApiError> {
    let op = operation(name).ok_or_else(|| ApiError::bare(crate::error::ErrorType::UnknownOperation))?;
    CONSTRAINTS.check(name, document.fields())?;
    let changes_definitions = matches!(name, "CreateDeliveryStream" | "UpdateDestination" | "DeleteDeliveryStream");
    let answer = op(ctx, document)?;
    if changes_definitions {
        // The supervisor looks at once rather than at its next round.
        let _ = ctx.changes.send(());
    }
    Ok(answer)
}

/// Handles one Firehose request end to end, on a blocking thread (engine calls block).
pub async fn handle(
    ctx: FirehoseCtx,
    background: Background,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if plain_json_call(&method, &headers, content_type, PUT_RECORD_BATCH) {
        let read = background.spawn_blocking(move || match batch_input::read(&CONSTRAINTS, &body) {
            Some(batch) => Ok(records::store_batch(&ctx, batch)),
            None => Err(Box::new((ctx, body))),
        });
        match read.await {
            Ok(Ok(Ok(stored))) => return json_answer(StatusCode::OK, &stored),
            Ok(Ok(Err(error))) => return error_answer(&error, content_type),
            Ok(Err(unread)) => {
                let (ctx, body) = *unread;
                return generic(ctx, background, method, headers, body).await;
            }
            Err(join) => return error_answer(&ApiError::internal(&join), content_type),
        }
    }
    generic(ctx, background, method, headers, body).await
}

/// The full target of the call batch_input.rs reads directly.
const PUT_RECORD_BATCH: &str = "Firehose_20150804.PutRecordBatch";

/// Any request, through the envelope's checks and the model's constraints.
async fn generic(
    ctx: FirehoseCtx,
    background: Background,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let result = match envelope(&method, &headers, content_type, &body, TARGET_PREFIX, operation) {
        Ok((name, _, document)) => background
            .spawn_blocking(move || call(&ctx, &name, document))
            .await
            .unwrap_or_else(|join| Err(ApiError::internal(&join))),
        Err(EnvelopeError::Xml(status, name, message)) => return xml_error(status, name, message),
        Err(EnvelopeError::Api(error)) => Err(error),
    };
    match result {
        Ok(document) => answer(StatusCode::OK, &document, false),
        Err(error) => error_answer(&error, content_type),
    }
}
