//! The crash campaign: faults at random moments under a mixed load, checking after every
//! restart that what was acknowledged is still there, byte for byte, and at the end that nothing
//! was stored twice and the consumers missed nothing. Two faults: `kill -9` of the server, and a
//! power cut (kill -9, then every write not made durable by fsync taken back, on the power-cut
//! filesystem, `framelog_media_tests::faultfs`). docs/testing.md's table of long runs describes
//! the load and the report; `make crash` runs 100 kills and 20 cuts (`FRAMELOG_CRASH_KILLS`,
//! `FRAMELOG_POWER_CUTS`), `make test` a short run of each.

mod cameras;
mod readers;
mod records;
mod report;
mod webhook;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use framelog_media_tests::Server;
use framelog_media_tests::faultfs::FaultMount;
use framelog_sdk::{Client, ClientConfig, NewStream};

use report::Report;

const CAMERAS: usize = 20;
const WRITERS: usize = 3;
/// Cameras whose fragments the two video consumers deliver, and ones read live.
const CONSUMED_CAMERAS: [usize; 2] = [0, 1];
const TAILED_CAMERAS: [usize; 2] = [2, 3];
const HLS_CAMERA: usize = 4;
const CATCH_UP_LIMIT: Duration = Duration::from_secs(90);

fn count(variable: &str, default: usize) -> usize {
    std::env::var(variable).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// What happens to the server at each fault.
enum Fault {
    Kill9,
    /// kill -9, then the power-cut filesystem under the data dir takes back every unsynced write.
    PowerCut(FaultMount),
}

impl Fault {
    fn name(&self) -> &'static str {
        match self {
            Fault::Kill9 => "kill -9",
            Fault::PowerCut(_) => "power cut",
        }
    }

    /// Strikes; returns how many files the power cut took writes back from (0 for kill -9).
    fn strike(&self, server: &mut Server) -> usize {
        server.kill9().expect("kill -9");
        match self {
            Fault::Kill9 => 0,
            Fault::PowerCut(mount) => mount.power_cut().expect("the power cut"),
        }
    }
}

