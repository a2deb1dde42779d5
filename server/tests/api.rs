//! Request-level tests: the real router, in process (tower `oneshot`), no sockets. They check
//! validation, error types, statuses and messages, which need no real client. What only a real
//! client can show (boto3, the AWS CLI, ffprobe, Chromium) stays in media-tests/python
//! (docs/testing.md says where each kind of test goes).

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use framelog_server::{AppState, Config, router};
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// A server's router over a fresh data directory (kept alive with it).
struct App {
    router: Router,
    _dir: tempfile::TempDir,
}

/// A decoded response.
struct Answer {
    status: StatusCode,
    error_type: Option<String>,
    body: Value,
}

impl App {
    fn new() -> App {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config { data_dir: dir.path().to_path_buf(), ..Config::default() };
        let opened = AppState::open(&config, "127.0.0.1:4566".parse().expect("address")).expect("state opens");
        App { router: router(opened.state), _dir: dir }
    }

    async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.router.clone().oneshot(request).await.expect("the router always answers");
        let status = response.status();
        let error_type = response
            .headers()
            .get("x-amzn-ErrorType")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(':').next().unwrap_or_default().to_string());
        let bytes = to_bytes(response.into_body(), 1 << 20).await.expect("body");
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
        Answer { status, error_type, body }
    }

    /// A KVS rest-json call.
    async fn kvs(&self, op: &str, document: Value) -> Answer {
        let request = Request::post(format!("/{op}"))
            .header("content-type", "application/json")
            .body(Body::from(document.to_string()))
            .expect("request");
        self.send(request).await
    }

    /// A KDS awsJson1_1 call.
    async fn kds(&self, op: &str, document: Value) -> Answer {
        let request = Request::post("/")
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", format!("Kinesis_20131202.{op}"))
            .header("authorization", "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/kinesis/aws4_request")
            .body(Body::from(document.to_string()))
            .expect("request");
        self.send(request).await
    }
}

impl Answer {
    /// The KVS error as (type header, status).
    fn kvs_error(&self) -> (&str, u16) {
        (self.error_type.as_deref().unwrap_or("<none>"), self.status.as_u16())
    }

    /// The KDS error as (`__type`, status).
    fn kds_error(&self) -> (&str, u16) {
        (self.body["__type"].as_str().unwrap_or("<none>"), self.status.as_u16())
    }
}

const NOT_FOUND_MESSAGE: &str = "The requested stream is not found or not active.";

#[tokio::test]
async fn a_missing_video_stream_is_404_with_the_type_header_and_a_json_message() {
    let app = App::new();
    let answer = app.kvs("describeStream", json!({"StreamName": "nope"})).await;
    assert_eq!(answer.kvs_error(), ("ResourceNotFoundException", 404));
    assert_eq!(answer.body["Message"], NOT_FOUND_MESSAGE);
    let by_arn = app
        .kvs("describeStream", json!({"StreamARN": "arn:aws:kinesisvideo:us-east-1:000000000000:stream/nope/1"}))
        .await;
    assert_eq!(by_arn.kvs_error(), ("ResourceNotFoundException", 404));
}

#[tokio::test]
async fn invalid_video_stream_names_are_invalid_argument() {
    let app = App::new();
    for name in ["bad name".to_string(), "a".repeat(257)] {
        let answer = app.kvs("createStream", json!({"StreamName": name})).await;
        assert_eq!(answer.kvs_error(), ("InvalidArgumentException", 400), "{name:?}");
    }
}

#[tokio::test]
async fn name_and_arn_together_are_invalid_argument() {
    let app = App::new();
    let created = app.kvs("createStream", json!({"StreamName": "both"})).await;
    let arn = created.body["StreamARN"].as_str().expect("an ARN").to_string();
    let answer = app.kvs("describeStream", json!({"StreamName": "both", "StreamARN": arn})).await;
    assert_eq!(answer.kvs_error(), ("InvalidArgumentException", 400));
}

