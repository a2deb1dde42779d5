//! Lambda preprocessing of an input's records (InputProcessingConfiguration), with the URL of
//! `[lambda_functions.NAME]` standing in for the function, as for Firehose's processors. The
//! event is Kinesis Data Analytics' (<https://docs.aws.amazon.com/kinesisanalytics/latest/dev/lambda-preprocessing.html>):
//! `{"invocationId", "applicationArn", "streamArn", "records": [{"recordId",
//! "kinesisStreamRecordMetadata" | "kinesisFirehoseRecordMetadata", "data"}]}`, data in base64;
//! the answer `{"records": [{"recordId", "result": "Ok" | "Dropped" | "ProcessingFailed",
//! "data"}]}` replaces each record's data, drops it, or sends it to the error stream.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use framelog_wire::Backoff;
use serde_json::{Value, json};

use super::context::AnalyticsCtx;
use super::feed::{Feed, Item, arrival_metadata};
use super::spec::LambdaProcessor;
use crate::consumers::outbound::{self, BodyKind};
use crate::consumers::webhook_url::WebhookUrl;
use crate::lambda_batches::by_event_size;

/// Attempts of an invocation that fails as a whole before its records go to the error stream.
const ATTEMPTS: u32 = 4;
/// Waits between attempts: 1 s doubling.
const RETRY: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
/// An event's records' base64 stays under this (Lambda takes 6 MB of request).
const EVENT_BYTES: usize = 5 << 20;
/// What each record adds to an event besides its base64 data (its id and metadata).
const RECORD_OVERHEAD_BYTES: usize = 256;

/// A record that did not come through: the error stream's ERROR_NAME and MESSAGE for it.
pub struct Rejected {
    pub item: Item,
    pub name: &'static str,
    pub message: String,
}

pub struct Preprocessor {
    ctx: AnalyticsCtx,
    url: WebhookUrl,
    application_arn: String,
    stream_arn: String,
}

impl Preprocessor {
    /// The preprocessor of an input, or why it cannot run (its function is not configured).
    pub fn new(
        ctx: &AnalyticsCtx,
        processor: &LambdaProcessor,
        application_arn: String,
        stream_arn: String,
    ) -> Result<Preprocessor, String> {
        let url = ctx.function_url(&processor.resource_arn).map_err(|e| e.message.unwrap_or_default())?;
        Ok(Preprocessor { ctx: ctx.clone(), url, application_arn, stream_arn })
    }

    /// The items as the function left them (in their order, dropped ones gone), and those it
    /// failed; `feed` gives each record's metadata.
    pub async fn run(&self, feed: Option<&Feed>, items: Vec<Item>) -> (Vec<Item>, Vec<Rejected>) {
        let (mut kept, mut rejected) = (Vec::new(), Vec::new());
        for batch in by_event_size(items, EVENT_BYTES, RECORD_OVERHEAD_BYTES, |item| item.data.len()) {
            let (ok, failed) = self.invoke(feed, batch).await;
            kept.extend(ok);
            rejected.extend(failed);
        }
        (kept, rejected)
    }

