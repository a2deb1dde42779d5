//! Operation-level tests of the throughput quotas and ON_DEMAND scaling, on a manual clock.

use std::sync::Arc;

use base64::Engine as _;
use framelog_store::ManualClock;
use serde_json::{Value, json};

use super::tests::{START_MS, call, context};
use crate::error::ErrorType;

fn enforcing(dir: &std::path::Path, clock: &Arc<ManualClock>) -> super::KdsCtx {
    let mut ctx = context(dir, clock);
    ctx.quotas = super::Quotas::new(true);
    ctx
}

fn records(count: usize, bytes: usize) -> Value {
    let data = base64::engine::general_purpose::STANDARD.encode(vec![7u8; bytes]);
    Value::Array((0..count).map(|i| json!({"PartitionKey": format!("k{i}"), "Data": data})).collect())
}

#[test]
fn put_records_past_a_shards_second_of_records_fail_per_record_as_aws_words_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(START_MS));
    let ctx = enforcing(dir.path(), &clock);
    call(&ctx, "CreateStream", json!({"StreamName": "s", "ShardCount": 1})).expect("create");
    let mut failed = 0;
    for _ in 0..3 {
        let answer = call(&ctx, "PutRecords", json!({"StreamName": "s", "Records": records(500, 8)})).expect("puts");
        failed += answer["FailedRecordCount"].as_u64().unwrap_or(0);
        if let Some(refused) =
            answer["Records"].as_array().and_then(|r| r.iter().find(|r| r.get("ErrorCode").is_some()))
        {
            assert_eq!(refused["ErrorCode"], "ProvisionedThroughputExceededException");
            assert_eq!(
                refused["ErrorMessage"],
                "Rate exceeded for shard shardId-000000000000 in stream s under account 000000000000."
            );
        }
    }
    assert_eq!(failed, 500, "1,000 records a second fit in one shard, the rest are refused");
    let put = json!({"StreamName": "s", "PartitionKey": "p", "Data": "AA=="});
    assert_eq!(
        call(&ctx, "PutRecord", put.clone()).expect_err("still throttled").kind,
        ErrorType::ProvisionedThroughputExceeded
    );
    clock.advance_ms(1_000);
    call(&ctx, "PutRecord", put).expect("a second later the shard takes records again");
}

#[test]
fn get_records_gets_five_calls_a_second_per_shard() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(START_MS));
    let ctx = enforcing(dir.path(), &clock);
    call(&ctx, "CreateStream", json!({"StreamName": "s", "ShardCount": 1})).expect("create");
    let request = json!({"StreamName": "s", "ShardId": "shardId-000000000000", "ShardIteratorType": "TRIM_HORIZON"});
    let iterator = call(&ctx, "GetShardIterator", request).expect("iterator")["ShardIterator"].clone();
    let outcomes: Vec<bool> =
        (0..6).map(|_| call(&ctx, "GetRecords", json!({"ShardIterator": iterator})).is_ok()).collect();
    assert_eq!(outcomes, [true, true, true, true, true, false]);
    clock.advance_ms(200);
    call(&ctx, "GetRecords", json!({"ShardIterator": iterator})).expect("a fifth of a second buys a call");
}

#[test]
fn an_on_demand_stream_splits_a_shard_that_stays_over_its_write_quota() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(START_MS));
    let ctx = context(dir.path(), &clock);
    call(&ctx, "CreateStream", json!({"StreamName": "s", "StreamModeDetails": {"StreamMode": "ON_DEMAND"}}))
        .expect("create");
    let open = |ctx: &super::KdsCtx| {
        let summary = call(ctx, "DescribeStreamSummary", json!({"StreamName": "s"})).expect("summary");
        summary["StreamDescriptionSummary"]["OpenShardCount"].as_u64()
    };
    assert_eq!(open(&ctx), Some(4));
    // 1,500 records a second to one hash key for 11 s: over the 1,000 records/s quota.
    for _ in 0..11 {
        for _ in 0..3 {
            let batch: Vec<Value> = (0..500).map(|_| json!({"PartitionKey": "hot", "Data": "AA=="})).collect();
            call(&ctx, "PutRecords", json!({"StreamName": "s", "Records": batch})).expect("puts");
        }
        clock.advance_ms(1_000);
    }
    call(&ctx, "PutRecord", json!({"StreamName": "s", "PartitionKey": "hot", "Data": "AA=="}))
        .expect("closes the window");
    super::on_demand::pass(&ctx);
    assert_eq!(open(&ctx), Some(5), "the hot shard was split in two");
    super::on_demand::pass(&ctx);
    assert_eq!(open(&ctx), Some(5), "a split shard's children start cold");
}