#[tokio::test]
async fn unknown_or_capitalised_operations_are_404_unknown_operation() {
    let app = App::new();
    for op in ["GetHLSStreamingSessionURL", "noSuchOperation"] {
        let answer = app.kvs(op, json!({"StreamName": "nope"})).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{op}");
        assert_eq!(answer.body["Output"]["__type"], "com.amazon.coral.service#UnknownOperationException");
    }
}

#[tokio::test]
async fn malformed_json_is_a_serialization_exception() {
    let app = App::new();
    let request = Request::post("/describeStream").body(Body::from("{not json")).expect("request");
    let answer = app.send(request).await;
    assert_eq!(answer.kvs_error(), ("SerializationException", 400));
}

#[tokio::test]
async fn retention_cannot_go_below_zero_and_a_stale_version_is_a_mismatch() {
    let app = App::new();
    app.kvs("createStream", json!({"StreamName": "keep", "DataRetentionInHours": 24})).await;
    let version = app.kvs("describeStream", json!({"StreamName": "keep"})).await.body["StreamInfo"]["Version"].clone();
    let below = app
        .kvs(
            "updateDataRetention",
            json!({"StreamName": "keep", "CurrentVersion": version, "Operation": "DECREASE_DATA_RETENTION",
                   "DataRetentionChangeInHours": 25}),
        )
        .await;
    assert_eq!(below.kvs_error(), ("InvalidArgumentException", 400));
    let stale = app
        .kvs(
            "updateDataRetention",
            json!({"StreamName": "keep", "CurrentVersion": "A".repeat(20), "Operation": "INCREASE_DATA_RETENTION",
                   "DataRetentionChangeInHours": 1}),
        )
        .await;
    assert_eq!(stale.kvs_error(), ("VersionMismatchException", 400));
    let after = app.kvs("describeStream", json!({"StreamName": "keep"})).await;
    assert_eq!(after.body["StreamInfo"]["DataRetentionInHours"], 24, "a refused change changes nothing");
}

#[tokio::test]
async fn data_endpoints_name_a_known_api() {
    let app = App::new();
    app.kvs("createStream", json!({"StreamName": "ep"})).await;
    let known = app.kvs("getDataEndpoint", json!({"StreamName": "ep", "APIName": "PUT_MEDIA"})).await;
    assert_eq!(known.body["DataEndpoint"], "http://127.0.0.1:4566");
    let unknown = app.kvs("getDataEndpoint", json!({"StreamName": "ep", "APIName": "PUT_MEDIA_PLEASE"})).await;
    assert_eq!(unknown.kvs_error(), ("InvalidArgumentException", 400));
    let missing = app.kvs("getDataEndpoint", json!({"StreamName": "gone", "APIName": "PUT_MEDIA"})).await;
    assert_eq!(missing.kvs_error(), ("ResourceNotFoundException", 404));
}

#[tokio::test]
async fn more_than_50_tags_is_refused_and_adds_none() {
    let app = App::new();
    let forty: serde_json::Map<String, Value> = (0..40).map(|i| (format!("k{i:02}"), json!(i.to_string()))).collect();
    app.kvs("createStream", json!({"StreamName": "tags", "Tags": forty})).await;
    let eleven: serde_json::Map<String, Value> = (0..11).map(|i| (format!("n{i:02}"), json!("x"))).collect();
    let refused = app.kvs("tagStream", json!({"StreamName": "tags", "Tags": eleven})).await;
    assert_eq!(refused.kvs_error(), ("TagsPerResourceExceededLimitException", 400));
    let listed = app.kvs("listTagsForStream", json!({"StreamName": "tags"})).await;
    assert_eq!(listed.body["Tags"].as_object().map(|t| t.len()), Some(40));
}

