//! Sending a stored fragment as a GetMedia / GetMediaForFragmentList chunk without building the
//! chunk in memory: the chunk's head and tail are written around the stored body, and a body in
//! a segment file is sent in pieces read from the file, so a reader holds at most a piece (and
//! the response's queued chunks) per connection instead of whole fragments.

use std::sync::Arc;

use axum::body::Bytes;
use framelog_media::{BODY_HEAD_BYTES, FragmentRecord, LiveTags, chunk_layout};
use framelog_store::{Payload, PayloadFile};

use super::{ChunkSender, send_chunk};

/// Bytes read from a segment file per piece sent.
const PIECE_BYTES: usize = 1 << 20;

/// Sends fragment `number` with its stored body; false when the client is gone or a read failed
/// (the response then ends early, as when a fragment expires mid-stream).
pub async fn send_fragment(
    chunks: &ChunkSender,
    number: &str,
    record: &FragmentRecord,
    payload: Payload,
    live: Option<&LiveTags>,
) -> bool {
    match payload {
        Payload::Loaded(body) => send_loaded(chunks, number, record, body, live).await,
        Payload::InFile(file) => send_from_file(chunks, number, record, Arc::new(file), live).await,
    }
}

/// The chunk around a body in memory, the body sent as it is (no copy into the chunk).
async fn send_loaded(
    chunks: &ChunkSender,
    number: &str,
    record: &FragmentRecord,
    body: Vec<u8>,
    live: Option<&LiveTags>,
) -> bool {
    let layout = chunk_layout(number, record, &body, body.len(), live);
    let body = Bytes::from(body).slice(layout.body_from..);
    for piece in [Bytes::from(layout.prefix), body, Bytes::from(layout.suffix)] {
        if !piece.is_empty() && !send_chunk(chunks, piece).await {
            return false;
        }
    }
    true
}

async fn send_from_file(
    chunks: &ChunkSender,
    number: &str,
    record: &FragmentRecord,
    file: Arc<PayloadFile>,
    live: Option<&LiveTags>,
) -> bool {
    let Some(head) = read_piece(&file, 0, BODY_HEAD_BYTES).await else { return false };
    let len_bytes = file.len_bytes();
    let layout = chunk_layout(number, record, &head, len_bytes as usize, live);
    if layout.body_from == 0 && (head.len() as u64) < len_bytes {
        // No Timecode in the head (elements such as a large Void before it): the layout needs
        // the whole body to find it, as the loaded path has.
        let Some(body) = read_piece(&file, 0, len_bytes as usize).await else { return false };
        return send_loaded(chunks, number, record, body, live).await;
    }
    if !send_chunk(chunks, Bytes::from(layout.prefix)).await {
        return false;
    }
    let mut at = layout.body_from as u64;
    while at < len_bytes {
        let Some(piece) = read_piece(&file, at, PIECE_BYTES).await else { return false };
        at += piece.len() as u64;
        if !send_chunk(chunks, Bytes::from(piece)).await {
            return false;
        }
    }
    layout.suffix.is_empty() || send_chunk(chunks, Bytes::from(layout.suffix)).await
}

/// A positioned read off the async runtime's threads.
async fn read_piece(file: &Arc<PayloadFile>, from: u64, max_bytes: usize) -> Option<Vec<u8>> {
    let file = file.clone();
    match tokio::task::spawn_blocking(move || file.read(from, max_bytes)).await {
        Ok(Ok(piece)) if !piece.is_empty() || max_bytes == 0 => Some(piece),
        Ok(Ok(_)) => None,
        Ok(Err(error)) => {
            tracing::warn!(%error, "a stored fragment could not be read");
            None
        }
        Err(_) => None,
    }
}
