//! PutMedia acknowledgements: one flat JSON object per line, in the exact shape the producer
//! SDKs' strict parser reads (spec §0.7-0.10): `EventType`, `FragmentTimecode` (a number),
//! `FragmentNumber` (a string), and for errors `ErrorId` (number) and `ErrorCode`.

use framelog_media::MediaError;

/// Why an upload was refused, with KVS's error id and code.
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

impl From<&MediaError> for AckError {
    fn from(error: &MediaError) -> Self {
        match error {
            MediaError::TooLarge { path, .. } if path.ends_with("Cluster") => AckError::MaxFragmentSize,
            _ => AckError::InvalidMkv,
        }
    }
}

/// One acknowledgement line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ack {
    Buffering { timecode: u64 },
    Received { timecode: u64 },
    Persisted { timecode: u64, fragment_number: String },
    Idle,
    Error { timecode: Option<u64>, error: AckError },
}

impl Ack {
    pub fn line(&self) -> String {
        match self {
            Ack::Buffering { timecode } => format!("{{\"EventType\":\"BUFFERING\",\"FragmentTimecode\":{timecode}}}\n"),
            Ack::Received { timecode } => format!("{{\"EventType\":\"RECEIVED\",\"FragmentTimecode\":{timecode}}}\n"),
            Ack::Persisted { timecode, fragment_number } => format!(
                "{{\"EventType\":\"PERSISTED\",\"FragmentTimecode\":{timecode},\"FragmentNumber\":\"{fragment_number}\"}}\n"
            ),
            Ack::Idle => "{\"EventType\":\"IDLE\"}\n".to_string(),
            Ack::Error { timecode, error } => {
                let timecode = timecode.map(|t| format!("\"FragmentTimecode\":{t},")).unwrap_or_default();
                format!(
                    "{{\"EventType\":\"ERROR\",{timecode}\"ErrorId\":{},\"ErrorCode\":\"{}\"}}\n",
                    error.id(),
                    error.code()
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_have_the_exact_shape_producers_parse() {
        let persisted = Ack::Persisted {
            timecode: 1663277247152,
            fragment_number: "91343852333181432511524306419788296366724229586".into(),
        };
        assert_eq!(
            persisted.line(),
            "{\"EventType\":\"PERSISTED\",\"FragmentTimecode\":1663277247152,\"FragmentNumber\":\"91343852333181432511524306419788296366724229586\"}\n"
        );
        let error = Ack::Error { timecode: Some(5), error: AckError::TimecodeLesserThanPrevious };
        assert_eq!(
            error.line(),
            "{\"EventType\":\"ERROR\",\"FragmentTimecode\":5,\"ErrorId\":4004,\"ErrorCode\":\"FRAGMENT_TIMECODE_LESSER_THAN_PREVIOUS\"}\n"
        );
        for ack in [persisted, error, Ack::Idle, Ack::Buffering { timecode: 1 }] {
            assert!(ack.line().len() <= 1024, "the producer parser's segment limit");
            assert!(serde_json::from_str::<serde_json::Value>(ack.line().trim_end()).is_ok());
        }
    }
}