#[tokio::test]
async fn list_fragments_needs_a_selector_and_playback_needs_a_stream() {
    let app = App::new();
    app.kvs("createStream", json!({"StreamName": "frags"})).await;
    let no_selector = app.kvs("listFragments", json!({"StreamName": "frags"})).await;
    assert_eq!(no_selector.kvs_error(), ("InvalidArgumentException", 400));
    let hls = app.kvs("getHLSStreamingSessionURL", json!({"StreamName": "nope", "PlaybackMode": "LIVE"})).await;
    assert_eq!(hls.kvs_error(), ("ResourceNotFoundException", 404));
}

#[tokio::test]
async fn a_forged_session_token_is_403() {
    let app = App::new();
    let request = Request::get("/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken=forged").body(Body::empty());
    let answer = app.send(request.expect("request")).await;
    assert_eq!(answer.kvs_error(), ("AccessDeniedException", 403));
}

/// A WHEP URL's path and query (the part after the data endpoint) for a new stream `name`.
async fn whep_path(app: &App, name: &str) -> String {
    app.kvs("createStream", json!({"StreamName": name})).await;
    let answer = app.kvs("getWHEPSessionURL", json!({"StreamName": name})).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    let url = answer.body["WHEPSessionURL"].as_str().expect("a URL");
    format!("/whep/v1/{}", url.split_once("/whep/v1/").expect("a WHEP path").1)
}

fn whep_post(path: &str, content_type: &str, body: &'static str) -> Request<Body> {
    Request::post(path).header("content-type", content_type).body(Body::from(body)).expect("request")
}

#[tokio::test]
async fn whep_offers_must_be_sdp_for_a_whep_token_and_sessions_are_named() {
    let app = App::new();
    let path = whep_path(&app, "door").await;
    assert!(path.starts_with("/whep/v1/offer?SessionToken="), "{path}");

    let not_sdp = app.send(whep_post(&path, "application/json", "{}")).await;
    assert_eq!(not_sdp.kvs_error(), ("UnsupportedMediaTypeException", 415));
    let not_an_offer = app.send(whep_post(&path, "application/sdp", "v=0\r\nthis is not SDP\r\n")).await;
    assert_eq!(not_an_offer.kvs_error(), ("InvalidArgumentException", 400));
    let no_token = app.send(whep_post("/whep/v1/offer", "application/sdp", "v=0\r\n")).await;
    assert_eq!(no_token.kvs_error(), ("InvalidArgumentException", 400));

    let token = path.split_once("SessionToken=").expect("token").1;
    let delete = Request::delete(format!("/whep/v1/0123?SessionToken={token}")).body(Body::empty());
    let unknown = app.send(delete.expect("request")).await;
    assert_eq!(unknown.kvs_error(), ("ResourceNotFoundException", 404));

    // A WHEP token opens WebRTC only: HLS refuses it, as WHEP refuses a forged one.
    let hls = Request::get(format!("/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken={token}")).body(Body::empty());
    assert_eq!(app.send(hls.expect("request")).await.kvs_error(), ("AccessDeniedException", 403));
    let forged = app.send(whep_post("/whep/v1/offer?SessionToken=forged", "application/sdp", "v=0\r\n")).await;
    assert_eq!(forged.kvs_error(), ("AccessDeniedException", 403));
    let missing = app.kvs("getWHEPSessionURL", json!({"StreamName": "nope"})).await;
    assert_eq!(missing.kvs_error(), ("ResourceNotFoundException", 404));
}

#[tokio::test]
async fn consumers_of_a_missing_stream_are_not_found() {
    let app = App::new();
    let answer = app
        .kvs("createConsumer", json!({"StreamName": "nope", "ConsumerName": "c", "WebhookUrl": "http://127.0.0.1:9/"}))
        .await;
    assert_eq!(answer.kvs_error(), ("ResourceNotFoundException", 404));
    let listed = app.kvs("listConsumers", json!({"StreamName": "nope"})).await;
    assert_eq!(listed.kvs_error(), ("ResourceNotFoundException", 404));
}

