//! Firehose delivery to SeaweedFS (docs/benchmarks.md, docs/firehose.md):
//! - throughput: PutRecordBatch of 1 KiB JSON records into a delivery stream with 5 MB buffers,
//!   records/s from the first put until the delivery metrics count every record in the bucket,
//!   against the same bytes uploaded straight to the same bucket, in objects of the same size, by
//!   the same `object_store` client the server uses (the baseline);
//! - freshness with IntervalInSeconds 0 and 60: from a PutRecord's answer to its object being
//!   listed, p50 and p99 (the bucket is polled every 50 ms, which adds up to that much).

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt as _;
use object_store::aws::AmazonS3Builder;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload};
use serde_json::{Value, json};

use crate::api_bench::{self, Http};
use crate::seaweed::{ACCESS_KEY, SECRET_KEY, Seaweed};
use crate::stats::Row;
use crate::target::Target;

const RECORD_BYTES: usize = 1024;
const BUFFER_MB: usize = 5;
/// A buffer closes at its size: records of exactly 1 KiB fill 5 MiB with this many.
const RECORDS_PER_BUFFER: usize = (BUFFER_MB << 20) / RECORD_BYTES;
const RECORDS_PER_CALL: usize = 500;
const WRITERS: usize = 8;
const BUCKET: &str = "bench";

pub fn run(binary: &Path, weed: &Path, runtime: &tokio::runtime::Runtime, buffers: usize) -> anyhow::Result<Vec<Row>> {
    let scratch = tempfile::tempdir_in(".")?;
    let seaweed = Seaweed::start(weed, &scratch.path().join("weed"))?;
    seaweed.make_bucket(BUCKET)?;
    let target = Target::framelog_configured(binary, scratch.path(), "firehose", &seaweed.config_toml(BUCKET, BUCKET))?;
    let store: Arc<dyn ObjectStore> = Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(&seaweed.s3_endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name(BUCKET)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .with_virtual_hosted_style_request(false)
            .build()?,
    );
    runtime.block_on(async {
        // A new bucket's first writes wait while SeaweedFS allocates its volumes (about a second
        // here): one object written before either side is timed keeps that out of both. It
        // was in whichever side ran first, Framelog's.
        let warm_up = object_store::path::Path::from("warm-up/object");
        store.put(&warm_up, PutPayload::from(vec![b'x'; BUFFER_MB << 20])).await?;
        let records = buffers * RECORDS_PER_BUFFER;
        let ours = delivery_throughput(&target, records).await?;
        let baseline = direct_upload(&store, buffers).await?;
        let name = format!(
            "Firehose PutRecordBatch -> SeaweedFS S3 ({RECORD_BYTES} B JSON, {BUFFER_MB} MB buffers, {records} records)"
        );
        let mib = (records * RECORD_BYTES) as f64 / (1 << 20) as f64;
        let ratio = baseline.as_secs_f64() / ours.as_secs_f64();
        let mut rows = vec![
            Row::timed(&name, "object_store upload of the same bytes (baseline)", records as f64, mib, baseline, None),
            Row::timed(&name, "framelog (end to end)", records as f64, mib, ours, Some(ratio)),
        ];
        rows.push(freshness(&target, &store, Freshness { interval_secs: 0, records: 400, every_ms: 50 }).await?);
        // Two and a bit windows of 60 s: the first and last records of a window wait longest
        // and shortest.
        rows.push(freshness(&target, &store, Freshness { interval_secs: 60, records: 260, every_ms: 500 }).await?);
        Ok(rows)
    })
}

async fn firehose(http: &Http, address: SocketAddr, op: &str, body: Value) -> anyhow::Result<Value> {
    api_bench::call_service(http, address, api_bench::FIREHOSE, op, Bytes::from(body.to_string())).await
}

fn destination(interval_secs: u64, size_mb: usize) -> Value {
    json!({"RoleARN": "arn:aws:iam::000000000000:role/bench", "BucketARN": format!("arn:aws:s3:::{BUCKET}"),
           "BufferingHints": {"SizeInMBs": size_mb, "IntervalInSeconds": interval_secs}})
}

/// A 1 KiB JSON record numbered `n`.
fn record(n: usize) -> String {
    let head = format!("{{\"n\":{n},\"pad\":\"");
    format!("{head}{}\"}}", "x".repeat(RECORD_BYTES - head.len() - 2))
}

