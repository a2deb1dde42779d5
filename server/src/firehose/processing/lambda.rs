//! The Lambda processor, with a webhook standing in for the function: the URL of
//! `[lambda_functions.NAME]` receives Firehose's transformation event and answers as a Lambda
//! function would (<https://docs.aws.amazon.com/firehose/latest/dev/data-transformation.html>):
//! `{"records": [{"recordId", "result": "Ok" | "Dropped" | "ProcessingFailed", "data",
//! "metadata": {"partitionKeys": {...}}}]}`. Records go in invocations of at most the
//! processor's BufferSizeInMBs; an invocation that fails as a whole is retried NumberOfRetries
//! times, then its records fail with the Lambda error codes Firehose writes.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::body::Bytes;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use framelog_wire::Backoff;
use serde_json::{Value, json};

use super::plan::LambdaPlan;
use super::{Failure, Item};
use crate::consumers::DestinationPolicy;
use crate::consumers::outbound::{self, BodyKind, CallError};
use crate::consumers::webhook_url::WebhookUrl;
use crate::lambda_batches::by_event_size;

/// One `[lambda_functions.NAME]` table: the webhook that answers for function NAME.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LambdaFunctionFile {
    pub url: String,
}

impl std::fmt::Debug for LambdaFunctionFile {
    /// The URL may carry credentials: shown redacted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LambdaFunctionFile").field("url", &WebhookUrl::new(self.url.clone())).finish()
    }
}

/// Where and how to call the function for one buffer.
pub struct Invocation<'a> {
    pub policy: &'a DestinationPolicy,
    pub url: &'a WebhookUrl,
    pub plan: &'a LambdaPlan,
    pub stream_arn: &'a str,
    pub region: &'a str,
    /// A Kinesis source's stream ARN (the event's `sourceKinesisStreamArn`).
    pub source_stream_arn: Option<&'a str>,
    /// Derived from the buffer, so a buffer transformed again after a crash sends the same ids.
    pub invocation_id: String,
}

/// Waits between invocations that failed as a whole: 1 s doubling to a minute.
const RETRY: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
/// What each record adds to an event besides its base64 data (its id, time, field names).
const RECORD_OVERHEAD_BYTES: usize = 128;

/// What one invocation failed with, as Firehose writes it in error records.
struct InvokeFailed {
    error_code: &'static str,
    message: String,
    retry: bool,
}

/// The records transformed (with their partition keys from the function, if any) and the
/// failures; records the function dropped are in neither.
pub async fn transform(invocation: &Invocation<'_>, items: Vec<Item>) -> (Vec<Item>, Vec<Failure>) {
    let (mut kept, mut failures) = (Vec::new(), Vec::new());
    let batches = by_event_size(items, invocation.plan.batch_bytes, RECORD_OVERHEAD_BYTES, |item| item.data.len());
    for batch in batches {
        let (transformed, failed) = transform_batch(invocation, batch).await;
        kept.extend(transformed);
        failures.extend(failed);
    }
    (kept, failures)
}

async fn transform_batch(invocation: &Invocation<'_>, batch: Vec<Item>) -> (Vec<Item>, Vec<Failure>) {
    let body = Bytes::from(event(invocation, &batch).to_string());
    let attempts_allowed = invocation.plan.retries + 1;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let failed = match outbound::post(invocation.policy, invocation.url, BodyKind::LambdaEvent, &[], body.clone())
            .await
        {
            Ok((status, Some(answer))) if status.is_success() => return answered(invocation, batch, &answer, attempts),
            Ok((status, None)) if status.is_success() => InvokeFailed {
                error_code: "Lambda.JsonProcessingException",
                message: format!(
                    "The function's answer is over Lambda's {} byte limit.",
                    outbound::MAX_LAMBDA_ANSWER_BYTES
                ),
                retry: false,
            },
            Ok(_) => function_error(),
            Err(error) => call_failed(error),
        };
        if !failed.retry || attempts >= attempts_allowed {
            tracing::warn!(function = %invocation.plan.function, attempts, error_code = failed.error_code, message = %failed.message, "a Lambda transformation failed; its records go to the error prefix");
            let failures = batch
                .into_iter()
                .map(|item| failure(invocation, item, failed.error_code, &failed.message, attempts))
                .collect();
            return (Vec::new(), failures);
        }
        tokio::time::sleep(RETRY.step(attempts - 1)).await;
    }
}