#[tokio::test]
async fn kds_validation_errors_carry_their_type_and_message() {
    let app = App::new();
    let spaced = app.kds("CreateStream", json!({"StreamName": "bad name", "ShardCount": 1})).await;
    assert_eq!(spaced.kds_error(), ("ValidationException", 400));
    let message = spaced.body["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(
            "1 validation error detected: Value 'bad name' at 'streamName' failed to satisfy constraint: \
             Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
        ),
        "{message}"
    );
    let missing = app.kds("DescribeStream", json!({"StreamName": "nope"})).await;
    assert_eq!(missing.kds_error(), ("ResourceNotFoundException", 400));
    assert_eq!(missing.body["message"], "Stream nope under account 000000000000 not found.");
    let garbage = app.kds("GetRecords", json!({"ShardIterator": "this-is-not-a-shard-iterator"})).await;
    assert_eq!(garbage.kds_error(), ("InvalidArgumentException", 400));
    assert_eq!(garbage.body["message"], "Invalid ShardIterator.");
}

#[tokio::test]
async fn refused_kds_writes_and_retention_changes_change_nothing() {
    let app = App::new();
    app.kds("CreateStream", json!({"StreamName": "orders", "ShardCount": 1})).await;
    let records: Vec<Value> = (0..501).map(|i| json!({"Data": "eA==", "PartitionKey": i.to_string()})).collect();
    let too_many = app.kds("PutRecords", json!({"StreamName": "orders", "Records": records})).await;
    assert_eq!(too_many.kds_error(), ("ValidationException", 400));
    let message = too_many.body["message"].as_str().unwrap_or_default();
    assert!(message.contains("records") && message.contains("500"), "{message}");
    let iterator = app
        .kds(
            "GetShardIterator",
            json!({"StreamName": "orders", "ShardId": "shardId-000000000000", "ShardIteratorType": "TRIM_HORIZON"}),
        )
        .await;
    let read = app.kds("GetRecords", json!({"ShardIterator": iterator.body["ShardIterator"]})).await;
    assert_eq!(read.body["Records"], json!([]), "a refused PutRecords writes nothing");

    let long =
        app.kds("IncreaseStreamRetentionPeriod", json!({"StreamName": "orders", "RetentionPeriodHours": 8761})).await;
    assert_eq!(long.kds_error(), ("InvalidArgumentException", 400));
    let short =
        app.kds("DecreaseStreamRetentionPeriod", json!({"StreamName": "orders", "RetentionPeriodHours": 23})).await;
    assert_eq!(short.kds_error().1, 400);
    let summary = app.kds("DescribeStreamSummary", json!({"StreamName": "orders"})).await;
    assert_eq!(summary.body["StreamDescriptionSummary"]["RetentionPeriodHours"], 24);
}

#[tokio::test]
async fn metrics_are_openmetrics_text() {
    let app = App::new();
    let response = app.router.clone().oneshot(Request::get("/metrics").body(Body::empty()).expect("request")).await;
    let response = response.expect("answer");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    let text = to_bytes(response.into_body(), 1 << 20).await.expect("body");
    assert!(text.ends_with(b"# EOF\n"), "{}", String::from_utf8_lossy(&text));
}

#[tokio::test]
async fn a_rebinding_host_is_refused_by_an_open_server() {
    let app = App::new();
    let request = Request::get("/").header("host", "attacker.example:4566").body(Body::empty()).expect("request");
    assert_eq!(app.send(request).await.status, StatusCode::MISDIRECTED_REQUEST);
    let request = Request::get("/").header("host", "localhost:4566").body(Body::empty()).expect("request");
    assert_eq!(app.send(request).await.status, StatusCode::OK);
}

