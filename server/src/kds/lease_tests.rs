//! The lease API through the KDS dispatch, as workers call it: the table follows the shards,
//! expiry is the server's clock, and a reshard's children wait for their parent's SHARD_END.

use std::sync::Arc;

use framelog_store::ManualClock;
use serde_json::{Value, json};

use super::tests::{START_MS, call, context};
use crate::error::ErrorType;

fn lease_call(shard: &str, worker: &str, extra: Value) -> Value {
    let mut body = json!({"StreamName": "s", "ApplicationName": "app", "ShardId": shard, "WorkerId": worker});
    body.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
    body
}

fn leases(ctx: &super::KdsCtx) -> Vec<Value> {
    let answer = call(ctx, "DescribeLeases", json!({"StreamName": "s", "ApplicationName": "app"})).expect("describe");
    answer["Leases"].as_array().expect("leases").clone()
}

#[test]
fn workers_take_renew_lose_and_steal_leases_by_the_servers_clock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(START_MS));
    let ctx = context(dir.path(), &clock);
    call(&ctx, "CreateStream", json!({"StreamName": "s", "ShardCount": 2})).expect("create");
    let table = leases(&ctx);
    assert_eq!(table.len(), 2);
    assert_eq!(table[0]["LeaseCounter"], 0);
    assert!(table[0].get("LeaseOwner").is_none());

    let shard = "shardId-000000000000";
    let taken =
        call(&ctx, "AcquireLease", lease_call(shard, "a", json!({"LeaseCounter": 0, "LeaseDurationMillis": 5000})))
            .expect("free lease");
    assert_eq!(taken["LeaseOwner"], "a");
    let counter = taken["LeaseCounter"].clone();
    let refused = call(&ctx, "AcquireLease", lease_call(shard, "b", json!({"LeaseCounter": counter})));
    assert_eq!(refused.expect_err("held").kind, ErrorType::ConditionalCheckFailed);

    clock.advance_ms(4_000);
    call(&ctx, "RenewLease", lease_call(shard, "a", json!({"LeaseDurationMillis": 5000}))).expect("renew");
    clock.advance_ms(4_000);
    assert_eq!(leases(&ctx)[0]["LeaseOwner"], "a", "renewed: still held 8 s after the take");
    clock.advance_ms(1_001);
    let expired = leases(&ctx)[0].clone();
    assert!(expired.get("LeaseOwner").is_none(), "expired after 5 s without renewal: {expired}");
    let counter = expired["LeaseCounter"].clone();
    call(&ctx, "AcquireLease", lease_call(shard, "b", json!({"LeaseCounter": counter}))).expect("expired lease");
    let lost = call(&ctx, "CheckpointLease", lease_call(shard, "a", json!({"SequenceNumber": "1"})));
    assert_eq!(lost.expect_err("a lost it").kind, ErrorType::ConditionalCheckFailed);

    let counter = leases(&ctx)[0]["LeaseCounter"].clone();
    let stolen = call(&ctx, "AcquireLease", lease_call(shard, "a", json!({"LeaseCounter": counter, "Steal": true})));
    assert_eq!(stolen.expect("stolen")["LeaseOwner"], "a");
}

