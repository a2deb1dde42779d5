//! KDS fan-out, resharding and quota benchmarks (docs/benchmarks.md "Kinesis Data Streams, complete"):
//! - SubscribeToShard propagation: PutRecord sent → the record's event at a subscriber (the event
//!   usually arrives before the producer has read its acknowledgement, so ack → event is ~0),
//!   against GetRecords polled at KDS's 5 calls/s per shard (the classic consumer) in the same run;
//! - fan-out: five consumers subscribed to one shard under PutRecords load, records/s delivered;
//! - resharding under load: PutRecords while UpdateShardCount doubles a 4-shard stream: failed
//!   records and the dip in records/s against the rate before;
//! - quotas: PutRecords at twice a shard's 1,000 records/s quota, the throttled share against 0.5.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::api_bench::{Http, call, client, create_stream, put_load};
use crate::stats::Row;
use crate::target::Target;

const PROPAGATION_SAMPLES: usize = 500;
const POLL_SAMPLES: usize = 50;
const POLL_EVERY: Duration = Duration::from_millis(200);
const FAN_OUT_CONSUMERS: usize = 5;

fn body(value: Value) -> Bytes {
    value.to_string().into()
}

pub fn run(binary: &Path, runtime: &tokio::runtime::Runtime, seconds: u64) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let target = Target::framelog(binary)?;
    rows.extend(runtime.block_on(propagation(&target))?);
    rows.push(runtime.block_on(fan_out(&target, seconds))?);
    rows.extend(runtime.block_on(reshard_under_load(&target, seconds))?);
    drop(target);
    let scratch = tempfile::tempdir_in(".")?;
    let quotas = Target::framelog_configured(binary, scratch.path(), "quotas", "[kds]\nquotas = true\n")?;
    rows.push(runtime.block_on(quota_share(&quotas, seconds))?);
    Ok(rows)
}

/// A subscription's events, each with the time it was decoded.
struct Subscriber {
    events: mpsc::UnboundedReceiver<(Instant, Value)>,
}

impl Subscriber {
    async fn start(http: &Http, address: SocketAddr, consumer_arn: &str, shard: &str) -> anyhow::Result<Self> {
        let request = hyper::Request::post(format!("http://{address}/"))
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", "Kinesis_20131202.SubscribeToShard")
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDUMMY/20261125/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=0",
            )
            .header("x-amz-date", "20261125T000000Z")
            .body(Full::new(body(json!({
                "ConsumerARN": consumer_arn, "ShardId": shard, "StartingPosition": {"Type": "LATEST"}
            }))))?;
        let response = http.request(request).await?;
        anyhow::ensure!(response.status().is_success(), "SubscribeToShard answered {}", response.status());
        let (sender, events) = mpsc::unbounded_channel();
        let mut stream = response.into_body();
        tokio::spawn(async move {
            let mut decoder = MessageFrameDecoder::new();
            let mut buffer = BytesMut::new();
            while let Some(Ok(frame)) = stream.frame().await {
                let Ok(data) = frame.into_data() else { continue };
                buffer.extend_from_slice(&data);
                while let Ok(DecodedFrame::Complete(message)) = decoder.decode_frame(&mut buffer) {
                    let Ok(document) = serde_json::from_slice::<Value>(message.payload()) else { continue };
                    if sender.send((Instant::now(), document)).is_err() {
                        return;
                    }
                }
            }
        });
        let mut subscriber = Subscriber { events };
        subscriber.next().await?; // initial-response
        Ok(subscriber)
    }

    async fn next(&mut self) -> anyhow::Result<(Instant, Value)> {
        let event = tokio::time::timeout(Duration::from_secs(30), self.events.recv()).await?;
        event.ok_or_else(|| anyhow::anyhow!("the subscription ended"))
    }

    /// Waits for the event holding a record with `data` (base64); returns when it arrived.
    async fn until_record(&mut self, data: &str) -> anyhow::Result<Instant> {
        loop {
            let (at, event) = self.next().await?;
            if event["Records"].as_array().is_some_and(|r| r.iter().any(|r| r["Data"] == data)) {
                return Ok(at);
            }
        }
    }
}

async fn register(http: &Http, address: SocketAddr, stream: &str, name: &str) -> anyhow::Result<String> {
    let summary = call(http, address, "DescribeStreamSummary", body(json!({"StreamName": stream}))).await?;
    let arn = summary["StreamDescriptionSummary"]["StreamARN"].clone();
    let consumer =
        call(http, address, "RegisterStreamConsumer", body(json!({"StreamARN": arn, "ConsumerName": name}))).await?;
    Ok(consumer["Consumer"]["ConsumerARN"].as_str().unwrap_or_default().to_string())
}

