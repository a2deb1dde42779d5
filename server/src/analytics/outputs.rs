//! Rows out of an application: each in-application stream an output names, encoded as JSON
//! objects or CSV lines (its columns, not ROWTIME) and put into a KDS stream (PutRecords) or a
//! delivery stream (PutRecordBatch) through those services' own calls, so quotas, metrics and
//! validation apply as to any producer. Records refused (throttled) are sent again until stored.
//!
//! Each KDS record's partition key is the row's deterministic id: `pump/window start/row` for
//! a window's rows, so a window written again after a crash is recognisable.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use framelog_analytics::arrow::array::RecordBatch;
use framelog_analytics::arrow::json::LineDelimitedWriter;
use framelog_analytics::arrow::util::display::{ArrayFormatter, FormatOptions};
use framelog_analytics::{Emitted, ROWTIME};
use framelog_wire::Backoff;
use serde_json::{Value, json};

use super::context::AnalyticsCtx;
use super::spec::OutputSpec;
use crate::background::Background;
use crate::consumers::outbound::BodyKind;
use crate::document::Document;

/// PutRecords and PutRecordBatch take at most 500 records.
const MAX_BATCH: usize = 500;
const RETRY: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));

/// One record for an output.
#[derive(Debug, Clone)]
pub struct OutRecord {
    pub key: String,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct Outputs {
    ctx: AnalyticsCtx,
    background: Background,
    outputs: Vec<OutputSpec>,
    application_arn: String,
}

impl Outputs {
    pub fn new(
        ctx: AnalyticsCtx,
        background: Background,
        outputs: Vec<OutputSpec>,
        application_arn: String,
    ) -> Outputs {
        Outputs { ctx, background, outputs, application_arn }
    }

    /// Whether any output reads `stream`.
    pub fn reads(&self, stream: &str) -> bool {
        self.outputs.iter().any(|o| o.name == stream)
    }

    /// Writes every batch to the outputs that name its stream; returns once all are stored.
    pub async fn deliver(&self, emitted: &[Emitted], batch_id: &str) {
        for (index, batch) in emitted.iter().enumerate() {
            for output in self.outputs.iter().filter(|o| o.name == batch.stream) {
                let prefix = match &batch.window {
                    Some(window) => format!("{}/{}", window.pump, window.start_ms),
                    None => format!("{batch_id}/{index}"),
                };
                let records = encode(&batch.rows, &output.format, &prefix);
                self.put(output, records).await;
            }
        }
    }

    /// Writes records (the error stream's) to the outputs that name `stream`.
    pub async fn deliver_records(&self, stream: &str, records: Vec<OutRecord>) {
        for output in self.outputs.iter().filter(|o| o.name == stream) {
            self.put(output, records.clone()).await;
        }
    }

