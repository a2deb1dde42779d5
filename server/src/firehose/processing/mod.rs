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
        let records: Vec<&[u8]> = items.iter().map(|item| item.data.as_slice()).collect();
        let extracted = extraction.extract(&records);
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
            Err(message) => failures.push(partition_failure(
                item,
                "partitioning-failed",
                "DynamicPartitioning.PartitionKeyMissing",
                message,
            )),
        }
    }
    Processed { groups, failures }
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
        for (index, data) in pieces.into_iter().enumerate() {
            out.push(Item { record_id: format!("{}.{index}", item.record_id), data, ..item.clone() });
        }
    }
    out
}

/// Only the keys the prefix names, so records differing in other keys share an object; an error
/// when one it names is missing.
fn keys_for(prefix: &Prefix, found: &PartitionKeys) -> Result<PartitionKeys, String> {
    let mut keys = PartitionKeys::default();
    for (from_lambda, key) in prefix.partition_keys() {
        let (source, target, namespace) = if from_lambda {
            (&found.from_lambda, &mut keys.from_lambda, "partitionKeyFromLambda")
        } else {
            (&found.from_query, &mut keys.from_query, "partitionKeyFromQuery")
        };
        let value = source.get(key).ok_or_else(|| format!("The record has no value for !{{{namespace}:{key}}}."))?;
        target.insert(key.to_string(), value.clone());
    }
    Ok(keys)
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
