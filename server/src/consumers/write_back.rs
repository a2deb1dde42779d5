//! What a webhook writes back: a 2xx answer `{"labels": {"person": "0.93"}}` attaches each label
//! to the batch's fragments as a metadata tag (name = label, value = its text), so it shows in
//! GetMedia tags, HLS EXT-X-DATERANGE and ListFragments' MetadataFilter. A label of the same
//! name replaces the fragment's earlier value; a fragment keeps at most MAX_TAGS tags.

use axum::body::Bytes;
use framelog_media::{FragmentRecord, SimpleTag};
use serde_json::Value;

use super::ConsumersCtx;
use crate::kvs::VIDEO_SHARD;
use crate::kvs::VideoStream;

const MAX_TAGS: usize = 50;
const MAX_NAME_BYTES: usize = 128;
const MAX_VALUE_BYTES: usize = 256;

/// The labels of a webhook answer, if it has any (anything else in the answer is ignored).
pub fn labels(answer: &[u8]) -> Vec<(String, String)> {
    let Ok(Value::Object(document)) = serde_json::from_slice::<Value>(answer) else { return Vec::new() };
    let Some(Value::Object(labels)) = document.get("labels").or_else(|| document.get("Labels")) else {
        return Vec::new();
    };
    labels
        .iter()
        .filter_map(|(name, value)| {
            let value = match value {
                Value::String(text) => text.clone(),
                Value::Number(_) | Value::Bool(_) => value.to_string(),
                _ => return None,
            };
            (!name.is_empty() && name.len() <= MAX_NAME_BYTES && value.len() <= MAX_VALUE_BYTES)
                .then(|| (name.clone(), value))
        })
        .collect()
}

/// `record`'s tags with `labels` merged in; `None` when nothing changes.
pub fn merged(record: &FragmentRecord, labels: &[(String, String)]) -> Option<FragmentRecord> {
    let mut next = record.clone();
    for (name, value) in labels {
        let room = next.tags.len() < MAX_TAGS;
        match next.tags.iter_mut().find(|t| t.name == *name) {
            Some(tag) => tag.value = value.clone(),
            None if room => next.tags.push(SimpleTag { name: name.clone(), value: value.clone() }),
            None => {}
        }
    }
    (next.tags != record.tags).then_some(next)
}

/// Attaches the answer's labels to the fragments `numbers` (durably, through the engine).
pub async fn apply(ctx: &ConsumersCtx, handle: &framelog_store::StreamHandle, numbers: &[String], answer: &Bytes) {
    let labels = labels(answer);
    if labels.is_empty() {
        return;
    }
    for number in numbers {
        let Ok(seq) = VideoStream::new(handle.clone()).fragment_seq(number) else { continue };
        let (engine, handle, labels) = (ctx.video.engine.clone(), handle.clone(), labels.clone());
        let amended = ctx
            .background
            .spawn_blocking(move || {
                engine.amend_attrs(&handle, VIDEO_SHARD, seq, move |attrs| {
                    let record = FragmentRecord::decode(attrs).ok()?;
                    merged(&record, &labels).map(|next| next.encode())
                })
            })
            .await;
        if let Ok(Err(error)) = amended {
            tracing::warn!(%error, number, "writing labels back to a fragment failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_read_from_the_answer_and_merged_by_name() {
        let labels = labels(br#"{"labels": {"person": "0.93", "cars": 2, "bad": [1]}, "other": 1}"#);
        assert_eq!(labels, [("cars".to_string(), "2".to_string()), ("person".to_string(), "0.93".to_string())]);
        assert!(super::labels(b"not json").is_empty());
        let record = FragmentRecord {
            timecode: 0,
            timecode_scale_ns: 1_000_000,
            producer_ts_ms: 0,
            server_ts_ms: 0,
            duration_ms: 0,
            tracks_body: Vec::new(),
            tags: vec![SimpleTag { name: "person".into(), value: "0.5".into() }],
            frames: Vec::new(),
        };
        let next = merged(&record, &labels).expect("changed");
        let tags: Vec<(&str, &str)> = next.tags.iter().map(|t| (t.name.as_str(), t.value.as_str())).collect();
        assert_eq!(tags, [("person", "0.93"), ("cars", "2")]);
        assert!(merged(&next, &labels).is_none(), "the same labels again change nothing");
    }
}
