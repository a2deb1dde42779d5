//! Kinesis Video Streams: the control plane (rest-json operations, dispatched by
//! `crate::rest_json`), PutMedia, GetMedia, the archive reads and playback. A missing stream is a
//! 404, which producer SDKs rely on to fall through to CreateStream.

mod ack;
pub mod archive;
mod chunk_stream;
mod context;
mod fragment_number;
pub mod get_media;
pub mod live_edge;
pub mod playback;
pub mod put_media;
mod resolution;
mod stream_metrics;
mod streams;
#[cfg(test)]
pub(crate) mod tests;
mod video_stream;
pub mod webrtc;

pub use crate::streamed::{ChunkSender, send_chunk, streamed_response};
pub use context::{KvsCtx, KvsSettings};
pub use video_stream::{
    VIDEO_SHARD, VideoStream, engine_name as video_engine_name, public_name as video_public_name, tags_object,
};

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
    ("getWHEPSessionURL", webrtc::get_whep_session_url),
];
