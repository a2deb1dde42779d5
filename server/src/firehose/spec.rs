//! A delivery stream's stored definition (in its engine stream's settings, `firehose.spec`) and
//! the delivery plan read from it.
//!
//! The destination is stored as the client's `ExtendedS3DestinationConfiguration` with AWS's
//! defaults filled in, so DescribeDeliveryStream shows what was asked for; `S3Plan` is what
//! delivery needs from it, checked when the stream is created or updated.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::buffer::Hints;
use super::compression::Compression;
use super::format_conversion::{ConversionPlan, GlueTables};
use super::object_key::Prefixes;
use super::processing::ProcessingPlan;

pub const SPEC_KEY: &str = "firehose.spec";

/// What CreateDeliveryStream stored, and UpdateDestination changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryStreamSpec {
    /// `DirectPut` or `KinesisStreamAsSource`.
    pub stream_type: String,
    /// VersionId: 1 at creation, one more for every UpdateDestination.
    pub version: u64,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// The KinesisStreamSourceConfiguration as given, with the time reading started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinesis_source: Option<KinesisSource>,
    /// Which destination configuration `destination` is.
    #[serde(default)]
    pub destination_kind: DestinationKind,
    /// ExtendedS3DestinationConfiguration or HttpEndpointDestinationConfiguration, with AWS's
    /// defaults filled in.
    pub destination: Value,
    /// Server-side encryption of the stored records: the key type and ARN, when on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Value>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DestinationKind {
    #[default]
    ExtendedS3,
    HttpEndpoint,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KinesisSource {
    pub stream_arn: String,
    pub role_arn: String,
    pub started_ms: u64,
    /// Read from the stream's oldest record rather than from `started_ms` (LATEST, AWS's way):
    /// asked for with the tag `framelog:StartingPosition=TRIM_HORIZON` at creation.
    #[serde(default)]
    pub from_trim_horizon: bool,
}

impl DeliveryStreamSpec {
    pub fn from_settings(settings: &std::collections::BTreeMap<String, String>) -> Option<DeliveryStreamSpec> {
        settings.get(SPEC_KEY).and_then(|text| serde_json::from_str(text).ok())
    }
}

/// The S3 members every S3 destination has (S3DestinationConfiguration), with AWS's defaults.
const S3_MEMBERS: &[&str] = &[
    "RoleARN",
    "BucketARN",
    "Prefix",
    "ErrorOutputPrefix",
    "BufferingHints",
    "CompressionFormat",
    "EncryptionConfiguration",
    "CloudWatchLoggingOptions",
];

/// Fills the members AWS shows with defaults when a client left them out.
pub fn with_defaults(mut destination: Map<String, Value>) -> Value {
    let hints = destination.entry("BufferingHints").or_insert_with(|| json!({}));
    if let Value::Object(hints) = hints {
        hints.entry("SizeInMBs").or_insert(json!(5));
        hints.entry("IntervalInSeconds").or_insert(json!(300));
    }
    destination.entry("CompressionFormat").or_insert(json!("UNCOMPRESSED"));
    destination.entry("EncryptionConfiguration").or_insert(json!({"NoEncryptionConfig": "NoEncryption"}));
    destination.entry("CloudWatchLoggingOptions").or_insert(json!({"Enabled": false}));
    destination.entry("Prefix").or_insert(json!(""));
    destination.entry("S3BackupMode").or_insert(json!("Disabled"));
    Value::Object(destination)
}

/// An HTTP endpoint destination with AWS's defaults, its S3 backup's included.
pub fn http_with_defaults(mut destination: Map<String, Value>) -> Value {
    let hints = destination.entry("BufferingHints").or_insert_with(|| json!({}));
    if let Value::Object(hints) = hints {
        hints.entry("SizeInMBs").or_insert(json!(5));
        hints.entry("IntervalInSeconds").or_insert(json!(300));
    }
    destination.entry("RequestConfiguration").or_insert(json!({"ContentEncoding": "NONE"}));
    destination.entry("RetryOptions").or_insert(json!({"DurationInSeconds": 300}));
    destination.entry("S3BackupMode").or_insert(json!("FailedDataOnly"));
    destination.entry("CloudWatchLoggingOptions").or_insert(json!({"Enabled": false}));
    let backup = destination.remove("S3Configuration").and_then(|v| v.as_object().cloned()).unwrap_or_default();
    destination.insert("S3Configuration".into(), with_defaults(backup));
    Value::Object(destination)
}

/// An UpdateDestination's members over the stored ones: structures merge member by member,
/// anything else is replaced (AWS keeps what an update leaves out).
pub fn merged(stored: &Value, update: &Value) -> Value {
    match (stored, update) {
        (Value::Object(stored), Value::Object(update)) => {
            let mut out = stored.clone();
            for (key, value) in update {
                let next = out.get(key).map_or_else(|| value.clone(), |old| merged(old, value));
                out.insert(key.clone(), next);
            }
            Value::Object(out)
        }
        (_, update) => update.clone(),
    }
}