    /// Puts `records` into the output's destination, sending refused ones again until stored.
    async fn put(&self, output: &OutputSpec, records: Vec<OutRecord>) {
        for chunk in records.chunks(MAX_BATCH) {
            let mut pending: Vec<OutRecord> = chunk.to_vec();
            let mut attempt = 0;
            while !pending.is_empty() {
                let refused = self.put_once(output, pending.clone()).await;
                pending = refused;
                if !pending.is_empty() {
                    tracing::warn!(output = %output.id, records = pending.len(), "output records refused; sending them again");
                    tokio::time::sleep(RETRY.step(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }

    /// One PutRecords or PutRecordBatch call (or Lambda invocation); the records it did not store.
    async fn put_once(&self, output: &OutputSpec, records: Vec<OutRecord>) -> Vec<OutRecord> {
        if output.destination_member == "LambdaOutput" {
            return self.invoke(output, records).await;
        }
        let encoded: Vec<Value> = records
            .iter()
            .map(|r| match output.destination_member.as_str() {
                "KinesisFirehoseOutput" => json!({"Data": STANDARD.encode(&r.data)}),
                _ => json!({"Data": STANDARD.encode(&r.data), "PartitionKey": r.key}),
            })
            .collect();
        let (ctx, arn, member) = (self.ctx.clone(), output.resource_arn.clone(), output.destination_member.clone());
        let answer = self
            .background
            .spawn_blocking(move || {
                let name = arn.rsplit(['/']).next().unwrap_or_default().to_string();
                match member.as_str() {
                    "KinesisFirehoseOutput" => {
                        let body = Document::parse(json!({"DeliveryStreamName": name, "Records": encoded}))?;
                        crate::firehose::call(&ctx.firehose, "PutRecordBatch", body)
                    }
                    _ => {
                        let body = Document::parse(json!({"StreamName": name, "Records": encoded}))?;
                        crate::kds::call(&ctx.kds, "PutRecords", body)
                    }
                }
            })
            .await;
        let answer = match answer {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => {
                tracing::warn!(output = %output.id, error = %error.message.clone().unwrap_or_default(), "an output call failed");
                return records;
            }
            Err(_) => return records,
        };
        let results = answer.get("Records").or_else(|| answer.get("RequestResponses")).and_then(Value::as_array);
        match results {
            Some(results) => records
                .into_iter()
                .zip(results)
                .filter(|(_, result)| result.get("ErrorCode").is_some_and(|c| !c.is_null()))
                .map(|(record, _)| record)
                .collect(),
            None => records,
        }
    }
}

impl Outputs {
    /// Posts the records to the function standing in for the output's Lambda, in the event
    /// Kinesis Data Analytics sent (`invocationId`, `applicationArn`, `records` of `recordId`,
    /// `lambdaDeliveryRecordMetadata.retryHint`, base64 `data`); the records it did not answer
    /// `Ok` for.
    async fn invoke(&self, output: &OutputSpec, records: Vec<OutRecord>) -> Vec<OutRecord> {
        let url = match self.ctx.function_url(&output.resource_arn) {
            Ok(url) => url,
            Err(error) => {
                tracing::warn!(output = %output.id, error = %error.message.unwrap_or_default(), "the output's function is not configured");
                return records;
            }
        };
        let event = json!({
            "invocationId": records.first().map_or("", |r| r.key.as_str()),
            "applicationArn": self.application_arn,
            "records": records.iter().map(|r| json!({
                "recordId": r.key,
                "lambdaDeliveryRecordMetadata": {"retryHint": 0},
                "data": STANDARD.encode(&r.data),
            })).collect::<Vec<_>>(),
        });
        let body = bytes::Bytes::from(event.to_string());
        let answer =
            crate::consumers::outbound::post(&self.ctx.firehose.destinations, &url, BodyKind::LambdaEvent, &[], body)
                .await;
        let answered: Value = match answer {
            Ok((status, Some(answer))) if status.is_success() => serde_json::from_slice(&answer).unwrap_or_default(),
            _ => return records,
        };
        let delivered: std::collections::HashSet<&str> = answered["records"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["result"] == "Ok")
            .filter_map(|r| r["recordId"].as_str())
            .collect();
        records.iter().filter(|r| !delivered.contains(r.key.as_str())).cloned().collect()
    }
}

/// A batch's rows as output records: JSON objects or CSV lines of its columns (not ROWTIME),
/// keyed `prefix/row`.
pub fn encode(rows: &RecordBatch, format: &str, prefix: &str) -> Vec<OutRecord> {
    let mut columns = rows.clone();
    if columns.schema().fields().first().is_some_and(|f| f.name() == ROWTIME) {
        columns.remove_column(0);
    }
    let lines = if format == "CSV" { csv_lines(&columns) } else { json_lines(&columns) };
    lines.into_iter().enumerate().map(|(i, data)| OutRecord { key: format!("{prefix}/{i}"), data }).collect()
}

fn json_lines(rows: &RecordBatch) -> Vec<Vec<u8>> {
    let mut buffer = Vec::new();
    {
        let mut writer = LineDelimitedWriter::new(&mut buffer);
        if writer.write(rows).and_then(|()| writer.finish()).is_err() {
            return Vec::new();
        }
    }
    buffer.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect()
}

fn csv_lines(rows: &RecordBatch) -> Vec<Vec<u8>> {
    let options = FormatOptions::default();
    let formatters: Vec<ArrayFormatter> =
        rows.columns().iter().filter_map(|c| ArrayFormatter::try_new(c.as_ref(), &options).ok()).collect();
    (0..rows.num_rows())
        .map(|row| {
            let fields: Vec<String> = formatters.iter().map(|f| f.value(row).to_string()).collect();
            fields.join(",").into_bytes()
        })
        .collect()
}
