//! Durability: a server killed with SIGKILL while writers are mid-request loses no acknowledged
//! record, shows no partial record, and continues sequence numbers after restart.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use framelog_media_tests::Server;

use crate::client::kinesis;

const SHARDS: usize = 2;

/// Every record a writer tried, by payload; and which ones were acknowledged, with their numbers.
#[derive(Default)]
struct Ledger {
    attempted: HashMap<Vec<u8>, String>,
    acked: HashMap<Vec<u8>, (String, String)>,
}

fn payload(writer: usize, round: usize, index: usize) -> Vec<u8> {
    // Sizes vary from a few bytes to ~40 KiB so some payloads land in blob files.
    let size = 8 + (writer * 7919 + round * 104_729 + index * 13) % 40_000;
    let mut bytes = format!("w{writer}-r{round}-i{index}-").into_bytes();
    bytes.resize(size, (writer + round + index) as u8);
    bytes
}

async fn write_until_killed(url: String, stream: String, writer: usize, ledger: Arc<Mutex<Ledger>>) {
    let client = kinesis(&url);
    for round in 0.. {
        let entries: Vec<(Vec<u8>, String)> =
            (0..50).map(|i| (payload(writer, round, i), format!("pk-{writer}-{i}"))).collect();
        {
            let mut ledger = ledger.lock().expect("ledger");
            for (data, key) in &entries {
                ledger.attempted.insert(data.clone(), key.clone());
            }
        }
        let request = entries
            .iter()
            .map(|(data, key)| {
                PutRecordsRequestEntry::builder()
                    .data(Blob::new(data.clone()))
                    .partition_key(key)
                    .build()
                    .expect("entry")
            })
            .collect();
        match client.put_records().stream_name(&stream).set_records(Some(request)).send().await {
            Ok(output) => {
                let mut ledger = ledger.lock().expect("ledger");
                for ((data, _), result) in entries.into_iter().zip(output.records()) {
                    if let (Some(seq), Some(shard)) = (result.sequence_number(), result.shard_id()) {
                        ledger.acked.insert(data, (shard.to_string(), seq.to_string()));
                    }
                }
            }
            // The server died under us: this request's fate is unknown, which the check allows.
            Err(_) => return,
        }
    }
}

async fn read_everything(client: &aws_sdk_kinesis::Client, stream: &str) -> Vec<(String, String, Vec<u8>, String)> {
    let mut out = Vec::new();
    for shard in 0..SHARDS {
        let shard_id = format!("shardId-{shard:012}");
        let start = client
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(&shard_id)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("iterator");
        let mut iterator = start.shard_iterator().expect("iterator").to_string();
        loop {
            let page = client.get_records().shard_iterator(&iterator).send().await.expect("get_records");
            for record in page.records() {
                out.push((
                    shard_id.clone(),
                    record.sequence_number().to_string(),
                    record.data().as_ref().to_vec(),
                    record.partition_key().unwrap_or_default().to_string(),
                ));
            }
            if page.records().is_empty() && page.millis_behind_latest() == Some(0) {
                break;
            }
            iterator = page.next_shard_iterator().expect("next").to_string();
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_writes_keeps_every_acknowledged_record() {
    let mut server = Server::start().expect("server starts");
    let stream = "durable".to_string();
    kinesis(&server.url())
        .create_stream()
        .stream_name(&stream)
        .shard_count(SHARDS as i32)
        .send()
        .await
        .expect("create");
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut highest_seq_before_crash: HashMap<String, num_seq::Seq> = HashMap::new();

    for cycle in 0..3u64 {
        let writers: Vec<_> = (0..4)
            .map(|w| {
                tokio::spawn(write_until_killed(server.url(), stream.clone(), w + 10 * cycle as usize, ledger.clone()))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(700 + 300 * cycle)).await;
        server.kill9().expect("kill -9");
        for writer in writers {
            writer.await.expect("writer task");
        }
        server.restart().expect("restart on the same data dir");

        let client = kinesis(&server.url());
        let stored = read_everything(&client, &stream).await;
        {
            let book = ledger.lock().expect("ledger");
            assert!(!book.acked.is_empty(), "writers got acknowledgements before the kill");
            let mut seen = HashMap::new();
            for (shard, seq, data, key) in &stored {
                // Nothing half-written: every stored record is exactly one that a writer sent.
                assert_eq!(book.attempted.get(data), Some(key), "stored record was never sent whole");
                assert!(seen.insert(data.clone(), (shard.clone(), seq.clone())).is_none(), "record stored twice");
            }
            for (data, landed) in &book.acked {
                assert_eq!(
                    seen.get(data),
                    Some(landed),
                    "acknowledged record lost or moved after kill -9 (cycle {cycle})"
                );
            }
            for (shard, seq, _, _) in &stored {
                let seq = num_seq::Seq::parse(seq);
                let entry = highest_seq_before_crash.entry(shard.clone()).or_insert_with(|| seq.clone());
                if seq > *entry {
                    *entry = seq;
                }
            }
            // New writes after the restart land beyond every number seen before.
        }
        let marker = format!("after-restart-{cycle}").into_bytes();
        let after = client
            .put_record()
            .stream_name(&stream)
            .partition_key("after")
            .data(Blob::new(marker.clone()))
            .send()
            .await
            .expect("put after restart");
        let newest = num_seq::Seq::parse(after.sequence_number());
        assert!(newest > highest_seq_before_crash[after.shard_id()], "sequence numbers went backwards after restart");
        let mut ledger = ledger.lock().expect("ledger");
        ledger.attempted.insert(marker.clone(), "after".into());
        ledger.acked.insert(marker, (after.shard_id().to_string(), after.sequence_number().to_string()));
    }
    assert!(server.stop().expect("stops"), "clean exit on SIGTERM");
}

/// Sequence numbers are decimal strings of equal length within a shard; compare them numerically.
mod num_seq {
    #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
    pub struct Seq(usize, String);

    impl Seq {
        pub fn parse(text: &str) -> Seq {
            Seq(text.len(), text.to_string())
        }
    }
}
