//! What the KVS-compatible hooks deliver: the SNS-shaped notification of a tagged fragment
//! (UpdateNotificationConfiguration) and image files in a directory, S3's self-hosted stand-in
//! (UpdateImageGenerationConfiguration), named here and written by image_files.rs.

use std::path::{Path, PathBuf};

use framelog_media::FragmentRecord;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::spec::TimestampKind;

pub const NOTIFICATION_TAG: &str = "AWS_KINESISVIDEO_NOTIFICATION";
pub const IMAGE_GENERATION_TAG: &str = "AWS_KINESISVIDEO_IMAGE_GENERATION";
pub const IMAGE_PREFIX_TAG: &str = "AWS_KINESISVIDEO_IMAGE_PREFIX";

/// The fragment's own metadata: what a notification carries as its payload (the reserved AWS
/// tags and Framelog's identity tag are plumbing, not the producer's key/value pairs).
fn custom_tags(record: &FragmentRecord) -> Map<String, Value> {
    record
        .tags
        .iter()
        .filter(|t| !t.name.starts_with("AWS_KINESISVIDEO_") && !t.name.starts_with("FRAMELOG_"))
        .map(|t| (t.name.clone(), Value::String(t.value.clone())))
        .collect()
}

/// A stable id per (stream, fragment), shaped like SNS's UUID MessageId, so that a subscriber
/// can drop the duplicate of a redelivered notification.
fn message_id(stream_arn: &str, fragment_number: &str) -> String {
    let digest = Sha256::digest(format!("{stream_arn}/{fragment_number}"));
    let hex = hex::encode(&digest[..16]);
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// The body an SNS HTTP subscriber receives for a tagged fragment: the envelope with KVS's
/// notification JSON, as a string, in `Message`.
pub fn notification(
    stream_arn: &str,
    topic: &str,
    fragment_number: &str,
    record: &FragmentRecord,
    now_ms: u64,
) -> Value {
    let message = json!({
        "StreamArn": stream_arn,
        "FragmentNumber": fragment_number,
        "FragmentStartProducerTimestamp": record.producer_ts_ms,
        "FragmentStartServerTimestamp": record.server_ts_ms,
        "NotificationType": "PERSISTED",
        "NotificationPayload": custom_tags(record),
    });
    json!({
        "Type": "Notification",
        "MessageId": message_id(stream_arn, fragment_number),
        "TopicArn": topic,
        "Subject": "Kinesis Video Streams Notification",
        "Message": message.to_string(),
        "Timestamp": crate::civil_date::iso8601(now_ms),
    })
}

/// A producer-supplied prefix as one safe path component (it comes off the wire).
fn path_component(text: &str) -> Option<String> {
    let safe: String =
        text.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    (!safe.is_empty() && safe != "." && safe != "..").then_some(safe)
}

/// `<root>/<stream>/[<image prefix>/]YYYY/MM/DD/HH/<epoch ms>.<extension>`: the frame's time
/// (producer, or server time shifted by the frame's offset in its fragment) names the file, so a
/// redelivered frame overwrites its own picture instead of adding a second one.
pub fn image_path(
    root: &Path,
    stream: &str,
    record: &FragmentRecord,
    frame_ms: u64,
    kind: TimestampKind,
    extension: &str,
) -> PathBuf {
    let time_ms = match kind {
        TimestampKind::Producer => frame_ms,
        TimestampKind::Server => record.server_ts_ms + frame_ms.saturating_sub(record.producer_ts_ms),
    };
    let mut path = root.join(path_component(stream).unwrap_or_else(|| "_".into()));
    if let Some(prefix) = record.tags.iter().find(|t| t.name == IMAGE_PREFIX_TAG).and_then(|t| path_component(&t.value))
    {
        path.push(prefix);
    }
    let seconds = (time_ms / 1000) as i64;
    let (year, month, day) = crate::civil_date::civil_from_days(seconds.div_euclid(86_400));
    let hour = seconds.rem_euclid(86_400) / 3600;
    path.push(format!("{year:04}/{month:02}/{day:02}/{hour:02}"));
    path.push(format!("{time_ms}.{extension}"));
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use framelog_media::SimpleTag;

    fn record(tags: &[(&str, &str)]) -> FragmentRecord {
        FragmentRecord {
            timecode: 0,
            timecode_scale_ns: 1_000_000,
            producer_ts_ms: 1_795_651_512_000,
            server_ts_ms: 1_795_651_513_250,
            duration_ms: 2_000,
            tracks_body: Vec::new(),
            tags: tags.iter().map(|(n, v)| SimpleTag { name: (*n).into(), value: (*v).into() }).collect(),
            frames: Vec::new(),
        }
    }

    #[test]
    fn a_notification_is_an_sns_envelope_around_the_kvs_message() {
        let fragment = record(&[(NOTIFICATION_TAG, ""), ("CUSTOM_KEY_1", "v1"), ("FRAMELOG_FRAGMENT_ID", "a/b/1")]);
        let body =
            notification("arn:s", "http://hook/", "91343852333181432392682062607743920146264583656", &fragment, 0);
        assert_eq!(body["Subject"], "Kinesis Video Streams Notification");
        assert_eq!(body["TopicArn"], "http://hook/");
        let message: Value =
            serde_json::from_str(body["Message"].as_str().expect("Message is a string")).expect("Message is JSON");
        assert_eq!(message["FragmentStartProducerTimestamp"], 1_795_651_512_000u64);
        assert_eq!(message["FragmentStartServerTimestamp"], 1_795_651_513_250u64);
        assert_eq!(message["NotificationPayload"], json!({"CUSTOM_KEY_1": "v1"}));
        let again =
            notification("arn:s", "http://hook/", "91343852333181432392682062607743920146264583656", &fragment, 9);
        assert_eq!(body["MessageId"], again["MessageId"]);
        assert_eq!(body["MessageId"].as_str().map(str::len), Some(36));
    }

    #[test]
    fn image_paths_are_named_by_frame_time_and_cannot_escape_the_root() {
        let root = Path::new("/images");
        let fragment = record(&[(IMAGE_PREFIX_TAG, "../../etc")]);
        let producer = image_path(root, "cam", &fragment, 1_795_651_512_400, TimestampKind::Producer, "jpg");
        assert_eq!(producer, Path::new("/images/cam/.._.._etc/2026/11/26/00/1795651512400.jpg"));
        let server = image_path(root, "cam", &record(&[]), 1_795_651_512_400, TimestampKind::Server, "png");
        assert_eq!(server, Path::new("/images/cam/2026/11/26/00/1795651513650.png"));
        let dots = image_path(root, "cam", &record(&[(IMAGE_PREFIX_TAG, "..")]), 0, TimestampKind::Producer, "jpg");
        assert_eq!(dots, Path::new("/images/cam/1970/01/01/00/0.jpg"));
    }
}
