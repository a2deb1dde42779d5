//! Operation-level tests of the Firehose API and of delivery into a directory bucket.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use framelog_store::{Engine, EngineOptions, ManualClock, MasterKey, SystemClock};
use serde_json::{Value, json};

use super::buckets::Buckets;
use super::context::FirehoseCtx;
use super::runner::{CHECKPOINT_KEY, Checkpoint};
use super::{call, spec::DeliveryStreamSpec};
use crate::document::Document;
use crate::error::{ApiError, ErrorType};

const START_MS: u64 = 1_795_651_512_000;

fn context(dir: &Path, engine: Engine) -> FirehoseCtx {
    let (changes, _) = tokio::sync::mpsc::unbounded_channel();
    FirehoseCtx {
        metrics: crate::cloudwatch::Recorder::new(engine.clone()),
        engine,
        account_id: "000000000000".into(),
        region: "us-east-1".into(),
        buckets: Buckets::new(dir, Default::default()),
        lambda_functions: Default::default(),
        glue_tables: Default::default(),
        destinations: crate::consumers::DestinationPolicy { allow_private: true, ..Default::default() },
        changes,
        incoming: Default::default(),
        quotas: Default::default(),
    }
}

/// A context on the system clock, for tests that run delivery.
fn live(dir: &Path) -> FirehoseCtx {
    let engine = Engine::open(&dir.join("engine"), Arc::new(SystemClock), EngineOptions::default()).expect("engine");
    context(dir, engine)
}

fn manual(dir: &Path) -> FirehoseCtx {
    let clock = Arc::new(ManualClock::new(START_MS));
    // Encryption needs the engine's master key.
    let master_key = Some(Arc::new(MasterKey::from_bytes(&[7u8; 32]).expect("key")));
    let options = EngineOptions { master_key, ..EngineOptions::default() };
    context(dir, Engine::open(&dir.join("engine"), clock, options).expect("engine"))
}

fn run(ctx: &FirehoseCtx, op: &str, document: Value) -> Result<Value, ApiError> {
    call(ctx, op, Document::parse(document)?)
}

fn s3_stream(name: &str, extra: Value) -> Value {
    let mut destination = json!({"RoleARN": "arn:aws:iam::000000000000:role/r", "BucketARN": "arn:aws:s3:::logs"});
    if let (Some(d), Some(extra)) = (destination.as_object_mut(), extra.as_object()) {
        d.extend(extra.clone());
    }
    json!({"DeliveryStreamName": name, "ExtendedS3DestinationConfiguration": destination})
}

#[test]
fn a_delivery_stream_is_created_described_listed_updated_and_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = manual(dir.path());
    let created = run(&ctx, "CreateDeliveryStream", s3_stream("orders", json!({}))).expect("create");
    assert_eq!(created["DeliveryStreamARN"], "arn:aws:firehose:us-east-1:000000000000:deliverystream/orders");
    let again = run(&ctx, "CreateDeliveryStream", s3_stream("orders", json!({}))).expect_err("exists");
    assert_eq!(again.kind, ErrorType::ResourceInUse);

    let described = run(&ctx, "DescribeDeliveryStream", json!({"DeliveryStreamName": "orders"})).expect("describe");
    let d = &described["DeliveryStreamDescription"];
    assert_eq!((d["DeliveryStreamStatus"].as_str(), d["VersionId"].as_str()), (Some("ACTIVE"), Some("1")));
    assert_eq!(d["DeliveryStreamType"], "DirectPut");
    assert_eq!(d["CreateTimestamp"], json!(START_MS as f64 / 1000.0));
    let destination = &d["Destinations"][0];
    assert_eq!(destination["DestinationId"], "destinationId-000000000001");
    assert_eq!(destination["ExtendedS3DestinationDescription"]["BufferingHints"]["SizeInMBs"], 5);

    run(&ctx, "CreateDeliveryStream", s3_stream("alpha", json!({}))).expect("create");
    let listed = run(&ctx, "ListDeliveryStreams", json!({"Limit": 1})).expect("list");
    assert_eq!(listed, json!({"DeliveryStreamNames": ["alpha"], "HasMoreDeliveryStreams": true}));
    let rest = run(&ctx, "ListDeliveryStreams", json!({"ExclusiveStartDeliveryStreamName": "alpha"})).expect("list");
    assert_eq!(rest, json!({"DeliveryStreamNames": ["orders"], "HasMoreDeliveryStreams": false}));

    let update = |version: &str| {
        json!({"DeliveryStreamName": "orders", "CurrentDeliveryStreamVersionId": version,
               "DestinationId": "destinationId-000000000001",
               "ExtendedS3DestinationUpdate": {"BufferingHints": {"IntervalInSeconds": 60}}})
    };
    run(&ctx, "UpdateDestination", update("1")).expect("update");
    let stale = run(&ctx, "UpdateDestination", update("1")).expect_err("version moved on");
    assert_eq!(stale.kind, ErrorType::ConcurrentModification);
    let described = run(&ctx, "DescribeDeliveryStream", json!({"DeliveryStreamName": "orders"})).expect("describe");
    let d = &described["DeliveryStreamDescription"];
    assert_eq!(d["VersionId"], "2");
    let hints = &d["Destinations"][0]["ExtendedS3DestinationDescription"]["BufferingHints"];
    assert_eq!(*hints, json!({"SizeInMBs": 5, "IntervalInSeconds": 60}), "merged, not replaced");

    run(&ctx, "DeleteDeliveryStream", json!({"DeliveryStreamName": "orders"})).expect("delete");
    let gone = run(&ctx, "DescribeDeliveryStream", json!({"DeliveryStreamName": "orders"})).expect_err("gone");
    assert_eq!(gone.kind, ErrorType::ResourceNotFound);
    assert_eq!(gone.message.as_deref(), Some("Firehose orders under account 000000000000 not found."));
}

