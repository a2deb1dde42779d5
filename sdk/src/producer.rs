//! The frame producer: takes encoded frames with key-frame flags and timestamps, cuts a fragment
//! at each video key frame, and hands fragments to the [`Uploader`](crate::uploader) that streams
//! them over PutMedia and tracks their acknowledgements.

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::Client;
use crate::control::DataApi;
use crate::error::{Error, Result};
use crate::mkv::{self, EncodedFrame, TrackSpec};
use crate::uploader::{AckLevel, Command, Fragment, ProducerReport, RetryPolicy, UploadTarget, Uploader};

/// A fragment never spans more than this, even without a key frame: the server refuses
/// fragments over 20 s (4002), and block times are 16-bit milliseconds.
const MAX_FRAGMENT_MS: u64 = 10_000;

/// How a producer uploads.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub stream_name: String,
    pub tracks: Vec<TrackSpec>,
    /// Fragment length when there is no video track to cut at.
    pub audio_fragment_ms: u64,
    /// Fragments sent but not yet acknowledged before `push_frame` waits.
    pub max_pending_fragments: usize,
    pub ack_level: AckLevel,
    pub retry: RetryPolicy,
}

impl ProducerConfig {
    pub fn new(stream_name: impl Into<String>, tracks: Vec<TrackSpec>) -> Self {
        Self {
            stream_name: stream_name.into(),
            tracks,
            audio_fragment_ms: 2_000,
            max_pending_fragments: 256,
            ack_level: AckLevel::Persisted,
            retry: RetryPolicy::default(),
        }
    }
}

/// Groups frames into fragments.
#[derive(Debug)]
struct FragmentBuilder {
    tracks: Vec<TrackSpec>,
    audio_fragment_ms: u64,
    frames: Vec<EncodedFrame>,
    /// Tags of the fragment being built.
    tags: Vec<(String, String)>,
    /// Tags added since the last frame: they belong to the fragment of the next frame.
    next_tags: Vec<(String, String)>,
    /// Names this producer in fragment identities (see `FRAGMENT_ID_TAG`).
    producer_id: String,
    sealed_count: u64,
}

impl FragmentBuilder {
    fn is_video(&self, track: u64) -> bool {
        self.tracks.iter().any(|t| t.number == track && t.is_video())
    }

    /// Adds a frame; returns the fragment it closed, if it starts a new one.
    fn push(&mut self, frame: EncodedFrame) -> Result<Option<Fragment>> {
        if !self.tracks.iter().any(|t| t.number == frame.track) {
            return Err(Error::InvalidInput(format!("frame for track {}, which the producer lacks", frame.track)));
        }
        let start_ms = self.frames.iter().map(|f| f.pts_ms).min();
        let has_video = self.tracks.iter().any(TrackSpec::is_video);
        let cut = match start_ms {
            None => false,
            Some(start) if frame.pts_ms.saturating_sub(start) >= MAX_FRAGMENT_MS => true,
            Some(start) if !has_video => frame.pts_ms.saturating_sub(start) >= self.audio_fragment_ms,
            Some(_) => {
                frame.keyframe && self.is_video(frame.track) && self.frames.iter().any(|f| self.is_video(f.track))
            }
        };
        let sealed = if cut { self.seal()? } else { None };
        self.frames.push(frame);
        self.tags.append(&mut self.next_tags);
        Ok(sealed)
    }

    /// The fragment of every frame so far, with the tags added while it was built.
    fn seal(&mut self) -> Result<Option<Fragment>> {
        let Some(timecode) = self.frames.iter().map(|f| f.pts_ms).min() else { return Ok(None) };
        // Every fragment carries its identity, so a replay after a lost PERSISTED ack is stored
        // once: the server answers it with the fragment number it already has.
        self.tags
            .push((framelog_media::FRAGMENT_ID_TAG.to_string(), format!("{}-{}", self.producer_id, self.sealed_count)));
        self.sealed_count += 1;
        let mut bytes = mkv::tags(&self.tags);
        bytes.extend(mkv::cluster(timecode, &self.frames)?);
        self.frames.clear();
        self.tags.clear();
        Ok(Some(Fragment { timecode, bytes: Bytes::from(bytes) }))
    }
}

/// 64 random bits (std's per-process hash seed mixed with the time), as hex: unique per producer
/// for practical purposes, without a dependency on a random number crate.
fn new_producer_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

/// Uploads encoded frames to one stream. Call [`finish`](Self::finish) to flush and learn what
/// was delivered.
#[derive(Debug)]
pub struct Producer {
    builder: FragmentBuilder,
    commands: mpsc::Sender<Command>,
    task: JoinHandle<Result<ProducerReport>>,
}

