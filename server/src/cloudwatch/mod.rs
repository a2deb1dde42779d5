//! CloudWatch's metrics of the Kinesis services Framelog serves: every service records its
//! samples in the `Recorder`; `/metrics` exports them to Prometheus; one-minute rollups are
//! stored in the engine for 15 days; and `aws cloudwatch get-metric-statistics`,
//! `get-metric-data` and `list-metrics` read them back for `AWS/Kinesis`, `AWS/KinesisVideo`
//! and `AWS/Firehose`.

mod api;
pub mod catalogue;
mod exported;
mod query;
mod recorder;
pub mod requests;
pub mod rollups;
mod series;
#[cfg(test)]
mod tests;
mod wire;

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;

pub use catalogue::{Metric, Namespace, firehose, kinesis, video};
pub use recorder::{OpenGuard, Recorder};
pub use wire::{Wire, refusal};

use crate::background::Background;
use crate::error::{ApiError, ErrorType};

/// A CloudWatch request names a few metrics; anything larger is not one.
const MAX_REQUEST_BYTES: usize = 1 << 20;
/// A query reading 15 days of rollups gets this long before it is answered with a fault.
const QUERY_DEADLINE: Duration = Duration::from_secs(30);

/// `POST /service/GraniteServiceVersion20100801/operation/{Op}` (RPC v2 CBOR).
pub async fn handle_rpc_v2(
    State(recorder): State<Recorder>,
    State(background): State<Background>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(recorder, background, uri.path(), headers, body).await
}

/// Either protocol: decode, run the operation off the runtime within the deadline, answer.
pub async fn handle(
    recorder: Recorder,
    background: Background,
    path: &str,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let wire = Wire::of(path, &headers).unwrap_or(Wire::Json);
    let operation = wire.operation(path, &headers).to_string();
    if body.len() > MAX_REQUEST_BYTES {
        let message = format!("The request body is larger than {MAX_REQUEST_BYTES} bytes.");
        return wire.error(&ApiError::new(ErrorType::InvalidParameterValue, message));
    }
    let document = match wire.decode(&body) {
        Ok(document) => document,
        Err(error) => return wire.error(&error),
    };
    let work = background.spawn_blocking(move || api::dispatch(&recorder, &operation, document));
    match tokio::time::timeout(QUERY_DEADLINE, work).await {
        Ok(Ok(Ok(answer))) => wire.answer(&answer),
        Ok(Ok(Err(error))) => wire.error(&error),
        Ok(Err(join)) => wire.error(&ApiError::internal(&join)),
        Err(_) => wire.error(&ApiError::new(
            ErrorType::InternalFailure,
            format!(
                "The query did not finish within {} seconds; ask for a shorter time range.",
                QUERY_DEADLINE.as_secs()
            ),
        )),
    }
}

/// Whether a `POST /` is CloudWatch's awsJson1_0.
pub fn is_cloudwatch(headers: &HeaderMap) -> bool {
    Wire::of("/", headers).is_some()
}