/// Puts one record; returns when it was sent and when its acknowledgement was read.
async fn put_one(http: &Http, address: SocketAddr, stream: &str, data: &str) -> anyhow::Result<(Instant, Instant)> {
    let sent = Instant::now();
    call(http, address, "PutRecord", body(json!({"StreamName": stream, "PartitionKey": "p", "Data": data}))).await?;
    Ok((sent, Instant::now()))
}

/// PutRecord ack → event, one record at a time; then the same against a 200 ms GetRecords poller.
async fn propagation(target: &Target) -> anyhow::Result<Vec<Row>> {
    let http = client();
    let address = target.address;
    create_stream(&http, target, "propagation", 1).await?;
    let consumer = register(&http, address, "propagation", "latency").await?;
    let mut subscriber = Subscriber::start(&http, address, &consumer, "shardId-000000000000").await?;
    let mut pushed = Vec::with_capacity(PROPAGATION_SAMPLES);
    let mut before_ack = 0usize;
    for i in 0..PROPAGATION_SAMPLES {
        let data = base64_of(&format!("push-{i}"));
        let (sent, acked) = put_one(&http, address, "propagation", &data).await?;
        let arrived = subscriber.until_record(&data).await?;
        pushed.push(arrived.duration_since(sent));
        before_ack += usize::from(arrived <= acked);
    }
    pushed.sort();

    let iterator = call(
        &http,
        address,
        "GetShardIterator",
        body(json!({"StreamName": "propagation", "ShardId": "shardId-000000000000", "ShardIteratorType": "LATEST"})),
    )
    .await?;
    let mut iterator = iterator["ShardIterator"].as_str().unwrap_or_default().to_string();
    let mut polled = Vec::with_capacity(POLL_SAMPLES);
    let mut next_poll = Instant::now();
    for i in 0..POLL_SAMPLES {
        let data = base64_of(&format!("poll-{i}"));
        // Puts land at a random point of the poll period, as they do for a real poller.
        tokio::time::sleep(Duration::from_millis((i as u64 * 37) % POLL_EVERY.as_millis() as u64)).await;
        let (sent, _) = put_one(&http, address, "propagation", &data).await?;
        loop {
            tokio::time::sleep_until(next_poll.into()).await;
            next_poll += POLL_EVERY;
            let page = call(&http, address, "GetRecords", body(json!({"ShardIterator": iterator}))).await?;
            iterator = page["NextShardIterator"].as_str().unwrap_or_default().to_string();
            if page["Records"].as_array().is_some_and(|r| r.iter().any(|r| r["Data"] == data)) {
                polled.push(sent.elapsed());
                break;
            }
        }
    }
    polled.sort();
    let poll_p50 = crate::stats::percentile_ms(&polled, 50.0);
    let push_p50 = crate::stats::percentile_ms(&pushed, 50.0);
    let share = 100 * before_ack / PROPAGATION_SAMPLES;
    Ok(vec![
        Row::latency("PutRecord sent -> record, GetRecords every 200 ms", "framelog (baseline)", &polled, None),
        Row::latency(
            &format!("PutRecord sent -> SubscribeToShard event ({share}% before the ack)"),
            "framelog",
            &pushed,
            Some(push_p50 / poll_p50),
        ),
    ])
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Five subscribers on one shard under PutRecords load: records delivered per second, all five.
async fn fan_out(target: &Target, seconds: u64) -> anyhow::Result<Row> {
    let http = client();
    let address = target.address;
    create_stream(&http, target, "fan-out", 1).await?;
    let mut subscribers = Vec::new();
    for i in 0..FAN_OUT_CONSUMERS {
        let consumer = register(&http, address, "fan-out", &format!("c{i}")).await?;
        subscribers.push(Subscriber::start(&http, address, &consumer, "shardId-000000000000").await?);
    }
    let started = Instant::now();
    let put = put_load(&http, target, "fan-out", 2, Duration::from_secs(seconds)).await?;
    let counting: Vec<_> = subscribers
        .into_iter()
        .map(|mut subscriber| {
            let expected = put.records;
            tokio::spawn(async move {
                let mut seen = 0usize;
                let mut bytes = 0usize;
                while seen < expected {
                    let (_, event) = subscriber.next().await?;
                    let records = event["Records"].as_array().cloned().unwrap_or_default();
                    seen += records.len();
                    bytes += records.iter().map(|r| r["Data"].as_str().map_or(0, |d| d.len() * 3 / 4)).sum::<usize>();
                }
                Ok::<_, anyhow::Error>((seen, bytes))
            })
        })
        .collect();
    let (mut records, mut bytes) = (0usize, 0usize);
    for task in counting {
        let (seen, seen_bytes) = task.await??;
        records += seen;
        bytes += seen_bytes;
    }
    let name = format!("SubscribeToShard: {FAN_OUT_CONSUMERS} consumers of 1 shard, delivered");
    Ok(Row::timed(&name, "framelog", records as f64, bytes as f64 / 1_048_576.0, started.elapsed(), None))
}

/// PutRecords from 4 connections while UpdateShardCount doubles a 4-shard stream half-way.
async fn reshard_under_load(target: &Target, seconds: u64) -> anyhow::Result<Vec<Row>> {
    let http = client();
    let address = target.address;
    create_stream(&http, target, "reshard", 4).await?;
    let duration = Duration::from_secs(seconds.max(4));
    let started = Instant::now();
    let scaler = {
        let http = http.clone();
        tokio::spawn(async move {
            tokio::time::sleep(duration / 2).await;
            let at = started.elapsed();
            let request = json!({"StreamName": "reshard", "TargetShardCount": 8, "ScalingType": "UNIFORM_SCALING"});
            call(&http, address, "UpdateShardCount", body(request)).await?;
            Ok::<_, anyhow::Error>(at)
        })
    };
    let mut loads = Vec::new();
    for connection in 0..4usize {
        let http = http.clone();
        loads.push(tokio::spawn(
            async move { timed_puts(&http, address, "reshard", connection, started, duration).await },
        ));
    }
    let mut completions = Vec::new();
    let mut failed = 0u64;
    for load in loads {
        let (done, failures) = load.await??;
        completions.extend(done);
        failed += failures;
    }
    let reshard_at = scaler.await??;
    let window = Duration::from_millis(250);
    let rate_in = |from: Duration, to: Duration| {
        let records = completions.iter().filter(|(at, _)| *at >= from && *at < to).map(|(_, n)| *n).sum::<usize>();
        records as f64 / (to - from).as_secs_f64()
    };
    let before = rate_in(window, reshard_at);
    let lowest_after = (0..4u32)
        .map(|i| rate_in(reshard_at + window * i, reshard_at + window * (i + 1)))
        .fold(f64::INFINITY, f64::min);
    let total: usize = completions.iter().map(|(_, n)| n).sum();
    Ok(vec![
        Row::rate("PutRecords 4 conns, 4 shards, before UpdateShardCount", "framelog (baseline)", before, None),
        Row::rate(
            &format!("  lowest 250 ms after UpdateShardCount 4->8, {failed} failed of {total}"),
            "framelog",
            lowest_after,
            Some(lowest_after / before),
        ),
    ])
}

/// PutRecords 500 × 1 KiB in a loop until `duration` after `started`: (completion time, records
/// acknowledged) per call, and how many records failed.
async fn timed_puts(
    http: &Http,
    address: SocketAddr,
    stream: &str,
    connection: usize,
    started: Instant,
    duration: Duration,
) -> anyhow::Result<(Vec<(Duration, usize)>, u64)> {
    let records: Vec<Value> = (0..500)
        .map(|i| json!({"PartitionKey": format!("c{connection}-{i}"), "Data": base64_of(&"x".repeat(1024))}))
        .collect();
    let request = body(json!({"StreamName": stream, "Records": records}));
    let (mut done, mut failed) = (Vec::new(), 0u64);
    while started.elapsed() < duration {
        let answer = call(http, address, "PutRecords", request.clone()).await?;
        let failures = answer["FailedRecordCount"].as_u64().unwrap_or(0);
        failed += failures;
        done.push((started.elapsed(), 500 - failures as usize));
    }
    Ok((done, failed))
}

/// 2,000 records/s (100-record calls every 50 ms) into one shard whose quota is 1,000/s.
async fn quota_share(target: &Target, seconds: u64) -> anyhow::Result<Row> {
    let http = client();
    let address = target.address;
    create_stream(&http, target, "quota", 1).await?;
    let records: Vec<Value> = (0..100).map(|i| json!({"PartitionKey": format!("k{i}"), "Data": "AAAA"})).collect();
    let request = body(json!({"StreamName": "quota", "Records": records}));
    let (mut sent, mut throttled) = (0u64, 0u64);
    let started = Instant::now();
    let mut next = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep_until(next.into()).await;
        next += Duration::from_millis(50);
        let answer = call(&http, address, "PutRecords", request.clone()).await?;
        sent += 100;
        throttled += answer["FailedRecordCount"].as_u64().unwrap_or(0);
    }
    let rate = sent as f64 / started.elapsed().as_secs_f64();
    // The bucket starts with a second's worth of records; over the run the quota admits
    // 1,000/s of what was offered.
    let expected = 1.0 - (1_000.0 * started.elapsed().as_secs_f64() + 1_000.0) / sent as f64;
    let share = throttled as f64 / sent as f64;
    let name = format!(
        "PutRecords at {rate:.0} rec/s into 1 shard (quota 1,000/s): throttled {share:.3}, expected {expected:.3}"
    );
    Ok(Row::rate(&name, "framelog, [kds] quotas", rate * (1.0 - share), Some(share / expected)))
}
