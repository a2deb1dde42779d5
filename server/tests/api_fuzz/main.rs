//! A structure-aware fuzzer over every HTTP operation, in process (the real router, tower
//! `oneshot`): random and mutated documents for each operation, from the shapes the handlers
//! accept. Every answer must come within the deadline, be a success or a typed error (never a
//! 5xx, never a panic anywhere in the server), and afterwards the data the test stored before
//! must read back unchanged. `make fuzz-api` runs it 30 minutes (`FRAMELOG_API_FUZZ_SECS`);
//! `make test` for 20 s. A failure prints the run's seed and the request's index:
//! `FRAMELOG_API_FUZZ_SEED` replays the run's requests in order (each request's own seed is the
//! run's plus its index).

mod generate;
mod requests;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use framelog_media::package::Codec;
use framelog_server::{AppState, Config, router};
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use tower::ServiceExt as _;

const ANSWER_DEADLINE: Duration = Duration::from_secs(10);
/// Streaming answers (GetMedia) are read this long, then dropped as a client would.
const BODY_READ: Duration = Duration::from_millis(300);
const KEPT_RECORDS: usize = 20;

fn budget() -> Duration {
    Duration::from_secs(std::env::var("FRAMELOG_API_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(20))
}

struct Server {
    router: Router,
    _dir: tempfile::TempDir,
}

impl Server {
    fn open() -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config { data_dir: dir.path().to_path_buf(), ..Config::default() };
        // Firehose HTTP endpoints the fuzzer makes up are refused by prefix, before any DNS
        // lookup of a random name could stall a request.
        config.consumers.allowed_destination_prefixes = vec!["https://127.0.0.1:9/".into()];
        let opened = AppState::open(&config, "127.0.0.1:4566".parse().expect("address")).expect("state opens");
        Server { router: router(opened.state), _dir: dir }
    }

    async fn call(&self, request: Request<Body>) -> (u16, Option<String>, Vec<u8>) {
        let response = self.router.clone().oneshot(request).await.expect("the router always answers");
        let status = response.status().as_u16();
        let error_type = response.headers().get("x-amzn-ErrorType").and_then(|v| v.to_str().ok()).map(str::to_string);
        let mut body = response.into_body().into_data_stream();
        let mut bytes = Vec::new();
        let read = async {
            use tokio_stream::StreamExt as _;
            while let Some(Ok(chunk)) = body.next().await {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > 1 << 20 {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(BODY_READ, read).await;
        (status, error_type, bytes)
    }

    async fn kds(&self, op: &str, document: Value) -> Value {
        let request = Request::post("/")
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", format!("Kinesis_20131202.{op}"))
            .header("authorization", "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/kinesis/aws4_request")
            .body(Body::from(document.to_string()))
            .expect("request");
        let (status, _, body) = self.call(request).await;
        assert_eq!(status, 200, "{op}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    }

    async fn kvs(&self, op: &str, document: Value) -> Value {
        let request = Request::post(format!("/{op}"))
            .header("content-type", "application/json")
            .header("authorization", "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/kinesisvideo/aws4_request")
            .body(Body::from(document.to_string()))
            .expect("request");
        let (status, _, body) = self.call(request).await;
        assert_eq!(status, 200, "{op}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    }
}

/// Streams for the fuzz to work on, a real session to tamper with, and the data it must not touch.
async fn set_up(server: &Server) -> (String, Vec<(String, String)>) {
    server.kds("CreateStream", json!({"StreamName": "fuzz-a", "ShardCount": 2})).await;
    server.kds("CreateStream", json!({"StreamName": "fuzz-b", "ShardCount": 1})).await;
    server.kds("CreateStream", json!({"StreamName": "kept-ledger", "ShardCount": 1})).await;
    let mut kept = Vec::new();
    for index in 0..KEPT_RECORDS {
        let data = format!("kept record {index}");
        let answer = server
            .kds("PutRecord", json!({"StreamName": "kept-ledger", "PartitionKey": "k", "Data": b64(&data)}))
            .await;
        kept.push((answer["SequenceNumber"].as_str().expect("a sequence number").to_string(), data));
    }
    server.kvs("createStream", json!({"StreamName": "fuzz-video", "DataRetentionInHours": 24})).await;
    let start_ms = 1_795_000_000_000;
    let upload = Request::post("/putMedia")
        .header("x-amzn-stream-name", "fuzz-video")
        .header("x-amzn-fragment-timecode-type", "ABSOLUTE")
        .header("authorization", "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/kinesisvideo/aws4_request")
        .body(Body::from(framelog_imaging::test_media::colour_bars_mkv(Codec::Avc, 30, 10, start_ms)))
        .expect("request");
    let (_, _, acks) = server.call(upload).await;
    assert!(String::from_utf8_lossy(&acks).contains("PERSISTED"), "{}", String::from_utf8_lossy(&acks));
    let session = server
        .kvs(
            "getHLSStreamingSessionURL",
            json!({"StreamName": "fuzz-video", "PlaybackMode": "ON_DEMAND",
                   "HLSFragmentSelector": {"FragmentSelectorType": "PRODUCER_TIMESTAMP",
                       "TimestampRange": {"StartTimestamp": start_ms / 1000, "EndTimestamp": start_ms / 1000 + 60}}}),
        )
        .await;
    let url = session["HLSStreamingSessionURL"].as_str().expect("a session URL");
    (url.split_once('?').map(|(_, query)| query.to_string()).unwrap_or_default(), kept)
}

fn b64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// What a bad answer looks like, if this one is.
fn judge(status: u16, error_type: &Option<String>, body: &[u8], api: bool) -> Option<String> {
    if status >= 500 {
        return Some(format!("status {status}: {}", String::from_utf8_lossy(&body[..body.len().min(500)])));
    }
    // JSON or CBOR (whose map keys are plain text too) with a `__type` member, or the XML
    // `<UnknownOperationException>` AWS answers a path it does not know with.
    let contains = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    let typed = error_type.is_some() || contains(b"__type") || contains(b"<UnknownOperationException>");
    (api && (400..500).contains(&status) && !typed)
        .then(|| format!("untyped {status}: {}", String::from_utf8_lossy(body)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_random_and_mutated_documents_with_a_typed_answer() {
    let panics = Arc::new(AtomicU64::new(0));
    let counted = panics.clone();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        counted.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));
    let server = Server::open();
    let (hls_query, kept) = set_up(&server).await;
    let targets = requests::Targets::new(hls_query);
    let first_seed: u64 =
        std::env::var("FRAMELOG_API_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    let started = Instant::now();
    let mut requests_sent = 0u64;
    let mut statuses = std::collections::BTreeMap::<u16, u64>::new();
    while started.elapsed() < budget() {
        let seed = first_seed.wrapping_add(requests_sent);
        let mut rng = StdRng::seed_from_u64(seed);
        let (request, description) = targets.request(&mut rng);
        let api = !description.contains("/console/") && !description.starts_with("GET /metrics");
        let answer = tokio::time::timeout(ANSWER_DEADLINE, server.call(request)).await;
        let Ok((status, error_type, body)) = answer else {
            panic!(
                "no answer within {ANSWER_DEADLINE:?} (request {requests_sent} of seed {first_seed}): {description}"
            );
        };
        if let Some(problem) = judge(status, &error_type, &body, api) {
            panic!("{problem}\nrequest {requests_sent} of FRAMELOG_API_FUZZ_SEED={first_seed}: {description}");
        }
        *statuses.entry(status).or_default() += 1;
        requests_sent += 1;
    }
    println!("{requests_sent} requests in {:?} from seed {first_seed}; statuses {statuses:?}", started.elapsed());
    assert_eq!(panics.load(Ordering::SeqCst), 0, "a panic somewhere in the server (see the output)");
    assert!(statuses.get(&200).copied().unwrap_or(0) > requests_sent / 20, "too few requests succeed: {statuses:?}");

    // What was stored before is intact.
    let iterator = server
        .kds("GetShardIterator", json!({"StreamName": "kept-ledger", "ShardId": "shardId-000000000000", "ShardIteratorType": "TRIM_HORIZON"}))
        .await;
    let records = server.kds("GetRecords", json!({"ShardIterator": iterator["ShardIterator"]})).await;
    let stored: Vec<(String, String)> = records["Records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| {
            (
                r["SequenceNumber"].as_str().unwrap_or_default().to_string(),
                r["Data"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = kept.iter().map(|(seq, data)| (seq.clone(), b64(data))).collect();
    assert_eq!(stored, expected, "the records stored before the fuzz");
}
