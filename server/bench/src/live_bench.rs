//! Live latency: the time from a fragment's PERSISTED ack at the producer to the fragment's
//! first appearance in a LIVE HLS media playlist, which a poller fetches back to back (the
//! resolution is one playlist round trip, about a millisecond on loopback).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use framelog_sdk::{Ack, Client, ClientConfig, TimecodeType};
use serde_json::json;
use tokio::sync::mpsc;

use crate::fleet_bench::{fragment_blocks, fragment_pieces};
use crate::http_get::{get, media_playlist_url};
use crate::stats::Row;
use crate::target::Target;
use crate::video_bench::post_json;

const FRAGMENTS: u64 = 30;
const SEND_EVERY: Duration = Duration::from_millis(500);
const FRAGMENT_MS: u64 = 2_000;

/// Fragment number → when it was first seen (PERSISTED ack, playlist).
#[derive(Debug, Default)]
struct Seen {
    persisted: HashMap<String, Instant>,
    listed: HashMap<String, Instant>,
    /// Stored before the poller started, so its latency would measure the bench, not the server.
    first: Option<String>,
}

/// A 720p H.264 track with an avcC record, so playback can package it.
pub fn stream_header() -> Vec<u8> {
    let track = framelog_media::Track {
        codec_private: vec![1, 0x64, 0, 0x28, 0xFF, 0xE1, 0, 0],
        pixel_width: Some(1280),
        pixel_height: Some(720),
        ..framelog_media::video_track(1, "V_MPEG4/ISO/AVC")
    };
    let mut out = Vec::new();
    framelog_media::write_stream_header(&mut out, 1_000_000, "bench", &[track]);
    out
}

/// Uploads FRAGMENTS fragments on one connection (the SDK's raw PutMedia), noting each PERSISTED.
async fn produce(address: std::net::SocketAddr, seen: Arc<Mutex<Seen>>, first: mpsc::Sender<()>) -> anyhow::Result<()> {
    let client = Client::new(ClientConfig::new(format!("http://{address}")));
    let start_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
    let mut upload = client
        .open_media_upload("bench-live", TimecodeType::Relative { start_ms }, Bytes::from(stream_header()))
        .await?;
    let blocks = fragment_blocks();
    let mut sent = 0;
    let mut persisted = 0;
    let mut next_send = tokio::time::Instant::now();
    while persisted < FRAGMENTS {
        tokio::select! {
            _ = tokio::time::sleep_until(next_send), if sent < FRAGMENTS => {
                for piece in fragment_pieces(sent * FRAGMENT_MS, &blocks) {
                    upload.send(piece)?;
                }
                sent += 1;
                next_send += SEND_EVERY;
            }
            ack = upload.next_ack() => match ack? {
                Some(Ack::Persisted { fragment_number, .. }) => {
                    let mut seen = seen.lock().expect("lock");
                    seen.first.get_or_insert_with(|| fragment_number.clone());
                    seen.persisted.entry(fragment_number).or_insert_with(Instant::now);
                    persisted += 1;
                    let _ = first.try_send(());
                }
                Some(Ack::Error { error_id, error_code, .. }) => anyhow::bail!("PutMedia failed: {error_id} {error_code}"),
                Some(_) => {}
                None => anyhow::bail!("ack stream ended after {persisted} PERSISTED"),
            },
        }
    }
    Ok(())
}

/// Fetches the LIVE media playlist back to back until `stop`, noting first appearances.
async fn poll(
    address: std::net::SocketAddr,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<()> {
    let http = crate::api_bench::client();
    let answer = post_json(
        &http,
        address,
        "getHLSStreamingSessionURL",
        json!({"StreamName": "bench-live", "PlaybackMode": "LIVE"}),
    )
    .await?;
    let media = media_playlist_url(answer["HLSStreamingSessionURL"].as_str().unwrap_or_default(), 1);
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let body = get(&http, &media).await?.body;
        let at = Instant::now();
        let text = String::from_utf8_lossy(&body);
        let mut seen = seen.lock().expect("lock");
        for number in text.split("FragmentNumber=").skip(1).filter_map(|rest| rest.split('&').next()) {
            seen.listed.entry(number.to_string()).or_insert(at);
        }
    }
    Ok(())
}

pub fn run(framelog_bin: &Path, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Vec<Row>> {
    let target = Target::framelog(framelog_bin)?;
    let address = target.address;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    runtime.block_on(async {
        let http = crate::api_bench::client();
        post_json(&http, address, "createStream", json!({"StreamName": "bench-live", "DataRetentionInHours": 24}))
            .await?;
        let (first_tx, mut first_rx) = mpsc::channel(1);
        let producer = tokio::spawn(produce(address, seen.clone(), first_tx));
        // LIVE needs a stored fragment; the poller starts after the first ack.
        first_rx.recv().await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let poller = tokio::spawn(poll(address, seen.clone(), stop.clone()));
        producer.await??;
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        poller.await??;
        Ok::<_, anyhow::Error>(())
    })?;
    let seen = seen.lock().expect("lock");
    let mut latencies: Vec<Duration> = seen
        .persisted
        .iter()
        .filter(|(number, _)| seen.first.as_ref() != Some(*number))
        .filter_map(|(number, acked)| Some(seen.listed.get(number)?.saturating_duration_since(*acked)))
        .collect();
    anyhow::ensure!(latencies.len() as u64 >= FRAGMENTS - 1, "only {} fragments were listed", latencies.len());
    latencies.sort();
    Ok(vec![Row::latency("PERSISTED ack -> LIVE playlist", "framelog", &latencies, None)])
}
