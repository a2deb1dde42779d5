//! Produces numbered records into a data stream with the SDK's record producer and prints one
//! JSON line: records acknowledged, failures, the rate, and what went over the wire.
//!
//! kpl_producer --endpoint URL --stream NAME --count N --size BYTES [--aggregate]
//!              [--keys K] [--first N] [--in-flight N]
//!
//! Record i has partition key `r<i>` (or `k<i mod K>` with --keys) and data starting with its
//! decimal number, padded to --size bytes. Credentials come from the environment or the
//! shared credentials file.

use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use framelog_sdk::{Client, ClientConfig, ProducerRecord, RecordProducer, RecordProducerConfig, RecordReceipt};
use tokio::sync::mpsc;

/// Produces numbered records into a data stream with the SDK's record producer.
#[derive(Parser)]
struct Args {
    #[arg(long)]
    endpoint: String,
    #[arg(long)]
    stream: String,
    #[arg(long, default_value_t = 1000)]
    count: u64,
    /// Bytes of data per record.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Pack records in the KPL's aggregated format.
    #[arg(long)]
    aggregate: bool,
    /// Partition keys `k<i mod K>` instead of one key per record.
    #[arg(long)]
    keys: Option<u64>,
    /// The first record's number.
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// PutRecords calls in flight.
    #[arg(long, default_value_t = 24)]
    in_flight: usize,
}

fn record(args: &Args, number: u64) -> ProducerRecord {
    let key = match args.keys {
        Some(keys) => format!("k{}", number % keys.max(1)),
        None => format!("r{number}"),
    };
    let mut data = number.to_string().into_bytes();
    data.push(b' ');
    data.resize(args.size.max(data.len()), b'x');
    ProducerRecord::new(key, data)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = Client::new(ClientConfig::new(&args.endpoint).with_default_credentials()?);
    let config =
        RecordProducerConfig { aggregate: args.aggregate, max_in_flight_calls: args.in_flight, ..Default::default() };
    let producer = RecordProducer::start(client, &args.stream, config).await?;
    let started = Instant::now();
    // Receipts are awaited by a second task, in order, so memory stays bounded by the channel.
    let (receipts, pending) = mpsc::channel::<RecordReceipt>(100_000);
    let checker = tokio::spawn(tally(pending));
    for number in args.first..args.first + args.count {
        receipts.send(producer.send(record(&args, number)).await?).await.context("the receipt checker ended")?;
    }
    drop(receipts);
    producer.flush().await?;
    let (acknowledged, failed, last_error) = checker.await?;
    let seconds = started.elapsed().as_secs_f64();
    let stats = producer.stats();
    producer.shutdown().await?;
    let line = serde_json::json!({
        "acknowledged": acknowledged,
        "failed": failed,
        "last_error": last_error,
        "seconds": seconds,
        "records_per_sec": acknowledged as f64 / seconds.max(1e-9),
        "aggregate": args.aggregate,
        "size_bytes": args.size,
        "kinesis_records": stats.kinesis_records,
        "kinesis_bytes": stats.kinesis_bytes,
        "put_calls": stats.put_calls,
        "retries": stats.retries,
    });
    println!("{line}");
    Ok(())
}

/// Awaits every receipt: how many were stored, how many failed, and the last failure.
async fn tally(mut pending: mpsc::Receiver<RecordReceipt>) -> (u64, u64, Option<String>) {
    let (mut acknowledged, mut failed, mut last_error) = (0, 0, None);
    while let Some(receipt) = pending.recv().await {
        match receipt.await {
            Ok(_) => acknowledged += 1,
            Err(error) => {
                failed += 1;
                last_error = Some(error.to_string());
            }
        }
    }
    (acknowledged, failed, last_error)
}
