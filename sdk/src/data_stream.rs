//! The Kinesis Data Streams calls the record producer and the consumer group are built on:
//! ListShards, PutRecords with explicit hash keys and per-record results, GetShardIterator and
//! GetRecords. Plain awsJson1_1, as any KDS client sends it.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::records::RecordRefusal;

const TARGET: &str = "Kinesis_20131202.";

/// A shard as ListShards shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    pub shard_id: String,
    pub parent_shard_id: Option<String>,
    pub adjacent_parent_shard_id: Option<String>,
    pub start_hash: u128,
    pub end_hash: u128,
    /// Closed by a reshard: it takes no more records.
    pub closed: bool,
}

/// One record for PutRecords, routed by its partition key or an explicit hash key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedRecord {
    pub partition_key: String,
    pub explicit_hash_key: Option<String>,
    pub data: Vec<u8>,
}

/// A record to put, borrowed: partition key, explicit hash key, data.
pub(crate) type RawEntry<'a> = (&'a str, Option<&'a str>, &'a [u8]);

/// Where a stored record went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub shard_id: String,
    pub sequence_number: String,
}

/// A record as GetRecords returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    pub sequence_number: String,
    pub partition_key: String,
    pub data: Vec<u8>,
    pub arrival_epoch_ms: u64,
}

/// Where a shard iterator starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IteratorStart {
    TrimHorizon,
    Latest,
    AtTimestamp { epoch_ms: u64 },
    AtSequence(String),
    AfterSequence(String),
}

/// One GetRecords answer.
#[derive(Debug, Clone, Default)]
pub struct RecordsPage {
    pub records: Vec<StreamRecord>,
    /// None once a closed shard has been read to its end.
    pub next_iterator: Option<String>,
    pub millis_behind_latest: u64,
}

impl crate::Client {
    /// ListShards, every page.
    pub async fn list_shards(&self, stream: &str) -> Result<Vec<ShardInfo>> {
        let mut shards = Vec::new();
        let mut request = json!({"StreamName": stream});
        loop {
            let answer = self.kinesis_call("ListShards", &request).await?;
            let page = answer.get("Shards").and_then(Value::as_array).ok_or_else(|| missing("Shards"))?;
            shards.extend(page.iter().map(shard_info).collect::<Result<Vec<_>>>()?);
            match answer.get("NextToken").and_then(Value::as_str) {
                Some(token) => request = json!({"NextToken": token}),
                None => return Ok(shards),
            }
        }
    }

    /// PutRecords with each record's fate: where it was stored, or why not.
    pub async fn put_routed_records(
        &self,
        stream: &str,
        records: &[RoutedRecord],
    ) -> Result<Vec<Result<StoredRecord, RecordRefusal>>> {
        let entries: Vec<RawEntry> = records
            .iter()
            .map(|r| (r.partition_key.as_str(), r.explicit_hash_key.as_deref(), r.data.as_slice()))
            .collect();
        self.put_raw_records(stream, &entries).await
    }

