//! Server configuration: defaults, an optional TOML file, then command-line flags (flags win).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::auth::AuthSettings;
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
}