#[tokio::test]
async fn pages_on_other_origins_cannot_call_the_apis() {
    let app = App::new();
    let request = Request::post("/deleteStream")
        .header("host", "127.0.0.1:4566")
        .header("origin", "http://attacker.example")
        .header("content-type", "application/json")
        .body(Body::from(json!({"StreamARN": "x"}).to_string()))
        .expect("request");
    assert_eq!(app.send(request).await.kvs_error(), ("AccessDeniedException", 403));
    // The console, served by this server, calls with its own origin.
    let request = Request::post("/listStreams")
        .header("host", "127.0.0.1:4566")
        .header("origin", "http://127.0.0.1:4566")
        .header("content-type", "application/json")
        .body(Body::from("{}"))
        .expect("request");
    assert_eq!(app.send(request).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_text_plain_post_is_not_json() {
    let app = App::new();
    let request = Request::post("/createStream")
        .header("content-type", "text/plain")
        .header("content-length", "22")
        .body(Body::from(json!({"StreamName": "csrf"}).to_string()))
        .expect("request");
    assert_eq!(app.send(request).await.kvs_error(), ("UnsupportedMediaTypeException", 415));
    let listed = app.kvs("listStreams", json!({})).await;
    assert_eq!(listed.body["StreamInfoList"], json!([]), "nothing was created");
}

#[tokio::test]
async fn device_names_and_media_types_have_awss_length_limits() {
    let app = App::new();
    let long = "d".repeat(129);
    let answer = app.kvs("createStream", json!({"StreamName": "long-device", "DeviceName": long})).await;
    assert_eq!(answer.kvs_error(), ("InvalidArgumentException", 400));
    let answer = app.kvs("createStream", json!({"StreamName": "ok-device", "DeviceName": "d".repeat(128)})).await;
    assert_eq!(answer.status, StatusCode::OK);
    let answer = app.kvs("createStream", json!({"StreamName": "empty-type", "MediaType": ""})).await;
    assert_eq!(answer.kvs_error(), ("InvalidArgumentException", 400));
}

/// Log lines written while a test runs, for reading back.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// The JSON log lines of target `framelog::access`.
    fn access_lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().expect("lock").clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|line| line["target"] == "framelog::access")
            .collect()
    }
}

/// Logs of this thread captured as `--log-format json` writes them, until the guard drops.
fn json_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::INFO)
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

/// Runs `requests` against a router with `access_log` as configured, logging as
/// `--log-format json` does; each answer's `x-amzn-RequestId` and status, and what was logged.
async fn logged(access_log: bool, requests: Vec<Request<Body>>) -> (Vec<(String, u16)>, Captured) {
    let (captured, _logging) = json_logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config { data_dir: dir.path().to_path_buf(), access_log, ..Config::default() };
    let opened = AppState::open(&config, "127.0.0.1:4566".parse().expect("address")).expect("state opens");
    let router = router(opened.state);
    let mut ids = Vec::new();
    for request in requests {
        let response = router.clone().oneshot(request).await.expect("answered");
        let id = response.headers().get("x-amzn-requestid").and_then(|v| v.to_str().ok()).unwrap_or_default();
        ids.push((id.to_string(), response.status().as_u16()));
    }
    (ids, captured)
}

fn kds_request(op: &str, document: Value) -> Request<Body> {
    Request::post("/")
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", format!("Kinesis_20131202.{op}"))
        .header("authorization", "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/kinesis/aws4_request")
        .body(Body::from(document.to_string()))
        .expect("request")
}