impl Producer {
    pub(crate) fn start(
        client: &Client,
        endpoint: String,
        config: &ProducerConfig,
        header: Vec<u8>,
        timecode_headers: Vec<(&'static str, String)>,
    ) -> (mpsc::Sender<Command>, JoinHandle<Result<ProducerReport>>) {
        let target = UploadTarget {
            endpoint,
            stream_name: config.stream_name.clone(),
            header: Bytes::from(header),
            timecode_headers,
            ack_level: config.ack_level,
            retry: config.retry,
            max_pending_fragments: config.max_pending_fragments.max(1),
        };
        let (commands, receiver) = mpsc::channel(1);
        let task = tokio::spawn(Uploader::new(client.transport.clone(), target, receiver).run());
        (commands, task)
    }

    /// Adds a frame. Frames of a track come in decode order; a video key frame starts a fragment.
    /// Waits while too many fragments are unacknowledged.
    pub async fn push_frame(&mut self, frame: EncodedFrame) -> Result<()> {
        if let Some(fragment) = self.builder.push(frame)? {
            self.send(fragment).await?;
        }
        Ok(())
    }

    /// Attaches a metadata tag to the fragment of the next frame pushed (it is sent just before
    /// that fragment's Cluster). A fragment carries at most 9 of them: the producer adds a tenth,
    /// its identity (`framelog_media::FRAGMENT_ID_TAG`).
    pub fn add_tag(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.builder.next_tags.push((name.into(), value.into()));
    }

    async fn send(&mut self, fragment: Fragment) -> Result<()> {
        if self.commands.send(Command::Fragment(fragment)).await.is_err() {
            return Err(Error::ProducerStopped("the upload ended; call finish() for its error".into()));
        }
        Ok(())
    }

    /// Sends the last fragment, waits until every fragment is acknowledged (or refused), and
    /// reports. An error means some fragments may not have been delivered.
    pub async fn finish(mut self) -> Result<ProducerReport> {
        // Tags added after the last frame go with the last fragment rather than nowhere.
        self.builder.tags.append(&mut self.builder.next_tags);
        if let Some(fragment) = self.builder.seal()? {
            // A stopped uploader explains itself below.
            let _ = self.commands.send(Command::Fragment(fragment)).await;
        }
        let _ = self.commands.send(Command::Finish).await;
        drop(self.commands);
        self.task.await.map_err(|e| Error::ProducerStopped(e.to_string()))?
    }
}

impl Client {
    /// Starts a producer on an existing stream (see [`Client::ensure_stream`]).
    pub async fn producer(&self, config: ProducerConfig) -> Result<Producer> {
        if config.tracks.is_empty() || config.tracks.len() > 3 {
            return Err(Error::InvalidInput("a producer needs 1 to 3 tracks".into()));
        }
        let endpoint = self.get_data_endpoint(&config.stream_name, DataApi::PutMedia).await?;
        let header = mkv::stream_header(&config.tracks);
        let timecode_headers = vec![(framelog_wire::headers::FRAGMENT_TIMECODE_TYPE, "ABSOLUTE".to_string())];
        let (commands, task) = Producer::start(self, endpoint, &config, header, timecode_headers);
        let builder = FragmentBuilder {
            tracks: config.tracks.clone(),
            audio_fragment_ms: config.audio_fragment_ms.max(1),
            frames: Vec::new(),
            tags: Vec::new(),
            next_tags: Vec::new(),
            producer_id: new_producer_id(),
            sealed_count: 0,
        };
        Ok(Producer { builder, commands, task })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(track: u64, pts_ms: u64, keyframe: bool) -> EncodedFrame {
        EncodedFrame { track, pts_ms, keyframe, data: Bytes::from_static(b"x") }
    }

    fn builder(tracks: Vec<TrackSpec>) -> FragmentBuilder {
        FragmentBuilder {
            tracks,
            audio_fragment_ms: 1_000,
            frames: Vec::new(),
            tags: Vec::new(),
            next_tags: Vec::new(),
            producer_id: "test".into(),
            sealed_count: 0,
        }
    }

    #[test]
    fn fragments_start_at_video_key_frames() {
        let mut b = builder(vec![TrackSpec::h264(1, vec![], 2, 2), TrackSpec::aac(2, vec![], 8000.0, 1)]);
        let mut cut = Vec::new();
        let input =
            [(1, 0, true), (2, 5, true), (1, 33, false), (2, 40, true), (1, 66, true), (2, 70, true), (1, 99, false)];
        for (track, pts, key) in input {
            if let Some(fragment) = b.push(frame(track, pts, key)).expect("known track") {
                cut.push(fragment.timecode);
            }
        }
        assert_eq!(cut, [0]);
        assert_eq!(b.seal().expect("seal").map(|f| f.timecode), Some(66));
        assert!(b.push(frame(3, 100, true)).is_err());
    }

    #[test]
    fn audio_only_fragments_are_cut_by_time_and_video_without_key_frames_at_ten_seconds() {
        let mut b = builder(vec![TrackSpec::aac(1, vec![], 8000.0, 1)]);
        let cuts: Vec<u64> =
            (0..50u64).filter_map(|i| b.push(frame(1, i * 100, true)).expect("push").map(|f| f.timecode)).collect();
        assert_eq!(cuts, [0, 1000, 2000, 3000]);
        let mut v = builder(vec![TrackSpec::h264(1, vec![], 2, 2)]);
        let cuts: Vec<u64> =
            (0..=400u64).filter_map(|i| v.push(frame(1, i * 33, i == 0)).expect("push").map(|f| f.timecode)).collect();
        assert_eq!(cuts, [0]);
    }
}
