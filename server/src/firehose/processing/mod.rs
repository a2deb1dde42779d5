//! Between a buffer and its objects: the destination's processors (de-aggregation, Lambda,
//! metadata extraction, the delimiter) and dynamic partitioning. A buffer becomes records grouped
//! by their partition keys, one object per group, and failures, written as error records under
//! the ErrorOutputPrefix by kind (`processing-failed`, `metadata-extraction-failed`,
//! `partitioning-failed`).
//!
//! Every step is deterministic but the function's answers: a buffer processed again after a
//! crash gives the same groups, so its objects get the same keys and overwrite the first ones.

mod deaggregation;
pub mod lambda;
mod metadata_extraction;
mod plan;
mod query_guard;

use std::collections::BTreeMap;

use serde_json::{Value, json};

pub use plan::ProcessingPlan;

use super::object_key::{PartitionKeys, Prefix};

/// One record on its way through the processors.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Unique within the buffer; sub-records add `.N` to their record's.
    pub record_id: String,
    pub data: Vec<u8>,
    pub arrival_ms: u64,
    /// `kinesisRecordMetadata` of a Kinesis stream source's record, for the Lambda event.
    pub kinesis: Option<Value>,
    pub partition_keys: PartitionKeys,
}

/// A record that failed a step, as its error record tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// `!{firehose:error-output-type}` of its object.
    pub output_type: &'static str,
    pub error_code: String,
    pub message: String,
    /// The record's data as it entered the step that failed.
    pub raw: Vec<u8>,
    pub arrival_ms: u64,
    pub attempts: u32,
    pub lambda_arn: Option<String>,
    /// For a record that did not fit the conversion's table: its `dataCatalogTable`. Such
    /// records are written in the format conversion's error format.
    pub catalog_table: Option<Value>,
}

/// What a buffer became.
#[derive(Debug, Default)]
pub struct Processed {
    /// Records by their keys (one group, with no keys, without dynamic partitioning), in order.
    pub groups: BTreeMap<PartitionKeys, Vec<Item>>,
    pub failures: Vec<Failure>,
}

/// What processing needs besides the plan.
pub struct Context<'a> {
    /// The Lambda processor's call, when there is one.
    pub lambda: Option<lambda::Invocation<'a>>,
    /// A Kinesis stream source: KPL aggregated records are unpacked first.
    pub kinesis_source: bool,
}

/// Runs `items` through the plan. `prefix` is the data prefix: the partition keys it names must
/// all be found, or the record fails.
pub async fn process(plan: &ProcessingPlan, prefix: &Prefix, context: &Context<'_>, items: Vec<Item>) -> Processed {
    let mut items = items;
    if context.kinesis_source {
        items = split_each(items, deaggregation::kpl_user_records);
    }
    if let Some(how) = &plan.deaggregation {
        items = split_each(items, |data| deaggregation::split(data, how));
    }
    let mut failures = Vec::new();
    if let Some(invocation) = &context.lambda {
        let (kept, failed) = lambda::transform(invocation, items).await;
        items = kept;
        failures.extend(failed);
    }
    if let Some(extraction) = &plan.extraction {
        let extracted = extract_off_runtime(extraction, &items).await;
        let mut kept = Vec::with_capacity(items.len());
        for (mut item, keys) in items.into_iter().zip(extracted) {
            match keys {
                Ok(keys) => {
                    item.partition_keys.from_query = keys;
                    kept.push(item);
                }
                Err(failed) => failures.push(partition_failure(
                    item,
                    "metadata-extraction-failed",
                    failed.error_code,
                    failed.message,
                )),
            }
        }
        items = kept;
    }
    let mut groups: BTreeMap<PartitionKeys, Vec<Item>> = BTreeMap::new();
    for item in items {
        if !plan.dynamic_partitioning {
            groups.entry(PartitionKeys::default()).or_default().push(item);
            continue;
        }
        match keys_for(prefix, &item.partition_keys) {
            Ok(keys) => groups.entry(keys).or_default().push(item),
            Err((error_code, message)) => {
                failures.push(partition_failure(item, "partitioning-failed", error_code, message))
            }
        }
    }
    Processed { groups, failures }
}

/// The query over every item, on a blocking thread (it is CPU work on untrusted records); one
/// result per item, a failure for each if the thread died.
async fn extract_off_runtime(
    extraction: &metadata_extraction::Extraction,
    items: &[Item],
) -> Vec<Result<BTreeMap<String, String>, metadata_extraction::ExtractionFailed>> {
    let (extraction, records) = (extraction.clone(), items.iter().map(|item| item.data.clone()).collect::<Vec<_>>());
    let count = records.len();
    let run = tokio::task::spawn_blocking(move || extraction.extract(records));
    run.await.unwrap_or_else(|_| vec![Err(metadata_extraction::ExtractionFailed::stopped()); count])
}

