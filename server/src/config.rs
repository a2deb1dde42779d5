//! Server configuration: defaults, an optional TOML file, then command-line flags (flags win).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::Deserialize;

use crate::auth::AuthSettings;
use crate::cluster_config::{ClusterFile, ClusterSettings, ObjectsFile};
use crate::guard::HttpSettings;
use crate::http_server::ConnectionLimits;
use crate::tls::TlsSettings;

/// Everything `framelog serve` can be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub region: String,
    pub account_id: String,
    pub shard_limit: u32,
    pub trim_interval_secs: u64,
    /// Retention of a video stream created without DataRetentionInHours.
    pub video_retention_hours: u32,
    /// The URL clients should use for data calls (GetDataEndpoint), when it is not the listen address.
    pub public_url: Option<String>,
    pub auth: AuthSettings,
    /// HTTPS when set; plain HTTP otherwise.
    pub tls: Option<TlsSettings>,
    pub limits: ConnectionLimits,
    pub http: HttpSettings,
    pub consumers: ConsumerSettings,
    /// Where the at-rest master key is read from; `<data_dir>/master-key` (created) when unset.
    pub master_key_file: Option<PathBuf>,
    pub images: ImageSettings,
    /// Payloads at least this large are written once to segment files (`[engine]`).
    pub segment_min_bytes: u64,
    /// Appends are refused while the data dir's disk has less than this free (`[engine]`).
    pub min_free_disk_bytes: u64,
    /// The engine's shared block cache (`[engine]`).
    pub block_cache_bytes: usize,
    /// The TOML file these settings were read from, if any: `framelog backup` copies it.
    pub config_file: Option<PathBuf>,
    /// Join a cluster instead of opening the local engine (`[cluster]` with `[objects]`).
    pub cluster: Option<ClusterSettings>,
    /// Kinesis Data Streams behaviour (`[kds]`).
    pub kds: KdsConfig,
    /// Firehose behaviour (`[firehose]`): its Direct PUT quotas.
    pub firehose: crate::firehose::FirehoseConfig,
    /// Where Firehose's `arn:aws:s3:::NAME` buckets are (`[buckets.NAME]`); none: directories
    /// under `<data dir>/buckets`.
    pub buckets: std::collections::BTreeMap<String, crate::firehose::BucketFile>,
    /// Where Firehose's Lambda processors' functions are (`[lambda_functions.NAME]`): webhooks
    /// answering the transformation event as the function would.
    pub lambda_functions: std::collections::BTreeMap<String, crate::firehose::LambdaFunctionFile>,
    /// The tables Firehose's DataFormatConversion writes Parquet with
    /// (`[glue_tables.DATABASE.TABLE]`, standing in for the Glue Data Catalog).
    pub glue_tables:
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, crate::firehose::GlueTableFile>>,
    /// WebRTC (WHEP) egress (`[webrtc]`).
    pub webrtc: WebRtcConfig,
    /// H.265 to H.264 for browsers (`[transcode]`).
    pub transcode: TranscodeConfig,
    /// One log line per answered request (`access_log`, on by default; docs/operations.md).
    pub access_log: bool,
}

/// The `[transcode]` table (docs/playback.md "H.265 cameras in Chromium").
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscodeConfig {
    /// Transcodes running at once (live viewers and stored fragments together). Transcoding a
    /// 1080p30 stream's stored fragments took 0.4 of a core on the benchmark's test pattern, more on detailed camera video
    /// (docs/benchmarks.md); more get ClientLimitExceededException.
    #[serde(default = "default_max_transcodes")]
    pub max_concurrent: usize,
}

fn default_max_transcodes() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

impl Default for TranscodeConfig {
    fn default() -> Self {
        TranscodeConfig { max_concurrent: default_max_transcodes() }
    }
}

/// The `[webrtc]` table (docs/playback.md "WebRTC (WHEP)").
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebRtcConfig {
    /// The address browsers are told to send media traffic to (the ICE host candidate); each
    /// session binds a UDP port on it. Unset: the listen address, or 127.0.0.1 when the server
    /// listens on every address. Behind a 1:1 NAT, the public address goes here.
    #[serde(default)]
    pub candidate_ip: Option<IpAddr>,
    /// WebRTC sessions served at once; more get ClientLimitExceededException.
    #[serde(default = "default_webrtc_sessions")]
    pub max_sessions: usize,
}

