//! The SDK's one error type.

/// Everything a call can fail with, keeping its cause.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The service answered with an AWS error (`x-amzn-ErrorType` / `__type`) and a status.
    #[error("{error_type} ({status}): {message}")]
    Service { status: u16, error_type: String, message: String },
    /// The connection failed or broke before an answer.
    #[error("transport: {0}")]
    Transport(String),
    /// The service answered something this client cannot read.
    #[error("unexpected response: {0}")]
    Protocol(String),
    /// Request signing failed (bad credentials or request parts).
    #[error("signing: {0}")]
    Signing(String),
    /// A media stream (MKV) could not be parsed.
    #[error("media: {0}")]
    Media(#[from] framelog_media::MediaError),
    /// The caller gave something the SDK cannot send (e.g. a frame for an unknown track).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The record producer gave a record up: the service refused it for good, or it was still
    /// failing when its time to live ran out. `error_code` is the last AWS error type.
    #[error("record not stored: {error_code}: {message}")]
    RecordFailed { error_code: String, message: String },
    /// The producer's upload task ended (after a fatal error, reported by `finish`).
    #[error("the producer has stopped: {0}")]
    ProducerStopped(String),
}

impl Error {
    /// The AWS error type name, when the service sent one.
    pub fn error_type(&self) -> Option<&str> {
        match self {
            Error::Service { error_type, .. } => Some(error_type),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