/// DescribeDeliveryStream's destination.
pub fn describe(kind: DestinationKind, destination: &Value) -> Value {
    match kind {
        DestinationKind::ExtendedS3 => describe_destination(destination),
        DestinationKind::HttpEndpoint => {
            let mut shown = destination.as_object().cloned().unwrap_or_default();
            // The access key is a secret: AWS never shows it.
            if let Some(Value::Object(endpoint)) = shown.get_mut("EndpointConfiguration") {
                endpoint.remove("AccessKey");
            }
            if let Some(backup) = shown.remove("S3Configuration") {
                shown.insert("S3DestinationDescription".into(), plain_s3(&backup));
            }
            json!({"DestinationId": DESTINATION_ID, "HttpEndpointDestinationDescription": shown})
        }
    }
}

/// The members of an S3DestinationDescription.
fn plain_s3(destination: &Value) -> Value {
    let members = destination.as_object();
    let plain: Map<String, Value> = S3_MEMBERS
        .iter()
        .filter_map(|name| members.and_then(|m| m.get(*name)).map(|v| (name.to_string(), v.clone())))
        .collect();
    Value::Object(plain)
}

/// The extended description and, as AWS adds, the plain S3 one.
fn describe_destination(destination: &Value) -> Value {
    let mut extended = destination.as_object().cloned().unwrap_or_default();
    if let Some(backup) = extended.remove("S3BackupConfiguration") {
        extended.insert("S3BackupDescription".into(), backup);
    }
    let plain = plain_s3(&Value::Object(extended.clone()));
    json!({
        "DestinationId": DESTINATION_ID,
        "S3DestinationDescription": plain,
        "ExtendedS3DestinationDescription": extended,
    })
}

/// A delivery stream has one destination, and AWS names it so.
pub const DESTINATION_ID: &str = "destinationId-000000000001";

/// What delivery needs, read from a stored destination.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    S3(S3Plan),
    /// An HTTP endpoint, its buffering, and the S3 bucket its failed (or all) records go to.
    Http {
        http: super::http_endpoint::HttpPlan,
        hints: Hints,
        backup: S3Plan,
    },
}

impl Plan {
    /// `tables`: the server's `[glue_tables]`, for DataFormatConversion.
    pub fn of(kind: DestinationKind, destination: &Value, tables: &GlueTables) -> Result<Plan, String> {
        match kind {
            DestinationKind::ExtendedS3 => S3Plan::from_destination(destination, tables).map(Plan::S3),
            DestinationKind::HttpEndpoint => {
                let processing = destination.get("ProcessingConfiguration");
                if processing.and_then(|p| p.get("Enabled")).and_then(Value::as_bool) == Some(true) {
                    return Err(
                        "ProcessingConfiguration is not supported for HTTP endpoint destinations by this server yet."
                            .into(),
                    );
                }
                let backup = S3Plan::from_destination(
                    destination.get("S3Configuration").unwrap_or(&Value::Null),
                    &GlueTables::new(),
                )?;
                let http = super::http_endpoint::HttpPlan::from_destination(destination)?;
                let hints = buffering(destination.get("BufferingHints"));
                Ok(Plan::Http { http, hints, backup })
            }
        }
    }

    pub fn hints(&self) -> Hints {
        match self {
            Plan::S3(plan) => plan.hints,
            Plan::Http { hints, .. } => *hints,
        }
    }

    /// The bucket objects go to: the destination's, or an HTTP endpoint's backup.
    pub fn bucket(&self) -> &str {
        match self {
            Plan::S3(plan) | Plan::Http { backup: plan, .. } => &plan.bucket,
        }
    }
}

fn buffering(hints: Option<&Value>) -> Hints {
    let number = |name: &str, default: u64| hints.and_then(|h| h.get(name)).and_then(Value::as_u64).unwrap_or(default);
    Hints { size_bytes: number("SizeInMBs", 5) << 20, interval_ms: number("IntervalInSeconds", 300) * 1000 }
}

/// What delivery to an S3 destination needs, read from its stored configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct S3Plan {
    /// NAME of `arn:aws:s3:::NAME`.
    pub bucket: String,
    pub prefixes: Prefixes,
    pub hints: Hints,
    pub compression: Compression,
    /// FileExtension, or the compression's.
    pub extension: String,
    /// The processors and dynamic partitioning between the buffer and the objects.
    pub processing: ProcessingPlan,
    /// DataFormatConversion to Parquet, when enabled.
    pub conversion: Option<ConversionPlan>,
}