fn default_webrtc_sessions() -> usize {
    64
}

impl Default for WebRtcConfig {
    fn default() -> Self {
        WebRtcConfig { candidate_ip: None, max_sessions: default_webrtc_sessions() }
    }
}

impl WebRtcConfig {
    /// The ICE host candidate's address for a server listening on `listen`.
    pub fn candidate_ip(&self, listen: SocketAddr) -> IpAddr {
        self.candidate_ip.unwrap_or(if listen.ip().is_unspecified() {
            IpAddr::from([127, 0, 0, 1])
        } else {
            listen.ip()
        })
    }
}

/// The `[kds]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdsConfig {
    /// How long a stream shows UPDATING before a SplitShard, MergeShards or UpdateShardCount
    /// takes effect; 0 applies it before the call returns.
    #[serde(default)]
    pub reshard_delay_ms: u64,
    /// Enforce AWS's per-shard throughput quotas (docs/kds.md "Quotas"); off by default, as a
    /// self-hosted stream is limited by its disk, not by a price list.
    #[serde(default)]
    pub quotas: bool,
}

/// How GetImages and the consumers decode video.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSettings {
    /// The program whose `decode-worker` subcommand decodes in a process of its own (the
    /// `framelog` binary sets itself); `None` decodes on the server's threads, as in-process
    /// tests do.
    pub decoder_program: Option<PathBuf>,
    /// Each worker process's address-space ceiling.
    pub decoder_memory_limit_mib: u64,
}

impl Default for ImageSettings {
    fn default() -> Self {
        // A 4096x2304 stream's decoder holds its reference frames (about 14 MiB each), threads'
        // stacks and GStreamer's libraries: 2 GiB of address space leaves room without letting
        // one runaway decode take the machine.
        ImageSettings { decoder_program: None, decoder_memory_limit_mib: 2048 }
    }
}

/// Where consumers, notifications and image generation may send and write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSettings {
    /// Loopback, link-local and private destinations; `None`: allowed only without a credentials
    /// file (the local developer mode).
    pub allow_private_destinations: Option<bool>,
    /// When not empty, every destination URL must start with one of these.
    pub allowed_destination_prefixes: Vec<String>,
    /// `file://` image destinations must lie under this; `<data_dir>/images` when unset.
    pub images_root: Option<PathBuf>,
    pub images_quota_bytes: u64,
    /// CAs (PEM) that https:// destinations may chain to besides the system's.
    pub ca_file: Option<PathBuf>,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        ConsumerSettings {
            allow_private_destinations: None,
            allowed_destination_prefixes: Vec::new(),
            images_root: None,
            images_quota_bytes: crate::consumers::DEFAULT_IMAGES_QUOTA_BYTES,
            ca_file: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            // The port local AWS emulators use, so existing `--endpoint-url`s keep working.
            listen: SocketAddr::from(([127, 0, 0, 1], 4566)),
            data_dir: PathBuf::from("./data"),
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            shard_limit: 10_000,
            trim_interval_secs: 60,
            video_retention_hours: 168,
            public_url: None,
            auth: AuthSettings::default(),
            tls: None,
            limits: ConnectionLimits::default(),
            http: HttpSettings::default(),
            consumers: ConsumerSettings::default(),
            master_key_file: None,
            images: ImageSettings::default(),
            segment_min_bytes: framelog_store::DEFAULT_SEGMENT_MIN_BYTES,
            min_free_disk_bytes: framelog_store::DEFAULT_MIN_FREE_DISK_BYTES,
            block_cache_bytes: framelog_store::DEFAULT_BLOCK_CACHE_BYTES,
            config_file: None,
            cluster: None,
            kds: KdsConfig::default(),
            firehose: Default::default(),
            buckets: Default::default(),
            lambda_functions: Default::default(),
            glue_tables: Default::default(),
            webrtc: WebRtcConfig::default(),
            transcode: TranscodeConfig::default(),
            access_log: true,
        }
    }
}