/// Each item replaced by its pieces; a piece of a split record gets `.N` on its id.
fn split_each(items: Vec<Item>, split: impl Fn(&[u8]) -> Vec<Vec<u8>>) -> Vec<Item> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let pieces = split(&item.data);
        if pieces.len() == 1 && pieces[0] == item.data {
            out.push(item);
            continue;
        }
        // Each piece takes the record's metadata, never a copy of its data.
        for (index, data) in pieces.into_iter().enumerate() {
            out.push(Item {
                record_id: format!("{}.{index}", item.record_id),
                data,
                arrival_ms: item.arrival_ms,
                kinesis: item.kinesis.clone(),
                partition_keys: item.partition_keys.clone(),
            });
        }
    }
    out
}

/// Only the keys the prefix names, so records differing in other keys share an object; an error
/// when one it names is missing.
/// Codes of ours (AWS publishes none for these): a key the prefix names is missing, or its value
/// cannot be part of an object key.
const KEY_MISSING: &str = "DynamicPartitioning.PartitionKeyMissing";
const KEY_INVALID: &str = "DynamicPartitioning.PartitionKeyInvalid";

fn keys_for(prefix: &Prefix, found: &PartitionKeys) -> Result<PartitionKeys, (&'static str, String)> {
    let mut keys = PartitionKeys::default();
    for (from_lambda, key) in prefix.partition_keys() {
        let (source, target, namespace) = if from_lambda {
            (&found.from_lambda, &mut keys.from_lambda, "partitionKeyFromLambda")
        } else {
            (&found.from_query, &mut keys.from_query, "partitionKeyFromQuery")
        };
        let value = source
            .get(key)
            .ok_or_else(|| (KEY_MISSING, format!("The record has no value for !{{{namespace}:{key}}}.")))?;
        check_key_value(value).map_err(|why| (KEY_INVALID, format!("The value of !{{{namespace}:{key}}} {why}.")))?;
        target.insert(key.to_string(), value.clone());
    }
    let total_bytes: usize = keys.from_query.values().chain(keys.from_lambda.values()).map(String::len).sum();
    if total_bytes > MAX_KEY_VALUES_BYTES {
        let message = format!("The partition key values come to {total_bytes} bytes, over {MAX_KEY_VALUES_BYTES}.");
        return Err((KEY_INVALID, message));
    }
    Ok(keys)
}

/// AWS evaluates a prefix to at most 512 characters; the values alone may not exceed that.
const MAX_KEY_VALUES_BYTES: usize = 512;

/// A value that could not name an object everywhere (an S3 key, a file path) fails its record
/// here rather than failing the object's write forever.
fn check_key_value(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("is empty");
    }
    if value.chars().any(char::is_control) {
        return Err("holds a control character");
    }
    if value.split('/').any(|segment| segment == "." || segment == ".." || segment.len() > 255) {
        return Err("holds a path segment that is '.', '..' or over 255 bytes");
    }
    Ok(())
}

fn partition_failure(item: Item, output_type: &'static str, error_code: &str, message: String) -> Failure {
    Failure {
        output_type,
        error_code: error_code.to_string(),
        message,
        raw: item.data,
        arrival_ms: item.arrival_ms,
        attempts: 1,
        lambda_arn: None,
        catalog_table: None,
    }
}

/// Failures as Firehose writes them: a JSON document per line
/// (<https://docs.aws.amazon.com/firehose/latest/dev/data-transformation-failure-handling.html>;
/// format conversion's, with `lastErrorCode` and the table:
/// <https://docs.aws.amazon.com/firehose/latest/dev/record-format-conversion-error-handling.html>).
pub fn error_records(failures: &[&Failure], ended_ms: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for failure in failures {
        let (code_key, message_key) = if failure.catalog_table.is_some() {
            ("lastErrorCode", "lastErrorMessage")
        } else {
            ("errorCode", "errorMessage")
        };
        let mut record = json!({
            "attemptsMade": failure.attempts,
            "arrivalTimestamp": failure.arrival_ms,
            code_key: failure.error_code,
            message_key: failure.message,
            "attemptEndingTimestamp": ended_ms,
            "rawData": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &failure.raw),
        });
        if let Some(arn) = &failure.lambda_arn {
            record["lambdaArn"] = json!(arn);
        }
        if let Some(table) = &failure.catalog_table {
            record["dataCatalogTable"] = table.clone();
        }
        out.extend_from_slice(record.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests;
