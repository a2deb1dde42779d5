//! Records into Kinesis Data Streams (PutRecords) and Firehose (PutRecordBatch), for producers
//! of records such as the edge agent's file flows. Each call answers every record's fate: a
//! batch can store some records and refuse others (throttled, or a server fault), and the caller
//! sends those again.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::data_stream::RawEntry;
use crate::error::{Error, Result};

/// Most records one PutRecords or PutRecordBatch takes.
pub const MAX_BATCH_RECORDS: usize = 500;

/// One record for a data stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataRecord {
    pub partition_key: String,
    pub data: Vec<u8>,
}

/// Why the service did not store one record of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRefusal {
    pub error_code: String,
    pub message: String,
}

/// Each record's fate, in the order sent.
pub type BatchOutcome = Vec<Result<(), RecordRefusal>>;

impl crate::Client {
    /// PutRecords: up to 500 records into `stream`.
    pub async fn put_records(&self, stream: &str, records: &[DataRecord]) -> Result<BatchOutcome> {
        let entries: Vec<RawEntry> =
            records.iter().map(|r| (r.partition_key.as_str(), None, r.data.as_slice())).collect();
        let stored = self.put_raw_records(stream, &entries).await?;
        Ok(stored.into_iter().map(|result| result.map(drop)).collect())
    }

    /// PutRecordBatch: up to 500 records into the delivery stream `delivery_stream`.
    pub async fn put_record_batch(&self, delivery_stream: &str, records: &[Vec<u8>]) -> Result<BatchOutcome> {
        let engine = base64::engine::general_purpose::STANDARD;
        let entries: Vec<Value> = records.iter().map(|data| json!({"Data": engine.encode(data)})).collect();
        let document = json!({"DeliveryStreamName": delivery_stream, "Records": entries});
        let answer = self.transport.aws_json("firehose", "Firehose_20150804.PutRecordBatch", &document).await?;
        outcomes(&answer, "RequestResponses", records.len())
    }
}

/// Reads each record's result (`ErrorCode` for a refused one) from the answer's `list`.
fn outcomes(answer: &Value, list: &str, sent: usize) -> Result<BatchOutcome> {
    let results = answer.get(list).and_then(Value::as_array).ok_or_else(|| Error::Protocol(format!("no {list}")))?;
    if results.len() != sent {
        return Err(Error::Protocol(format!("{} results for {sent} records", results.len())));
    }
    Ok(results
        .iter()
        .map(|result| match result.get("ErrorCode").and_then(Value::as_str) {
            None => Ok(()),
            Some(code) => Err(RecordRefusal {
                error_code: code.to_string(),
                message: result.get("ErrorMessage").and_then(Value::as_str).unwrap_or_default().to_string(),
            }),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_record_gets_its_own_fate_in_order() {
        let answer = json!({"FailedRecordCount": 1, "Records": [
            {"SequenceNumber": "1", "ShardId": "shardId-000000000000"},
            {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded"},
        ]});
        let read = outcomes(&answer, "Records", 2).expect("read");
        assert_eq!(read[0], Ok(()));
        assert_eq!(read[1].as_ref().map_err(|r| r.error_code.as_str()), Err("ProvisionedThroughputExceededException"));
        assert!(outcomes(&answer, "Records", 3).is_err(), "a short answer is a protocol error");
    }
}
