//! KDS API load over HTTP on loopback: PutRecords of 500 × 1 KiB records from concurrent
//! connections for a fixed time, then a GetRecords drain of what was written. The same requests
//! go to framelog and to kinesalite in the same run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use crate::stats::{Row, percentile_ms};
use crate::target::Target;

pub type Http = Client<HttpConnector, Full<Bytes>>;

const RECORD_BYTES: usize = 1024;
const RECORDS_PER_CALL: usize = 500;

/// What one load run measured.
#[derive(Debug, Clone)]
pub struct PutResult {
    pub records_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub records: usize,
}

/// A JSON 1.1 service the benchmarks call: its X-Amz-Target prefix and SigV4 service name.
pub type Service = (&'static str, &'static str);
pub const KINESIS: Service = ("Kinesis_20131202", "kinesis");
pub const FIREHOSE: Service = ("Firehose_20150804", "firehose");

pub async fn call(http: &Http, address: SocketAddr, op: &str, body: Bytes) -> anyhow::Result<Value> {
    call_service(http, address, KINESIS, op, body).await
}

/// One `op` of `service` (the servers under test accept any signature on loopback).
pub async fn call_service(
    http: &Http,
    address: SocketAddr,
    (prefix, signing_name): Service,
    op: &str,
    body: Bytes,
) -> anyhow::Result<Value> {
    let request = hyper::Request::post(format!("http://{address}/"))
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", format!("{prefix}.{op}"))
        .header(
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIDUMMY/20261125/us-east-1/{signing_name}/aws4_request, SignedHeaders=host, Signature=0"
            ),
        )
        .header("x-amz-date", "20261125T000000Z")
        .body(Full::new(body))?;
    let response = http.request(request).await?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        anyhow::bail!("{op} on {address} answered {status}: {}", String::from_utf8_lossy(&bytes));
    }
    Ok(if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes)? })
}

/// The server's `/metrics` exposition.
pub async fn metrics(http: &Http, address: SocketAddr) -> anyhow::Result<String> {
    let request = hyper::Request::get(format!("http://{address}/metrics"))
        .header("authorization", "AWS4-HMAC-SHA256 Credential=AKIDUMMY/20261125/us-east-1/kinesis/aws4_request")
        .body(Full::new(Bytes::new()))?;
    let body = http.request(request).await?.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

pub fn client() -> Http {
    Client::builder(TokioExecutor::new()).build_http()
}

pub async fn create_stream(http: &Http, target: &Target, name: &str, shards: u32) -> anyhow::Result<()> {
    call(http, target.address, "CreateStream", json!({"StreamName": name, "ShardCount": shards}).to_string().into())
        .await?;
    // kinesalite may still report CREATING for a moment even with --createStreamMs 0.
    for _ in 0..100 {
        let described =
            call(http, target.address, "DescribeStream", json!({"StreamName": name}).to_string().into()).await?;
        if described["StreamDescription"]["StreamStatus"] == "ACTIVE" {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("stream {name} never became ACTIVE on {}", target.name)
}

fn put_records_body(stream: &str, variant: usize) -> Bytes {
    let records: Vec<Value> = (0..RECORDS_PER_CALL)
        .map(|i| {
            let data: Vec<u8> = (0..RECORD_BYTES).map(|b| (b ^ i ^ variant) as u8).collect();
            json!({"Data": base64::engine::general_purpose::STANDARD.encode(data), "PartitionKey": format!("pk-{variant}-{i}")})
        })
        .collect();
    json!({"StreamName": stream, "Records": records}).to_string().into()
}

/// Puts from `connections` concurrent loops for `duration`; every call must report no failures.
pub async fn put_load(
    http: &Http,
    target: &Target,
    stream: &str,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<PutResult> {
    let bodies: Arc<Vec<Bytes>> = Arc::new((0..8).map(|v| put_records_body(stream, v)).collect());
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for connection in 0..connections {
        let (http, bodies) = (http.clone(), bodies.clone());
        let address = target.address;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = connection;
            while Instant::now() < deadline {
                let sent = Instant::now();
                let answer = call(&http, address, "PutRecords", bodies[n % bodies.len()].clone()).await?;
                latencies.push(sent.elapsed());
                if answer["FailedRecordCount"] != 0 {
                    anyhow::bail!("PutRecords reported failures: {}", answer["FailedRecordCount"]);
                }
                n += connections;
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let records = latencies.len() * RECORDS_PER_CALL;
    Ok(PutResult {
        records_per_sec: records as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile_ms(&latencies, 50.0),
        p99_ms: percentile_ms(&latencies, 99.0),
        records,
    })
}

/// Reads a one-shard stream from TRIM_HORIZON to the tip; returns records per second.
pub async fn drain(http: &Http, target: &Target, stream: &str, expected: usize) -> anyhow::Result<f64> {
    let started = Instant::now();
    let first = call(
        http,
        target.address,
        "GetShardIterator",
        json!({"StreamName": stream, "ShardId": "shardId-000000000000", "ShardIteratorType": "TRIM_HORIZON"})
            .to_string()
            .into(),
    )
    .await?;
    let mut iterator = first["ShardIterator"].as_str().unwrap_or_default().to_string();
    let mut read = 0usize;
    loop {
        let page = call(
            http,
            target.address,
            "GetRecords",
            json!({"ShardIterator": iterator, "Limit": 10000}).to_string().into(),
        )
        .await?;
        let count = page["Records"].as_array().map_or(0, Vec::len);
        read += count;
        if count == 0 && page["MillisBehindLatest"] == 0 {
            break;
        }
        iterator = page["NextShardIterator"].as_str().unwrap_or_default().to_string();
    }
    if read != expected {
        anyhow::bail!("drained {read} records from {}, expected {expected}", target.name);
    }
    Ok(read as f64 / started.elapsed().as_secs_f64())
}

/// Puts then drains on one target; the rows carry no ratio yet.
pub async fn run(target: &Target, connections: usize, duration: Duration) -> anyhow::Result<Vec<Row>> {
    let http = client();
    let mut rows = Vec::new();
    for shards in [1u32, 4] {
        let stream = format!("bench-{shards}");
        create_stream(&http, target, &stream, shards).await?;
        let put = put_load(&http, target, &stream, connections, duration).await?;
        rows.push(Row {
            name: format!("PutRecords 500x1KiB, {shards} shard(s), {connections} conns"),
            subject: target.name.to_string(),
            records_per_sec: put.records_per_sec,
            mib_per_sec: put.records_per_sec * RECORD_BYTES as f64 / (1024.0 * 1024.0),
            p50_ms: Some(put.p50_ms),
            p99_ms: Some(put.p99_ms),
            ratio_to_baseline: None,
        });
        if shards == 1 {
            let rate = drain(&http, target, &stream, put.records).await?;
            rows.push(Row {
                name: "GetRecords drain, 1 shard, Limit 10000".to_string(),
                subject: target.name.to_string(),
                records_per_sec: rate,
                mib_per_sec: rate * RECORD_BYTES as f64 / (1024.0 * 1024.0),
                p50_ms: None,
                p99_ms: None,
                ratio_to_baseline: None,
            });
        }
    }
    Ok(rows)
}
