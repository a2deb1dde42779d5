//! Operation-level tests of resharding: lineage as KDS shows it, routing after a reshard, the
//! end of a closed shard, the limits and the UPDATING window.

use std::sync::Arc;

use framelog_store::ManualClock;
use serde_json::{Value, json};

use super::tests::{START_MS, call, context};
use crate::error::ErrorType;

const HALF: &str = "170141183460469231731687303715884105728";

fn shards(ctx: &super::KdsCtx, stream: &str) -> Vec<Value> {
    call(ctx, "ListShards", json!({"StreamName": stream})).expect("lists")["Shards"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn iterator(ctx: &super::KdsCtx, shard: &str, kind: &str) -> Value {
    call(ctx, "GetShardIterator", json!({"StreamName": "s", "ShardId": shard, "ShardIteratorType": kind}))
        .expect("iterator")["ShardIterator"]
        .clone()
}

#[test]
fn a_split_shows_lineage_routes_new_records_to_children_and_ends_the_parent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(START_MS));
    let ctx = context(dir.path(), &clock);
    call(&ctx, "CreateStream", json!({"StreamName": "s", "ShardCount": 1})).expect("create");
    call(&ctx, "PutRecord", json!({"StreamName": "s", "PartitionKey": "a", "Data": "AA=="})).expect("put");
    let split = json!({"StreamName": "s", "ShardToSplit": "shardId-000000000000", "NewStartingHashKey": HALF});
    call(&ctx, "SplitShard", split).expect("splits");

    let listed = shards(&ctx, "s");
    assert_eq!(listed.len(), 3);
    assert!(listed[0]["SequenceNumberRange"]["EndingSequenceNumber"].is_string(), "the parent is closed");
    assert_eq!(listed[1]["ParentShardId"], "shardId-000000000000");
    assert_eq!(listed[1]["HashKeyRange"]["EndingHashKey"], "170141183460469231731687303715884105727");
    assert_eq!(listed[2]["HashKeyRange"]["StartingHashKey"], HALF);
    assert!(listed[2]["SequenceNumberRange"].get("EndingSequenceNumber").is_none());

    let put = call(
        &ctx,
        "PutRecord",
        json!({"StreamName": "s", "PartitionKey": "x", "ExplicitHashKey": "5", "Data": "AQ=="}),
    )
    .expect("put after the split");
    assert_eq!(put["ShardId"], "shardId-000000000001");

    let at_end =
        call(&ctx, "GetRecords", json!({"ShardIterator": iterator(&ctx, "shardId-000000000000", "TRIM_HORIZON")}))
            .expect("reads the parent");
    assert_eq!(at_end["Records"].as_array().map(Vec::len), Some(1), "the parent's record is still readable");
    assert!(at_end["NextShardIterator"].is_null());
    let children: Vec<&Value> = at_end["ChildShards"].as_array().map(|c| c.iter().collect()).unwrap_or_default();
    assert_eq!(children.len(), 2);
    assert_eq!(children[0]["ParentShards"], json!(["shardId-000000000000"]));

    let summary = call(&ctx, "DescribeStreamSummary", json!({"StreamName": "s"})).expect("summary");
    assert_eq!(summary["StreamDescriptionSummary"]["OpenShardCount"], 2);
    assert_eq!(summary["StreamDescriptionSummary"]["StreamStatus"], "ACTIVE");
}