fn function_error() -> InvokeFailed {
    InvokeFailed {
        error_code: "Lambda.FunctionError",
        message: "The Lambda function was successfully invoked but it returned an error result.".into(),
        retry: true,
    }
}

fn call_failed(error: CallError) -> InvokeFailed {
    match error {
        CallError::Refused(reason) => InvokeFailed {
            error_code: "Lambda.InvokeAccessDenied",
            message: format!("Access was denied: {reason}"),
            retry: false,
        },
        CallError::Failed(reason) if reason.contains("no answer") || reason.contains("did not finish") => {
            InvokeFailed {
                error_code: "Lambda.FunctionTimedOut",
                message: "The Lambda function invocation timed out.".into(),
                retry: true,
            }
        }
        CallError::Failed(_) => function_error(),
    }
}

/// Firehose's transformation event.
fn event(invocation: &Invocation<'_>, batch: &[Item]) -> Value {
    let records: Vec<Value> = batch
        .iter()
        .map(|item| {
            let mut record = json!({
                "recordId": item.record_id,
                "approximateArrivalTimestamp": item.arrival_ms,
                "data": STANDARD.encode(&item.data),
            });
            if let Some(kinesis) = &item.kinesis {
                record["kinesisRecordMetadata"] = kinesis.clone();
            }
            record
        })
        .collect();
    let mut event = json!({
        "invocationId": invocation.invocation_id,
        "deliveryStreamArn": invocation.stream_arn,
        "region": invocation.region,
        "records": records,
    });
    if let Some(arn) = invocation.source_stream_arn {
        event["sourceKinesisStreamArn"] = json!(arn);
    }
    event
}

/// The function's answer applied to the batch; every record is accounted for once.
fn answered(invocation: &Invocation<'_>, batch: Vec<Item>, answer: &[u8], attempts: u32) -> (Vec<Item>, Vec<Failure>) {
    let malformed = |batch: Vec<Item>| {
        let message = "There was an error parsing returned records from the Lambda function. Ensure that the returned records follow the status model required by Firehose.";
        let failures = batch
            .into_iter()
            .map(|item| failure(invocation, item, "Lambda.JsonProcessingException", message, attempts))
            .collect();
        (Vec::new(), failures)
    };
    let Some(records) =
        serde_json::from_slice::<Value>(answer).ok().and_then(|v| v.get("records").and_then(Value::as_array).cloned())
    else {
        return malformed(batch);
    };
    let mut by_id: HashMap<String, Value> = HashMap::new();
    let mut duplicated = false;
    for record in records {
        let id = record.get("recordId").and_then(Value::as_str).unwrap_or_default().to_string();
        duplicated |= by_id.insert(id, record).is_some();
    }
    if duplicated {
        let message = "Duplicate record Ids were returned. Ensure that the Lambda function returns unique record Ids for each record.";
        let failures = batch
            .into_iter()
            .map(|item| failure(invocation, item, "Lambda.DuplicatedRecordId", message, attempts))
            .collect();
        return (Vec::new(), failures);
    }
    let (mut kept, mut failures) = (Vec::new(), Vec::new());
    for mut item in batch {
        match by_id.get(&item.record_id).map(record_outcome) {
            None => failures.push(failure(invocation, item, "Lambda.MissingRecordId", "One or more record Ids were not returned. Ensure that the Lambda function returns all received record Ids.", attempts)),
            Some(Outcome::Dropped) => {}
            Some(Outcome::Failed) => failures.push(failure(invocation, item, "Lambda.ProcessingFailedStatus", "ProcessingFailed status set for record", attempts)),
            Some(Outcome::Malformed) => failures.push(failure(invocation, item, "Lambda.JsonProcessingException", "The returned record has no valid result or base64 data.", attempts)),
            Some(Outcome::Ok { data, partition_keys }) => {
                item.data = data;
                item.partition_keys.from_lambda.extend(partition_keys);
                kept.push(item);
            }
        }
    }
    (kept, failures)
}

enum Outcome {
    Ok { data: Vec<u8>, partition_keys: BTreeMap<String, String> },
    Dropped,
    Failed,
    Malformed,
}

fn record_outcome(record: &Value) -> Outcome {
    match record.get("result").and_then(Value::as_str) {
        Some("Dropped") => Outcome::Dropped,
        Some("ProcessingFailed") => Outcome::Failed,
        Some("Ok") => {
            let data = record.get("data").and_then(Value::as_str).and_then(|d| STANDARD.decode(d).ok());
            let partition_keys = record
                .pointer("/metadata/partitionKeys")
                .and_then(Value::as_object)
                .map(|keys| {
                    keys.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string)))
                        .collect()
                })
                .unwrap_or_default();
            match data {
                Some(data) => Outcome::Ok { data, partition_keys },
                None => Outcome::Malformed,
            }
        }
        _ => Outcome::Malformed,
    }
}

