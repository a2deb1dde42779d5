//! The agent's TOML configuration (`framelog-edge --config edge.toml`); every key is documented
//! in `docs/edge-agent.md` and the annotated example `docs/examples/edge.toml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::source_url::SourceUrl;

/// What to do when the local buffer is full (the KVS Edge Agent's DeletionConfig).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StrategyOnFull {
    /// Make room by deleting the stream's oldest buffered fragments.
    #[default]
    DeleteOldestMedia,
    /// Keep what is buffered and drop newly recorded fragments.
    DenyNewMedia,
}

/// A time window: starts at every `cron` fire time (seconds field first, as the `cron` crate
/// reads it: "0 0 8 * * *" is 08:00:00 daily) and lasts `duration_s`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub cron: String,
    pub duration_s: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// The KVS stream; created on the server if missing.
    pub name: String,
    /// `rtsp://[user:pass@]host/path`, `file:///path.mkv|mp4`, `v4l2:///dev/video0` or `testsrc:`.
    pub source: SourceUrl,
    /// Fragments are cut at the first key frame at least this long after the fragment's start.
    #[serde(default = "default_fragment_ms")]
    pub fragment_duration_ms: u64,
    /// Pass-through sources: the codec they carry (`h264` or `h265`).
    #[serde(default = "default_codec")]
    pub codec: String,
    /// Raw sources (v4l2, testsrc) are encoded with x264 at this bitrate and key-frame interval.
    #[serde(default = "default_bitrate_kbps")]
    pub bitrate_kbps: u32,
    #[serde(default = "default_key_frame_interval")]
    pub key_frame_interval_frames: u32,
    /// Raw sources: capture size and rate.
    #[serde(default = "default_width")]
    pub width: u32,
    #[serde(default = "default_height")]
    pub height: u32,
    #[serde(default = "default_fps")]
    pub fps: u32,
    /// File sources: start again at the end (a camera that never stops).
    #[serde(default = "default_true")]
    pub loop_file: bool,
    /// Record the source's AAC audio when it has some (RTSP, files).
    #[serde(default = "default_true")]
    pub audio: bool,
    /// RTSP: `tcp` (default: survives NAT and loss) or `udp`.
    #[serde(default = "default_rtsp_transport")]
    pub rtsp_transport: String,
    /// Retention of the stream when the agent creates it.
    #[serde(default = "default_stream_retention_hours")]
    pub stream_retention_hours: u32,
    /// Record only inside this window (default: always).
    pub record_schedule: Option<Schedule>,
    /// Upload only inside this window (default: always).
    pub upload_schedule: Option<Schedule>,
}

#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    #[serde(default = "default_region")]
    pub region: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret never prints.
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The Framelog (or KVS) endpoint.
    pub server: String,
    /// Where fragments wait for upload (one directory per stream).
    pub buffer_dir: PathBuf,
    /// Cap on buffered media, all streams together.
    #[serde(default = "default_max_local_media_mb")]
    pub max_local_media_mb: u64,
    /// Buffered fragments older than this are deleted, uploaded or not.
    #[serde(default = "default_edge_retention_hours")]
    pub edge_retention_hours: u64,
    #[serde(default)]
    pub strategy_on_full: StrategyOnFull,
    /// Delete a fragment once the server has PERSISTED it (else keep it until retention or space
    /// runs out, uploaded fragments going first).
    #[serde(default = "default_true")]
    pub delete_after_upload: bool,
    /// The local status endpoint (`/status` JSON, `/metrics` Prometheus).
    #[serde(default = "default_status_listen")]
    pub status_listen: SocketAddr,
    /// Longest wait between reconnect attempts while the server is unreachable.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// Signing keys; when absent, the standard AWS places (environment, ~/.aws/credentials).
    pub credentials: Option<Credentials>,
    /// A PEM file of CAs to trust for an `https://` server besides the system's (a private CA).
    pub ca_file: Option<PathBuf>,
    #[serde(rename = "stream", default)]
    pub streams: Vec<StreamConfig>,
    /// Kinesis Agent file flows, with the keys of the Agent's `agent.json`.
    pub agent: Option<crate::file_flows::AgentConfig>,
}

fn default_fragment_ms() -> u64 {
    2_000
}
fn default_codec() -> String {
    "h264".into()
}
fn default_bitrate_kbps() -> u32 {
    4_000
}
fn default_key_frame_interval() -> u32 {
    60
}
fn default_width() -> u32 {
    1280
}
fn default_height() -> u32 {
    720
}
fn default_fps() -> u32 {
    30
}
fn default_true() -> bool {
    true
}
fn default_rtsp_transport() -> String {
    "tcp".into()
}
fn default_stream_retention_hours() -> u32 {
    168
}
fn default_region() -> String {
    "us-east-1".into()
}
fn default_max_local_media_mb() -> u64 {
    2_048
}
fn default_edge_retention_hours() -> u64 {
    720
}
pub fn default_status_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 4570))
}
fn default_max_backoff_ms() -> u64 {
    800
}

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let config: Config = toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.streams.is_empty() && self.agent.is_none() {
            bail!("the config has no [[stream]] and no [agent]");
        }
        if let Some(agent) = &self.agent {
            agent.check().context("[agent]")?;
        }
        let mut names = std::collections::BTreeSet::new();
        for stream in &self.streams {
            if !names.insert(&stream.name) {
                bail!("stream {} is configured twice", stream.name);
            }
            if !matches!(stream.codec.as_str(), "h264" | "h265") {
                bail!("stream {}: codec must be h264 or h265", stream.name);
            }
            if !matches!(stream.rtsp_transport.as_str(), "tcp" | "udp") {
                bail!("stream {}: rtsp_transport must be tcp or udp", stream.name);
            }
            for schedule in [&stream.record_schedule, &stream.upload_schedule].into_iter().flatten() {
                crate::schedule::parse(schedule).with_context(|| format!("stream {}", stream.name))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minimal_config_of_the_docs_reads_with_defaults() {
        let config: Config = toml::from_str(
            r#"
            server = "http://127.0.0.1:4566"
            buffer_dir = "/var/lib/framelog-edge"
            max_local_media_mb = 2048
            strategy_on_full = "delete_oldest_media"
            [[stream]]
            name = "front-door"
            source = "rtsp://user:pass@10.0.0.5/main"
            "#,
        )
        .expect("valid");
        config.check().expect("consistent");
        assert_eq!(config.strategy_on_full, StrategyOnFull::DeleteOldestMedia);
        assert_eq!(config.streams[0].fragment_duration_ms, 2_000);
        assert!(config.delete_after_upload);
    }

    #[test]
    fn the_annotated_example_config_is_valid() {
        let text = include_str!("../../docs/examples/edge.toml");
        let config: Config = toml::from_str(text).expect("the example parses");
        config.check().expect("the example is consistent");
        assert_eq!(config.streams.len(), 2);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let base = "server = \"x\"\nbuffer_dir = \"/tmp\"\n";
        assert!(toml::from_str::<Config>(&format!("{base}max_local_mb = 1\n")).is_err());
        assert!(toml::from_str::<Config>(&format!("{base}strategy_on_full = \"panic\"\n")).is_err());
        let twice: Config = toml::from_str(&format!(
            "{base}[[stream]]\nname = \"a\"\nsource = \"testsrc:\"\n[[stream]]\nname = \"a\"\nsource = \"testsrc:\"\n"
        ))
        .expect("parses");
        assert!(twice.check().is_err());
    }
}
