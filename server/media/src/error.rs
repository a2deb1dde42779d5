//! Parse errors. Each carries the byte offset in the input and the element path, so a bad upload
//! can be diagnosed from the log line alone.

/// Why a Matroska stream was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    #[error("invalid EBML variable-length integer at byte {offset}")]
    BadVint { offset: u64 },
    #[error("element {path} at byte {offset} is malformed: {reason}")]
    Malformed { offset: u64, path: String, reason: &'static str },
    #[error("element {path} at byte {offset} is {size_bytes} bytes, over the limit of {limit_bytes}")]
    TooLarge { offset: u64, path: String, size_bytes: u64, limit_bytes: u64 },
    #[error("unexpected element 0x{id:X} at byte {offset} in {path}")]
    Unexpected { offset: u64, path: String, id: u32 },
    #[error("DocType {doc_type:?} is not Matroska or WebM")]
    DocType { doc_type: String },
    /// Packaging (HLS/DASH/clips) cannot carry this codec.
    #[error("track {track} has codec {codec_id}, which cannot be packaged as MP4")]
    UnsupportedCodec { track: u64, codec_id: String },
    /// The codec configuration a packager needs is missing or unreadable.
    #[error("track {track} has missing or invalid codec private data: {reason}")]
    CodecPrivateData { track: u64, reason: &'static str },
}