#[test]
fn bad_requests_get_firehoses_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = manual(dir.path());
    let bad_name = run(&ctx, "CreateDeliveryStream", s3_stream("no spaces", json!({}))).expect_err("pattern");
    assert_eq!(bad_name.kind, ErrorType::Validation);
    let prefix = s3_stream("p", json!({"Prefix": "!{timestamp:yyyy}/"}));
    let error = run(&ctx, "CreateDeliveryStream", prefix).expect_err("needs an error prefix");
    assert_eq!(error.kind, ErrorType::InvalidArgument);
    let two = json!({"DeliveryStreamName": "two",
        "ExtendedS3DestinationConfiguration": {"RoleARN": "arn:aws:iam::000000000000:role/r", "BucketARN": "arn:aws:s3:::a"},
        "S3DestinationConfiguration": {"RoleARN": "arn:aws:iam::000000000000:role/r", "BucketARN": "arn:aws:s3:::a"}});
    let error = run(&ctx, "CreateDeliveryStream", two).expect_err("one destination");
    assert_eq!(error.message.as_deref(), Some("Exactly one destination configuration is supported for a Firehose"));
    let hints = s3_stream("h", json!({"BufferingHints": {"SizeInMBs": 129, "IntervalInSeconds": 0}}));
    assert_eq!(run(&ctx, "CreateDeliveryStream", hints).expect_err("range").kind, ErrorType::Validation);

    run(&ctx, "CreateDeliveryStream", s3_stream("s", json!({}))).expect("create");
    let big = base64::engine::general_purpose::STANDARD.encode(vec![b'x'; 1_000_000]);
    let records: Vec<Value> = (0..5).map(|_| json!({"Data": big})).collect();
    let error = run(&ctx, "PutRecordBatch", json!({"DeliveryStreamName": "s", "Records": records})).expect_err("4 MiB");
    assert_eq!(error.message.as_deref(), Some("Records size exceeds 4 MB limit"));
    let too_big = base64::engine::general_purpose::STANDARD.encode(vec![b'x'; 1_024_001]);
    let error =
        run(&ctx, "PutRecord", json!({"DeliveryStreamName": "s", "Record": {"Data": too_big}})).expect_err("1000 KiB");
    assert_eq!(error.kind, ErrorType::Validation);
    let missing =
        run(&ctx, "PutRecord", json!({"DeliveryStreamName": "nope", "Record": {"Data": "AA=="}})).expect_err("none");
    assert_eq!(missing.kind, ErrorType::ResourceNotFound);
}