impl S3Plan {
    /// The plan, or the reason this configuration cannot be delivered (InvalidArgumentException).
    pub fn from_destination(destination: &Value, tables: &GlueTables) -> Result<S3Plan, String> {
        let text = |name: &str| destination.get(name).and_then(Value::as_str);
        let bucket_arn = text("BucketARN").unwrap_or_default();
        let bucket = bucket_arn
            .split_once(":s3:::")
            .map(|(_, name)| name.to_string())
            .filter(|name| !name.is_empty() && !name.contains('/'))
            .ok_or_else(|| format!("BucketARN {bucket_arn} is not an S3 bucket ARN."))?;
        let prefixes = Prefixes::new(text("Prefix"), text("ErrorOutputPrefix"))?;
        let hints = destination.get("BufferingHints");
        let number =
            |name: &str, default: u64| hints.and_then(|h| h.get(name)).and_then(Value::as_u64).unwrap_or(default);
        let hints =
            Hints { size_bytes: number("SizeInMBs", 5) << 20, interval_ms: number("IntervalInSeconds", 300) * 1000 };
        let compression = Compression::parse(text("CompressionFormat").unwrap_or("UNCOMPRESSED"))?;
        refuse_unsupported(destination)?;
        let processing = ProcessingPlan::from_destination(destination, &prefixes, number("SizeInMBs", 5))?;
        let conversion = ConversionPlan::from_destination(destination, tables)?;
        let default_extension = if conversion.is_some() { ".parquet" } else { compression.extension() };
        let extension = text("FileExtension").filter(|e| !e.is_empty()).unwrap_or(default_extension).to_string();
        Ok(S3Plan { bucket, prefixes, hints, compression, extension, processing, conversion })
    }
}

/// The parts of an S3 destination this server does not deliver yet: refused at creation with a
/// clear message rather than accepted and ignored.
fn refuse_unsupported(destination: &Value) -> Result<(), String> {
    if destination.get("S3BackupMode").and_then(Value::as_str) == Some("Enabled") {
        return Err("S3BackupMode Enabled is not supported by this server yet.".into());
    }
    if destination.get("CustomTimeZone").and_then(Value::as_str).is_some_and(|z| !z.is_empty() && z != "UTC") {
        return Err("CustomTimeZone other than UTC is not supported by this server yet.".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_filled_as_aws_describes_them() {
        let stored = with_defaults(
            json!({"RoleARN": "r", "BucketARN": "arn:aws:s3:::b"}).as_object().cloned().unwrap_or_default(),
        );
        assert_eq!(stored["BufferingHints"], json!({"SizeInMBs": 5, "IntervalInSeconds": 300}));
        assert_eq!(stored["CompressionFormat"], "UNCOMPRESSED");
        assert_eq!(stored["EncryptionConfiguration"], json!({"NoEncryptionConfig": "NoEncryption"}));
        let described = describe_destination(&stored);
        assert_eq!(described["DestinationId"], DESTINATION_ID);
        assert_eq!(described["S3DestinationDescription"]["BucketARN"], "arn:aws:s3:::b");
        assert!(described["S3DestinationDescription"].get("S3BackupMode").is_none());
        let plan = S3Plan::from_destination(&stored, &GlueTables::new()).expect("valid");
        assert_eq!(plan.bucket, "b");
        assert_eq!(plan.hints, Hints { size_bytes: 5 << 20, interval_ms: 300_000 });
        assert_eq!(plan.extension, "");
    }

    #[test]
    fn updates_merge_structures_and_replace_the_rest() {
        let stored = json!({"BufferingHints": {"SizeInMBs": 5, "IntervalInSeconds": 300}, "Prefix": "a/"});
        let update = json!({"BufferingHints": {"IntervalInSeconds": 60}, "Prefix": "b/"});
        assert_eq!(
            merged(&stored, &update),
            json!({"BufferingHints": {"SizeInMBs": 5, "IntervalInSeconds": 60}, "Prefix": "b/"})
        );
    }

    #[test]
    fn processors_and_features_not_delivered_are_refused() {
        let base = json!({"BucketARN": "arn:aws:s3:::b", "CompressionFormat": "GZIP"});
        let delimited = merged(
            &base,
            &json!({"ProcessingConfiguration": {"Enabled": true, "Processors": [{"Type": "AppendDelimiterToRecord"}]}}),
        );
        let plan = S3Plan::from_destination(&delimited, &GlueTables::new()).expect("valid");
        assert_eq!(plan.processing.delimiter.as_deref(), Some(&b"\n"[..]));
        assert_eq!(plan.extension, ".gz");
        let decompression = merged(
            &base,
            &json!({"ProcessingConfiguration": {"Enabled": true, "Processors": [{"Type": "Decompression"}]}}),
        );
        assert!(
            S3Plan::from_destination(&decompression, &GlueTables::new())
                .expect_err("refused")
                .contains("Decompression")
        );
        let parquet = merged(&base, &json!({"DataFormatConversionConfiguration": {}}));
        assert!(S3Plan::from_destination(&parquet, &GlueTables::new()).is_err(), "Enabled defaults to true");
        let bad_arn = json!({"BucketARN": "arn:aws:s3:::"});
        assert!(S3Plan::from_destination(&bad_arn, &GlueTables::new()).is_err());
    }
}