/// The TOML file: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub region: Option<String>,
    pub account_id: Option<String>,
    pub shard_limit: Option<u32>,
    pub trim_interval_secs: Option<u64>,
    pub video_retention_hours: Option<u32>,
    pub public_url: Option<String>,
    pub auth: Option<AuthFile>,
    pub tls: Option<TlsFile>,
    pub limits: Option<LimitsFile>,
    pub http: Option<HttpFile>,
    pub consumers: Option<ConsumersFile>,
    pub encryption: Option<EncryptionFile>,
    pub images: Option<ImagesFile>,
    pub engine: Option<EngineFile>,
    pub cluster: Option<ClusterFile>,
    pub objects: Option<ObjectsFile>,
    pub kds: Option<KdsConfig>,
    pub firehose: Option<crate::firehose::FirehoseConfig>,
    pub buckets: Option<std::collections::BTreeMap<String, crate::firehose::BucketFile>>,
    pub lambda_functions: Option<std::collections::BTreeMap<String, crate::firehose::LambdaFunctionFile>>,
    pub glue_tables:
        Option<std::collections::BTreeMap<String, std::collections::BTreeMap<String, crate::firehose::GlueTableFile>>>,
    pub webrtc: Option<WebRtcConfig>,
    pub transcode: Option<TranscodeConfig>,
    pub access_log: Option<bool>,
}

/// The `[engine]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineFile {
    /// Payloads at least this large go to segment files; a huge value keeps every payload in
    /// RocksDB (the layout before segment files; benchmarks compare the two).
    pub segment_min_bytes: Option<u64>,
    /// Appends are refused (InternalFailure, an ERROR ack) while the disk has less free; 0 turns
    /// the watermark off.
    pub min_free_disk_bytes: Option<u64>,
    /// The block cache shared by every column family: recently read data blocks and index
    /// partitions.
    pub block_cache_bytes: Option<usize>,
}

/// The `[consumers]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumersFile {
    pub allow_private_destinations: Option<bool>,
    pub allowed_destination_prefixes: Option<Vec<String>>,
    pub images_root: Option<PathBuf>,
    pub images_quota_bytes: Option<u64>,
    pub ca_file: Option<PathBuf>,
}

/// The `[encryption]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionFile {
    /// 32 bytes; keep it off the data disk so a stolen disk holds no key.
    pub master_key_file: Option<PathBuf>,
}

/// The `[images]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagesFile {
    /// `false` decodes on the server's own threads (no crash isolation).
    pub isolate_decoder: Option<bool>,
    pub decoder_memory_limit_mib: Option<u64>,
}

/// The `[http]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFile {
    pub allowed_hosts: Option<Vec<String>>,
    pub allowed_origins: Option<Vec<String>>,
}

/// The `[limits]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    pub header_read_timeout_secs: Option<u64>,
    pub max_connections: Option<usize>,
    pub idle_timeout_secs: Option<u64>,
    pub stalled_response_timeout_secs: Option<u64>,
}

/// The `[tls]` table: a PEM certificate chain and its private key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// The `[auth]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFile {
    /// The credentials file (`framelog keys add` writes it); without one the server only listens on loopback.
    pub credentials_file: Option<PathBuf>,
    /// Let GET /metrics through without a signature, for Prometheus.
    pub public_metrics: Option<bool>,
}