#[test]
fn tags_and_encryption_are_kept_with_the_stream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = manual(dir.path());
    let mut create = s3_stream("t", json!({}));
    create["Tags"] = json!([{"Key": "team", "Value": "video"}]);
    run(&ctx, "CreateDeliveryStream", create).expect("create");
    run(&ctx, "TagDeliveryStream", json!({"DeliveryStreamName": "t", "Tags": [{"Key": "env", "Value": "prod"}]}))
        .expect("tag");
    run(&ctx, "UntagDeliveryStream", json!({"DeliveryStreamName": "t", "TagKeys": ["team", "absent"]})).expect("untag");
    let tags = run(&ctx, "ListTagsForDeliveryStream", json!({"DeliveryStreamName": "t"})).expect("list");
    assert_eq!(tags, json!({"Tags": [{"Key": "env", "Value": "prod"}], "HasMoreTags": false}));
    let many: Vec<Value> = (0..50).map(|i| json!({"Key": format!("k{i}"), "Value": "v"})).collect();
    let error = run(&ctx, "TagDeliveryStream", json!({"DeliveryStreamName": "t", "Tags": many})).expect_err("51 tags");
    assert_eq!(error.kind, ErrorType::LimitExceeded);

    run(
        &ctx,
        "StartDeliveryStreamEncryption",
        json!({"DeliveryStreamName": "t",
        "DeliveryStreamEncryptionConfigurationInput": {"KeyType": "AWS_OWNED_CMK"}}),
    )
    .expect("start");
    let put = run(&ctx, "PutRecord", json!({"DeliveryStreamName": "t", "Record": {"Data": "aGk="}})).expect("put");
    assert_eq!(put["Encrypted"], true);
    let shown = run(&ctx, "DescribeDeliveryStream", json!({"DeliveryStreamName": "t"})).expect("describe");
    assert_eq!(shown["DeliveryStreamDescription"]["DeliveryStreamEncryptionConfiguration"]["Status"], "ENABLED");
    run(&ctx, "StopDeliveryStreamEncryption", json!({"DeliveryStreamName": "t"})).expect("stop");
    let put = run(&ctx, "PutRecord", json!({"DeliveryStreamName": "t", "Record": {"Data": "aGk="}})).expect("put");
    assert_eq!(put["Encrypted"], false);
}

/// Every file under `root`, by path, with its bytes.
fn files(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                out.push((path.clone(), std::fs::read(&path).expect("read")));
            }
        }
    }
    out.sort();
    out
}

