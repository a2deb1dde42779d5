//! The Kinesis Video Streams control plane (rest-json): `POST /<lowerCamelName>` with a JSON body.
//! Errors are `{"Message": ...}` with the type in the `x-amzn-ErrorType` header, and a missing
//! stream is a 404, which producer SDKs rely on to fall through to CreateStream.

mod ack;
pub mod archive;
mod context;
mod fragment_number;
pub mod get_media;
pub mod playback;
pub mod put_media;
mod streams;
#[cfg(test)]
mod tests;

use std::convert::Infallible;

use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

pub(crate) use context::require_archive;
pub use context::{KvsCtx, KvsSettings};

use crate::body::Body;
use crate::error::{ApiError, Protocol};
use crate::request_id::with_request_id;

type Operation = fn(&KvsCtx, Body) -> Result<Value, ApiError>;

fn operation(path: &str) -> Option<Operation> {
    Some(match path {
        "createStream" => streams::create_stream,
        "describeStream" => streams::describe_stream,
        "listStreams" => streams::list_streams,
        "deleteStream" => streams::delete_stream,
        "updateStream" => streams::update_stream,
        "updateDataRetention" => streams::update_data_retention,
        "getDataEndpoint" => streams::get_data_endpoint,
        "tagStream" => streams::tag_stream,
        "untagStream" => streams::untag_stream,
        "listTagsForStream" => streams::list_tags_for_stream,
        "TagResource" => streams::tag_resource,
        "UntagResource" => streams::untag_resource,
        "ListTagsForResource" => streams::list_tags_for_resource,
        "listFragments" => archive::list_fragments,
        "getHLSStreamingSessionURL" => playback::session::get_hls_streaming_session_url,
        "getDASHStreamingSessionURL" => playback::session::get_dash_streaming_session_url,
        "createConsumer" => crate::consumers::api::create_consumer,
        "describeConsumer" => crate::consumers::api::describe_consumer,
        "listConsumers" => crate::consumers::api::list_consumers,
        "updateConsumer" => crate::consumers::api::update_consumer,
        "deleteConsumer" => crate::consumers::api::delete_consumer,
        "listConsumerDeadLetters" => crate::consumers::api::list_consumer_dead_letters,
        "updateNotificationConfiguration" => crate::consumers::stream_hooks::update_notification_configuration,
        "describeNotificationConfiguration" => crate::consumers::stream_hooks::describe_notification_configuration,
        "updateImageGenerationConfiguration" => crate::consumers::stream_hooks::update_image_generation_configuration,
        "describeImageGenerationConfiguration" => {
            crate::consumers::stream_hooks::describe_image_generation_configuration
        }
        _ => return None,
    })
}

/// A fragment number's sequence number in `handle`'s stream (ResourceNotFound when not ours).
pub(crate) fn fragment_seq(handle: &framelog_store::StreamHandle, number: &str) -> Result<u64, ApiError> {
    fragment_number::decode(number, handle.meta().created_ms).ok_or_else(|| {
        ApiError::new(crate::error::ErrorType::ResourceNotFound, format!("Fragment {number} was not found."))
    })
}

/// The fragment number of `seq` in `handle`'s stream.
pub(crate) fn fragment_number_of(handle: &framelog_store::StreamHandle, seq: u64) -> String {
    fragment_number::encode(handle.meta().created_ms, seq)
}

/// The stream's name as clients know it.
pub(crate) fn public_stream_name(handle: &framelog_store::StreamHandle) -> String {
    let name = handle.meta().name;
    context::public_name(&name).unwrap_or(&name).to_string()
}

/// Handles `POST /<op>` for the KVS control plane.
pub async fn handle(ctx: KvsCtx, op: String, body: Bytes) -> Response {
    let Some(run) = operation(&op) else {
        // What KVS answers for a path it does not know (including wrong capitalisation).
        let body = serde_json::json!({"Output": {"__type": "com.amazon.coral.service#UnknownOperationException"}, "Version": "1.0"});
        return with_request_id(json_response(StatusCode::NOT_FOUND, &body));
    };
    let result = match parse_document(&body) {
        Ok(document) => tokio::task::spawn_blocking(move || run(&ctx, document))
            .await
            .unwrap_or_else(|join| Err(ApiError::internal(&join))),
        Err(error) => Err(error),
    };
    let response = match result {
        Ok(value) => json_response(StatusCode::OK, &value),
        Err(error) => error_response(&error),
    };
    with_request_id(response)
}

/// A request's JSON document; an empty body is an empty document.
pub fn parse_document(body: &[u8]) -> Result<Body, ApiError> {
    if body.is_empty() {
        return Body::parse(Value::Object(Default::default()));
    }
    let value = serde_json::from_slice::<Value>(body)
        .map_err(|e| ApiError::serialization(format!("Malformed JSON body: {e}")))?;
    Body::parse(value)
}

/// Where a streamed response's producer task sends its chunks.
pub type ChunkSender = mpsc::Sender<Result<Bytes, Infallible>>;

/// How long a streamed response may wait for its client to take the next chunk. A client that
/// stops reading (but keeps its connection) would otherwise hold its task, and its upload or
/// reader, forever.
const CLIENT_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Queues one chunk of a streamed response; false when the client is gone or stopped reading.
pub async fn send_chunk(chunks: &ChunkSender, chunk: Bytes) -> bool {
    matches!(tokio::time::timeout(CLIENT_READ_TIMEOUT, chunks.send(Ok(chunk))).await, Ok(Ok(())))
}

/// A 200 whose body is whatever is sent on the returned channel, until every sender is dropped.
pub fn streamed_response(content_type: &'static str, queued_chunks: usize) -> (ChunkSender, Response) {
    let (chunks, receiver) = mpsc::channel(queued_chunks);
    let response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        axum::body::Body::from_stream(ReceiverStream::new(receiver)),
    );
    (chunks, with_request_id(response.into_response()))
}

pub fn error_response(error: &ApiError) -> Response {
    let status = StatusCode::from_u16(error.kind.status(Protocol::Kvs)).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = json_response(status, &error.kvs_body());
    let kind = error.kind.name();
    if let Ok(value) =
        HeaderValue::from_str(&format!("{kind}:http://internal.amazon.com/coral/com.amazon.kinesisvideo.v20170930/"))
    {
        // Both spellings: the docs name x-amz-ErrorType, the SDKs read x-amzn-ErrorType.
        response.headers_mut().insert("x-amzn-ErrorType", value.clone());
        response.headers_mut().insert("x-amz-ErrorType", value);
    }
    response
}

pub(crate) fn json_response(status: StatusCode, value: &Value) -> Response {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], bytes).into_response()
}
