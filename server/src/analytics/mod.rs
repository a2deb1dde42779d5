//! Kinesis Data Analytics for SQL applications (awsJson1_1, `POST /` with `X-Amz-Target:
//! KinesisAnalytics_20150814.<Operation>`): applications whose SQL (framelog-analytics) reads a
//! KDS stream or a delivery stream and writes in-application streams to KDS streams, delivery
//! streams or a Lambda-shaped webhook. See docs/analytics.md.

mod api;
mod context;
mod discover;
mod feed;
mod models;
mod outputs;
#[cfg(test)]
mod parallelism_tests;
mod preprocess;
mod processing_api;
mod reference;
mod runner;
mod schema;
mod spec;
pub mod supervisor;
mod tags;
#[cfg(test)]
mod tests;
mod video_input;
#[cfg(test)]
mod video_tests;

use std::sync::LazyLock;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde_json::Value;

pub use context::AnalyticsCtx;

use crate::background::Background;
use crate::document::Document;
use crate::error::{ApiError, ErrorType};
use crate::kds::{EnvelopeError, answer, envelope, error_answer, xml_error};
use crate::validation::Table;

pub const TARGET_PREFIX: &str = "KinesisAnalytics_20150814.";

type Operation = fn(&AnalyticsCtx, Document) -> Result<Value, ApiError>;

static CONSTRAINTS: LazyLock<Table> = LazyLock::new(|| Table::from_json(include_str!("constraints.json")));

fn operation(name: &str) -> Option<Operation> {
    Some(match name {
        "CreateApplication" => api::create_application,
        "DescribeApplication" => api::describe_application,
        "ListApplications" => api::list_applications,
        "DeleteApplication" => api::delete_application,
        "StartApplication" => api::start_application,
        "StopApplication" => api::stop_application,
        "UpdateApplication" => api::update_application,
        "AddApplicationInput" => api::add_input,
        "AddApplicationOutput" => api::add_output,
        "DeleteApplicationOutput" => api::delete_output,
        "AddApplicationReferenceDataSource" => api::add_reference_data_source,
        "AddApplicationInputProcessingConfiguration" => processing_api::add_input_processing_configuration,
        "DeleteApplicationInputProcessingConfiguration" => processing_api::delete_input_processing_configuration,
        "DiscoverInputSchema" => discover::discover_input_schema,
        "TagResource" => tags::tag_resource,
        "UntagResource" => tags::untag_resource,
        "ListTagsForResource" => tags::list_tags_for_resource,
        _ => return None,
    })
}

/// Operations of the model this server does not offer: they answer UnsupportedOperation, not
/// UnknownOperation, so clients see the service knows them.
const NOT_OFFERED: &[&str] = &[
    "AddApplicationCloudWatchLoggingOption",
    "DeleteApplicationCloudWatchLoggingOption",
    "DeleteApplicationReferenceDataSource",
];

/// Whether a request's `X-Amz-Target` names a Kinesis Data Analytics operation (or tries to).
pub fn is_analytics(headers: &HeaderMap) -> bool {
    headers.get("x-amz-target").and_then(|v| v.to_str().ok()).is_some_and(|t| t.starts_with(TARGET_PREFIX))
}

/// Runs one operation: the model's constraints first, then the handler.
pub fn call(ctx: &AnalyticsCtx, name: &str, document: Document) -> Result<Value, ApiError> {
    if NOT_OFFERED.contains(&name) {
        return Err(ApiError::new(ErrorType::UnsupportedOperation, format!("{name} is not supported by this server.")));
    }
    let op = operation(name).ok_or_else(|| ApiError::bare(ErrorType::UnknownOperation))?;
    CONSTRAINTS.check(name, document.fields())?;
    let answer = op(ctx, document)?;
    // Definitions and states change through most calls; the supervisor looks at once.
    let _ = ctx.changes.send(());
    Ok(answer)
}

/// Handles one request end to end, on a blocking thread (engine calls and code checks block).
pub async fn handle(
    ctx: AnalyticsCtx,
    background: Background,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let known = |name: &str| (operation(name).is_some() || NOT_OFFERED.contains(&name)).then_some(());
    let result = match envelope(&method, &headers, content_type, &body, TARGET_PREFIX, known) {
        Ok((name, (), document)) => background
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