async fn wait_for_checkpoint(ctx: &FirehoseCtx, name: &str, records: u64) -> Checkpoint {
    for _ in 0..200 {
        let (handle, _) = ctx.lookup(name).expect("stream");
        let checkpoint = Checkpoint::of(&handle.meta().settings);
        if checkpoint.delivered_records >= records {
            return checkpoint;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{records} records were not delivered");
}

fn put_batch(ctx: &FirehoseCtx, name: &str, records: &[&str]) {
    let records: Vec<Value> =
        records.iter().map(|r| json!({"Data": base64::engine::general_purpose::STANDARD.encode(r)})).collect();
    let answer = run(ctx, "PutRecordBatch", json!({"DeliveryStreamName": name, "Records": records})).expect("put");
    assert_eq!(answer["FailedPutCount"], 0);
}

fn start_delivery(ctx: &FirehoseCtx, name: &str) -> tokio::task::JoinHandle<()> {
    let (handle, spec): (_, DeliveryStreamSpec) = ctx.lookup(name).expect("stream");
    tokio::spawn(super::runner::run(ctx.clone(), handle, name.to_string(), spec))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_delivered_in_order_and_a_redelivery_overwrites_the_same_object() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = live(dir.path());
    let hints = json!({"BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 0}, "CompressionFormat": "GZIP",
        "ProcessingConfiguration": {"Enabled": true, "Processors": [{"Type": "AppendDelimiterToRecord"}]}});
    let ctx2 = ctx.clone();
    tokio::task::spawn_blocking(move || {
        run(&ctx2, "CreateDeliveryStream", s3_stream("events", hints)).expect("create");
        put_batch(&ctx2, "events", &["{\"a\":1}", "{\"a\":2}", "{\"a\":3}"]);
    })
    .await
    .expect("setup");
    let delivery = start_delivery(&ctx, "events");
    wait_for_checkpoint(&ctx, "events", 3).await;
    delivery.abort();

    let delivered = files(&dir.path().join("buckets/logs"));
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    let (path, gz) = &delivered[0];
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    assert!(name.starts_with("events-1-") && name.ends_with(".gz"), "{name}");
    let relative = path.strip_prefix(dir.path().join("buckets/logs")).expect("inside");
    assert_eq!(relative.components().count(), 5, "yyyy/MM/dd/HH/name: {relative:?}");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text).expect("gunzip");
    assert_eq!(text, "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n");

    // A crash after the object was written but before the checkpoint moved: delivery starts
    // again from the old checkpoint and must write the same object, not a second one.
    let (handle, _) = ctx.lookup("events").expect("stream");
    ctx.engine.update_meta(&handle, |meta| meta.settings.remove(CHECKPOINT_KEY)).expect("forget");
    let delivery = start_delivery(&ctx, "events");
    wait_for_checkpoint(&ctx, "events", 3).await;
    delivery.abort();
    let again = files(&dir.path().join("buckets/logs"));
    assert_eq!(again.iter().map(|(p, _)| p).collect::<Vec<_>>(), vec![path], "overwritten, not doubled");
}

#[test]
fn http_endpoint_destinations_are_described_without_their_key_and_updated_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = manual(dir.path());
    let create = json!({"DeliveryStreamName": "hook", "HttpEndpointDestinationConfiguration": {
        "EndpointConfiguration": {"Url": "https://127.0.0.1:9/hook", "Name": "receiver", "AccessKey": "sekrit"},
        "S3Configuration": {"RoleARN": "arn:aws:iam::000000000000:role/r", "BucketARN": "arn:aws:s3:::backup"}}});
    run(&ctx, "CreateDeliveryStream", create).expect("create");
    let described = run(&ctx, "DescribeDeliveryStream", json!({"DeliveryStreamName": "hook"})).expect("describe");
    let http = &described["DeliveryStreamDescription"]["Destinations"][0]["HttpEndpointDestinationDescription"];
    assert_eq!(http["EndpointConfiguration"], json!({"Url": "https://127.0.0.1:9/hook", "Name": "receiver"}));
    assert_eq!(http["S3BackupMode"], "FailedDataOnly");
    assert_eq!(http["RetryOptions"]["DurationInSeconds"], 300);
    assert_eq!(http["S3DestinationDescription"]["BucketARN"], "arn:aws:s3:::backup");

    let update = json!({"DeliveryStreamName": "hook", "CurrentDeliveryStreamVersionId": "1",
        "DestinationId": "destinationId-000000000001",
        "HttpEndpointDestinationUpdate": {"RetryOptions": {"DurationInSeconds": 10}, "S3Update": {"Prefix": "failed/"}}});
    run(&ctx, "UpdateDestination", update).expect("update");
    let described = run(&ctx, "DescribeDeliveryStream", json!({"DeliveryStreamName": "hook"})).expect("describe");
    let http = &described["DeliveryStreamDescription"]["Destinations"][0]["HttpEndpointDestinationDescription"];
    assert_eq!(http["RetryOptions"]["DurationInSeconds"], 10);
    assert_eq!(http["S3DestinationDescription"]["Prefix"], "failed/");
    let (_, spec) = ctx.lookup("hook").expect("stream");
    assert_eq!(spec.destination["EndpointConfiguration"]["AccessKey"], "sekrit", "kept for delivery");

    let to_s3 = json!({"DeliveryStreamName": "hook", "CurrentDeliveryStreamVersionId": "2",
        "DestinationId": "destinationId-000000000001", "ExtendedS3DestinationUpdate": {"Prefix": "x/"}});
    assert_eq!(run(&ctx, "UpdateDestination", to_s3).expect_err("a type change").kind, ErrorType::InvalidArgument);
    let plain = json!({"DeliveryStreamName": "plain", "HttpEndpointDestinationConfiguration": {
        "EndpointConfiguration": {"Url": "http://127.0.0.1:9/hook"},
        "S3Configuration": {"RoleARN": "arn:aws:iam::000000000000:role/r", "BucketARN": "arn:aws:s3:::backup"}}});
    assert_eq!(run(&ctx, "CreateDeliveryStream", plain).expect_err("https only").kind, ErrorType::Validation);
}

