//! The media reader: GetMedia (live or from any start) and GetMediaForFragmentList read as fragments
//! with their frames, tags, numbers and timestamps; ListFragments with its pagination.

use std::collections::VecDeque;

use bytes::Bytes;
use framelog_media::{Cluster, Event, Fragmenter, Limits, SimpleTag, Track};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::Client;
use crate::control::DataApi;
use crate::error::{Error, Result};

/// Where GetMedia starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartSelector {
    /// The newest stored fragment, then live.
    Now,
    Earliest,
    AfterFragment(String),
    ServerTimestampMs(u64),
    ProducerTimestampMs(u64),
    ContinuationToken(String),
}

impl StartSelector {
    fn document(&self) -> Value {
        let seconds = |ms: &u64| *ms as f64 / 1000.0;
        match self {
            StartSelector::Now => json!({"StartSelectorType": "NOW"}),
            StartSelector::Earliest => json!({"StartSelectorType": "EARLIEST"}),
            StartSelector::AfterFragment(n) => {
                json!({"StartSelectorType": "FRAGMENT_NUMBER", "AfterFragmentNumber": n})
            }
            StartSelector::ServerTimestampMs(ms) => {
                json!({"StartSelectorType": "SERVER_TIMESTAMP", "StartTimestamp": seconds(ms)})
            }
            StartSelector::ProducerTimestampMs(ms) => {
                json!({"StartSelectorType": "PRODUCER_TIMESTAMP", "StartTimestamp": seconds(ms)})
            }
            StartSelector::ContinuationToken(t) => {
                json!({"StartSelectorType": "CONTINUATION_TOKEN", "ContinuationToken": t})
            }
        }
    }
}

/// A track as the fragment's Tracks element describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    pub number: u64,
    pub codec_id: String,
    pub codec_private: Vec<u8>,
}

/// One frame of a consumed fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFrame {
    pub track: u64,
    /// Presentation time in ms (producer clock).
    pub pts_ms: i64,
    pub keyframe: bool,
    pub data: Bytes,
}

/// One fragment read back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumedFragment {
    pub fragment_number: String,
    pub producer_ts_ms: u64,
    pub server_ts_ms: u64,
    pub tracks: Vec<TrackInfo>,
    /// The producer's metadata tags (without its identity tag: see `producer_fragment_id`).
    pub tags: Vec<(String, String)>,
    /// The identity an idempotent producer gave the fragment (`framelog_media::FRAGMENT_ID_TAG`).
    pub producer_fragment_id: Option<String>,
    pub frames: Vec<MediaFrame>,
    /// GetMedia only.
    pub millis_behind_now: Option<u64>,
    pub continuation_token: Option<String>,
}

/// A ListFragments entry.
#[derive(Debug, Clone, PartialEq)]
pub struct FragmentInfo {
    pub fragment_number: String,
    pub size_bytes: u64,
    pub producer_ts_ms: u64,
    pub server_ts_ms: u64,
    pub length_ms: u64,
}

/// Which clock a ListFragments range is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampKind {
    Producer,
    Server,
}

/// "1726677687.758" → 1726677687758.
fn seconds_text_ms(text: &str) -> Option<u64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
    let fraction: String = fraction.chars().chain(std::iter::repeat('0')).take(3).collect();
    whole.parse::<u64>().ok()?.checked_mul(1000)?.checked_add(fraction.parse().ok()?)
}

fn json_seconds_ms(value: &Value, name: &str) -> Result<u64> {
    let seconds = value.get(name).and_then(Value::as_f64).ok_or_else(|| Error::Protocol(format!("no {name}")))?;
    Ok((seconds * 1000.0).round() as u64)
}

/// Reads a chunk stream (docs/spec/kvs.md#getmedia-chunks) into fragments.
#[derive(Debug)]
pub struct MediaReader {
    body: Incoming,
    fragmenter: Fragmenter,
    scale_ns: u64,
    current: Option<ConsumedFragment>,
    has_cluster: bool,
    ready: VecDeque<ConsumedFragment>,
    ended: bool,
}

