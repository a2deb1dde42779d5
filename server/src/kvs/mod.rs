//! Kinesis Video Streams: the control plane (rest-json operations, dispatched by
//! `crate::rest_json`), PutMedia, GetMedia, the archive reads and playback. A missing stream is a
//! 404, which producer SDKs rely on to fall through to CreateStream.

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
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

pub(crate) use context::require_archive;
pub use context::{KvsCtx, KvsSettings};

use crate::error::ApiError;
use crate::rest_json::Operation;
pub(crate) use crate::rest_json::{error_response, parse_document};

/// The KVS control-plane operations, by rest-json path.
pub const OPERATIONS: &[(&str, Operation<KvsCtx>)] = &[
    ("createStream", streams::create_stream),
    ("describeStream", streams::describe_stream),
    ("listStreams", streams::list_streams),
    ("deleteStream", streams::delete_stream),
    ("updateStream", streams::update_stream),
    ("updateDataRetention", streams::update_data_retention),
    ("getDataEndpoint", streams::get_data_endpoint),
    ("tagStream", streams::tag_stream),
    ("untagStream", streams::untag_stream),
    ("listTagsForStream", streams::list_tags_for_stream),
    ("TagResource", streams::tag_resource),
    ("UntagResource", streams::untag_resource),
    ("ListTagsForResource", streams::list_tags_for_resource),
    ("listFragments", archive::list_fragments),
    ("getHLSStreamingSessionURL", playback::session::get_hls_streaming_session_url),
    ("getDASHStreamingSessionURL", playback::session::get_dash_streaming_session_url),
];

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
    (chunks, response.into_response())
}