/// A stand-in Lambda function: drops records holding "drop", fails those holding "fail", and
/// keys the rest `shape=round`, data unchanged.
async fn shape_function() -> String {
    use axum::routing::post;
    let handler = |body: axum::body::Bytes| async move {
        let event: Value = serde_json::from_slice(&body).unwrap_or_default();
        let records: Vec<Value> = event["records"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|record| {
                let data =
                    base64::engine::general_purpose::STANDARD.decode(record["data"].as_str().unwrap_or_default());
                let text = String::from_utf8(data.unwrap_or_default()).unwrap_or_default();
                let result = if text.contains("drop") {
                    "Dropped"
                } else if text.contains("fail") {
                    "ProcessingFailed"
                } else {
                    "Ok"
                };
                json!({"recordId": record["recordId"], "result": result, "data": record["data"],
                       "metadata": {"partitionKeys": {"shape": "round"}}})
            })
            .collect();
        json!({"records": records}).to_string()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, axum::Router::new().route("/fn", post(handler))).await });
    format!("http://{address}/fn")
}

/// The entry of a one-entry ZIP archive.
fn unzipped(archive: &[u8]) -> String {
    let mut read = zip::ZipArchive::new(std::io::Cursor::new(archive)).expect("zip");
    assert_eq!(read.len(), 1);
    let mut text = String::new();
    std::io::Read::read_to_string(&mut read.by_index(0).expect("entry"), &mut text).expect("inflate");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processors_partition_records_by_lambda_and_query_keys_and_file_failures_by_kind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ctx = live(dir.path());
    let url = shape_function().await;
    ctx.lambda_functions.insert("shape".into(), super::LambdaFunctionFile { url });
    let parameter = |name: &str, value: &str| json!({"ParameterName": name, "ParameterValue": value});
    let destination = json!({
        "Prefix": "shape=!{partitionKeyFromLambda:shape}/id=!{partitionKeyFromQuery:id}/",
        "ErrorOutputPrefix": "errors/!{firehose:error-output-type}/",
        "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": 0},
        "CompressionFormat": "ZIP",
        "DynamicPartitioningConfiguration": {"Enabled": true},
        "ProcessingConfiguration": {"Enabled": true, "Processors": [
            {"Type": "AppendDelimiterToRecord"},
            {"Type": "MetadataExtraction", "Parameters": [parameter("MetadataExtractionQuery", "{id: .id}"), parameter("JsonParsingEngine", "JQ-1.6")]},
            {"Type": "Lambda", "Parameters": [parameter("LambdaArn", "arn:aws:lambda:us-east-1:000000000000:function:shape")]},
            {"Type": "RecordDeAggregation", "Parameters": [parameter("SubRecordType", "JSON")]},
        ]},
    });
    let ctx2 = ctx.clone();
    tokio::task::spawn_blocking(move || {
        run(&ctx2, "CreateDeliveryStream", s3_stream("shapes", destination)).expect("create");
        let records =
            [r#"{"id":"a","n":1}{"id":"b","n":2}"#, r#"{"id":"a","n":3}"#, "drop me", "fail me", r#"{"n":4}"#, "plain"];
        put_batch(&ctx2, "shapes", &records);
    })
    .await
    .expect("setup");
    let delivery = start_delivery(&ctx, "shapes");
    let checkpoint = wait_for_checkpoint(&ctx, "shapes", 6).await;
    delivery.abort();
    assert_eq!(checkpoint.partition_count, 2);

    let root = dir.path().join("buckets/logs");
    let delivered: BTreeMap<String, String> = files(&root)
        .into_iter()
        .map(|(path, bytes)| {
            let relative = path.strip_prefix(&root).expect("inside").to_string_lossy().into_owned();
            assert!(relative.ends_with(".zip"), "{relative}");
            let folder = relative.rsplit_once('/').map(|(folder, _)| folder.to_string()).unwrap_or_default();
            (folder, unzipped(&bytes))
        })
        .collect();
    assert_eq!(delivered.len(), 5, "{delivered:#?}");
    assert_eq!(delivered["shape=round/id=a"], "{\"id\":\"a\",\"n\":1}\n{\"id\":\"a\",\"n\":3}\n");
    assert_eq!(delivered["shape=round/id=b"], "{\"id\":\"b\",\"n\":2}\n");
    let error_lines = |kind: &str| -> Vec<Value> {
        let (_, text) = delivered.iter().find(|(folder, _)| folder.starts_with(&format!("errors/{kind}"))).expect(kind);
        text.lines().map(|line| serde_json::from_str(line).expect("json line")).collect()
    };
    let raw = |record: &Value| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(record["rawData"].as_str().unwrap_or_default())
                .expect("b64"),
        )
        .expect("utf-8")
    };
    let processing = error_lines("processing-failed");
    assert_eq!((processing.len(), raw(&processing[0]).as_str()), (1, "fail me"));
    assert_eq!(processing[0]["errorCode"], "Lambda.ProcessingFailedStatus");
    assert_eq!(processing[0]["lambdaArn"], "arn:aws:lambda:us-east-1:000000000000:function:shape");
    let extraction = error_lines("metadata-extraction-failed");
    assert_eq!(
        (raw(&extraction[0]).as_str(), extraction[0]["errorMessage"].as_str()),
        ("plain", Some("Non JSON record provided"))
    );
    let partitioning = error_lines("partitioning-failed");
    assert_eq!(raw(&partitioning[0]), r#"{"n":4}"#);
}

