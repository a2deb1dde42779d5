//! Cameras through the SDK's producer, which replays what was not acknowledged after each crash
//! (each fragment carries its identity, so the server stores a replay once), and the check of
//! what each camera's stream holds: frames recomputed from their timestamps, byte for byte.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use framelog_sdk::{
    Client, ConsumedFragment, EncodedFrame, ProducerConfig, ProducerReport, RetryPolicy, TimestampKind, TrackSpec,
};

pub const START_MS: u64 = 1_764_200_000_000;
const FRAME_STEP_MS: u64 = 100;
const FRAMES_PER_FRAGMENT: u64 = 10;

pub fn name(camera: usize) -> String {
    format!("crash-cam-{camera:02}")
}

fn frame(camera: usize, index: u64) -> EncodedFrame {
    let size = 200 + (index as usize * 389 + camera * 97) % 2_500;
    let mut data = format!("c{camera}-f{index}-").into_bytes();
    data.resize(size, (camera as u64 * 31 + index) as u8);
    EncodedFrame {
        track: 1,
        pts_ms: START_MS + index * FRAME_STEP_MS,
        keyframe: index.is_multiple_of(FRAMES_PER_FRAGMENT),
        data: data.into(),
    }
}

/// An avcC record around a real 320x240 Baseline SPS: the server packages the track (HLS, the
/// consumers' frames) from it. The frames themselves are not H.264: only their bytes matter here.
fn avcc() -> Vec<u8> {
    const SPS: [u8; 15] = [0x67, 0x42, 0xc0, 0x0d, 0xda, 0x05, 0x07, 0xec, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40];
    let mut record = vec![1, SPS[1], SPS[2], SPS[3], 0xff, 0xe1, 0, SPS.len() as u8];
    record.extend_from_slice(&SPS);
    record.push(0); // no PPS
    record
}

/// Pushes a frame every `FRAME_STEP_MS` until `stop`, then waits for every fragment to be
/// acknowledged. The producer retries forever: the server always comes back.
pub async fn produce(client: Client, camera: usize, stop: Arc<AtomicBool>) -> ProducerReport {
    let tracks = vec![TrackSpec::h264(1, avcc(), 320, 240)];
    let mut config = ProducerConfig::new(name(camera), tracks);
    config.retry =
        RetryPolicy { first_delay: Duration::from_millis(100), max_delay: Duration::from_secs(1), max_attempts: None };
    let mut producer = client.producer(config).await.expect("producer");
    let mut ticks = tokio::time::interval(Duration::from_millis(FRAME_STEP_MS));
    let mut index = 0;
    // Whole fragments only: the last one ends where the next key frame would begin.
    while !stop.load(Ordering::Acquire) || index % FRAMES_PER_FRAGMENT != 0 {
        ticks.tick().await;
        producer.push_frame(frame(camera, index)).await.expect("push");
        index += 1;
    }
    producer.finish().await.expect("every fragment delivered")
}

/// One camera's stream as last checked.
#[derive(Debug, Default)]
pub struct Camera {
    /// Fragment number -> producer identity, of every fragment seen listed and read intact.
    pub verified: BTreeMap<String, String>,
    pub lost: BTreeSet<String>,
    pub corrupt: BTreeSet<String>,
}

impl Camera {
    /// Lists the stream: a fragment seen before and gone now is lost; new ones are read back and
    /// compared frame by frame.
    pub async fn check(&mut self, client: &Client, camera: usize) {
        let listed = list(client, camera).await;
        let numbers: BTreeSet<&String> = listed.iter().collect();
        self.lost.extend(self.verified.keys().filter(|n| !numbers.contains(n)).cloned());
        let new: Vec<String> = listed.iter().filter(|n| !self.verified.contains_key(*n)).cloned().collect();
        for chunk in new.chunks(100) {
            let mut reader = client.get_media_for_fragment_list(&name(camera), chunk).await.expect("read back");
            while let Some(fragment) = reader.next_fragment().await.expect("a fragment") {
                match intact(camera, &fragment) {
                    true => {
                        let id = fragment.producer_fragment_id.clone().unwrap_or_default();
                        self.verified.insert(fragment.fragment_number.clone(), id);
                    }
                    false => {
                        self.corrupt.insert(fragment.fragment_number.clone());
                    }
                }
            }
        }
    }

    /// Identities stored more than once.
    pub fn doubled(&self) -> u64 {
        let mut copies: HashMap<&str, u64> = HashMap::new();
        for id in self.verified.values() {
            *copies.entry(id.as_str()).or_default() += 1;
        }
        copies.values().map(|n| n - 1).sum()
    }
}

pub async fn list(client: &Client, camera: usize) -> Vec<String> {
    let listed = client
        .list_fragments(&name(camera), TimestampKind::Producer, START_MS, START_MS + 86_400_000)
        .await
        .expect("ListFragments");
    listed.into_iter().map(|f| f.fragment_number).collect()
}

/// Whether every frame of the fragment is the frame its timestamp names.
fn intact(camera: usize, fragment: &ConsumedFragment) -> bool {
    !fragment.frames.is_empty()
        && fragment.frames.iter().all(|f| {
            let offset_ms = f.pts_ms - START_MS as i64;
            offset_ms >= 0
                && (offset_ms as u64).is_multiple_of(FRAME_STEP_MS)
                && f.data == frame(camera, offset_ms as u64 / FRAME_STEP_MS).data
        })
}