fn failure(invocation: &Invocation<'_>, item: Item, error_code: &str, message: &str, attempts: u32) -> Failure {
    Failure {
        output_type: "processing-failed",
        error_code: error_code.to_string(),
        message: message.to_string(),
        raw: item.data,
        arrival_ms: item.arrival_ms,
        attempts,
        lambda_arn: Some(invocation.plan.arn.clone()),
        catalog_table: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, data: &[u8]) -> Item {
        Item {
            record_id: id.into(),
            data: data.to_vec(),
            arrival_ms: 7,
            kinesis: None,
            partition_keys: Default::default(),
        }
    }

    fn with<T>(f: impl FnOnce(&Invocation<'_>) -> T) -> T {
        let policy = DestinationPolicy::default();
        let url = WebhookUrl::new("http://127.0.0.1:9/fn");
        let plan = LambdaPlan {
            arn: "arn:aws:lambda:r:1:function:f".into(),
            function: "f".into(),
            retries: 0,
            batch_bytes: 1 << 20,
        };
        f(&Invocation {
            policy: &policy,
            url: &url,
            plan: &plan,
            stream_arn: "arn:s",
            region: "r",
            source_stream_arn: None,
            invocation_id: "i".into(),
        })
    }

    fn batches(items: Vec<Item>, batch_bytes: usize) -> Vec<Vec<Item>> {
        by_event_size(items, batch_bytes, RECORD_OVERHEAD_BYTES, |item| item.data.len())
    }

    #[test]
    fn batches_stay_under_the_buffer_size() {
        let items: Vec<Item> = (0..10).map(|i| item(&i.to_string(), &[0; 300])).collect();
        let sizes: Vec<usize> = batches(items, 1000).iter().map(Vec::len).collect();
        assert_eq!(sizes, [1; 10], "400 base64 bytes and the overhead each");
        let sizes: Vec<usize> =
            batches((0..10).map(|i| item(&i.to_string(), &[0; 300])).collect(), 1100).iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 2, 2, 2, 2]);
        assert_eq!(
            batches((0..10).map(|i| item(&i.to_string(), b"")).collect(), 1000).len(),
            2,
            "empty records count too"
        );
        assert_eq!(batches(vec![item("big", &[0; 3000])], 1000).len(), 1);
    }

    #[test]
    fn every_answer_kind_is_applied() {
        let batch = vec![item("ok", b"a"), item("drop", b"b"), item("fail", b"c"), item("gone", b"d")];
        let answer = json!({"records": [
            {"recordId": "ok", "result": "Ok", "data": STANDARD.encode("A"), "metadata": {"partitionKeys": {"k": "v", "n": 1}}},
            {"recordId": "drop", "result": "Dropped"},
            {"recordId": "fail", "result": "ProcessingFailed", "data": ""},
        ]});
        let (kept, failed) = with(|inv| answered(inv, batch, answer.to_string().as_bytes(), 2));
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].data, b"A");
        assert_eq!(
            kept[0].partition_keys.from_lambda,
            BTreeMap::from([("k".into(), "v".into()), ("n".into(), "1".into())])
        );
        let codes: Vec<(&str, &[u8], u32)> =
            failed.iter().map(|f| (f.error_code.as_str(), f.raw.as_slice(), f.attempts)).collect();
        assert_eq!(codes, [("Lambda.ProcessingFailedStatus", &b"c"[..], 2), ("Lambda.MissingRecordId", &b"d"[..], 2)]);
    }

    #[test]
    fn malformed_and_duplicated_answers_fail_the_batch() {
        let (kept, failed) = with(|inv| answered(inv, vec![item("x", b"1")], b"not json", 1));
        assert!(kept.is_empty());
        assert_eq!(failed[0].error_code, "Lambda.JsonProcessingException");
        let twice =
            json!({"records": [{"recordId": "x", "result": "Dropped"}, {"recordId": "x", "result": "Dropped"}]});
        let (_, failed) = with(|inv| answered(inv, vec![item("x", b"1")], twice.to_string().as_bytes(), 1));
        assert_eq!(failed[0].error_code, "Lambda.DuplicatedRecordId");
    }
}
