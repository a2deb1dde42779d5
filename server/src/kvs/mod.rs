//! Kinesis Video Streams: the control plane (rest-json operations, dispatched by
//! `crate::rest_json`), PutMedia, GetMedia, the archive reads and playback. A missing stream is a
//! 404, which producer SDKs rely on to fall through to CreateStream.

mod ack;
pub mod archive;
mod chunk_stream;
mod context;
mod fragment_number;
pub mod get_media;
pub mod playback;
pub mod put_media;
mod resolution;
mod streams;
#[cfg(test)]
mod tests;
mod video_stream;

use std::convert::Infallible;

use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

pub use context::{KvsCtx, KvsSettings};
pub use video_stream::{VIDEO_SHARD, VideoStream};

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
