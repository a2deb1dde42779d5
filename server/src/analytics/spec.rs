//! An application's stored definition: what CreateApplication and the Add*/Update calls set,
//! kept as JSON in its engine stream's settings, and read back by DescribeApplication and the
//! runner. Inputs, outputs and reference sources keep the request's own members (so Describe
//! echoes them as given) beside the few facts the server reads from them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ApiError, ErrorType};

/// The settings key of the definition.
pub const SPEC_KEY: &str = "analytics.application";
/// The settings key of the runner's checkpoint.
pub const CHECKPOINT_KEY: &str = "analytics.checkpoint";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplicationSpec {
    pub name: String,
    pub description: Option<String>,
    pub code: String,
    pub status: Status,
    pub version: u64,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub inputs: Vec<InputSpec>,
    pub outputs: Vec<OutputSpec>,
    pub references: Vec<ReferenceSpec>,
    pub tags: BTreeMap<String, String>,
    /// Where the last StartApplication asked reading to begin, and when it was called (NOW).
    pub starting_position: Option<String>,
    #[serde(default)]
    pub started_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Ready,
    Running,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Ready => "READY",
            Status::Running => "RUNNING",
        }
    }
}

/// An input: a KDS stream, a Firehose delivery stream or video streams, read into
/// `<prefix>_001` up to `<prefix>_<parallelism>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    pub id: String,
    pub name_prefix: String,
    /// `KinesisStreamsInput` or `KinesisFirehoseInput`.
    pub source_member: String,
    pub resource_arn: String,
    pub role_arn: String,
    /// InputSchema as given.
    pub schema: Value,
    pub parallelism: u32,
    /// InputProcessingConfiguration's Lambda function (preprocess.rs).
    #[serde(default)]
    pub processor: Option<LambdaProcessor>,
}

/// A Lambda function that preprocesses an input's records, by ARN (its URL is the server's
/// `[lambda_functions.NAME]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LambdaProcessor {
    pub resource_arn: String,
    pub role_arn: String,
}

impl InputSpec {
    /// The in-application streams it fills, one per InputParallelism count.
    pub fn stream_names(&self) -> Vec<String> {
        (1..=self.parallelism.max(1)).map(|n| format!("{}_{n:03}", self.name_prefix)).collect()
    }

    /// Which of `stream_names` a part of the input (feed.rs's key) fills: shards in turn, as
    /// the service spread a source's shards; a video stream by a hash of its name.
    pub fn stream_of_part(&self, part: &str) -> usize {
        let count = self.parallelism.max(1) as u64;
        let place = match part.parse::<u64>() {
            Ok(shard) => shard,
            Err(_) => fnv1a(part.as_bytes()),
        };
        (place % count) as usize
    }
}

/// FNV-1a: a hash that stays the same across builds, so a part keeps its stream after an
/// upgrade.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3))
}

/// An output: an in-application stream's rows to a KDS stream, a delivery stream or a webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputSpec {
    pub id: String,
    /// The in-application stream (or `error_stream`).
    pub name: String,
    /// `KinesisStreamsOutput`, `KinesisFirehoseOutput` or `LambdaOutput`.
    pub destination_member: String,
    pub resource_arn: String,
    pub role_arn: String,
    /// `JSON` or `CSV`.
    pub format: String,
}

/// A reference table read at start: from a bucket the server knows, or a local file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceSpec {
    pub id: String,
    pub table_name: String,
    pub bucket_arn: String,
    pub file_key: String,
    pub role_arn: String,
    /// ReferenceSchema as given.
    pub schema: Value,
}

impl ApplicationSpec {
    pub fn from_settings(settings: &BTreeMap<String, String>) -> Option<ApplicationSpec> {
        settings.get(SPEC_KEY).and_then(|text| serde_json::from_str(text).ok())
    }

    pub fn to_setting(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The input `id`, to change it (ResourceNotFound when there is none).
    pub fn input_mut(&mut self, id: &str) -> Result<&mut InputSpec, ApiError> {
        self.inputs
            .iter_mut()
            .find(|i| i.id == id)
            .ok_or_else(|| ApiError::new(ErrorType::ResourceNotFound, format!("Input {id} is not found")))
    }

    /// The id an input, output or reference source added by the change under way gets: the
    /// version the change moved to, then its place in that change (AWS's `2.1`).
    pub fn id_in_change(&self, index: usize) -> String {
        format!("{}.{}", self.version, index + 1)
    }
}

/// Where the runner stands: per input shard, the next record not yet processed and the first
/// record an open window still holds (read again, as replay, after a restart); per windowed
/// pump, the end of the last window written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The definition version the positions belong to.
    pub version: u64,
    /// By input part (feed.rs): a shard's number, or `video/<name>`.
    pub next_seq: BTreeMap<String, u64>,
    pub replay_seq: BTreeMap<String, u64>,
    pub marks: BTreeMap<String, i64>,
    /// By scored stream: the models (RANDOM_CUT_FOREST, HOTSPOTS) to take up again. Written
    /// as `forests`, the name it had when forests were the only models.
    #[serde(default, rename = "forests")]
    pub models: BTreeMap<String, super::models::ModelMark>,
    /// By stagger or session pump: its open windows (partition in hex, opening ms), which a
    /// replay refills. Named when stagger windows were the only kind.
    #[serde(default)]
    pub stagger: BTreeMap<String, Vec<(String, i64)>>,
}

impl Checkpoint {
    pub fn from_settings(settings: &BTreeMap<String, String>) -> Option<Checkpoint> {
        settings.get(CHECKPOINT_KEY).and_then(|text| serde_json::from_str(text).ok())
    }
}
