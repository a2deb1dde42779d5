//! What a destination's ProcessingConfiguration and DynamicPartitioningConfiguration ask for,
//! read and checked once (at creation and update, and again before delivery). The processors
//! run in Firehose's fixed order whatever order they are listed in: de-aggregation, Lambda,
//! metadata extraction, then the delimiter (docs/firehose.md).

use serde_json::Value;

use super::super::object_key::Prefixes;
use super::metadata_extraction::Extraction;

/// How RecordDeAggregation splits a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubRecords {
    /// Concatenated (or newline-separated) JSON objects.
    Json,
    /// Pieces between occurrences of the delimiter.
    Delimited(Vec<u8>),
}

/// A Lambda processor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LambdaPlan {
    pub arn: String,
    /// The function's name in the ARN: `[lambda_functions.NAME]` in the config says where it is.
    pub function: String,
    /// Invocations after the first that failed as a whole (NumberOfRetries, default 3).
    pub retries: u32,
    /// Records per invocation up to this many bytes (BufferSizeInMBs, default 1).
    pub batch_bytes: usize,
}

/// Everything between the buffer and the object.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProcessingPlan {
    pub deaggregation: Option<SubRecords>,
    pub lambda: Option<LambdaPlan>,
    pub extraction: Option<Extraction>,
    /// AppendDelimiterToRecord: written after every record.
    pub delimiter: Option<Vec<u8>>,
    /// DynamicPartitioningConfiguration.Enabled: objects per partition-key value.
    pub dynamic_partitioning: bool,
}

const DEFAULT_LAMBDA_RETRIES: u32 = 3;
const DEFAULT_LAMBDA_BUFFER_BYTES: usize = 1 << 20;
/// BufferSizeInMBs's maximum (Firehose's; Lambda's own payload limit is 6 MB).
const MAX_LAMBDA_BUFFER_BYTES: usize = 3 << 20;

