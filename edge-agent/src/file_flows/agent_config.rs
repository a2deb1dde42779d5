//! The Kinesis Agent's configuration (`agent.json`, or the same keys under `[agent]` in
//! edge.toml), with the Agent's names and defaults
//! (<https://docs.aws.amazon.com/streams/latest/dev/writing-with-agents.html>), so a deployment
//! switches by changing its endpoints.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

/// PutRecords takes 5 MiB a call, PutRecordBatch 4 MiB.
const KINESIS_MAX_BUFFER_BYTES: usize = 5 << 20;
const FIREHOSE_MAX_BUFFER_BYTES: usize = 4 << 20;
/// The largest record each service stores; longer ones are cut and end with the terminator.
pub const KINESIS_MAX_RECORD_BYTES: usize = 1 << 20;
pub const FIREHOSE_MAX_RECORD_BYTES: usize = 1000 << 10;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentConfig {
    #[serde(rename = "kinesis.endpoint")]
    pub kinesis_endpoint: Option<String>,
    #[serde(rename = "firehose.endpoint")]
    pub firehose_endpoint: Option<String>,
    pub aws_access_key_id: Option<String>,
    pub aws_secret_access_key: Option<String>,
    #[serde(default = "default_region")]
    pub region: String,
    /// Where each file's position is kept across restarts.
    #[serde(default = "default_checkpoint_file")]
    pub checkpoint_file: PathBuf,
    pub flows: Vec<FlowConfig>,
    /// Accepted for compatibility; metrics are on the status endpoint's `/metrics`.
    #[serde(default, rename = "cloudwatch.emitMetrics")]
    pub emit_metrics: Option<bool>,
    #[serde(default, rename = "cloudwatch.endpoint")]
    pub cloudwatch_endpoint: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PartitionKeyOption {
    /// A random key per record: records spread over every shard.
    #[default]
    Random,
    /// A key derived from the record's bytes: equal records go to one shard.
    Deterministic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InitialPosition {
    /// Files found at the first start are read from their beginning.
    #[default]
    StartOfFile,
    /// Files found at the first start are read only from what is appended after it.
    EndOfFile,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FlowConfig {
    /// A path whose file name may hold `*` and `?` (`/var/log/app.log*`).
    pub file_pattern: String,
    pub kinesis_stream: Option<String>,
    pub delivery_stream: Option<String>,
    #[serde(default)]
    pub partition_key_option: PartitionKeyOption,
    #[serde(default)]
    pub initial_position: InitialPosition,
    /// A record starts at a line this pattern matches; other lines continue the record.
    pub multi_line_start_pattern: Option<String>,
    #[serde(default)]
    pub skip_header_lines: usize,
    #[serde(default = "default_terminator")]
    pub truncated_record_terminator: String,
    #[serde(default = "default_buffer_age_ms")]
    pub max_buffer_age_millis: u64,
    #[serde(default = "default_buffer_records")]
    pub max_buffer_size_records: usize,
    pub max_buffer_size_bytes: Option<usize>,
    #[serde(default)]
    pub data_processing_options: Vec<ProcessingOption>,
}

/// One step of `dataProcessingOptions`, applied in order to each record.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "optionName", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProcessingOption {
    /// Joins a multi-line record into one line.
    Singleline,
    #[serde(rename_all = "camelCase")]
    Csvtojson {
        custom_field_names: Vec<String>,
        #[serde(default = "default_delimiter")]
        delimiter: String,
    },
    #[serde(rename_all = "camelCase")]
    Logtojson {
        log_format: LogFormat,
        match_pattern: Option<String>,
        #[serde(default)]
        custom_field_names: Vec<String>,
    },
    /// The EC2 instance metadata an Agent on EC2 adds; an edge device has none, so the flow is
    /// refused rather than sent without it.
    #[serde(rename = "ADDEC2METADATA")]
    AddEc2Metadata {},
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LogFormat {
    Commonapachelog,
    Combinedapachelog,
    Apacheerrorlog,
    Syslog,
    #[serde(rename = "RFC3339SYSLOG")]
    Rfc3339Syslog,
}

/// Where a flow's records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Stream(String),
    DeliveryStream(String),
}

impl FlowConfig {
    pub fn destination(&self) -> Destination {
        match (&self.kinesis_stream, &self.delivery_stream) {
            (Some(stream), _) => Destination::Stream(stream.clone()),
            (None, Some(stream)) => Destination::DeliveryStream(stream.clone()),
            (None, None) => Destination::Stream(String::new()),
        }
    }

    /// The most bytes one call carries: the configured size, within the service's limit.
    pub fn buffer_bytes(&self) -> usize {
        let limit = match self.destination() {
            Destination::Stream(_) => KINESIS_MAX_BUFFER_BYTES,
            Destination::DeliveryStream(_) => FIREHOSE_MAX_BUFFER_BYTES,
        };
        self.max_buffer_size_bytes.unwrap_or(limit).clamp(1, limit)
    }

    pub fn max_record_bytes(&self) -> usize {
        match self.destination() {
            Destination::Stream(_) => KINESIS_MAX_RECORD_BYTES,
            Destination::DeliveryStream(_) => FIREHOSE_MAX_RECORD_BYTES,
        }
    }

    fn check(&self, endpoints: (bool, bool)) -> anyhow::Result<()> {
        let name = &self.file_pattern;
        match (&self.kinesis_stream, &self.delivery_stream) {
            (Some(_), Some(_)) => bail!("flow {name}: give kinesisStream or deliveryStream, not both"),
            (None, None) => bail!("flow {name}: kinesisStream or deliveryStream is required"),
            (Some(_), None) if !endpoints.0 => bail!("flow {name}: kinesisStream needs kinesis.endpoint"),
            (None, Some(_)) if !endpoints.1 => bail!("flow {name}: deliveryStream needs firehose.endpoint"),
            _ => {}
        }
        let file_name = Path::new(name).file_name().and_then(|n| n.to_str()).unwrap_or_default();
        glob::Pattern::new(file_name).with_context(|| format!("flow {name}: filePattern"))?;
        if Path::new(name).parent().is_some_and(|dir| dir.to_string_lossy().contains(['*', '?'])) {
            bail!("flow {name}: only the file name of filePattern may hold wildcards");
        }
        if let Some(pattern) = &self.multi_line_start_pattern {
            regex::Regex::new(pattern).with_context(|| format!("flow {name}: multiLineStartPattern"))?;
        }
        if !(1..=crate::file_flows::MAX_BATCH_RECORDS).contains(&self.max_buffer_size_records) {
            bail!("flow {name}: maxBufferSizeRecords must be 1 to 500");
        }
        if !(1_000..=900_000).contains(&self.max_buffer_age_millis) {
            bail!("flow {name}: maxBufferAgeMillis must be 1000 to 900000");
        }
        for option in &self.data_processing_options {
            super::processing::Processor::new(option).with_context(|| format!("flow {name}: dataProcessingOptions"))?;
        }
        Ok(())
    }
}

impl AgentConfig {
    pub fn load(path: &Path) -> anyhow::Result<AgentConfig> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let config: AgentConfig = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a valid agent configuration", path.display()))?;
        config.check()?;
        Ok(config)
    }

    pub fn check(&self) -> anyhow::Result<()> {
        if self.flows.is_empty() {
            bail!("the agent configuration has no flows");
        }
        let endpoints = (self.kinesis_endpoint.is_some(), self.firehose_endpoint.is_some());
        self.flows.iter().try_for_each(|flow| flow.check(endpoints))
    }
}

fn default_region() -> String {
    "us-east-1".into()
}
fn default_checkpoint_file() -> PathBuf {
    PathBuf::from("/var/run/aws-kinesis-agent/checkpoints")
}
fn default_terminator() -> String {
    "\n".into()
}
fn default_buffer_age_ms() -> u64 {
    60_000
}
fn default_buffer_records() -> usize {
    500
}
fn default_delimiter() -> String {
    ",".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_json_reads_with_the_agents_names_and_defaults() {
        let text = r#"{
            "kinesis.endpoint": "http://127.0.0.1:4566",
            "checkpointFile": "/tmp/checkpoints",
            "cloudwatch.emitMetrics": true,
            "flows": [{"filePattern": "/var/log/app.log*", "kinesisStream": "logs",
                       "partitionKeyOption": "DETERMINISTIC", "initialPosition": "END_OF_FILE",
                       "dataProcessingOptions": [{"optionName": "CSVTOJSON", "customFieldNames": ["a", "b"]}]}]
        }"#;
        let config: AgentConfig = serde_json::from_str(text).expect("parses");
        config.check().expect("valid");
        let flow = &config.flows[0];
        assert_eq!(flow.destination(), Destination::Stream("logs".into()));
        assert_eq!(flow.partition_key_option, PartitionKeyOption::Deterministic);
        assert_eq!(flow.initial_position, InitialPosition::EndOfFile);
        assert_eq!((flow.max_buffer_age_millis, flow.max_buffer_size_records), (60_000, 500));
        assert_eq!(flow.buffer_bytes(), 5 << 20);
        assert_eq!(flow.truncated_record_terminator, "\n");
    }

    #[test]
    fn flows_without_a_destination_or_its_endpoint_are_refused() {
        let config = |flow: &str| -> AgentConfig {
            serde_json::from_str(&format!(r#"{{"kinesis.endpoint": "http://x", "flows": [{flow}]}}"#)).expect("parses")
        };
        assert!(config(r#"{"filePattern": "/a"}"#).check().is_err());
        assert!(config(r#"{"filePattern": "/a", "deliveryStream": "d"}"#).check().is_err(), "no firehose.endpoint");
        assert!(config(r#"{"filePattern": "/x*/a", "kinesisStream": "s"}"#).check().is_err());
        let ec2 = r#"{"filePattern": "/a", "kinesisStream": "s", "dataProcessingOptions": [{"optionName": "ADDEC2METADATA"}]}"#;
        assert!(config(ec2).check().is_err());
    }
}
