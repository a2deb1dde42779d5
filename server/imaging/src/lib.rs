//! Still images from stored video, for GetImages and the consumer hooks: H.264/H.265
//! access units decoded by GStreamer into RGB frames, resized and encoded as JPEG or PNG by the
//! `image` crate, on a bounded pool of worker threads that never borrows the async runtime's.
//!
//! The crate knows nothing of HTTP or the store: callers hand it a codec configuration, the
//! frames in decode order and the presentation times they want pictures of.

mod decode;
mod encode;
mod error;
mod fragment;
mod pool;

pub use decode::{DecodedFrame, EncodedFrame, FrameRequest, Pixels, decode_frames};
pub use encode::{ImageFormat, encode_image, output_size};
pub use error::ImagingError;
pub use fragment::{Picture, fragment_request, pictures};
pub use pool::DecodePool;
