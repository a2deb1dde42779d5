//! Still images from stored video, for GetImages and the consumer hooks: H.264/H.265
//! access units decoded by GStreamer into RGB frames, resized and encoded as JPEG or PNG by the
//! `image` crate, on a bounded pool of worker threads that never borrows the async runtime's.
//! The server decodes in worker processes with a memory ceiling (`Isolation::Process`,
//! `serve_decode_worker`), so a decoder crash costs one job, not the server.
//!
//! It also transcodes H.265 to H.264 for browsers that cannot play H.265 (`TranscodePool`): a
//! stored fragment at a time, or a live stream frame by frame, each in a worker process.
//!
//! The crate knows nothing of HTTP or the store: callers hand it a codec configuration, the
//! frames in decode order and the presentation times they want pictures of.

mod decode;
mod encode;
mod error;
mod fragment;
mod fragment_transcode;
mod isolated;
mod job;
mod pool;
pub mod protocol;
#[cfg(any(test, feature = "test-media"))]
pub mod test_media;
mod transcode;
mod transcode_pool;
pub mod transcode_protocol;
mod transcode_worker;
mod worker;

pub use decode::{DecodedFrame, EncodedFrame, FrameRequest, Pixels, decode_frames};
pub use encode::{ImageFormat, encode_image, output_size};
pub use error::ImagingError;
pub use fragment::{Picture, fragment_request, pictures};
pub use fragment_transcode::{StoredFragment, h264_tracks_body, hevc_track, refers_to_previous};
pub use isolated::WorkerCommand;
pub use job::{PictureJob, Pictures};
pub use pool::{DecodePool, Isolation};
pub use transcode::{TranscodeStart, TranscodedFrame};
pub use transcode_pool::{OnOutput, Transcode, TranscodePool};
pub use transcode_protocol::FromWorker;
pub use transcode_worker::serve_transcode_worker;
pub use worker::{WorkerLimits, serve_decode_worker};