impl ProcessingPlan {
    /// Reads the destination's processing members; the message of an InvalidArgumentException
    /// when they cannot be delivered as given.
    pub fn from_destination(destination: &Value, prefixes: &Prefixes, size_mb: u64) -> Result<Self, String> {
        let mut plan = match destination.get("ProcessingConfiguration") {
            Some(processing) if processing.get("Enabled").and_then(Value::as_bool) == Some(true) => {
                processors(processing)?
            }
            _ => ProcessingPlan::default(),
        };
        plan.dynamic_partitioning = destination
            .get("DynamicPartitioningConfiguration")
            .and_then(|c| c.get("Enabled"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        plan.check_partitioning(destination, prefixes, size_mb)?;
        Ok(plan)
    }

    /// Whether records reach the object as they were put (only a delimiter added, if any).
    pub fn is_plain(&self) -> bool {
        self.deaggregation.is_none() && self.lambda.is_none() && self.extraction.is_none()
    }

    /// AWS's rules tying the prefix to dynamic partitioning, with AWS's messages. (A prefix
    /// with expressions needs an ErrorOutputPrefix: Prefixes::new checks that.)
    fn check_partitioning(&self, destination: &Value, prefixes: &Prefixes, size_mb: u64) -> Result<(), String> {
        let keys: Vec<(bool, &str)> = prefixes.data().partition_keys().collect();
        if !self.dynamic_partitioning {
            if !keys.is_empty() {
                return Err("Dynamic Partitioning Namespaces can only be part of a prefix expression when Dynamic Partitioning is enabled.".into());
            }
            return Ok(());
        }
        let processing_enabled = destination
            .get("ProcessingConfiguration")
            .and_then(|p| p.get("Enabled"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if !processing_enabled {
            return Err("Processing Configuration is not enabled when DataPartitioning is enabled".into());
        }
        if keys.is_empty() {
            return Err(
                "S3 Prefix should contain Dynamic Partitioning namespaces when Dynamic Partitioning is enabled".into(),
            );
        }
        if keys.iter().any(|(from_lambda, _)| *from_lambda) && self.lambda.is_none() {
            return Err(
                "Lambda should be present when S3 Prefix contains keys from partitionKeyFromLambda namespace".into()
            );
        }
        if keys.iter().any(|(from_lambda, _)| !from_lambda) && self.extraction.is_none() {
            return Err(
                "MetadataExtraction processor should be present when S3 Prefix has partitionKeyFromQuery namespace"
                    .into(),
            );
        }
        if size_mb < 64 {
            return Err("BufferingHints.SizeInMBs must be at least 64 when Dynamic Partitioning is enabled.".into());
        }
        Ok(())
    }
}

/// The enabled processors of a ProcessingConfiguration.
fn processors(processing: &Value) -> Result<ProcessingPlan, String> {
    let mut plan = ProcessingPlan::default();
    for processor in processing.get("Processors").and_then(Value::as_array).into_iter().flatten() {
        let kind = processor.get("Type").and_then(Value::as_str).unwrap_or_default();
        let parameters = Parameters(processor.get("Parameters").and_then(Value::as_array).cloned().unwrap_or_default());
        match kind {
            "AppendDelimiterToRecord" => {
                let given = parameters.get("Delimiter");
                plan.delimiter = Some(given.map_or_else(|| b"\n".to_vec(), unescape));
            }
            "RecordDeAggregation" => plan.deaggregation = Some(sub_records(&parameters)?),
            "Lambda" => plan.lambda = Some(lambda(&parameters)?),
            "MetadataExtraction" => plan.extraction = Some(extraction(&parameters)?),
            other => return Err(format!("Processor type {other} is not supported by this server yet.")),
        }
    }
    Ok(plan)
}

/// A processor's `Parameters`, by name.
struct Parameters(Vec<Value>);

impl Parameters {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find_map(|p| {
            (p.get("ParameterName").and_then(Value::as_str) == Some(name))
                .then(|| p.get("ParameterValue").and_then(Value::as_str))
                .flatten()
        })
    }
}

/// The console writes `\n` and `\t` as two characters; AWS reads them as the control characters.
fn unescape(text: &str) -> Vec<u8> {
    text.replace("\\n", "\n").replace("\\t", "\t").into_bytes()
}

fn sub_records(parameters: &Parameters) -> Result<SubRecords, String> {
    match parameters.get("SubRecordType").unwrap_or("JSON") {
        "JSON" => Ok(SubRecords::Json),
        "DELIMITED" => {
            let encoded = parameters.get("Delimiter").ok_or("The DELIMITED SubRecordType requires a Delimiter.")?;
            let delimiter = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded)
                .map_err(|_| format!("Delimiter {encoded} is not base64."))?;
            if delimiter.is_empty() {
                return Err("Delimiter must not be empty.".into());
            }
            Ok(SubRecords::Delimited(delimiter))
        }
        other => Err(format!("SubRecordType {other} is not one of JSON, DELIMITED.")),
    }
}

fn lambda(parameters: &Parameters) -> Result<LambdaPlan, String> {
    let arn = parameters.get("LambdaArn").ok_or("The Lambda processor requires a LambdaArn.")?;
    // arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]
    let function = arn
        .split(':')
        .collect::<Vec<_>>()
        .get(6)
        .filter(|name| arn.starts_with("arn:") && arn.contains(":lambda:") && !name.is_empty())
        .map(|name| name.to_string())
        .ok_or_else(|| format!("LambdaArn {arn} is not a Lambda function ARN."))?;
    let retries = match parameters.get("NumberOfRetries") {
        None => DEFAULT_LAMBDA_RETRIES,
        Some(text) => text
            .parse()
            .ok()
            .filter(|n| *n <= 300)
            .ok_or_else(|| format!("NumberOfRetries {text} is not a number from 0 to 300."))?,
    };
    let batch_bytes = match parameters.get("BufferSizeInMBs") {
        None => DEFAULT_LAMBDA_BUFFER_BYTES,
        Some(text) => text
            .parse::<f64>()
            .ok()
            .filter(|mb| (0.2..=3.0).contains(mb))
            .map(|mb| ((mb * (1 << 20) as f64) as usize).min(MAX_LAMBDA_BUFFER_BYTES))
            .ok_or_else(|| format!("BufferSizeInMBs {text} is not a number from 0.2 to 3."))?,
    };
    Ok(LambdaPlan { arn: arn.to_string(), function, retries, batch_bytes })
}

fn extraction(parameters: &Parameters) -> Result<Extraction, String> {
    let engine = parameters.get("JsonParsingEngine").unwrap_or("JQ-1.6");
    if engine != "JQ-1.6" {
        return Err(format!("JsonParsingEngine {engine} is not supported; use JQ-1.6."));
    }
    let query = parameters
        .get("MetadataExtractionQuery")
        .ok_or("The MetadataExtraction processor requires a MetadataExtractionQuery.")?;
    Extraction::compile(query)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn plan(destination: Value) -> Result<ProcessingPlan, String> {
        let text = |name: &str| destination.get(name).and_then(Value::as_str);
        let prefixes = Prefixes::new(text("Prefix"), text("ErrorOutputPrefix"))?;
        let size_mb = destination.pointer("/BufferingHints/SizeInMBs").and_then(Value::as_u64).unwrap_or(5);
        ProcessingPlan::from_destination(&destination, &prefixes, size_mb)
    }

    fn processor(kind: &str, parameters: &[(&str, &str)]) -> Value {
        let parameters: Vec<Value> =
            parameters.iter().map(|(n, v)| json!({"ParameterName": n, "ParameterValue": v})).collect();
        json!({"Type": kind, "Parameters": parameters})
    }

    fn partitioned(prefix: &str, processors: Vec<Value>) -> Value {
        json!({
            "Prefix": prefix,
            "ErrorOutputPrefix": "errors/!{firehose:error-output-type}/",
            "BufferingHints": {"SizeInMBs": 64},
            "DynamicPartitioningConfiguration": {"Enabled": true},
            "ProcessingConfiguration": {"Enabled": true, "Processors": processors},
        })
    }

    #[test]
    fn processors_are_read_with_their_defaults() {
        let lambda = processor("Lambda", &[("LambdaArn", "arn:aws:lambda:us-east-1:123:function:shape:3")]);
        let split = processor("RecordDeAggregation", &[("SubRecordType", "DELIMITED"), ("Delimiter", "IyMjIw==")]);
        let destination = json!({"ProcessingConfiguration": {"Enabled": true, "Processors": [lambda, split, processor("AppendDelimiterToRecord", &[])]}});
        let read = plan(destination).expect("valid");
        assert_eq!(read.deaggregation, Some(SubRecords::Delimited(b"####".to_vec())));
        let lambda = read.lambda.as_ref().expect("lambda");
        assert_eq!((lambda.function.as_str(), lambda.retries, lambda.batch_bytes), ("shape", 3, 1 << 20));
        assert_eq!(read.delimiter, Some(b"\n".to_vec()));
        assert!(!read.is_plain());
    }

    #[test]
    fn dynamic_partitioning_follows_aws_rules() {
        let query = processor(
            "MetadataExtraction",
            &[("MetadataExtractionQuery", "{id:.id}"), ("JsonParsingEngine", "JQ-1.6")],
        );
        assert!(plan(partitioned("id=!{partitionKeyFromQuery:id}/", vec![query.clone()])).is_ok());
        let no_keys = plan(partitioned("data/", vec![query.clone()])).expect_err("refused");
        assert!(no_keys.contains("should contain Dynamic Partitioning namespaces"), "{no_keys}");
        let no_lambda = plan(partitioned("!{partitionKeyFromLambda:id}/", vec![query.clone()])).expect_err("refused");
        assert!(no_lambda.starts_with("Lambda should be present"), "{no_lambda}");
        let mut small = partitioned("!{partitionKeyFromQuery:id}/", vec![query.clone()]);
        small["BufferingHints"]["SizeInMBs"] = json!(5);
        assert!(plan(small).expect_err("refused").contains("at least 64"));
        let off =
            json!({"Prefix": "!{partitionKeyFromQuery:id}/", "ErrorOutputPrefix": "e/!{firehose:error-output-type}/"});
        assert!(plan(off).expect_err("refused").starts_with("Dynamic Partitioning Namespaces can only"));
        let bad_query = processor("MetadataExtraction", &[("MetadataExtractionQuery", "{id:.id")]);
        assert!(plan(partitioned("!{partitionKeyFromQuery:id}/", vec![bad_query])).is_err());
    }

    #[test]
    fn unsupported_processors_and_values_are_refused() {
        let decompress =
            json!({"ProcessingConfiguration": {"Enabled": true, "Processors": [processor("Decompression", &[])]}});
        assert!(plan(decompress).expect_err("refused").contains("Decompression"));
        let bad_arn = processor("Lambda", &[("LambdaArn", "arn:aws:s3:::bucket")]);
        assert!(plan(json!({"ProcessingConfiguration": {"Enabled": true, "Processors": [bad_arn]}})).is_err());
        let bad_size = processor("Lambda", &[("LambdaArn", "arn:aws:lambda:r:1:function:f"), ("BufferSizeInMBs", "9")]);
        assert!(plan(json!({"ProcessingConfiguration": {"Enabled": true, "Processors": [bad_size]}})).is_err());
    }
}
