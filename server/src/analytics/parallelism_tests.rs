//! InputParallelism: an input read into several in-application streams, each shard into one.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use super::tests::{application, context, kds, records_of, run};
use crate::background::Background;
use crate::error::ErrorType;

const BY_STREAM: &str = r#"
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (ticker_symbol VARCHAR(4), read_from VARCHAR(8));
CREATE OR REPLACE PUMP "FIRST_PUMP" AS INSERT INTO "DESTINATION_SQL_STREAM"
    SELECT STREAM ticker_symbol, 'first' FROM "SOURCE_SQL_STREAM_001";
CREATE OR REPLACE PUMP "SECOND_PUMP" AS INSERT INTO "DESTINATION_SQL_STREAM"
    SELECT STREAM ticker_symbol, 'second' FROM "SOURCE_SQL_STREAM_002";
"#;

/// `count` records into shard `shard` of a 2-shard stream, their symbol naming it.
async fn put_to_shard(ctx: &super::context::AnalyticsCtx, shard: u32, count: usize) {
    let hash_key = if shard == 0 { "0".to_string() } else { (1u128 << 127).to_string() };
    let records: Vec<Value> = (0..count)
        .map(|i| {
            let data = json!({"TICKER_SYMBOL": format!("S{shard}"), "PRICE": i}).to_string();
            json!({"Data": base64::engine::general_purpose::STANDARD.encode(data), "PartitionKey": "k", "ExplicitHashKey": hash_key})
        })
        .collect();
    kds(ctx, "PutRecords", json!({"StreamName": "ticks", "Records": records})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_shard_fills_its_own_in_application_stream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = context(dir.path());
    for name in ["ticks", "counts"] {
        kds(&ctx, "CreateStream", json!({"StreamName": name, "ShardCount": 2})).await;
    }
    let one_stream = run(&ctx, "CreateApplication", application("single", BY_STREAM)).await.expect_err("no _002");
    assert_eq!(one_stream.kind, ErrorType::CodeValidation, "{:?}", one_stream.message);
    let mut definition = application("parallel", BY_STREAM);
    definition["Inputs"][0]["InputParallelism"] = json!({"Count": 2});
    run(&ctx, "CreateApplication", definition.clone()).await.expect("create");
    let detail = run(&ctx, "DescribeApplication", json!({"ApplicationName": "parallel"})).await.expect("describe");
    let input = &detail["ApplicationDetail"]["InputDescriptions"][0];
    assert_eq!(input["InAppStreamNames"], json!(["SOURCE_SQL_STREAM_001", "SOURCE_SQL_STREAM_002"]));
    assert_eq!(input["InputParallelism"], json!({"Count": 2}));

    put_to_shard(&ctx, 0, 30).await;
    put_to_shard(&ctx, 1, 20).await;
    let start = json!({"ApplicationName": "parallel", "InputConfigurations": [{"Id": "1.1", "InputStartingPositionConfiguration": {"InputStartingPosition": "TRIM_HORIZON"}}]});
    run(&ctx, "StartApplication", start).await.expect("start");
    let (handle, spec) = ctx.lookup("parallel").expect("lookup");
    let task = tokio::spawn(super::runner::run(ctx.clone(), Background::new(), handle, spec));
    let mut rows = Vec::new();
    for _ in 0..50 {
        rows = records_of(&ctx, "counts").await;
        if rows.len() >= 50 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    task.abort();
    let pairs = |symbol: &str, from: &str| {
        rows.iter().filter(|(_, row)| row["TICKER_SYMBOL"] == symbol && row["READ_FROM"] == from).count()
    };
    assert_eq!((pairs("S0", "first"), pairs("S1", "second")), (30, 20), "{rows:?}");
    assert_eq!(rows.len(), 50, "no row read into the other stream: {rows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_count_is_checked_and_updated_with_the_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = context(dir.path());
    for name in ["ticks", "counts"] {
        kds(&ctx, "CreateStream", json!({"StreamName": name, "ShardCount": 2})).await;
    }
    let mut too_many = application("many", BY_STREAM);
    too_many["Inputs"][0]["InputParallelism"] = json!({"Count": 65});
    let refused = run(&ctx, "CreateApplication", too_many).await.expect_err("over 64");
    assert_eq!(refused.kind, ErrorType::Validation, "{:?}", refused.message);
    let mut definition = application("parallel", BY_STREAM);
    definition["Inputs"][0]["InputParallelism"] = json!({"Count": 2});
    run(&ctx, "CreateApplication", definition).await.expect("create");
    // Down to one stream while the code reads the second: refused, nothing changed.
    let narrower = json!({"ApplicationName": "parallel", "CurrentApplicationVersionId": 1, "ApplicationUpdate": {
        "InputUpdates": [{"InputId": "1.1", "InputParallelismUpdate": {"CountUpdate": 1}}]}});
    let refused = run(&ctx, "UpdateApplication", narrower).await.expect_err("the code reads _002");
    assert_eq!(refused.kind, ErrorType::CodeValidation, "{:?}", refused.message);
    let wider = json!({"ApplicationName": "parallel", "CurrentApplicationVersionId": 1, "ApplicationUpdate": {
        "InputUpdates": [{"InputId": "1.1", "InputParallelismUpdate": {"CountUpdate": 3}}]}});
    run(&ctx, "UpdateApplication", wider).await.expect("three streams");
    let detail = run(&ctx, "DescribeApplication", json!({"ApplicationName": "parallel"})).await.expect("describe");
    let names = &detail["ApplicationDetail"]["InputDescriptions"][0]["InAppStreamNames"];
    assert_eq!(names.as_array().map(Vec::len), Some(3), "{names}");
    assert_eq!(detail["ApplicationDetail"]["ApplicationVersionId"], 2);
}
