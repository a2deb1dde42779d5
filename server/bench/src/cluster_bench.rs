//! Cluster mode against the embedded engine, on this machine in one run (docs/benchmarks.md,
//! docs/cluster.md): PutRecords on one shard, PutMedia of one stream, a 50-camera fleet's ack
//! latency, and failover: how long a client writing through HAProxy goes without a successful
//! write when the node it is connected to is killed.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;

use crate::api_bench::{self, Http};
use crate::stats::{Row, percentile_ms};
use crate::target::Target;

/// Writers during the failover runs: two per node, so that every kill cuts some of them off.
const FAILOVER_WRITERS: usize = 6;
/// A write that takes longer counts as failed and is sent again.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the cluster run is told.
#[derive(Debug, Clone, Copy)]
pub struct ClusterBench {
    pub connections: usize,
    pub seconds: u64,
    pub video_fragments: usize,
    pub fleet_streams: usize,
    pub fleet_seconds: u64,
    pub kills: usize,
}

pub fn run(
    framelog_bin: &Path,
    script: &Path,
    runtime: &tokio::runtime::Runtime,
    bench: ClusterBench,
) -> anyhow::Result<Vec<Row>> {
    let scratch = tempfile::tempdir_in(".")?;
    let embedded = Target::framelog(framelog_bin)?;
    let mut ours = measure(&embedded, "framelog (embedded, baseline)", runtime, bench)?;
    drop(embedded);
    let cluster = Target::cluster(framelog_bin, script, &scratch.path().join("cluster"))?;
    let mut theirs = measure(&cluster, "framelog cluster (3 nodes, 3 NATS, SeaweedFS, HAProxy)", runtime, bench)?;
    for (cluster_row, embedded_row) in theirs.iter_mut().zip(&ours) {
        cluster_row.ratio_to_baseline = ratio(cluster_row, embedded_row);
    }
    let failover = runtime.block_on(failover(&cluster, bench.kills))?;
    drop(cluster);
    let fleet = |target: Target, subject: &str| {
        crate::fleet_bench::run_on(target, subject, runtime, bench.fleet_streams, bench.fleet_seconds)
    };
    let mut fleet_embedded = fleet(Target::framelog(framelog_bin)?, "framelog (embedded, baseline)")?;
    let cluster = Target::cluster(framelog_bin, script, &scratch.path().join("fleet"))?;
    let mut fleet_cluster = fleet(cluster, "framelog cluster, CPU of node 1")?;
    for (cluster_row, embedded_row) in fleet_cluster.iter_mut().zip(&fleet_embedded) {
        cluster_row.ratio_to_baseline = ratio(cluster_row, embedded_row);
    }
    ours.append(&mut theirs);
    ours.append(&mut fleet_embedded);
    ours.append(&mut fleet_cluster);
    ours.push(failover);
    Ok(ours)
}

/// Rates as cluster/embedded; latency rows as embedded/cluster p99, so below 1 is slower.
fn ratio(cluster: &Row, embedded: &Row) -> Option<f64> {
    match (cluster.p99_ms, embedded.p99_ms) {
        (Some(ours), Some(base)) if ours > 0.0 && cluster.name.contains("PERSISTED") => Some(base / ours),
        _ if embedded.records_per_sec > 0.0 => Some(cluster.records_per_sec / embedded.records_per_sec),
        _ => None,
    }
}

fn measure(
    target: &Target,
    subject: &str,
    runtime: &tokio::runtime::Runtime,
    bench: ClusterBench,
) -> anyhow::Result<Vec<Row>> {
    let http = api_bench::client();
    let duration = Duration::from_secs(bench.seconds);
    let put = runtime.block_on(async {
        api_bench::create_stream(&http, target, "cluster-bench", 1).await?;
        api_bench::put_load(&http, target, "cluster-bench", bench.connections, duration).await
    })?;
    let records = Row {
        name: format!("PutRecords 500x1KiB, 1 shard, {} conns", bench.connections),
        subject: subject.into(),
        records_per_sec: put.records_per_sec,
        mib_per_sec: put.records_per_sec / 1024.0,
        p50_ms: Some(put.p50_ms),
        p99_ms: Some(put.p99_ms),
        ratio_to_baseline: None,
    };
    let upload = Bytes::from(crate::video_bench::upload_bytes(bench.video_fragments));
    let mib = upload.len() as f64 / (1024.0 * 1024.0);
    let elapsed =
        runtime.block_on(crate::video_bench::put_media_to(target, "cluster-video", upload, bench.video_fragments))?;
    let name = format!("PutMedia 1 stream, {} x 2 s 1080p fragments", bench.video_fragments);
    let video = Row::timed(&name, subject, bench.video_fragments as f64, mib, elapsed, None);
    Ok(vec![records, video])
}

/// Kills each node in turn while writers put records through HAProxy; a sample is the longest
/// time any writer went from the kill to its next successful write.
async fn failover(target: &Target, kills: usize) -> anyhow::Result<Row> {
    let run = target.cluster_run().ok_or_else(|| anyhow::anyhow!("failover needs a cluster"))?;
    let http = api_bench::client();
    api_bench::create_stream(&http, target, "failover", 1).await?;
    let mut samples = Vec::new();
    for kill in 0..kills {
        let node = (kill % 3 + 1) as u16;
        // Fresh connections each round, so HAProxy spreads them over all three nodes again.
        let successes: Vec<Arc<Mutex<Vec<Instant>>>> = (0..FAILOVER_WRITERS).map(|_| Arc::default()).collect();
        let writers: Vec<_> = successes
            .iter()
            .map(|log| tokio::spawn(writer(api_bench::client(), target.address, log.clone())))
            .collect();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let killed_at = Instant::now();
        run.command(&["kill-node", &node.to_string()])?;
        tokio::time::sleep(Duration::from_secs(4)).await;
        let gap = successes
            .iter()
            .map(|log| {
                let log = log.lock().unwrap_or_else(|e| e.into_inner());
                log.iter().find(|at| **at > killed_at).map_or(Duration::MAX, |at| at.duration_since(killed_at))
            })
            .max()
            .unwrap_or(Duration::MAX);
        for writer in writers {
            writer.abort();
        }
        println!("failover: killed node {node}; every writer wrote again within {:.0} ms", gap.as_secs_f64() * 1000.0);
        samples.push(gap);
        run.command(&["start-node", &node.to_string()])?;
        // HAProxy takes a node back after two good health checks.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    samples.sort();
    Ok(Row {
        name: format!("failover: kill -9 a node -> next write through HAProxy ({kills} kills; p50, max)"),
        subject: "framelog cluster".into(),
        records_per_sec: samples.len() as f64,
        mib_per_sec: 0.0,
        p50_ms: Some(percentile_ms(&samples, 50.0)),
        p99_ms: Some(percentile_ms(&samples, 100.0)),
        ratio_to_baseline: None,
    })
}

async fn writer(http: Http, address: std::net::SocketAddr, successes: Arc<Mutex<Vec<Instant>>>) {
    let body: Bytes = json!({"StreamName": "failover", "Data": "AAAA", "PartitionKey": "k"}).to_string().into();
    loop {
        let call = api_bench::call(&http, address, "PutRecord", body.clone());
        match tokio::time::timeout(WRITE_TIMEOUT, call).await {
            Ok(Ok(_)) => successes.lock().unwrap_or_else(|e| e.into_inner()).push(Instant::now()),
            _ => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}