#[test]
fn merges_need_neighbours_and_splits_need_a_key_inside_the_shard() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(START_MS));
    let ctx = context(dir.path(), &clock);
    call(&ctx, "CreateStream", json!({"StreamName": "s", "ShardCount": 3})).expect("create");
    let merge = json!({"StreamName": "s", "ShardToMerge": "shardId-000000000000", "AdjacentShardToMerge": "shardId-000000000002"});
    let error = call(&ctx, "MergeShards", merge).expect_err("not neighbours");
    assert_eq!(error.kind, ErrorType::InvalidArgument);
    assert_eq!(
        error.message.as_deref(),
        Some(
            "Shards shardId-000000000000 and shardId-000000000002 in stream s under account 000000000000 are not an adjacent pair of shards eligible for merging"
        )
    );
    let split = json!({"StreamName": "s", "ShardToSplit": "shardId-000000000000", "NewStartingHashKey": "1"});
    let error = call(&ctx, "SplitShard", split).expect_err("key at the shard's start");
    assert!(error.message.as_deref().is_some_and(|m| m.contains("is not both greater than one plus")), "{error:?}");
    let missing = json!({"StreamName": "s", "ShardToSplit": "shardId-000000000009", "NewStartingHashKey": "5"});
    assert_eq!(call(&ctx, "SplitShard", missing).expect_err("no such shard").kind, ErrorType::ResourceNotFound);

    let merge = json!({"StreamName": "s", "ShardToMerge": "shardId-000000000001", "AdjacentShardToMerge": "shardId-000000000002"});
    call(&ctx, "MergeShards", merge.clone()).expect("merges");
    let listed = shards(&ctx, "s");
    assert_eq!(listed[3]["ParentShardId"], "shardId-000000000001");
    assert_eq!(listed[3]["AdjacentParentShardId"], "shardId-000000000002");
    let again = call(&ctx, "MergeShards", merge).expect_err("parents are closed");
    assert!(again.message.as_deref().is_some_and(|m| m.contains("has already been merged or split")), "{again:?}");
}

#[test]
fn update_shard_count_scales_within_half_and_double_and_reports_both_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(START_MS));
    let ctx = context(dir.path(), &clock);
    call(&ctx, "CreateStream", json!({"StreamName": "s", "ShardCount": 4})).expect("create");
    let scale = |target: u32| {
        call(
            &ctx,
            "UpdateShardCount",
            json!({"StreamName": "s", "TargetShardCount": target, "ScalingType": "UNIFORM_SCALING"}),
        )
    };
    assert_eq!(scale(9).expect_err("over double").kind, ErrorType::LimitExceeded);
    assert_eq!(scale(1).expect_err("below half").kind, ErrorType::LimitExceeded);
    let answer = scale(6).expect("scales");
    assert_eq!((answer["CurrentShardCount"].clone(), answer["TargetShardCount"].clone()), (json!(4), json!(6)));
    let open: Vec<Value> = shards(&ctx, "s")
        .into_iter()
        .filter(|s| s["SequenceNumberRange"].get("EndingSequenceNumber").is_none())
        .collect();
    assert_eq!(open.len(), 6);
    assert_eq!(open[0]["HashKeyRange"]["StartingHashKey"], "0");
    for _ in 0..9 {
        scale(6).expect("scaling to the same count still counts");
    }
    assert_eq!(scale(6).expect_err("eleventh in a day").kind, ErrorType::LimitExceeded);
    clock.advance_ms(86_400_000);
    scale(7).expect("a day later the window has moved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_updating_until_the_delayed_reshard_applies_and_refuses_a_second() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(START_MS));
    let mut ctx = context(dir.path(), &clock);
    ctx.settings.reshard_delay_ms = 300;
    call(&ctx, "CreateStream", json!({"StreamName": "s", "ShardCount": 2})).expect("create");
    let merge = json!({"StreamName": "s", "ShardToMerge": "shardId-000000000000", "AdjacentShardToMerge": "shardId-000000000001"});
    call(&ctx, "MergeShards", merge.clone()).expect("accepted");
    let status = |ctx: &super::KdsCtx| {
        call(ctx, "DescribeStreamSummary", json!({"StreamName": "s"})).expect("summary")["StreamDescriptionSummary"]
            ["StreamStatus"]
            .clone()
    };
    assert_eq!(status(&ctx), "UPDATING");
    let error = call(&ctx, "MergeShards", merge).expect_err("one reshard at a time");
    assert_eq!(error.kind, ErrorType::ResourceInUse);
    assert_eq!(
        error.message.as_deref(),
        Some("Stream s under account 000000000000 not ACTIVE, instead in state UPDATING")
    );
    assert_eq!(shards(&ctx, "s").len(), 2, "nothing changes before the delay");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while status(&ctx) != "ACTIVE" && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status(&ctx), "ACTIVE");
    assert_eq!(shards(&ctx, "s").len(), 3);
}