#[tokio::test]
async fn each_answer_gets_one_access_log_line_with_its_request_id_action_and_resource() {
    let requests = vec![
        kds_request("CreateStream", json!({"StreamName": "logged", "ShardCount": 1})),
        kds_request("DescribeStreamSummary", json!({"StreamName": "logged"})),
        kds_request("DescribeStreamSummary", json!({"StreamName": "absent"})),
        Request::get("/no/such/path").body(Body::empty()).expect("request"),
    ];
    let (answers, captured) = logged(true, requests).await;
    let lines = captured.access_lines();
    assert_eq!(lines.len(), 4, "{lines:?}");
    for (line, (id, status)) in lines.iter().zip(&answers) {
        assert!(!id.is_empty());
        assert_eq!(line["span"]["request_id"], id.as_str(), "{line}");
        assert_eq!(line["fields"]["status"], *status, "{line}");
        assert!(line["fields"]["duration_ms"].as_f64().is_some(), "{line}");
    }
    let statuses: Vec<u16> = answers.iter().map(|(_, status)| *status).collect();
    assert_eq!(statuses[..3], [200, 200, 400]);
    let described = &lines[1];
    assert_eq!(described["span"]["call"], "Kinesis_20131202.DescribeStreamSummary");
    assert_eq!(described["span"]["action"], "kinesis:DescribeStreamSummary");
    assert!(described["span"]["resource"].as_str().is_some_and(|r| r.ends_with(":stream/logged")), "{described}");
    assert!(described["fields"]["bytes_in"].as_u64().is_some_and(|b| b > 0), "{described}");
    assert_eq!(lines[3]["span"]["call"], "GET /no/such/path");
}

#[tokio::test]
async fn access_log_false_writes_no_access_lines() {
    let (answers, captured) = logged(false, vec![kds_request("ListStreams", json!({}))]).await;
    assert_eq!(answers.len(), 1);
    assert!(captured.access_lines().is_empty());
}

/// A CloudWatch RPC v2 CBOR call, as current AWS CLIs and SDKs make it.
fn cloudwatch_request(op: &str, document: &ciborium::value::Value) -> Request<Body> {
    let mut body = Vec::new();
    ciborium::into_writer(document, &mut body).expect("encodes");
    Request::post(format!("/service/GraniteServiceVersion20100801/operation/{op}"))
        .header("content-type", "application/cbor")
        .header("smithy-protocol", "rpc-v2-cbor")
        .header("authorization", "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/monitoring/aws4_request")
        .body(Body::from(body))
        .expect("request")
}

fn cbor_map(entries: Vec<(&str, ciborium::value::Value)>) -> ciborium::value::Value {
    ciborium::value::Value::Map(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
}

fn epoch_secs(secs: u64) -> ciborium::value::Value {
    ciborium::value::Value::Tag(1, Box::new(secs.into()))
}

#[tokio::test]
async fn a_put_record_shows_in_prometheus_and_in_get_metric_statistics_over_cbor() {
    use ciborium::value::Value as Cbor;
    let app = App::new();
    app.kds("CreateStream", json!({"StreamName": "watched", "ShardCount": 1})).await;
    let put = app.kds("PutRecord", json!({"StreamName": "watched", "Data": "aGVsbG8=", "PartitionKey": "k"})).await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    let response = app.router.clone().oneshot(Request::get("/metrics").body(Body::empty()).expect("request")).await;
    let text = to_bytes(response.expect("answer").into_body(), 1 << 20).await.expect("body");
    let text = String::from_utf8_lossy(&text);
    for line in [
        "framelog_kinesis_incoming_records_total{stream=\"watched\"} 1",
        "framelog_kinesis_incoming_bytes_total{stream=\"watched\"} 6",
        "framelog_kinesis_put_record_success_total{stream=\"watched\"} 1",
        "framelog_kinesis_put_record_attempts_total{stream=\"watched\"} 1",
        "framelog_kinesis_put_record_latency_milliseconds_count{stream=\"watched\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing from:\n{text}");
    }
    // The engine and the process beside them.
    for family in [
        "framelog_stream_disk_bytes{stream=\"watched\",kind=\"data\"} ",
        "framelog_engine_pending_compaction_bytes ",
        "framelog_engine_writes_stopped 0",
        "framelog_decode_pool_queued_jobs 0",
        "framelog_http_open_connections ",
    ] {
        assert!(text.lines().any(|l| l.starts_with(family)), "{family} missing from:\n{text}");
    }
    let now_secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let asked = |period: u64| {
        cbor_map(vec![
            ("Namespace", "AWS/Kinesis".into()),
            ("MetricName", "IncomingBytes".into()),
            (
                "Dimensions",
                Cbor::Array(vec![cbor_map(vec![("Name", "StreamName".into()), ("Value", "watched".into())])]),
            ),
            ("StartTime", epoch_secs(now_secs - 3600)),
            ("EndTime", epoch_secs(now_secs + 120)),
            ("Period", period.into()),
            ("Statistics", Cbor::Array(vec!["Sum".into()])),
        ])
    };
    let response = app.router.clone().oneshot(cloudwatch_request("GetMetricStatistics", &asked(60))).await;
    let response = response.expect("answer");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["smithy-protocol"], "rpc-v2-cbor");
    let bytes = to_bytes(response.into_body(), 1 << 20).await.expect("body");
    let answer: Cbor = ciborium::from_reader(bytes.as_ref()).expect("CBOR");
    let text = format!("{answer:?}");
    assert!(text.contains("Text(\"Sum\"), Float(6.0)"), "{text}");
    assert!(text.contains("Text(\"Timestamp\"), Tag(1, Float("), "{text}");
    let response = app.router.clone().oneshot(cloudwatch_request("GetMetricStatistics", &asked(30))).await;
    let response = response.expect("answer");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.headers()["x-amzn-query-error"], "InvalidParameterValue;Sender");
}

