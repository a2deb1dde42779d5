//! The SDK's records libraries (docs/consumer-groups.md), against a framelog server process:
//! - the record producer: 100-byte user records into one shard, aggregated against not, user
//!   records/s and the bytes Kinesis stored per user record;
//! - consumer groups: the same aggregated records read by 3 workers on 4 shards against a plain
//!   GetRecords loop per shard (unpacking aggregates too) in the same run;
//! - rebalancing: the time from a worker's crash (its task aborted, leases not released) until
//!   every shard has an owner again, with 3 s leases renewed each second.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use framelog_sdk::{
    Checkpointer, Client, ClientConfig, ConsumedRecord, Credentials, IteratorStart, ProducerRecord, RecordProcessor,
    RecordProducer, RecordProducerConfig, Worker, WorkerConfig,
};
use serde_json::json;

use crate::stats::Row;
use crate::target::Target;

const RECORD_BYTES: usize = 100;
const AGGREGATED_RECORDS: u64 = 1_000_000;
const PLAIN_RECORDS: u64 = 200_000;
const GROUP_RECORDS: u64 = 400_000;
const GROUP_SHARDS: u32 = 4;
const WORKERS: usize = 3;

pub fn run(binary: &Path, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Vec<Row>> {
    let target = Target::framelog(binary)?;
    let client = Client::new(ClientConfig::new(format!("http://{}", target.address)).with_credentials(Credentials {
        access_key_id: "AKIDUMMY".into(),
        secret_access_key: "dummy".into(),
        session_token: None,
    }));
    runtime.block_on(async {
        let mut rows = Vec::new();
        let plain = produce(&client, "plain", false, PLAIN_RECORDS, 1).await?;
        let mut aggregated = produce(&client, "aggregated", true, AGGREGATED_RECORDS, 1).await?;
        aggregated.ratio_to_baseline = Some(aggregated.records_per_sec / plain.records_per_sec);
        rows.push(Row { subject: "not aggregated (baseline)".into(), ..plain });
        rows.push(aggregated);
        rows.extend(consumer_group(&client).await?);
        Ok(rows)
    })
}

async fn create_stream(client: &Client, name: &str, shards: u32) -> anyhow::Result<()> {
    client.kinesis_call("CreateStream", &json!({"StreamName": name, "ShardCount": shards})).await?;
    Ok(())
}

/// `count` numbered records through a producer; the row's rate is user records/s, its MiB/s the
/// Kinesis bytes stored, and the name says bytes per user record.
async fn produce(client: &Client, name: &str, aggregate: bool, count: u64, shards: u32) -> anyhow::Result<Row> {
    let stream = format!("producer-{name}");
    create_stream(client, &stream, shards).await?;
    let config = RecordProducerConfig { aggregate, ..Default::default() };
    let producer = RecordProducer::start(client.clone(), &stream, config).await?;
    let started = Instant::now();
    let (receipts, mut pending) = tokio::sync::mpsc::channel(100_000);
    let checker = tokio::spawn(async move {
        let mut failed = 0u64;
        while let Some(receipt) = pending.recv().await {
            let receipt: framelog_sdk::RecordReceipt = receipt;
            failed += u64::from(receipt.await.is_err());
        }
        failed
    });
    for number in 0..count {
        receipts.send(producer.send(record(number)).await?).await?;
    }
    drop(receipts);
    producer.flush().await?;
    let failed = checker.await?;
    let seconds = started.elapsed().as_secs_f64();
    let stats = producer.stats();
    producer.shutdown().await?;
    anyhow::ensure!(failed == 0, "{failed} records failed");
    let per_record = stats.kinesis_bytes as f64 / count as f64;
    let mut row = Row::rate(
        &format!("producer: 100 B records, 1 shard ({per_record:.0} B stored each)"),
        if aggregate { "aggregated" } else { "not aggregated" },
        count as f64 / seconds,
        None,
    );
    row.mib_per_sec = stats.kinesis_bytes as f64 / seconds / (1024.0 * 1024.0);
    Ok(row)
}

fn record(number: u64) -> ProducerRecord {
    let mut data = number.to_string().into_bytes();
    data.resize(RECORD_BYTES, b'x');
    ProducerRecord::new(format!("r{number}"), data)
}

/// Counts records for the consumer-group run.
struct Counting {
    records: Arc<AtomicU64>,
}

impl RecordProcessor for Counting {
    async fn process_records(&mut self, records: Vec<ConsumedRecord>, checkpointer: &Checkpointer) {
        self.records.fetch_add(records.len() as u64, Ordering::Relaxed);
        let _ = checkpointer.checkpoint().await;
    }
}

async fn consumer_group(client: &Client) -> anyhow::Result<Vec<Row>> {
    let stream = "group";
    create_stream(client, stream, GROUP_SHARDS).await?;
    let producer = RecordProducer::start(client.clone(), stream, RecordProducerConfig::default()).await?;
    for number in 0..GROUP_RECORDS {
        drop(producer.send(record(number)).await?);
    }
    producer.shutdown().await?;

    let started = Instant::now();
    let plain_count = plain_loop(client, stream).await?;
    anyhow::ensure!(plain_count == GROUP_RECORDS, "the loop read {plain_count} records");
    let plain = Row::rate(
        "consumers: 400k records, 4 shards",
        "GetRecords loop (baseline)",
        plain_count as f64 / started.elapsed().as_secs_f64(),
        None,
    );

    let counted = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers: Vec<Worker> = (0..WORKERS).map(|i| spawn_worker(client, stream, i, &counted)).collect();
    while counted.load(Ordering::Relaxed) < GROUP_RECORDS {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(300), "workers processed {counted:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rate = GROUP_RECORDS as f64 / started.elapsed().as_secs_f64();
    let group = Row::rate("consumers: 400k records, 4 shards", "3 workers", rate, Some(rate / plain.records_per_sec));

    let rebalance = rebalance_after_crash(client, stream, &mut workers).await?;
    for worker in workers {
        worker.shutdown().await?;
    }
    Ok(vec![plain, group, rebalance])
}

fn spawn_worker(client: &Client, stream: &str, index: usize, counted: &Arc<AtomicU64>) -> Worker {
    let mut config = WorkerConfig::new("bench", stream, format!("w{index}"));
    config.lease_duration = Duration::from_secs(3);
    config.renew_interval = Duration::from_secs(1);
    let records = Arc::clone(counted);
    Worker::spawn(client.clone(), config, move |_| Counting { records: Arc::clone(&records) })
}

/// One task per shard reading it from TRIM_HORIZON to the end of what is stored.
async fn plain_loop(client: &Client, stream: &str) -> anyhow::Result<u64> {
    let shards = client.list_shards(stream).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for shard in shards {
        let (client, stream) = (client.clone(), stream.to_string());
        tasks.spawn(async move {
            let mut iterator = client.get_shard_iterator(&stream, &shard.shard_id, &IteratorStart::TrimHorizon).await?;
            let mut users = 0u64;
            loop {
                let page = client.get_records(&iterator, 10_000).await?;
                if page.records.is_empty() && page.millis_behind_latest == 0 {
                    return anyhow::Ok(users);
                }
                users += page.records.iter().map(|r| user_count(&r.data)).sum::<u64>();
                iterator = page.next_iterator.ok_or_else(|| anyhow::anyhow!("shard closed"))?;
            }
        });
    }
    let mut total = 0;
    while let Some(done) = tasks.join_next().await {
        total += done??;
    }
    Ok(total)
}

fn user_count(data: &[u8]) -> u64 {
    match framelog_wire::kpl_aggregate::deaggregate(data) {
        Ok(users) => users.len() as u64,
        Err(_) => 1,
    }
}

/// Aborts the worker holding the most leases and times until every shard is owned again.
async fn rebalance_after_crash(client: &Client, stream: &str, workers: &mut Vec<Worker>) -> anyhow::Result<Row> {
    let leases = client.describe_leases(stream, "bench").await?;
    let mut held: HashMap<String, usize> = HashMap::new();
    for owner in leases.iter().filter_map(|l| l.owner.clone()) {
        *held.entry(owner).or_default() += 1;
    }
    let busiest = held.into_iter().max_by_key(|(_, n)| *n).map(|(owner, _)| owner).unwrap_or_default();
    let index = workers.iter().position(|w| w.id() == busiest).ok_or_else(|| anyhow::anyhow!("no owner"))?;
    let crashed = Instant::now();
    workers.remove(index).abort();
    loop {
        let leases = client.describe_leases(stream, "bench").await?;
        let open: Vec<_> = leases.iter().filter(|l| !l.is_finished()).collect();
        if open.iter().all(|l| l.owner.as_deref().is_some_and(|o| o != busiest)) {
            break;
        }
        anyhow::ensure!(crashed.elapsed() < Duration::from_secs(60), "shards still without an owner: {leases:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let taken = crashed.elapsed();
    Ok(Row::latency("consumers: rebalance after a worker crash (3 s leases)", "2 remaining workers", &[taken], None))
}