impl MediaReader {
    fn new(body: Incoming) -> Self {
        Self {
            body,
            fragmenter: Fragmenter::new(Limits::default()),
            scale_ns: 1_000_000,
            current: None,
            has_cluster: false,
            ready: VecDeque::new(),
            ended: false,
        }
    }

    /// The next fragment; `None` when the server ends the stream. GetMedia never ends by itself
    /// on a live stream, so callers bound their reads with a timeout.
    pub async fn next_fragment(&mut self) -> Result<Option<ConsumedFragment>> {
        loop {
            if let Some(fragment) = self.ready.pop_front() {
                return Ok(Some(fragment));
            }
            if self.ended {
                return Ok(None);
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.fragmenter.push(&data);
                        while let Some(event) = self.fragmenter.next_event()? {
                            self.on_event(event);
                        }
                    }
                }
                Some(Err(error)) => return Err(Error::Transport(error.to_string())),
                None => {
                    self.ended = true;
                    while let Some(event) = self.fragmenter.finish()? {
                        self.on_event(event);
                    }
                    self.complete();
                }
            }
        }
    }

    fn complete(&mut self) {
        if let Some(fragment) = self.current.take().filter(|_| self.has_cluster) {
            self.ready.push_back(fragment);
        }
        self.has_cluster = false;
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Tracks { info, tracks, .. } => {
                self.complete();
                self.scale_ns = info.timecode_scale_ns;
                self.current =
                    Some(ConsumedFragment { tracks: tracks.iter().map(track_info).collect(), ..Default::default() });
            }
            Event::Tags(tags) => self.on_tags(tags),
            Event::ClusterStarted { .. } => {}
            Event::Cluster(cluster) => {
                let frames = frames_of(cluster, self.scale_ns);
                let current = self.current.get_or_insert_with(ConsumedFragment::default);
                current.frames.extend(frames);
                self.has_cluster = true;
            }
        }
    }

    fn on_tags(&mut self, tags: Vec<SimpleTag>) {
        let current = self.current.get_or_insert_with(ConsumedFragment::default);
        let mut live = false;
        for tag in tags {
            match tag.name.as_str() {
                "AWS_KINESISVIDEO_FRAGMENT_NUMBER" => current.fragment_number = tag.value,
                "AWS_KINESISVIDEO_SERVER_TIMESTAMP" | "AWS_KINESISVIDEO_SERVER_SIDE_TIMESTAMP" => {
                    current.server_ts_ms = seconds_text_ms(&tag.value).unwrap_or_default();
                }
                "AWS_KINESISVIDEO_PRODUCER_TIMESTAMP" | "AWS_KINESISVIDEO_PRODUCER_SIDE_TIMESTAMP" => {
                    current.producer_ts_ms = seconds_text_ms(&tag.value).unwrap_or_default();
                }
                "AWS_KINESISVIDEO_MILLIS_BEHIND_NOW" => {
                    current.millis_behind_now = tag.value.parse().ok();
                    live = true;
                }
                "AWS_KINESISVIDEO_CONTINUATION_TOKEN" => {
                    current.continuation_token = Some(tag.value);
                    live = true;
                }
                framelog_media::FRAGMENT_ID_TAG => current.producer_fragment_id = Some(tag.value),
                _ => current.tags.push((tag.name, tag.value)),
            }
        }
        // The live tags close a GetMedia chunk: deliver now rather than when the next one starts.
        if live {
            self.complete();
        }
    }
}

fn track_info(track: &Track) -> TrackInfo {
    TrackInfo { number: track.number, codec_id: track.codec_id.clone(), codec_private: track.codec_private.clone() }
}

