//! Operation-level tests of the analytics API, and an application run end to end from a KDS
//! stream to a KDS stream in process.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use framelog_store::{Engine, EngineOptions, SystemClock};
use serde_json::{Value, json};

use super::context::AnalyticsCtx;
use crate::background::Background;
use crate::document::Document;
use crate::error::{ApiError, ErrorType};
use crate::firehose::{Buckets, FirehoseCtx};
use crate::kds::{IteratorCodec, KdsCtx, KdsSettings};

pub(super) fn context(dir: &Path) -> AnalyticsCtx {
    let engine = Engine::open(&dir.join("engine"), Arc::new(SystemClock), EngineOptions::default()).expect("engine");
    let metrics = crate::cloudwatch::Recorder::new(engine.clone());
    let kds = KdsCtx {
        metrics: metrics.clone(),
        engine: engine.clone(),
        settings: KdsSettings {
            account_id: "000000000000".into(),
            region: "us-east-1".into(),
            shard_limit: 50,
            default_retention_hours: 24,
            reshard_delay_ms: 0,
        },
        subscriptions: Default::default(),
        quotas: Default::default(),
        iterators: IteratorCodec::new(b"test".to_vec()),
    };
    let (firehose_changes, _) = tokio::sync::mpsc::unbounded_channel();
    let firehose = FirehoseCtx {
        metrics,
        engine: engine.clone(),
        account_id: "000000000000".into(),
        region: "us-east-1".into(),
        buckets: Buckets::new(dir, Default::default()),
        lambda_functions: Default::default(),
        glue_tables: Default::default(),
        destinations: crate::consumers::DestinationPolicy { allow_private: true, ..Default::default() },
        changes: firehose_changes,
        incoming: Default::default(),
        quotas: Default::default(),
    };
    let (changes, _) = tokio::sync::mpsc::unbounded_channel();
    AnalyticsCtx { engine, account_id: "000000000000".into(), region: "us-east-1".into(), kds, firehose, changes }
}

/// One call, on a blocking thread as the router runs it (code checks block on DataFusion).
pub(super) async fn run(ctx: &AnalyticsCtx, op: &'static str, document: Value) -> Result<Value, ApiError> {
    let ctx = ctx.clone();
    tokio::task::spawn_blocking(move || super::call(&ctx, op, Document::parse(document)?)).await.expect("join")
}

pub(super) async fn kds(ctx: &AnalyticsCtx, op: &'static str, document: Value) -> Value {
    let kds = ctx.kds.clone();
    tokio::task::spawn_blocking(move || crate::kds::call(&kds, op, Document::parse(document).expect("doc")))
        .await
        .expect("join")
        .expect(op)
}

pub(super) const STREAM_ARN: &str = "arn:aws:kinesis:us-east-1:000000000000:stream/";
pub(super) const ROLE: &str = "arn:aws:iam::000000000000:role/analytics";

const COUNTS: &str = r#"
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (ticker_symbol VARCHAR(4), ticker_count INTEGER);
CREATE OR REPLACE PUMP "STREAM_PUMP" AS INSERT INTO "DESTINATION_SQL_STREAM"
    SELECT STREAM ticker_symbol, COUNT(*) AS ticker_count
    FROM "SOURCE_SQL_STREAM_001"
    GROUP BY ticker_symbol, STEP("SOURCE_SQL_STREAM_001".ROWTIME BY INTERVAL '1' SECOND);
"#;

pub(super) fn application(name: &str, code: &str) -> Value {
    json!({
        "ApplicationName": name,
        "ApplicationCode": code,
        "Inputs": [{
            "NamePrefix": "SOURCE_SQL_STREAM",
            "KinesisStreamsInput": {"ResourceARN": format!("{STREAM_ARN}ticks"), "RoleARN": ROLE},
            "InputSchema": {
                "RecordFormat": {"RecordFormatType": "JSON", "MappingParameters": {"JSONMappingParameters": {"RecordRowPath": "$"}}},
                "RecordEncoding": "UTF-8",
                "RecordColumns": [
                    {"Name": "TICKER_SYMBOL", "Mapping": "$.TICKER_SYMBOL", "SqlType": "VARCHAR(4)"},
                    {"Name": "PRICE", "Mapping": "$.PRICE", "SqlType": "DOUBLE"}
                ]
            }
        }],
        "Outputs": [{
            "Name": "DESTINATION_SQL_STREAM",
            "KinesisStreamsOutput": {"ResourceARN": format!("{STREAM_ARN}counts"), "RoleARN": ROLE},
            "DestinationSchema": {"RecordFormatType": "JSON"}
        }]
    })
}