    async fn invoke(&self, feed: Option<&Feed>, batch: Vec<Item>) -> (Vec<Item>, Vec<Rejected>) {
        let body = bytes::Bytes::from(self.event(feed, &batch).to_string());
        let mut last_error = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(RETRY.step(attempt - 1)).await;
            }
            let policy = &self.ctx.firehose.destinations;
            match outbound::post(policy, &self.url, BodyKind::LambdaEvent, &[], body.clone()).await {
                Ok((status, Some(answer))) if status.is_success() => match serde_json::from_slice(&answer) {
                    Ok(answer) => return answered(batch, &answer),
                    Err(error) => last_error = format!("The function's answer is not JSON: {error}"),
                },
                Ok((status, _)) => last_error = format!("The function answered HTTP {status}."),
                Err(error) => last_error = format!("The function could not be called: {error}"),
            }
        }
        tracing::warn!(function = %self.url, records = batch.len(), error = %last_error, "input preprocessing failed; its records go to the error stream");
        let rejected = batch
            .into_iter()
            .map(|item| Rejected { item, name: "Lambda_Invocation_Failed", message: last_error.clone() })
            .collect();
        (Vec::new(), rejected)
    }

    fn event(&self, feed: Option<&Feed>, batch: &[Item]) -> Value {
        let records: Vec<Value> = batch
            .iter()
            .map(|item| {
                // Without a feed (an object's lines sampled by DiscoverInputSchema) a record has
                // only its arrival time, as a delivery stream's does.
                let (member, metadata) = feed.map_or_else(|| arrival_metadata(item), |feed| feed.lambda_metadata(item));
                let mut record = json!({"recordId": record_id(item), "data": STANDARD.encode(&item.data)});
                record[member] = metadata;
                record
            })
            .collect();
        json!({
            // Derived from the batch, so a batch sent again after a crash has the same id.
            "invocationId": batch.first().map(record_id).unwrap_or_default(),
            "applicationArn": self.application_arn,
            "streamArn": self.stream_arn,
            "records": records,
        })
    }
}

fn record_id(item: &Item) -> String {
    format!("{}-{}", item.part, item.seq)
}

/// The batch as the answer has it: each record's result by its id.
fn answered(batch: Vec<Item>, answer: &Value) -> (Vec<Item>, Vec<Rejected>) {
    let results: HashMap<&str, &Value> =
        answer["records"].as_array().into_iter().flatten().filter_map(|r| Some((r["recordId"].as_str()?, r))).collect();
    let (mut kept, mut rejected) = (Vec::new(), Vec::new());
    for mut item in batch {
        let failed = |message: String| Rejected { item: item.clone(), name: "Lambda_Processing_Failed", message };
        let Some(result) = results.get(record_id(&item).as_str()) else {
            rejected.push(failed("The function's answer has no result for this record.".into()));
            continue;
        };
        match result["result"].as_str() {
            Some("Ok") => match STANDARD.decode(result["data"].as_str().unwrap_or_default()) {
                Ok(data) => {
                    item.data = data;
                    kept.push(item);
                }
                Err(_) => rejected.push(failed("The function's data for this record is not base64.".into())),
            },
            Some("Dropped") => {}
            Some("ProcessingFailed") => rejected.push(failed("The function answered ProcessingFailed.".into())),
            other => rejected.push(failed(format!("The function answered the result {other:?}."))),
        }
    }
    (kept, rejected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(seq: u64, data: &str) -> Item {
        Item { part: "0".into(), seq, arrival_ms: 1, data: data.as_bytes().to_vec(), attrs: Vec::new() }
    }

    #[test]
    fn each_result_keeps_drops_or_fails_its_record() {
        let batch = vec![item(1, "a"), item(2, "b"), item(3, "c"), item(4, "d"), item(5, "e")];
        let answer = json!({"records": [
            {"recordId": "0-1", "result": "Ok", "data": STANDARD.encode("A")},
            {"recordId": "0-2", "result": "Dropped"},
            {"recordId": "0-3", "result": "ProcessingFailed", "data": ""},
            {"recordId": "0-5", "result": "Ok", "data": "%%%"},
        ]});
        let (kept, rejected) = answered(batch, &answer);
        assert_eq!(kept.iter().map(|i| (i.seq, i.data.clone())).collect::<Vec<_>>(), vec![(1, b"A".to_vec())]);
        let failed: Vec<(u64, &str)> = rejected.iter().map(|r| (r.item.seq, r.name)).collect();
        assert_eq!(
            failed,
            vec![(3, "Lambda_Processing_Failed"), (4, "Lambda_Processing_Failed"), (5, "Lambda_Processing_Failed")]
        );
        assert_eq!(rejected[0].item.data, b"c", "a failed record keeps its original data");
        assert!(rejected[1].message.contains("no result"), "{}", rejected[1].message);
    }
}
