//! A video stream as an application's input (our extension): a KVS stream ARN, whose stream
//! name may hold `*` wildcards so that one input reads a fleet (`stream/lobby-*`), gives one
//! row per fragment: a JSON document of its timestamps, size, frame count and tags. Labels that
//! consumers write back are tags too, so a fragment becomes a row only once every webhook
//! consumer of its stream has passed it, or LABEL_WAIT_MAX_MS after it arrived, whichever is
//! first: a stuck consumer delays rows, it does not stop them.

use framelog_media::FragmentRecord;
use framelog_store::{Engine, Position, StreamHandle, StreamKind};
use serde_json::json;

use crate::auth::wildcard_match;
use crate::kvs::{VIDEO_SHARD, VideoStream, tags_object, video_public_name as public_name};

/// The longest a fragment waits for its stream's consumers to label it.
pub const LABEL_WAIT_MAX_MS: u64 = 30_000;

/// The stream name (or pattern) of a KVS stream ARN:
/// `arn:aws:kinesisvideo:REGION:ACCOUNT:stream/NAME[/CREATION]`.
pub fn video_pattern(arn: &str) -> Option<String> {
    let rest = arn.strip_prefix("arn:aws:kinesisvideo:")?;
    let (_, resource) = rest.split_once(":stream/")?;
    let name = resource.split('/').next().unwrap_or_default();
    (!name.is_empty()).then(|| name.to_string())
}

/// The video streams `pattern` names now, by public name.
pub fn matching_streams(engine: &Engine, pattern: &str) -> Vec<(String, StreamHandle)> {
    engine
        .streams()
        .into_iter()
        .filter(|handle| handle.meta().kind == StreamKind::Video)
        .map(|handle| (public_name(&handle.meta().name).to_string(), handle))
        // IAM's wildcards: `*` any run of characters, `?` one.
        .filter(|(name, _)| wildcard_match(pattern, name, false))
        .collect()
}

/// A fragment's row as the input schema reads it.
pub fn fragment_document(stream: &VideoStream, seq: u64, record: &FragmentRecord, size_bytes: u64) -> Vec<u8> {
    json!({
        "StreamName": stream.public_name(),
        "FragmentNumber": stream.fragment_number(seq),
        "ProducerTimestamp": record.producer_ts_ms,
        "ServerTimestamp": record.server_ts_ms,
        "FragmentLengthInMilliseconds": record.duration_ms,
        "FragmentSizeInBytes": size_bytes,
        "FrameCount": record.frames.len(),
        "Tags": tags_object(record),
    })
    .to_string()
    .into_bytes()
}

/// Up to `max_count` fragment documents of each stream `pattern` names: the oldest, or the
/// newest when `newest` (DiscoverInputSchema's sample).
pub fn sample_documents(engine: &Engine, pattern: &str, newest: bool, max_count: usize) -> Vec<Vec<u8>> {
    let mut documents = Vec::new();
    for (_, handle) in matching_streams(engine, pattern) {
        let Ok(tip_seq) = handle.tip_seq(VIDEO_SHARD) else { continue };
        let Ok(oldest) = engine.resolve(&handle, VIDEO_SHARD, Position::TrimHorizon) else { continue };
        let from = if newest { tip_seq.saturating_sub(max_count as u64).max(oldest) } else { oldest };
        let Ok(headers) = engine.list_headers(&handle, VIDEO_SHARD, from, tip_seq, max_count) else { continue };
        let stream = VideoStream::new(handle.clone());
        for item in headers {
            if let Ok(record) = FragmentRecord::decode(&item.header.attrs) {
                documents.push(fragment_document(&stream, item.seq, &record, item.header.payload_len));
            }
        }
    }
    documents
}

/// Whether fragment `seq`, arrived at `arrival_ms`, is ready to be a row at `now_ms`.
pub fn is_ready(seq: u64, arrival_ms: u64, labelled_before: Option<u64>, now_ms: u64) -> bool {
    labelled_before.is_none_or(|before| seq < before) || arrival_ms + LABEL_WAIT_MAX_MS <= now_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kvs_arn_names_its_stream_or_pattern() {
        assert_eq!(
            video_pattern("arn:aws:kinesisvideo:us-east-1:123456789012:stream/lobby-*/1700000000000").as_deref(),
            Some("lobby-*")
        );
        assert_eq!(video_pattern("arn:aws:kinesisvideo:us-east-1:1:stream/cam").as_deref(), Some("cam"));
        assert_eq!(video_pattern("arn:aws:kinesis:us-east-1:1:stream/cam"), None);
        assert_eq!(video_pattern("arn:aws:kinesisvideo:us-east-1:1:stream/"), None);
    }

    #[test]
    fn wildcards_stand_for_any_run() {
        let matches = |pattern: &str, name: &str| wildcard_match(pattern, name, false);
        assert!(matches("cam", "cam"));
        assert!(!matches("cam", "cam2"));
        assert!(matches("cam*", "cam2"));
        assert!(matches("*", "anything"));
        assert!(matches("lobby-*-door", "lobby-east-door"));
        assert!(!matches("lobby-*-door", "lobby-east-doors"));
        assert!(matches("a*b*c", "a-b-b-c"));
        assert!(!matches("ab*ba", "aba"));
    }

    #[test]
    fn a_fragment_waits_for_its_labels_but_not_forever() {
        assert!(is_ready(5, 1_000, None, 1_000));
        assert!(is_ready(5, 1_000, Some(6), 1_000));
        assert!(!is_ready(6, 1_000, Some(6), 1_000));
        assert!(is_ready(6, 1_000, Some(6), 1_000 + LABEL_WAIT_MAX_MS));
    }
}