    /// PutRecords of borrowed (partition key, explicit hash key, data) entries.
    pub(crate) async fn put_raw_records(
        &self,
        stream: &str,
        entries: &[RawEntry<'_>],
    ) -> Result<Vec<Result<StoredRecord, RecordRefusal>>> {
        let engine = base64::engine::general_purpose::STANDARD;
        let documents: Vec<Value> = entries
            .iter()
            .map(|(partition_key, explicit_hash_key, data)| {
                let mut entry = json!({"Data": engine.encode(data), "PartitionKey": partition_key});
                if let Some(key) = explicit_hash_key {
                    entry["ExplicitHashKey"] = (*key).into();
                }
                entry
            })
            .collect();
        let answer = self.kinesis_call("PutRecords", &json!({"StreamName": stream, "Records": documents})).await?;
        let results = answer.get("Records").and_then(Value::as_array).ok_or_else(|| missing("Records"))?;
        if results.len() != entries.len() {
            return Err(Error::Protocol(format!("{} results for {} records", results.len(), entries.len())));
        }
        Ok(results.iter().map(put_result).collect())
    }

    /// GetShardIterator.
    pub async fn get_shard_iterator(&self, stream: &str, shard_id: &str, start: &IteratorStart) -> Result<String> {
        let mut request = json!({"StreamName": stream, "ShardId": shard_id});
        let kind = match start {
            IteratorStart::TrimHorizon => "TRIM_HORIZON",
            IteratorStart::Latest => "LATEST",
            IteratorStart::AtTimestamp { epoch_ms } => {
                request["Timestamp"] = (*epoch_ms as f64 / 1000.0).into();
                "AT_TIMESTAMP"
            }
            IteratorStart::AtSequence(sequence) => {
                request["StartingSequenceNumber"] = sequence.clone().into();
                "AT_SEQUENCE_NUMBER"
            }
            IteratorStart::AfterSequence(sequence) => {
                request["StartingSequenceNumber"] = sequence.clone().into();
                "AFTER_SEQUENCE_NUMBER"
            }
        };
        request["ShardIteratorType"] = kind.into();
        let answer = self.kinesis_call("GetShardIterator", &request).await?;
        text(&answer, "ShardIterator")
    }

    /// GetRecords: up to `limit` records from `iterator`.
    pub async fn get_records(&self, iterator: &str, limit: usize) -> Result<RecordsPage> {
        let answer = self.kinesis_call("GetRecords", &json!({"ShardIterator": iterator, "Limit": limit})).await?;
        let records = answer.get("Records").and_then(Value::as_array).ok_or_else(|| missing("Records"))?;
        Ok(RecordsPage {
            records: records.iter().map(stream_record).collect::<Result<_>>()?,
            next_iterator: answer.get("NextShardIterator").and_then(Value::as_str).map(str::to_string),
            millis_behind_latest: answer.get("MillisBehindLatest").and_then(Value::as_u64).unwrap_or(0),
        })
    }

    /// Any KDS operation by name (`CreateStream`, `SplitShard`, ...), JSON in and out.
    pub async fn kinesis_call(&self, operation: &str, request: &Value) -> Result<Value> {
        self.transport.aws_json("kinesis", &format!("{TARGET}{operation}"), request).await
    }
}

/// The 128-bit hash key Kinesis routes a partition key by: its MD5, read big-endian.
pub fn partition_hash_key(partition_key: &str) -> u128 {
    use md5::{Digest, Md5};
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

fn shard_info(value: &Value) -> Result<ShardInfo> {
    let range = value.get("HashKeyRange").ok_or_else(|| missing("HashKeyRange"))?;
    let hash = |name: &str| -> Result<u128> {
        text(range, name)?.parse().map_err(|_| Error::Protocol(format!("{name} is not a 128-bit number")))
    };
    let optional = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_string);
    Ok(ShardInfo {
        shard_id: text(value, "ShardId")?,
        parent_shard_id: optional("ParentShardId"),
        adjacent_parent_shard_id: optional("AdjacentParentShardId"),
        start_hash: hash("StartingHashKey")?,
        end_hash: hash("EndingHashKey")?,
        closed: value.pointer("/SequenceNumberRange/EndingSequenceNumber").is_some(),
    })
}

fn put_result(value: &Value) -> Result<StoredRecord, RecordRefusal> {
    if let Some(code) = value.get("ErrorCode").and_then(Value::as_str) {
        let message = value.get("ErrorMessage").and_then(Value::as_str).unwrap_or_default();
        return Err(RecordRefusal { error_code: code.to_string(), message: message.to_string() });
    }
    let field = |name: &str| value.get(name).and_then(Value::as_str).unwrap_or_default().to_string();
    Ok(StoredRecord { shard_id: field("ShardId"), sequence_number: field("SequenceNumber") })
}

fn stream_record(value: &Value) -> Result<StreamRecord> {
    let data = base64::engine::general_purpose::STANDARD
        .decode(text(value, "Data")?)
        .map_err(|e| Error::Protocol(format!("a record's Data: {e}")))?;
    let arrival_secs = value.get("ApproximateArrivalTimestamp").and_then(Value::as_f64).unwrap_or(0.0);
    Ok(StreamRecord {
        sequence_number: text(value, "SequenceNumber")?,
        partition_key: text(value, "PartitionKey")?,
        data,
        arrival_epoch_ms: (arrival_secs * 1000.0) as u64,
    })
}

fn text(value: &Value, name: &str) -> Result<String> {
    value.get(name).and_then(Value::as_str).map(str::to_string).ok_or_else(|| missing(name))
}

fn missing(name: &str) -> Error {
    Error::Protocol(format!("no {name} in the answer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_key_hashes_to_its_md5_read_big_endian() {
        // MD5("a") = 0cc175b9c0f1b6a831c399e269772661, as Kinesis documents the routing.
        assert_eq!(partition_hash_key("a"), 0x0cc175b9c0f1b6a831c399e269772661);
    }

    #[test]
    fn a_shard_is_read_with_its_parents_and_whether_it_is_closed() {
        let value = json!({
            "ShardId": "shardId-000000000002", "ParentShardId": "shardId-000000000000",
            "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": "340282366920938463463374607431768211455"},
            "SequenceNumberRange": {"StartingSequenceNumber": "1", "EndingSequenceNumber": "9"},
        });
        let shard = shard_info(&value).expect("valid");
        assert_eq!(shard.parent_shard_id.as_deref(), Some("shardId-000000000000"));
        assert_eq!(shard.end_hash, u128::MAX);
        assert!(shard.closed);
        assert!(shard_info(&json!({"ShardId": "s"})).is_err(), "a shard without a range is refused");
    }
}