fn frames_of(cluster: Cluster, scale_ns: u64) -> Vec<MediaFrame> {
    let body = Bytes::from(cluster.body);
    let scale = i128::from(scale_ns);
    cluster
        .frames
        .iter()
        .map(|frame| {
            let units = i128::from(cluster.timecode) + i128::from(frame.relative_timecode);
            MediaFrame {
                track: frame.track,
                pts_ms: i64::try_from(units * scale / 1_000_000).unwrap_or(i64::MAX),
                keyframe: frame.keyframe,
                data: body.slice(frame.data.clone()),
            }
        })
        .collect()
}

impl Client {
    /// GetMedia from `start`, tailing the live stream.
    pub async fn get_media(&self, stream_name: &str, start: StartSelector) -> Result<MediaReader> {
        let endpoint = self.get_data_endpoint(stream_name, DataApi::GetMedia).await?;
        let document = json!({"StreamName": stream_name, "StartSelector": start.document()});
        Ok(MediaReader::new(self.transport.json_streamed(&endpoint, "/getMedia", &document).await?))
    }

    /// GetMediaForFragmentList: the given fragments (1 to 1,000), in the order given.
    pub async fn get_media_for_fragment_list(&self, stream_name: &str, numbers: &[String]) -> Result<MediaReader> {
        let endpoint = self.get_data_endpoint(stream_name, DataApi::GetMediaForFragmentList).await?;
        let document = json!({"StreamName": stream_name, "Fragments": numbers});
        Ok(MediaReader::new(self.transport.json_streamed(&endpoint, "/getMediaForFragmentList", &document).await?))
    }

    /// Every fragment whose start lies in `[start_ms, end_ms]` on the chosen clock, following
    /// NextToken, sorted by fragment number.
    pub async fn list_fragments(
        &self,
        stream_name: &str,
        kind: TimestampKind,
        start_ms: u64,
        end_ms: u64,
    ) -> Result<Vec<FragmentInfo>> {
        let endpoint = self.get_data_endpoint(stream_name, DataApi::ListFragments).await?;
        let selector_type = match kind {
            TimestampKind::Producer => "PRODUCER_TIMESTAMP",
            TimestampKind::Server => "SERVER_TIMESTAMP",
        };
        let mut document = json!({
            "StreamName": stream_name,
            "MaxResults": 1000,
            "FragmentSelector": {
                "FragmentSelectorType": selector_type,
                "TimestampRange": {"StartTimestamp": start_ms as f64 / 1000.0, "EndTimestamp": end_ms as f64 / 1000.0},
            },
        });
        let mut out = Vec::new();
        loop {
            let answer = self.transport.json(&endpoint, "/listFragments", &document).await?;
            for item in answer.get("Fragments").and_then(Value::as_array).into_iter().flatten() {
                out.push(FragmentInfo {
                    fragment_number: item
                        .get("FragmentNumber")
                        .and_then(Value::as_str)
                        .ok_or_else(|| Error::Protocol("fragment without FragmentNumber".into()))?
                        .to_string(),
                    size_bytes: item.get("FragmentSizeInBytes").and_then(Value::as_u64).unwrap_or_default(),
                    producer_ts_ms: json_seconds_ms(item, "ProducerTimestamp")?,
                    server_ts_ms: json_seconds_ms(item, "ServerTimestamp")?,
                    length_ms: item.get("FragmentLengthInMilliseconds").and_then(Value::as_u64).unwrap_or_default(),
                });
            }
            match answer.get("NextToken").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                Some(token) => {
                    document = json!({"StreamName": stream_name, "MaxResults": 1000, "NextToken": token});
                }
                None => break,
            }
        }
        // Fragment numbers are decimal strings: order by length, then text.
        out.sort_by(|a, b| {
            (a.fragment_number.len(), &a.fragment_number).cmp(&(b.fragment_number.len(), &b.fragment_number))
        });
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_timestamps_read_as_milliseconds() {
        assert_eq!(seconds_text_ms("1726677687.758"), Some(1_726_677_687_758));
        assert_eq!(seconds_text_ms("12.5"), Some(12_500));
        assert_eq!(seconds_text_ms("7"), Some(7_000));
        assert_eq!(seconds_text_ms("x"), None);
    }
}