impl Config {
    /// Applies a parsed file on top of `self`.
    pub fn merge(mut self, file: FileConfig) -> Self {
        self.listen = file.listen.unwrap_or(self.listen);
        self.data_dir = file.data_dir.unwrap_or(self.data_dir);
        self.region = file.region.unwrap_or(self.region);
        self.account_id = file.account_id.unwrap_or(self.account_id);
        self.shard_limit = file.shard_limit.unwrap_or(self.shard_limit);
        self.trim_interval_secs = file.trim_interval_secs.unwrap_or(self.trim_interval_secs);
        self.video_retention_hours = file.video_retention_hours.unwrap_or(self.video_retention_hours);
        if let Some(auth) = file.auth {
            self.auth.credentials_file = auth.credentials_file.or(self.auth.credentials_file);
            self.auth.public_metrics = auth.public_metrics.unwrap_or(self.auth.public_metrics);
        }
        if let Some(consumers) = file.consumers {
            let current = &mut self.consumers;
            current.allow_private_destinations =
                consumers.allow_private_destinations.or(current.allow_private_destinations);
            if let Some(prefixes) = consumers.allowed_destination_prefixes {
                current.allowed_destination_prefixes = prefixes;
            }
            current.images_root = consumers.images_root.or(current.images_root.take());
            current.images_quota_bytes = consumers.images_quota_bytes.unwrap_or(current.images_quota_bytes);
            current.ca_file = consumers.ca_file.or(current.ca_file.take());
        }
        if let Some(cluster) = file.cluster {
            self.cluster = Some(ClusterSettings { cluster, objects: file.objects });
        }
        if let Some(kds) = file.kds {
            self.kds = kds;
        }
        if let Some(firehose) = file.firehose {
            self.firehose = firehose;
        }
        if let Some(webrtc) = file.webrtc {
            self.webrtc = webrtc;
        }
        if let Some(transcode) = file.transcode {
            self.transcode = transcode;
        }
        self.access_log = file.access_log.unwrap_or(self.access_log);
        if let Some(buckets) = file.buckets {
            self.buckets = buckets;
        }
        if let Some(functions) = file.lambda_functions {
            self.lambda_functions = functions;
        }
        if let Some(tables) = file.glue_tables {
            self.glue_tables = tables;
        }
        if let Some(engine) = file.engine {
            self.segment_min_bytes = engine.segment_min_bytes.unwrap_or(self.segment_min_bytes);
            self.min_free_disk_bytes = engine.min_free_disk_bytes.unwrap_or(self.min_free_disk_bytes);
            self.block_cache_bytes = engine.block_cache_bytes.unwrap_or(self.block_cache_bytes);
        }
        if let Some(images) = file.images {
            if images.isolate_decoder == Some(false) {
                self.images.decoder_program = None;
            }
            self.images.decoder_memory_limit_mib =
                images.decoder_memory_limit_mib.unwrap_or(self.images.decoder_memory_limit_mib).max(1);
        }
        if let Some(encryption) = file.encryption {
            self.master_key_file = encryption.master_key_file.or(self.master_key_file);
        }
        if let Some(http) = file.http {
            self.http.allowed_hosts = http.allowed_hosts.unwrap_or(self.http.allowed_hosts);
            self.http.allowed_origins = http.allowed_origins.unwrap_or(self.http.allowed_origins);
        }
        if let Some(limits) = file.limits {
            if let Some(secs) = limits.header_read_timeout_secs {
                self.limits.header_read_timeout = std::time::Duration::from_secs(secs.max(1));
            }
            self.limits.max_connections = limits.max_connections.unwrap_or(self.limits.max_connections).max(1);
            if let Some(secs) = limits.idle_timeout_secs {
                self.limits.idle_timeout = std::time::Duration::from_secs(secs.max(1));
            }
            if let Some(secs) = limits.stalled_response_timeout_secs {
                self.limits.stalled_response_timeout = std::time::Duration::from_secs(secs.max(1));
            }
        }
        if let Some(tls) = file.tls {
            self.tls = Some(TlsSettings { cert_file: tls.cert_file, key_file: tls.key_file });
        }
        self.public_url = file.public_url.or(self.public_url).map(|u| u.trim_end_matches('/').to_string());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_values_replace_defaults_and_unknown_keys_are_rejected() {
        let file: FileConfig = toml::from_str("listen = \"127.0.0.1:9000\"\nshard_limit = 7\n").expect("parses");
        let config = Config::default().merge(file);
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.shard_limit, 7);
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert!(toml::from_str::<FileConfig>("listn = \"x\"").is_err());
        let file: FileConfig =
            toml::from_str("[auth]\ncredentials_file = \"/etc/framelog/keys.json\"\n").expect("parses");
        let config = Config::default().merge(file);
        assert_eq!(config.auth.credentials_file, Some(PathBuf::from("/etc/framelog/keys.json")));
        assert!(!config.auth.public_metrics);
    }

    #[test]
    fn the_images_table_sets_the_ceiling_and_can_turn_isolation_off() {
        let mut config = Config::default();
        config.images.decoder_program = Some(PathBuf::from("/usr/bin/framelog"));
        let file: FileConfig = toml::from_str("[images]\ndecoder_memory_limit_mib = 512\n").expect("parses");
        let config = config.merge(file);
        assert_eq!(config.images.decoder_memory_limit_mib, 512);
        assert_eq!(config.images.decoder_program, Some(PathBuf::from("/usr/bin/framelog")));
        let file: FileConfig = toml::from_str("[images]\nisolate_decoder = false\n").expect("parses");
        assert_eq!(config.merge(file).images.decoder_program, None);
    }
}
