//! KDS writers and what they were told: each payload is sent in exactly one PutRecords call
//! (the SDK's retries are off), so a payload stored twice is the server's doing, and a payload
//! acknowledged and then missing is a loss.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};

pub const STREAM: &str = "crash-records";
pub const SHARDS: i32 = 4;
const RECORDS_PER_CALL: usize = 10;
const PAUSE: Duration = Duration::from_millis(100);

/// One acknowledged record.
#[derive(Debug, Clone)]
pub struct Acked {
    pub shard: String,
    pub sequence: String,
    pub payload: Vec<u8>,
}

#[derive(Debug, Default)]
pub struct Ledger {
    pub acked: Vec<Acked>,
    pub failed_calls: u64,
}

pub fn client(url: &str) -> aws_sdk_kinesis::Client {
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(Credentials::new("AKIDUMMY", "dummy", None, None, "static"))
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            aws_sdk_kinesis::config::timeout::TimeoutConfig::builder()
                .operation_timeout(Duration::from_secs(10))
                .build(),
        )
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_kinesis::Client::from_conf(config)
}

fn payload(writer: usize, index: u64) -> Vec<u8> {
    // From a few bytes to ~6 KB: inline and blob-file payloads both.
    let size = 16 + (index as usize * 7_919 + writer * 104_729) % 6_000;
    let mut bytes = format!("w{writer}-{index}-").into_bytes();
    bytes.resize(size, (writer as u64 + index) as u8);
    bytes
}

/// Writes until `stop`; every acknowledged record goes into `ledger`.
pub async fn write(url: String, writer: usize, ledger: Arc<Mutex<Ledger>>, stop: Arc<AtomicBool>) {
    let client = client(&url);
    let mut index = 0u64;
    while !stop.load(Ordering::Acquire) {
        let batch: Vec<Vec<u8>> = (0..RECORDS_PER_CALL).map(|i| payload(writer, index + i as u64)).collect();
        index += RECORDS_PER_CALL as u64;
        let entries = batch
            .iter()
            .enumerate()
            .map(|(i, data)| {
                PutRecordsRequestEntry::builder()
                    .data(Blob::new(data.clone()))
                    .partition_key(format!("w{writer}-{i}"))
                    .build()
                    .expect("entry")
            })
            .collect();
        match client.put_records().stream_name(STREAM).set_records(Some(entries)).send().await {
            Ok(output) => {
                let mut ledger = ledger.lock().expect("ledger");
                for (data, result) in batch.into_iter().zip(output.records()) {
                    if let (Some(sequence), Some(shard)) = (result.sequence_number(), result.shard_id()) {
                        ledger.acked.push(Acked { shard: shard.into(), sequence: sequence.into(), payload: data });
                    }
                }
            }
            Err(_) => ledger.lock().expect("ledger").failed_calls += 1,
        }
        tokio::time::sleep(PAUSE).await;
    }
}

/// What the stream holds: shard -> sequence -> payload.
pub type Stored = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

/// Reads the stream as it grows: each call reads every shard from where the last one stopped.
#[derive(Debug, Default)]
pub struct Reader {
    pub stored: Stored,
    last: HashMap<String, String>,
}

impl Reader {
    pub async fn catch_up(&mut self, url: &str) {
        let client = client(url);
        for shard in 0..SHARDS {
            let shard_id = format!("shardId-{shard:012}");
            let request = client.get_shard_iterator().stream_name(STREAM).shard_id(&shard_id);
            let request = match self.last.get(&shard_id) {
                Some(after) => {
                    request.shard_iterator_type(ShardIteratorType::AfterSequenceNumber).starting_sequence_number(after)
                }
                None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
            };
            let mut iterator = request.send().await.expect("iterator").shard_iterator.expect("an iterator");
            let records = self.stored.entry(shard_id.clone()).or_default();
            loop {
                let output = client.get_records().shard_iterator(&iterator).send().await.expect("GetRecords");
                for record in output.records() {
                    records.insert(record.sequence_number().to_string(), record.data().as_ref().to_vec());
                    self.last.insert(shard_id.clone(), record.sequence_number().to_string());
                }
                if output.records().is_empty() && output.millis_behind_latest() == Some(0) {
                    break;
                }
                iterator = output.next_shard_iterator.expect("an open shard has a next iterator");
            }
        }
    }
}

/// Acknowledged records missing or different in `stored`, and payloads stored more than once.
pub fn compare(acked: &[Acked], stored: &Stored) -> (Vec<String>, u64) {
    let lost = acked
        .iter()
        .filter(|a| stored.get(&a.shard).and_then(|s| s.get(&a.sequence)) != Some(&a.payload))
        .map(|a| format!("{}:{}", a.shard, a.sequence))
        .collect();
    let mut copies: HashMap<&[u8], u64> = HashMap::new();
    for payload in stored.values().flat_map(|s| s.values()) {
        *copies.entry(payload.as_slice()).or_default() += 1;
    }
    let doubled = copies.values().map(|n| n - 1).sum();
    (lost, doubled)
}