/// A tiny xorshift: the kill moments are random but the run can be repeated from its seed.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_data_survives_repeated_kill_9_under_mixed_load() {
    let server = Server::start().expect("server starts");
    campaign(server, Fault::Kill9, count("FRAMELOG_CRASH_KILLS", 5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_data_survives_repeated_power_cuts_under_mixed_load() {
    let dir = tempfile::tempdir().expect("dir");
    let (backing, data_dir) = (dir.path().join("disk"), dir.path().join("data"));
    std::fs::create_dir_all(&backing).expect("backing");
    std::fs::create_dir_all(&data_dir).expect("mountpoint");
    let mount = FaultMount::mount(&backing, &data_dir).expect("the power-cut filesystem mounts (as root)");
    let server = Server::start_in(&data_dir).expect("server starts");
    campaign(server, Fault::PowerCut(mount), count("FRAMELOG_POWER_CUTS", 3)).await;
}

async fn campaign(mut server: Server, fault: Fault, faults: usize) {
    let url = server.url();
    let client = Client::new(ClientConfig::new(&url));
    let sink = webhook::Sink::start().await;
    set_up(&client, &url, &sink).await;

    let stop = Arc::new(AtomicBool::new(false));
    let ledger = Arc::new(Mutex::new(records::Ledger::default()));
    let writers: Vec<_> =
        (0..WRITERS).map(|w| tokio::spawn(records::write(url.clone(), w, ledger.clone(), stop.clone()))).collect();
    let cameras: Vec<_> =
        (0..CAMERAS).map(|c| tokio::spawn(cameras::produce(client.clone(), c, stop.clone()))).collect();
    let tails = Arc::new(readers::Counts::default());
    let hls = Arc::new(readers::Counts::default());
    let mut reading: Vec<_> = TAILED_CAMERAS
        .iter()
        .map(|&c| tokio::spawn(readers::tail(client.clone(), cameras::name(c), tails.clone(), stop.clone())))
        .collect();
    reading.push(tokio::spawn(readers::play_hls(url.clone(), cameras::name(HLS_CAMERA), hls.clone(), stop.clone())));

    let seed = std::env::var("FRAMELOG_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_u64);
    let mut random = seed;
    let mut report = Report::new(fault.name(), seed);
    let mut stored_records = records::Reader::default();
    let mut streams: Vec<cameras::Camera> = (0..CAMERAS).map(|_| cameras::Camera::default()).collect();
    for _ in 0..faults {
        tokio::time::sleep(Duration::from_millis(1_000 + next_random(&mut random) % 3_000)).await;
        report.files_cut += fault.strike(&mut server);
        let acked_before_kill = ledger.lock().expect("ledger").acked.len();
        tokio::time::sleep(Duration::from_millis(next_random(&mut random) % 500)).await;
        let restarting = Instant::now();
        server.restart_on_same_port().expect("restart");
        report.restart_ms.push(restarting.elapsed().as_millis() as u64);

        stored_records.catch_up(&url).await;
        let acked = ledger.lock().expect("ledger").acked[..acked_before_kill].to_vec();
        let (lost, _) = records::compare(&acked, &stored_records.stored);
        report.records_lost_at_restart.extend(lost);
        for (camera, stream) in streams.iter_mut().enumerate() {
            stream.check(&client, camera).await;
        }
    }

    stop.store(true, Ordering::Release);
    for writer in writers {
        writer.await.expect("writer");
    }
    let mut delivered = Vec::new();
    for camera in cameras {
        delivered.push(camera.await.expect("camera"));
    }
    for reader in reading {
        reader.await.expect("reader");
    }

    // The whole stream read again: a crash must not have taken back what an earlier check saw.
    let ledger = std::mem::take(&mut *ledger.lock().expect("ledger"));
    let stored = {
        let mut reader = records::Reader::default();
        reader.catch_up(&url).await;
        reader.stored
    };
    let (lost, doubled) = records::compare(&ledger.acked, &stored);
    report.records(&ledger, lost, doubled, &stored);
    let mut final_streams: Vec<cameras::Camera> = (0..CAMERAS).map(|_| cameras::Camera::default()).collect();
    for (camera, stream) in final_streams.iter_mut().enumerate() {
        stream.check(&client, camera).await;
        stream.lost.extend(streams[camera].verified.keys().filter(|n| !stream.verified.contains_key(*n)).cloned());
    }
    report.fragments(&delivered, &final_streams);
    report.consumers(consumers_caught_up(&sink, &stored, &final_streams).await);
    report.readers(&tails, &hls);

    report.write();
    report.assert_nothing_lost_or_doubled();
}

/// The streams, and the consumers that deliver to the webhook.
async fn set_up(client: &Client, url: &str, sink: &webhook::Sink) {
    records::client(url)
        .create_stream()
        .stream_name(records::STREAM)
        .shard_count(records::SHARDS)
        .send()
        .await
        .expect("the record stream");
    for camera in 0..CAMERAS {
        client.ensure_stream(&NewStream::named(cameras::name(camera))).await.expect("a camera stream");
    }
    for camera in CONSUMED_CAMERAS {
        let definition = serde_json::json!({
            "StreamName": cameras::name(camera), "ConsumerName": "watcher",
            "StartSelector": {"StartSelectorType": "EARLIEST"},
            "Selection": {"Type": "KEY_FRAMES"}, "Output": {"Format": "RAW"},
            "Batching": {"MaxFrames": 10, "MaxWaitMs": 200},
            "Retry": {"MaxAttempts": 100},
            "Webhook": {"Url": sink.url("frames")},
        });
        client.create_consumer(&definition).await.expect("a video consumer");
    }
    let definition = serde_json::json!({
        "DataStreamName": records::STREAM, "ConsumerName": "ledger",
        "StartSelector": {"StartSelectorType": "TRIM_HORIZON"},
        "Batching": {"MaxRecords": 500, "MaxWaitMs": 200},
        "Retry": {"MaxAttempts": 100},
        "Webhook": {"Url": sink.url("records")},
    });
    client.create_consumer(&definition).await.expect("the record consumer");
}

/// Waits until the consumers delivered everything stored (or the limit passes); returns the
/// gaps and the duplicates: (stored, never delivered) and (delivered more than once).
async fn consumers_caught_up(
    sink: &webhook::Sink,
    stored: &records::Stored,
    streams: &[cameras::Camera],
) -> report::ConsumerOutcome {
    let expected_frames: Vec<(String, String)> = CONSUMED_CAMERAS
        .iter()
        .flat_map(|&c| streams[c].verified.keys().map(|n| ("watcher".to_string(), n.clone())))
        .collect();
    let expected_records: Vec<String> =
        stored.iter().flat_map(|(shard, records)| records.keys().map(move |seq| format!("{shard}:{seq}"))).collect();
    let deadline = Instant::now() + CATCH_UP_LIMIT;
    loop {
        let outcome = {
            let delivered = sink.delivered.lock().expect("deliveries");
            report::ConsumerOutcome {
                frame_gaps: expected_frames.iter().filter(|k| !delivered.frames.contains_key(*k)).count() as u64,
                record_gaps: expected_records.iter().filter(|k| !delivered.records.contains_key(*k)).count() as u64,
                frame_duplicates: delivered.frames.values().map(|n| u64::from(n - 1)).sum(),
                record_duplicates: delivered.records.values().map(|n| u64::from(n - 1)).sum(),
                frames_delivered: delivered.frames.len() as u64,
                records_delivered: delivered.records.len() as u64,
            }
        };
        if (outcome.frame_gaps == 0 && outcome.record_gaps == 0) || Instant::now() > deadline {
            return outcome;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