/// From the first put until the metrics count `records` delivered.
async fn delivery_throughput(target: &Target, records: usize) -> anyhow::Result<Duration> {
    let http = api_bench::client();
    let create =
        json!({"DeliveryStreamName": "throughput", "ExtendedS3DestinationConfiguration": destination(60, BUFFER_MB)});
    firehose(&http, target.address, "CreateDeliveryStream", create).await?;
    // Requests are encoded before the clock starts, as the baseline's bodies are: a producer
    // encodes on its own machine, not on the server's two cores.
    let calls: Vec<Bytes> = (0..records.div_ceil(RECORDS_PER_CALL))
        .map(|call| {
            let batch: Vec<Value> = (call * RECORDS_PER_CALL..((call + 1) * RECORDS_PER_CALL).min(records))
                .map(|n| json!({"Data": base64::engine::general_purpose::STANDARD.encode(record(n))}))
                .collect();
            Bytes::from(json!({"DeliveryStreamName": "throughput", "Records": batch}).to_string())
        })
        .collect();
    let calls = Arc::new(std::sync::Mutex::new(calls));
    let started = Instant::now();
    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        let (calls, http, address) = (calls.clone(), http.clone(), target.address);
        writers.push(tokio::spawn(async move {
            loop {
                let Some(call) = calls.lock().expect("lock").pop() else { return Ok::<(), anyhow::Error>(()) };
                let answer =
                    api_bench::call_service(&http, address, api_bench::FIREHOSE, "PutRecordBatch", call).await?;
                anyhow::ensure!(answer["FailedPutCount"] == 0, "records failed: {answer}");
            }
        }));
    }
    for writer in writers {
        writer.await??;
    }
    // Where the time goes: taking the records in, or delivering them.
    println!("firehose bench: {records} records acknowledged after {:?}", started.elapsed());
    let wanted = format!("framelog_firehose_delivery_to_s3_records_total{{delivery_stream=\"throughput\"}} {records}");
    let deadline = Instant::now() + Duration::from_secs(600);
    while !api_bench::metrics(&http, target.address).await?.contains(&wanted) {
        anyhow::ensure!(Instant::now() < deadline, "the records were not delivered in 10 minutes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(started.elapsed())
}

/// The same bytes as the delivery's objects (records and newline-free, as delivered), in
/// objects of one buffer each, one after another as one delivery writes them.
async fn direct_upload(store: &Arc<dyn ObjectStore>, buffers: usize) -> anyhow::Result<Duration> {
    let bodies: Vec<String> = (0..buffers)
        .map(|buffer| (buffer * RECORDS_PER_BUFFER..(buffer + 1) * RECORDS_PER_BUFFER).map(record).collect())
        .collect();
    let started = Instant::now();
    for (buffer, body) in bodies.into_iter().enumerate() {
        let path = object_store::path::Path::from(format!("baseline/object-{buffer}"));
        store.put(&path, PutPayload::from(body.into_bytes())).await?;
    }
    Ok(started.elapsed())
}

/// A freshness run: a PutRecord every `every_ms`, `records` in all, into a stream whose
/// buffers close after `interval_secs` (0: delivered at once).
#[derive(Debug, Clone, Copy)]
struct Freshness {
    interval_secs: u64,
    records: usize,
    every_ms: u64,
}

/// Each record's time from its PutRecord's answer to the first listing that shows an object
/// holding it.
async fn freshness(target: &Target, store: &Arc<dyn ObjectStore>, run: Freshness) -> anyhow::Result<Row> {
    let http = api_bench::client();
    let stream = format!("fresh{}", run.interval_secs);
    let create =
        json!({"DeliveryStreamName": stream, "ExtendedS3DestinationConfiguration": destination(run.interval_secs, 1)});
    firehose(&http, target.address, "CreateDeliveryStream", create).await?;
    let acked: Arc<std::sync::Mutex<BTreeMap<usize, Instant>>> = Default::default();
    let marker = format!("{stream}-");
    let putter = {
        let (acked, http, address, stream, marker) =
            (acked.clone(), http.clone(), target.address, stream.clone(), marker.clone());
        tokio::spawn(async move {
            for n in 0..run.records {
                let data = base64::engine::general_purpose::STANDARD.encode(format!("{marker}{n};"));
                let body = json!({"DeliveryStreamName": stream, "Record": {"Data": data}});
                firehose(&http, address, "PutRecord", body).await?;
                acked.lock().expect("lock").insert(n, Instant::now());
                tokio::time::sleep(Duration::from_millis(run.every_ms)).await;
            }
            Ok::<(), anyhow::Error>(())
        })
    };
    let (mut seen_keys, mut visible): (HashSet<String>, BTreeMap<usize, Instant>) = Default::default();
    let deadline = Instant::now()
        + Duration::from_millis(run.every_ms * run.records as u64)
        + Duration::from_secs(120 + 2 * run.interval_secs);
    while visible.len() < run.records {
        anyhow::ensure!(Instant::now() < deadline, "only {} of {} records became visible", visible.len(), run.records);
        let listed: Vec<_> = store.list(None).collect().await;
        let now = Instant::now();
        for meta in listed.into_iter().flatten() {
            let key = meta.location.to_string();
            if !key.rsplit('/').next().is_some_and(|name| name.starts_with(&marker)) || !seen_keys.insert(key) {
                continue;
            }
            let text = String::from_utf8_lossy(&store.get(&meta.location).await?.bytes().await?).into_owned();
            for n in text.split(';').filter_map(|part| part.strip_prefix(marker.as_str())?.parse::<usize>().ok()) {
                visible.entry(n).or_insert(now);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    putter.await??;
    let acked = acked.lock().expect("lock").clone();
    let mut ages: Vec<Duration> =
        visible.iter().filter_map(|(n, seen)| acked.get(n).map(|at| seen.saturating_duration_since(*at))).collect();
    ages.sort();
    let name =
        format!("Firehose freshness, IntervalInSeconds {}: PutRecord answered -> object listed", run.interval_secs);
    Ok(Row::latency(&name, "framelog", &ages, None))
}
