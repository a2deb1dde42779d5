//! A consumer's durable state in the stream's metadata (the engine's meta column family, written
//! synced): its spec under `consumer.spec.<name>`, its checkpoint and counters under
//! `consumer.checkpoint.<name>`, and its last dead letters under `consumer.dead.<name>` (the kind
//! first, so that no consumer name can look like another key).

use std::collections::BTreeMap;

use framelog_store::{Engine, StreamHandle};
use serde::{Deserialize, Serialize};

use super::spec::ConsumerSpec;
use crate::background::Background;

/// Dead letters kept per consumer (the oldest go first; `dead_lettered` counts them all).
pub const KEPT_DEAD_LETTERS: usize = 100;

/// Where delivery resumes and what it has done. Committed after every delivered (or
/// dead-lettered) batch, so a restart resumes right after the last committed batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The next fragment to look at, and how many of its selected frames are already done.
    pub seq: Option<u64>,
    pub frames_done: usize,
    /// Video time (ms) of the last delivered frame: the rate and interval selections continue
    /// from it across fragments and restarts.
    pub last_frame_ms: Option<u64>,
    pub delivered_frames: u64,
    pub delivered_batches: u64,
    pub retried_calls: u64,
    pub dead_lettered_batches: u64,
    pub skipped_frames: u64,
    pub skipped_fragments: u64,
}

impl Checkpoint {
    /// Takes the delivery counters of `committed` (the position may run ahead of it).
    pub fn counters_from(&mut self, committed: &Checkpoint) {
        self.delivered_frames = committed.delivered_frames;
        self.delivered_batches = committed.delivered_batches;
        self.retried_calls = committed.retried_calls;
        self.dead_lettered_batches = committed.dead_lettered_batches;
    }
}

/// A batch that could not be delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub at_ms: u64,
    pub attempts: u32,
    pub error: String,
    pub fragment_numbers: Vec<String>,
    pub frame_timestamps_ms: Vec<u64>,
    /// A record consumer's batch: its shard and records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sequence_numbers: Vec<String>,
}

const SPEC_PREFIX: &str = "consumer.spec.";

/// The names of every consumer stored in a stream's settings.
pub fn consumer_names(settings: &std::collections::BTreeMap<String, String>) -> impl Iterator<Item = &str> {
    settings.keys().filter_map(|key| key.strip_prefix(SPEC_PREFIX))
}

pub fn spec_key(name: &str) -> String {
    format!("{SPEC_PREFIX}{name}")
}

pub fn checkpoint_key(name: &str) -> String {
    format!("consumer.checkpoint.{name}")
}

pub fn dead_key(name: &str) -> String {
    format!("consumer.dead.{name}")
}

/// The video consumers defined in a stream's settings.
pub fn specs(settings: &std::collections::BTreeMap<String, String>) -> Vec<ConsumerSpec> {
    specs_of(settings)
}

/// The consumers of type `T` (video or record consumers) defined in a stream's settings.
pub fn specs_of<T: serde::de::DeserializeOwned>(settings: &std::collections::BTreeMap<String, String>) -> Vec<T> {
    settings
        .range(SPEC_PREFIX.to_string()..)
        .take_while(|(key, _)| key.starts_with(SPEC_PREFIX))
        .filter_map(|(_, value)| serde_json::from_str(value).ok())
        .collect()
}

pub fn checkpoint(settings: &std::collections::BTreeMap<String, String>, name: &str) -> Checkpoint {
    checkpoint_of(settings, name)
}

/// A consumer's checkpoint of type `T` (the default when it has none yet).
pub fn checkpoint_of<T: serde::de::DeserializeOwned + Default>(
    settings: &std::collections::BTreeMap<String, String>,
    name: &str,
) -> T {
    settings.get(&checkpoint_key(name)).and_then(|v| serde_json::from_str(v).ok()).unwrap_or_default()
}

pub fn dead_letters(settings: &std::collections::BTreeMap<String, String>, name: &str) -> Vec<DeadLetter> {
    settings.get(&dead_key(name)).and_then(|v| serde_json::from_str(v).ok()).unwrap_or_default()
}

/// Appends a dead letter, keeping the newest `KEPT_DEAD_LETTERS`.
pub fn push_dead_letter(settings: &mut BTreeMap<String, String>, name: &str, dead: DeadLetter) {
    let mut letters = dead_letters(settings, name);
    letters.push(dead);
    let excess = letters.len().saturating_sub(KEPT_DEAD_LETTERS);
    letters.drain(..excess);
    settings.insert(dead_key(name), serde_json::to_string(&letters).unwrap_or_default());
}

/// Commits consumer `name`'s state in `handle`'s stream: `update` changes the settings (its
/// checkpoint), and `dead` goes to the dead-letter log. Through the WAL without an fsync of its
/// own: a killed process loses none, a power loss may redeliver (never skip). A consumer deleted
/// meanwhile stays deleted. The write runs on `background`, so shutdown waits for it.
pub async fn commit_unsynced(
    background: &Background,
    engine: Engine,
    handle: StreamHandle,
    name: String,
    dead: Option<DeadLetter>,
    mut update: impl FnMut(&mut BTreeMap<String, String>) + Send + 'static,
) {
    let consumer = name.clone();
    let write = move || {
        engine.update_meta_unsynced(&handle, |meta| {
            if !meta.settings.contains_key(&spec_key(&name)) {
                return;
            }
            if let Some(dead) = dead.clone() {
                push_dead_letter(&mut meta.settings, &name, dead);
            }
            update(&mut meta.settings);
        })
    };
    if let Ok(Err(error)) = background.spawn_blocking(write).await {
        tracing::warn!(%consumer, %error, "a consumer checkpoint could not be stored");
    }
}