#[tokio::test]
async fn list_metrics_answers_in_aws_json_1_0() {
    let app = App::new();
    app.kds("CreateStream", json!({"StreamName": "listed", "ShardCount": 1})).await;
    app.kds("PutRecord", json!({"StreamName": "listed", "Data": "aGk=", "PartitionKey": "k"})).await;
    let request = Request::post("/")
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amz-target", "GraniteServiceVersion20100801.ListMetrics")
        .header("authorization", "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/monitoring/aws4_request")
        .body(Body::from(json!({"Namespace": "AWS/Kinesis", "MetricName": "PutRecord.Latency"}).to_string()))
        .expect("request");
    let answer = app.send(request).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let expected = json!([{"Namespace": "AWS/Kinesis", "MetricName": "PutRecord.Latency",
        "Dimensions": [{"Name": "StreamName", "Value": "listed"}]}]);
    assert_eq!(answer.body["Metrics"], expected);
}

#[tokio::test]
async fn putmedia_ingest_logs_under_the_request_id_of_its_call() {
    let (captured, _logging) = json_logs();
    let app = App::new();
    assert_eq!(app.kvs("createStream", json!({"StreamName": "traced", "DataRetentionInHours": 1})).await.status, 200);
    let request = Request::post("/putMedia")
        .header("x-amzn-stream-name", "traced")
        .header("x-amzn-fragment-timecode-type", "ABSOLUTE")
        .header("x-amzn-producer-start-timestamp", "1700000000")
        .header("authorization", "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/kinesisvideo/aws4_request")
        .body(Body::from(vec![0x42u8; 64]))
        .expect("request");
    let response = app.router.clone().oneshot(request).await.expect("answered");
    let id = response.headers()["x-amzn-requestid"].to_str().expect("text").to_string();
    // Reading the acks to their end runs the ingest task (spawned by the handler) to its end.
    let acks = to_bytes(response.into_body(), 1 << 20).await.expect("acks");
    assert!(String::from_utf8_lossy(&acks).contains("\"EventType\":\"ERROR\""), "{}", String::from_utf8_lossy(&acks));
    let bytes = captured.0.lock().expect("lock").clone();
    let lines: Vec<Value> =
        String::from_utf8_lossy(&bytes).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let rejected =
        lines.iter().find(|l| l["fields"]["message"] == "rejected PutMedia input").expect("the ingest task logged");
    assert_eq!(rejected["span"]["request_id"], id.as_str(), "{rejected}");
}