async fn streams(ctx: &AnalyticsCtx) {
    for name in ["ticks", "counts"] {
        kds(ctx, "CreateStream", json!({"StreamName": name, "ShardCount": 2})).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_is_created_described_versioned_and_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = context(dir.path());
    streams(&ctx).await;
    let created = run(&ctx, "CreateApplication", application("sums", COUNTS)).await.expect("create");
    assert_eq!(created["ApplicationSummary"]["ApplicationStatus"], "READY");
    let again = run(&ctx, "CreateApplication", application("sums", COUNTS)).await.expect_err("exists");
    assert_eq!(again.kind, ErrorType::ResourceInUse);

    let detail = run(&ctx, "DescribeApplication", json!({"ApplicationName": "sums"})).await.expect("describe");
    let detail = &detail["ApplicationDetail"];
    assert_eq!(detail["ApplicationVersionId"], 1);
    assert_eq!(detail["InputDescriptions"][0]["InputId"], "1.1");
    assert_eq!(detail["InputDescriptions"][0]["InAppStreamNames"], json!(["SOURCE_SQL_STREAM_001"]));
    assert_eq!(
        detail["OutputDescriptions"][0]["KinesisStreamsOutputDescription"]["ResourceARN"],
        format!("{STREAM_ARN}counts")
    );

    let stale = json!({"ApplicationName": "sums", "CurrentApplicationVersionId": 7, "ApplicationUpdate": {"ApplicationCodeUpdate": COUNTS}});
    assert_eq!(run(&ctx, "UpdateApplication", stale).await.expect_err("stale").kind, ErrorType::ConcurrentModification);
    let update = json!({"ApplicationName": "sums", "CurrentApplicationVersionId": 1, "ApplicationUpdate": {"ApplicationCodeUpdate": COUNTS}});
    run(&ctx, "UpdateApplication", update).await.expect("update");
    let listed = run(&ctx, "ListApplications", json!({})).await.expect("list");
    assert_eq!(listed["ApplicationSummaries"][0]["ApplicationName"], "sums");
    assert_eq!(listed["HasMoreApplications"], false);

    let created_at = detail["CreateTimestamp"].as_f64().expect("timestamp").floor();
    let wrong =
        run(&ctx, "DeleteApplication", json!({"ApplicationName": "sums", "CreateTimestamp": created_at - 5.0})).await;
    assert_eq!(wrong.expect_err("wrong time").kind, ErrorType::InvalidArgument);
    run(&ctx, "DeleteApplication", json!({"ApplicationName": "sums", "CreateTimestamp": created_at}))
        .await
        .expect("delete");
    let gone = run(&ctx, "DescribeApplication", json!({"ApplicationName": "sums"})).await.expect_err("gone");
    assert_eq!(
        (gone.kind, gone.message.as_deref()),
        (ErrorType::ResourceNotFound, Some("Application sums is not found"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_code_is_refused_with_its_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = context(dir.path());
    streams(&ctx).await;
    let code = "CREATE OR REPLACE STREAM \"D\" (p DOUBLE);\nCREATE OR REPLACE PUMP \"P\" AS INSERT INTO \"D\"\n  SELECT STREAM volume FROM \"SOURCE_SQL_STREAM_001\";";
    let refused = run(&ctx, "CreateApplication", application("bad", code)).await.expect_err("bad code");
    assert_eq!(refused.kind, ErrorType::CodeValidation);
    let message = refused.message.unwrap_or_default();
    assert!(message.contains("VOLUME") && message.contains("line 3, column 17"), "{message}");
    let mut unknown_input = application("x", "");
    unknown_input["Inputs"][0]["KinesisStreamsInput"]["ResourceARN"] = json!(format!("{STREAM_ARN}nope"));
    assert_eq!(
        run(&ctx, "CreateApplication", unknown_input).await.expect_err("no stream").kind,
        ErrorType::InvalidArgument
    );
    let start = json!({"ApplicationName": "missing", "InputConfigurations": []});
    assert_eq!(run(&ctx, "StartApplication", start).await.expect_err("missing").kind, ErrorType::ResourceNotFound);
}

/// Every record of `stream`, decoded as JSON.
pub(super) async fn records_of(ctx: &AnalyticsCtx, stream: &str) -> Vec<(String, Value)> {
    let mut found = Vec::new();
    for shard in ["shardId-000000000000", "shardId-000000000001"] {
        let iterator = kds(
            ctx,
            "GetShardIterator",
            json!({"StreamName": stream, "ShardId": shard, "ShardIteratorType": "TRIM_HORIZON"}),
        )
        .await;
        let page = kds(ctx, "GetRecords", json!({"ShardIterator": iterator["ShardIterator"]})).await;
        for record in page["Records"].as_array().into_iter().flatten() {
            let data = base64::engine::general_purpose::STANDARD
                .decode(record["Data"].as_str().unwrap_or_default())
                .expect("base64");
            let key = record["PartitionKey"].as_str().unwrap_or_default().to_string();
            found.push((key, serde_json::from_slice(&data).expect("json")));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_application_writes_each_windows_counts_to_its_output_stream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = context(dir.path());
    streams(&ctx).await;
    run(&ctx, "CreateApplication", application("sums", COUNTS)).await.expect("create");
    let bad_record = json!({"Data": base64::engine::general_purpose::STANDARD.encode("not json"), "PartitionKey": "x"});
    // More than one read's worth (10,000 a shard), all in the past when the application starts:
    // windows must wait for the backlog, not close on the clock with half their rows.
    for call in 0..50 {
        // 499 records a call, and the unreadable one in the first: 24,950 counted.
        let mut records: Vec<Value> = (0..499)
            .map(|i| {
                let symbol = ["A", "B", "C"][i % 3];
                let data = json!({"TICKER_SYMBOL": symbol, "PRICE": i}).to_string();
                json!({"Data": base64::engine::general_purpose::STANDARD.encode(data), "PartitionKey": format!("k{call}-{i}")})
            })
            .collect();
        if call == 0 {
            records.push(bad_record.clone());
        }
        kds(&ctx, "PutRecords", json!({"StreamName": "ticks", "Records": records})).await;
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let start = json!({"ApplicationName": "sums", "InputConfigurations": [{"Id": "1.1", "InputStartingPositionConfiguration": {"InputStartingPosition": "TRIM_HORIZON"}}]});
    run(&ctx, "StartApplication", start).await.expect("start");
    let (handle, spec) = ctx.lookup("sums").expect("lookup");
    let background = Background::new();
    let task = tokio::spawn(super::runner::run(ctx.clone(), background, handle.clone(), spec));
    let mut counts = Vec::new();
    for _ in 0..60 {
        counts = records_of(&ctx, "counts").await;
        if counts.iter().map(|(_, v)| v["TICKER_COUNT"].as_i64().unwrap_or(0)).sum::<i64>() >= 24_950 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    task.abort();
    let total: i64 = counts.iter().map(|(_, v)| v["TICKER_COUNT"].as_i64().unwrap_or(0)).sum();
    assert_eq!(total, 24_950, "every record counted once, in the window of its arrival");
    assert!(counts.iter().all(|(key, _)| key.starts_with("STREAM_PUMP/")), "window ids key the records: {counts:?}");
    let errors = ctx.engine.read(&handle, 0, 0, 10, 1 << 20).expect("error stream");
    assert_eq!(errors.entries.len(), 1, "one error row, and no late rows");
    let error: Value = serde_json::from_slice(&errors.entries[0].payload).expect("error row");
    assert_eq!(error["ERROR_NAME"], "Parse_Error");
    assert_eq!(error["DATA_ROW"], hex::encode("not json"));
    let stop = run(&ctx, "StopApplication", json!({"ApplicationName": "sums"})).await;
    assert!(stop.is_ok());
    assert_eq!(
        run(&ctx, "StopApplication", json!({"ApplicationName": "sums"})).await.expect_err("stopped").kind,
        ErrorType::ResourceInUse
    );
}

const ANOMALIES: &str = r#"
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" ("TICKER_SYMBOL" VARCHAR(4), "PRICE" DOUBLE, "ANOMALY_SCORE" DOUBLE);
CREATE OR REPLACE PUMP "STREAM_PUMP" AS INSERT INTO "DESTINATION_SQL_STREAM"
SELECT STREAM "TICKER_SYMBOL", "PRICE", ANOMALY_SCORE
FROM TABLE(RANDOM_CUT_FOREST(CURSOR(SELECT STREAM * FROM "SOURCE_SQL_STREAM_001"), 50, 64, 1000, 1));
"#;

/// Puts `count` records with distinct prices from `first` (an outlier at `outlier`).
async fn put_prices(ctx: &AnalyticsCtx, first: usize, count: usize, outlier: Option<usize>) {
    let records: Vec<Value> = (first..first + count)
        .map(|i| {
            let price = if Some(i) == outlier { 9_000.0 } else { 50.0 + (i % 13) as f64 + i as f64 / 10_000.0 };
            let data = json!({"TICKER_SYMBOL": "A", "PRICE": price}).to_string();
            json!({"Data": base64::engine::general_purpose::STANDARD.encode(data), "PartitionKey": format!("k{i}")})
        })
        .collect();
    kds(ctx, "PutRecords", json!({"StreamName": "ticks", "Records": records})).await;
}

/// Starts `name` from TRIM_HORIZON (or where it stopped) and runs its runner in a task.
pub(super) async fn start_runner(ctx: &AnalyticsCtx, name: &str) -> tokio::task::JoinHandle<()> {
    let (handle, spec) = ctx.lookup(name).expect("lookup");
    tokio::spawn(super::runner::run(ctx.clone(), Background::new(), handle, spec))
}

/// Scores written to `stream`, by price, once there are `count`.
async fn scores_by_price(ctx: &AnalyticsCtx, stream: &str, count: usize) -> std::collections::BTreeMap<String, f64> {
    let mut scores = std::collections::BTreeMap::new();
    for _ in 0..100 {
        scores = records_of(ctx, stream)
            .await
            .into_iter()
            .map(|(_, v)| (v["PRICE"].to_string(), v["ANOMALY_SCORE"].as_f64().unwrap_or(-1.0)))
            .collect();
        if scores.len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    scores
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forest_taken_up_after_a_crash_scores_as_one_that_never_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = context(dir.path());
    for name in ["ticks", "counts", "reference"] {
        kds(&ctx, "CreateStream", json!({"StreamName": name, "ShardCount": 2})).await;
    }
    let mut reference = application("steady", ANOMALIES);
    reference["Outputs"][0]["KinesisStreamsOutput"]["ResourceARN"] = json!(format!("{STREAM_ARN}reference"));
    run(&ctx, "CreateApplication", application("crashing", ANOMALIES)).await.expect("create");
    run(&ctx, "CreateApplication", reference).await.expect("create");
    put_prices(&ctx, 0, 400, None).await;
    for name in ["crashing", "steady"] {
        let start = json!({"ApplicationName": name, "InputConfigurations": [{"Id": "1.1", "InputStartingPositionConfiguration": {"InputStartingPosition": "TRIM_HORIZON"}}]});
        run(&ctx, "StartApplication", start).await.expect("start");
    }
    let steady = start_runner(&ctx, "steady").await;
    let crashing = start_runner(&ctx, "crashing").await;
    assert_eq!(scores_by_price(&ctx, "counts", 400).await.len(), 400);
    // Time for the checkpoint naming the model, then the runner is gone mid-loop.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    crashing.abort();
    let _ = crashing.await;
    put_prices(&ctx, 400, 100, Some(450)).await;
    let restarted = start_runner(&ctx, "crashing").await;
    let after_crash = scores_by_price(&ctx, "counts", 500).await;
    let uninterrupted = scores_by_price(&ctx, "reference", 500).await;
    restarted.abort();
    steady.abort();
    assert_eq!(after_crash.len(), 500, "every row is written");
    let differing: Vec<(&String, &f64)> =
        after_crash.iter().filter(|(price, score)| uninterrupted.get(*price) != Some(*score)).collect();
    assert!(
        differing.is_empty() && uninterrupted.len() == 500,
        "the restored forest gives the scores of one that never stopped; {} differ: {:?}",
        differing.len(),
        &differing[..differing.len().min(5)]
    );
    let outlier = after_crash.get("9000.0").copied().expect("the outlier is written");
    let highest_other = after_crash.iter().filter(|(price, _)| *price != "9000.0").map(|(_, s)| *s).fold(0.0, f64::max);
    assert!(outlier > 2.0 * highest_other, "the outlier scores {outlier}, the others at most {highest_other}");
    let forests = ctx.engine.stream(&super::models::stream_name("crashing")).expect("the model is kept");
    assert!(ctx.engine.entry(&forests, 0, 0).expect("read").is_some(), "a model was written");
}