#[test]
fn children_wait_for_the_parents_shard_end_and_checkpoints_survive_a_hand_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(START_MS));
    let ctx = context(dir.path(), &clock);
    call(&ctx, "CreateStream", json!({"StreamName": "s", "ShardCount": 1})).expect("create");
    let parent = "shardId-000000000000";
    leases(&ctx);
    call(&ctx, "AcquireLease", lease_call(parent, "a", json!({"LeaseCounter": 0}))).expect("take");
    call(&ctx, "CheckpointLease", lease_call(parent, "a", json!({"SequenceNumber": "42", "SubSequenceNumber": 3})))
        .expect("checkpoint");
    let released = call(&ctx, "ReleaseLease", lease_call(parent, "a", json!({}))).expect("release");
    assert!(released.get("LeaseOwner").is_none());
    let again = call(&ctx, "AcquireLease", lease_call(parent, "b", json!({"LeaseCounter": released["LeaseCounter"]})))
        .expect("taken at once after release");
    assert_eq!((again["Checkpoint"].as_str(), again["SubSequenceNumber"].as_u64()), (Some("42"), Some(3)));

    call(
        &ctx,
        "SplitShard",
        json!({"StreamName": "s", "ShardToSplit": parent,
        "NewStartingHashKey": "170141183460469231731687303715884105728"}),
    )
    .expect("split");
    let table = leases(&ctx);
    assert_eq!(table.len(), 3);
    let child = table[1]["ShardId"].as_str().expect("child").to_string();
    assert_eq!(table[1]["ParentShardIds"], json!([parent]));
    assert_eq!(table[1]["Checkpoint"], "TRIM_HORIZON", "a child starts at its first record");
    let early = call(&ctx, "AcquireLease", lease_call(&child, "c", json!({"LeaseCounter": 0})));
    let early = early.expect_err("parent unfinished");
    assert!(early.message.as_deref().is_some_and(|m| m.contains(parent)), "{early:?}");
    call(&ctx, "CheckpointLease", lease_call(parent, "b", json!({"SequenceNumber": "SHARD_END"}))).expect("end");
    call(&ctx, "AcquireLease", lease_call(&child, "c", json!({"LeaseCounter": 0}))).expect("child free now");
}

#[test]
fn bad_lease_calls_get_typed_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(START_MS));
    let ctx = context(dir.path(), &clock);
    call(&ctx, "CreateStream", json!({"StreamName": "s", "ShardCount": 1})).expect("create");
    let shard = "shardId-000000000000";
    let cases = [
        ("DescribeLeases", json!({"StreamName": "s", "ApplicationName": "bad name"}), ErrorType::InvalidArgument),
        ("DescribeLeases", json!({"StreamName": "nope", "ApplicationName": "app"}), ErrorType::ResourceNotFound),
        ("AcquireLease", lease_call(shard, "a", json!({})), ErrorType::InvalidArgument),
        ("AcquireLease", lease_call(shard, "a", json!({"LeaseCounter": 0})), ErrorType::ResourceNotFound),
        ("RenewLease", lease_call(shard, "", json!({})), ErrorType::InvalidArgument),
        ("RenewLease", lease_call(shard, "a", json!({"LeaseDurationMillis": 10})), ErrorType::InvalidArgument),
        ("CheckpointLease", lease_call(shard, "a", json!({"SequenceNumber": "12x"})), ErrorType::InvalidArgument),
        ("CheckpointLease", lease_call("shardId-x", "a", json!({"SequenceNumber": "1"})), ErrorType::InvalidArgument),
    ];
    for (op, body, kind) in cases {
        let error = call(&ctx, op, body.clone()).expect_err("refused");
        assert_eq!(error.kind, kind, "{op} {body}: {error:?}");
    }
}

#[test]
fn a_stream_holds_a_bounded_number_of_lease_tables_and_delete_frees_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(START_MS));
    let ctx = context(dir.path(), &clock);
    call(&ctx, "CreateStream", json!({"StreamName": "s", "ShardCount": 1})).expect("create");
    let describe = |app: &str| call(&ctx, "DescribeLeases", json!({"StreamName": "s", "ApplicationName": app}));
    for i in 0..super::leases::MAX_TABLES_PER_STREAM {
        describe(&format!("app{i}")).expect("within the limit");
    }
    assert_eq!(describe("one-too-many").expect_err("limit").kind, ErrorType::LimitExceeded);
    describe("app0").expect("an existing table is still read");
    call(&ctx, "DeleteLeases", json!({"StreamName": "s", "ApplicationName": "app0"})).expect("delete");
    let again = call(&ctx, "DeleteLeases", json!({"StreamName": "s", "ApplicationName": "app0"}));
    assert_eq!(again.expect_err("gone").kind, ErrorType::ResourceNotFound);
    describe("one-too-many").expect("room again");
}