#[test]
fn dynamic_partitioning_cannot_be_switched_on_by_an_update() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = manual(dir.path());
    run(&ctx, "CreateDeliveryStream", s3_stream("later", json!({}))).expect("create");
    let update = json!({"DeliveryStreamName": "later", "CurrentDeliveryStreamVersionId": "1",
        "DestinationId": "destinationId-000000000001",
        "ExtendedS3DestinationUpdate": {"DynamicPartitioningConfiguration": {"Enabled": true}}});
    let error = run(&ctx, "UpdateDestination", update).expect_err("refused");
    assert_eq!(error.kind, ErrorType::InvalidArgument);
    assert_eq!(
        error.message.as_deref(),
        Some("Dynamic Partitioning cannot be enabled on an existing delivery stream.")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffers_on_the_wire_at_a_crash_are_written_again_each_under_its_own_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = live(dir.path());
    let hints = json!({"BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 0}});
    // Records of 400 KiB: a 1 MiB buffer closes after its third, so six make two buffers.
    let records: Vec<String> = (0..6).map(|n| format!("{n}{}", "x".repeat(400 << 10))).collect();
    let ctx2 = ctx.clone();
    tokio::task::spawn_blocking(move || {
        run(&ctx2, "CreateDeliveryStream", s3_stream("wire", hints)).expect("create");
        put_batch(&ctx2, "wire", &records.iter().map(String::as_str).collect::<Vec<_>>());
    })
    .await
    .expect("setup");
    let delivery = start_delivery(&ctx, "wire");
    let delivered = wait_for_checkpoint(&ctx, "wire", 6).await;
    delivery.abort();
    assert_eq!((delivered.delivered_objects, delivered.in_flight.len()), (2, 0));
    let first = files(&dir.path().join("buckets/logs"));
    assert_eq!(first.len(), 2, "{first:?}");

    // A crash with both buffers on the wire: the checkpoint holds both ranges and no position.
    let (handle, _) = ctx.lookup("wire").expect("stream");
    let crashed = r#"{"next_seq": {}, "in_flight": {"0": [[0, 3], [3, 6]]}, "delivered_objects": 0,
        "delivered_records": 0, "delivered_bytes": 0, "failed_attempts": 0, "freshness_arrival_ms": 0}"#;
    ctx.engine.update_meta(&handle, |meta| meta.settings.insert(CHECKPOINT_KEY.into(), crashed.into())).expect("crash");
    let delivery = start_delivery(&ctx, "wire");
    let again = wait_for_checkpoint(&ctx, "wire", 6).await;
    delivery.abort();
    assert_eq!((again.next_seq.get(&0), again.in_flight.len()), (Some(&6), 0));
    let second = files(&dir.path().join("buckets/logs"));
    assert_eq!(second, first, "each range rewrote its own object, byte for byte");
}

#[test]
fn puts_over_the_direct_put_quotas_are_refused_as_aws_refuses_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ctx = manual(dir.path());
    let limits = super::FirehoseConfig { quotas: true, calls_per_sec: 2, records_per_sec: 4, bytes_per_sec: 1 << 20 };
    ctx.quotas = super::PutQuotas::new(&limits);
    run(&ctx, "CreateDeliveryStream", s3_stream("slow", json!({}))).expect("create");
    let records: Vec<Value> =
        (0..6).map(|n| json!({"Data": base64::engine::general_purpose::STANDARD.encode(format!("r{n}"))})).collect();
    let answer = run(&ctx, "PutRecordBatch", json!({"DeliveryStreamName": "slow", "Records": records})).expect("batch");
    assert_eq!(answer["FailedPutCount"], 2);
    let responses = answer["RequestResponses"].as_array().expect("responses");
    assert!(responses[..4].iter().all(|r| r["RecordId"].is_string()), "{responses:?}");
    for refused in &responses[4..] {
        assert_eq!(refused, &json!({"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "Slow down."}));
    }
    let one = json!({"DeliveryStreamName": "slow", "Record": {"Data": "eA=="}});
    let error = run(&ctx, "PutRecord", one.clone()).expect_err("no records left this second");
    assert_eq!((error.kind, error.message.as_deref()), (ErrorType::ServiceUnavailable, Some("Slow down.")));
    assert_eq!(error.kind.status(crate::error::Protocol::Kds), 503);
    // The third call of the second is refused whole, before its records are looked at.
    let error = run(&ctx, "PutRecord", one).expect_err("no calls left this second");
    assert_eq!(error.kind, ErrorType::ServiceUnavailable);
    let (handle, _) = ctx.lookup("slow").expect("stream");
    assert_eq!(
        ctx.engine.read(&handle, 0, 0, 100, usize::MAX).expect("read").entries.len(),
        4,
        "only admitted records stored"
    );

    let mut registry = prometheus_client::registry::Registry::default();
    super::metrics::register(&ctx, &mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
    assert!(text.contains("framelog_firehose_throttled_records_total{delivery_stream=\"slow\"} 4"), "{text}");
    assert!(text.contains("framelog_firehose_incoming_records_total{delivery_stream=\"slow\"} 4"), "{text}");
}

/// A PutRecordBatch request as a client sends it, through the handler.
async fn batch_request(ctx: &FirehoseCtx, body: Value) -> (axum::http::StatusCode, Value) {
    let mut headers = axum::http::HeaderMap::new();
    headers.insert("content-type", "application/x-amz-json-1.1".parse().expect("header"));
    headers.insert("x-amz-target", "Firehose_20150804.PutRecordBatch".parse().expect("header"));
    let auth =
        "AWS4-HMAC-SHA256 Credential=AKID/20261206/us-east-1/firehose/aws4_request, SignedHeaders=host, Signature=0";
    headers.insert("authorization", auth.parse().expect("header"));
    let body = axum::body::Bytes::from(body.to_string());
    let background = crate::background::Background::new();
    let response = super::handle(ctx.clone(), background, axum::http::Method::POST, headers, body).await;
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
    (status, serde_json::from_slice(&bytes).expect("json"))
}

#[tokio::test]
async fn batches_read_directly_and_generically_are_stored_and_answered_alike() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = manual(dir.path());
    run(&ctx, "CreateDeliveryStream", s3_stream("s", json!({}))).expect("create");
    let direct = json!({"DeliveryStreamName": "s", "Records": [{"Data": "aGk="}, {"Data": "AAEC"}]});
    // An unknown member is ignored, as by AWS, but only the generic reader takes it.
    let generic = json!({"DeliveryStreamName": "s", "Records": [{"Data": "aGk="}, {"Data": "AAEC"}], "Extra": 1});
    for body in [direct, generic] {
        let (status, answer) = batch_request(&ctx, body).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["FailedPutCount"], 0);
        assert_eq!(answer["RequestResponses"].as_array().map(Vec::len), Some(2));
    }
    let (handle, _) = ctx.lookup("s").expect("stream");
    let stored = ctx.engine.read(&handle, 0, 0, 10, usize::MAX).expect("read");
    let payloads: Vec<&[u8]> = stored.entries.iter().map(|e| e.payload.as_slice()).collect();
    assert_eq!(payloads, [&b"hi"[..], &[0, 1, 2], b"hi", &[0, 1, 2]]);

    let many: Vec<Value> = (0..501).map(|_| json!({"Data": "aGk="})).collect();
    let (status, answer) = batch_request(&ctx, json!({"DeliveryStreamName": "s", "Records": many})).await;
    assert_eq!((status.as_u16(), answer["__type"].as_str()), (400, Some("ValidationException")), "{answer}");
    let (status, answer) =
        batch_request(&ctx, json!({"DeliveryStreamName": "gone", "Records": [{"Data": "aGk="}]})).await;
    assert_eq!((status.as_u16(), answer["__type"].as_str()), (400, Some("ResourceNotFoundException")), "{answer}");
}
