//! Clean shutdown: SIGTERM while a consumer is in the middle of a delivery, and a live GetMedia
//! reader (a request that never ends by itself) is open, ends the process with status 0 within
//! the grace periods, and the consumer's checkpoint, after a restart, is exactly after the last
//! batch its webhook acknowledged.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use framelog_media_tests::Server;
use framelog_sdk::{Client, ClientConfig, EncodedFrame, NewStream, ProducerConfig, StartSelector, TrackSpec};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const START_MS: u64 = 1_764_000_000_000;
/// Webhook calls answered before the webhook stops answering (and holds the next one open).
const ANSWERED_CALLS: usize = 3;

/// Ten one-second fragments of 25 fps video, a key frame each.
fn frames() -> Vec<EncodedFrame> {
    (0..250u64)
        .map(|i| EncodedFrame {
            track: 1,
            pts_ms: START_MS + i * 40,
            keyframe: i % 25 == 0,
            data: vec![(i % 251) as u8; 300].into(),
        })
        .collect()
}

/// A webhook that answers `ANSWERED_CALLS` calls with 200 and holds every later one open. Each
/// answered body goes to `answered`.
async fn webhook(listener: TcpListener, answered: mpsc::UnboundedSender<Value>) {
    let calls = Arc::new(AtomicUsize::new(0));
    while let Ok((stream, _)) = listener.accept().await {
        let (calls, answered) = (calls.clone(), answered.clone());
        tokio::spawn(async move { serve_connection(stream, &calls, &answered).await });
    }
}

async fn serve_connection(mut stream: TcpStream, calls: &AtomicUsize, answered: &mpsc::UnboundedSender<Value>) {
    while let Some(body) = read_request(&mut stream).await {
        if calls.fetch_add(1, Ordering::SeqCst) >= ANSWERED_CALLS {
            std::future::pending::<()>().await;
        }
        let _ = answered.send(serde_json::from_slice(&body).unwrap_or(Value::Null));
        let reply = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        if stream.write_all(reply).await.is_err() {
            return;
        }
    }
}

/// One HTTP/1.1 request with a Content-Length body; None when the connection ends.
async fn read_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buffer = Vec::new();
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let mut chunk = [0u8; 8192];
        let read = stream.read(&mut chunk).await.ok().filter(|&n| n > 0)?;
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        let mut chunk = [0u8; 8192];
        let read = stream.read(&mut chunk).await.ok().filter(|&n| n > 0)?;
        buffer.extend_from_slice(&chunk[..read]);
    }
    Some(buffer[head_end..head_end + length].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_delivery_exits_zero_and_keeps_the_checkpoint_at_the_last_acknowledged_batch() {
    let mut server = Server::start().expect("server starts");
    let client = Client::new(ClientConfig::new(server.url()));
    client.ensure_stream(&NewStream::named("door")).await.expect("stream");
    // An avcC record without parameter sets: enough for RAW delivery, which decodes nothing.
    let avcc = vec![1, 0x64, 0, 0x1f, 0xff, 0xe0, 0x00];
    let tracks = vec![TrackSpec::h264(1, avcc, 1280, 720)];
    let mut producer = client.producer(ProducerConfig::new("door", tracks)).await.expect("producer");
    for frame in frames() {
        producer.push_frame(frame).await.expect("frame accepted");
    }
    producer.finish().await.expect("every fragment persisted");

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("webhook port");
    let url = format!("http://{}/frames", listener.local_addr().expect("address"));
    let (answered_tx, mut answered) = mpsc::unbounded_channel();
    let receiver = tokio::spawn(webhook(listener, answered_tx));
    let definition = json!({
        "StreamName": "door", "ConsumerName": "detector",
        "StartSelector": {"StartSelectorType": "EARLIEST"},
        "Selection": {"Type": "KEY_FRAMES"}, "Output": {"Format": "RAW"},
        "Batching": {"MaxFrames": 1}, "Retry": {"MaxAttempts": 100},
        "Webhook": {"Url": url},
    });
    client.create_consumer(&definition).await.expect("consumer");
    let mut bodies = Vec::new();
    while bodies.len() < ANSWERED_CALLS {
        let body = tokio::time::timeout(Duration::from_secs(20), answered.recv()).await;
        bodies.push(body.expect("a delivery within 20 s").expect("webhook running"));
    }
    // The next call is now held open by the webhook: the consumer is mid-delivery. A live reader
    // keeps a GetMedia request open too.
    let mut reader = client.get_media("door", StartSelector::Earliest).await.expect("get media");
    let first = tokio::time::timeout(Duration::from_secs(10), reader.next_fragment()).await;
    assert!(first.expect("a fragment within 10 s").expect("readable").is_some(), "the reader is live");
    tokio::time::sleep(Duration::from_millis(500)).await;

    let asked = Instant::now();
    assert!(server.stop().expect("the server stops"), "exit status 0 after SIGTERM");
    let took = asked.elapsed();
    // Requests in flight get 5 s, background tasks 10 s (whose wait here is immediate).
    assert!(took < Duration::from_secs(12), "stopped in {took:?}, within the grace periods");
    drop(reader);

    receiver.abort();
    server.restart().expect("restart");
    let client = Client::new(ClientConfig::new(server.url()));
    let consumer = client.describe_consumer("door", "detector").await.expect("describe");
    let last_answered = bodies.last().and_then(|b| b["Frames"][0]["FrameTimestamp"].as_f64());
    assert_eq!(consumer["Metrics"]["DeliveredFrames"], ANSWERED_CALLS as u64, "{consumer}");
    assert_eq!(consumer["Checkpoint"]["LastFrameTimestamp"].as_f64(), last_answered, "{consumer}");
}
