//! Ack error ids: the ones the server sends, and one classification of every id that producers
//! (the SDK and the edge agent) act on.

/// An upload refused by the server, with KVS's numeric id and string code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckError {
    MaxFragmentSize,
    MaxFragmentDuration,
    TimecodeLesserThanPrevious,
    InvalidMkv,
    InvalidProducerTimestamp,
    MetadataLimit,
    TrackNumberMismatch,
    FramesMissingForTrack,
    TooManyTracks,
    StreamDeleted,
    Internal,
}

impl AckError {
    pub fn id(self) -> u32 {
        match self {
            AckError::MaxFragmentSize => 4001,
            AckError::MaxFragmentDuration => 4002,
            AckError::TimecodeLesserThanPrevious => 4004,
            AckError::InvalidMkv => 4006,
            AckError::InvalidProducerTimestamp => 4007,
            AckError::MetadataLimit => 4009,
            AckError::TrackNumberMismatch => 4010,
            AckError::FramesMissingForTrack => 4011,
            AckError::TooManyTracks => 4012,
            AckError::StreamDeleted => 4507,
            AckError::Internal => 5000,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            AckError::MaxFragmentSize => "MAX_FRAGMENT_SIZE_REACHED",
            AckError::MaxFragmentDuration => "MAX_FRAGMENT_DURATION_REACHED",
            AckError::TimecodeLesserThanPrevious => "FRAGMENT_TIMECODE_LESSER_THAN_PREVIOUS",
            AckError::InvalidMkv => "INVALID_MKV_DATA",
            AckError::InvalidProducerTimestamp => "INVALID_PRODUCER_TIMESTAMP",
            AckError::MetadataLimit => "FRAGMENT_METADATA_LIMIT_REACHED",
            AckError::TrackNumberMismatch => "TRACK_NUMBER_MISMATCH",
            AckError::FramesMissingForTrack => "FRAMES_MISSING_FOR_TRACK",
            AckError::TooManyTracks => "MORE_THAN_ALLOWED_TRACKS_FOUND",
            AckError::StreamDeleted => "STREAM_DELETED",
            AckError::Internal => "INTERNAL_ERROR",
        }
    }
}

/// What a producer does about an ack error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckErrorClass {
    /// The server or the connection failed, not the fragment: reconnect with backoff and send
    /// the same fragment again.
    Retry,
    /// The fragment's content was refused: sending it again cannot help. Set it aside and go on
    /// with the next one on a new connection.
    RejectFragment,
    /// The stream cannot take media any more (deleted, not active): stop uploading to it.
    EndUpload,
}

/// The one classification of ack error ids (docs/spec/kvs.md#putmedia-ack-errors).
pub fn classify(error_id: u32) -> AckErrorClass {
    match error_id {
        // Read error, connection too long, encryption key (KMS) errors, internal and archival
        // errors: all about the service or the key, which can recover; the media is fine.
        4000 | 4003 | 4500..=4506 | 5000..=5999 => AckErrorClass::Retry,
        // Stream not active, stream deleted.
        4008 | 4507 => AckErrorClass::EndUpload,
        // Size, duration, timecodes, MKV, producer time, metadata, tracks: the fragment itself.
        _ => AckErrorClass::RejectFragment,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_the_server_sends_has_the_class_producers_rely_on() {
        let fragment_errors = [
            AckError::MaxFragmentSize,
            AckError::MaxFragmentDuration,
            AckError::TimecodeLesserThanPrevious,
            AckError::InvalidMkv,
            AckError::InvalidProducerTimestamp,
            AckError::MetadataLimit,
            AckError::TrackNumberMismatch,
            AckError::FramesMissingForTrack,
            AckError::TooManyTracks,
        ];
        for error in fragment_errors {
            assert_eq!(classify(error.id()), AckErrorClass::RejectFragment, "{error:?}");
        }
        assert_eq!(classify(AckError::StreamDeleted.id()), AckErrorClass::EndUpload);
        assert_eq!(classify(AckError::Internal.id()), AckErrorClass::Retry);
        for kms in 4500..=4506 {
            assert_eq!(classify(kms), AckErrorClass::Retry, "{kms}");
        }
        assert_eq!(classify(4003), AckErrorClass::Retry);
        assert_eq!(classify(4008), AckErrorClass::EndUpload);
    }
}
