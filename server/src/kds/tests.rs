//! Operation-level tests with an injected clock: iterator expiry, and that no request document,
//! however malformed, panics an operation or damages stored records.

use std::sync::Arc;

use framelog_store::{Engine, EngineOptions, ManualClock};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::{IteratorCodec, KdsCtx, KdsSettings, operation};
use crate::document::Document;
use crate::error::ErrorType;

pub(super) const START_MS: u64 = 1_795_651_512_000;

pub(super) fn context(dir: &std::path::Path, clock: &Arc<ManualClock>) -> KdsCtx {
    let engine = Engine::open(dir, clock.clone(), EngineOptions::default()).expect("engine");
    KdsCtx {
        metrics: crate::cloudwatch::Recorder::new(engine.clone()),
        engine,
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
    }
}

pub(super) fn call(ctx: &KdsCtx, op: &str, document: Value) -> Result<Value, crate::error::ApiError> {
    let run = operation(op).expect("known operation");
    let document = Document::parse(document)?;
    super::validation::check(op, document.fields())?;
    run(ctx, document)
}

#[test]
fn an_iterator_older_than_five_minutes_is_expired_with_the_kds_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(START_MS));
    let ctx = context(dir.path(), &clock);
    call(&ctx, "CreateStream", json!({"StreamName": "s", "ShardCount": 1})).expect("create");
    let iterator = call(
        &ctx,
        "GetShardIterator",
        json!({"StreamName": "s", "ShardId": "shardId-000000000000", "ShardIteratorType": "LATEST"}),
    )
    .expect("iterator")["ShardIterator"]
        .clone();
    clock.advance_ms(300_000);
    call(&ctx, "GetRecords", json!({"ShardIterator": iterator})).expect("exactly 300 s old is still valid");
    clock.advance_ms(1);
    let error = call(&ctx, "GetRecords", json!({"ShardIterator": iterator})).expect_err("expired");
    assert_eq!(error.kind, ErrorType::ExpiredIterator);
    assert_eq!(
        error.message.as_deref(),
        Some(
            "Iterator expired. The iterator was created at time Thu Nov 26 00:05:12 UTC 2026 while right now it is \
             Thu Nov 26 00:10:12 UTC 2026 which is further in the future than the tolerated delay of 300000 milliseconds."
        )
    );
}

const OPERATIONS: &[&str] = &[
    "CreateStream",
    "DeleteStream",
    "DescribeStream",
    "DescribeStreamSummary",
    "ListStreams",
    "ListShards",
    "IncreaseStreamRetentionPeriod",
    "DecreaseStreamRetentionPeriod",
    "AddTagsToStream",
    "RemoveTagsFromStream",
    "ListTagsForStream",
    "PutRecord",
    "PutRecords",
    "GetShardIterator",
    "GetRecords",
    "SplitShard",
    "MergeShards",
    "UpdateShardCount",
    "RegisterStreamConsumer",
    "DescribeStreamConsumer",
    "DeregisterStreamConsumer",
    "ListStreamConsumers",
    "TagResource",
    "UntagResource",
    "PutResourcePolicy",
    "EnableEnhancedMonitoring",
    "UpdateStreamMode",
    "UpdateMaxRecordSize",
    "DescribeLimits",
];

const FIELDS: &[&str] = &[
    "StreamName",
    "StreamARN",
    "ShardCount",
    "StreamModeDetails",
    "StreamMode",
    "Limit",
    "MaxResults",
    "NextToken",
    "ExclusiveStartShardId",
    "ExclusiveStartStreamName",
    "ExclusiveStartTagKey",
    "RetentionPeriodHours",
    "Tags",
    "TagKeys",
    "Data",
    "PartitionKey",
    "ExplicitHashKey",
    "SequenceNumberForOrdering",
    "Records",
    "ShardId",
    "ShardIteratorType",
    "StartingSequenceNumber",
    "Timestamp",
    "ShardIterator",
    "ShardFilter",
    "Type",
    "MaxRecordSizeInKiB",
    "ShardToSplit",
    "NewStartingHashKey",
    "ShardToMerge",
    "AdjacentShardToMerge",
    "TargetShardCount",
    "ScalingType",
    "StreamCreationTimestamp",
    "ConsumerName",
    "ConsumerARN",
    "ResourceARN",
    "Policy",
    "ShardLevelMetrics",
    "WarmThroughputMiBps",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop_oneof![
            Just("kept".to_string()),
            Just("shardId-000000000000".to_string()),
            Just("TRIM_HORIZON".to_string()),
            Just("AT_SEQUENCE_NUMBER".to_string()),
            Just("ON_DEMAND".to_string()),
            Just("UNIFORM_SCALING".to_string()),
            Just("arn:aws:kinesis:us-east-1:000000000000:stream/kept".to_string()),
            Just("ALL".to_string()),
            Just("shardId-000000000001".to_string()),
            Just("170141183460469231731687303715884105728".to_string()),
            Just("aGVsbG8=".to_string()),
            Just("340282366920938463463374607431768211456".to_string()),
            "[a-zA-Z0-9_.=/+-]{0,40}",
            any::<String>(),
        ]
        .prop_map(Value::from),
    ]
}

fn document() -> impl Strategy<Value = Value> {
    let value = leaf().prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((proptest::sample::select(FIELDS), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    });
    proptest::collection::vec((proptest::sample::select(FIELDS), value), 0..8)
        .prop_map(|pairs| Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Every operation answers Ok or a typed error for any document; a record stored before is
    /// still there afterwards, unless the request deleted its stream.
    #[test]
    fn malformed_requests_never_panic_or_damage_stored_records(requests in proptest::collection::vec((proptest::sample::select(OPERATIONS), document()), 1..12)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = Arc::new(ManualClock::new(START_MS));
        let ctx = context(dir.path(), &clock);
        call(&ctx, "CreateStream", json!({"StreamName": "kept", "ShardCount": 1})).expect("create");
        let put = call(&ctx, "PutRecord", json!({"StreamName": "kept", "PartitionKey": "p", "Data": "c2FmZQ=="})).expect("put");
        for (op, document) in requests {
            let _ = call(&ctx, op, document);
        }
        if let Ok(handle) = ctx.engine.stream("kept") && handle.id() == 1 {
            // A reshard closes shard 0; its record stays readable.
            let batch = ctx.engine.read(&handle, 0, 0, 1, usize::MAX).expect("read");
            prop_assert_eq!(&batch.entries[0].payload, b"safe");
            prop_assert!(put["SequenceNumber"].is_string());
        }
    }
}
