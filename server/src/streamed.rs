//! Streamed responses (GetMedia, archive reads, SubscribeToShard): a producer task sends chunks
//! on a bounded channel that becomes the response body.

use std::convert::Infallible;

use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

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
