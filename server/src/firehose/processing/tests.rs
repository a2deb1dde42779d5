use serde_json::json;

use super::plan::SubRecords;
use super::*;
use crate::firehose::object_key::Prefixes;

fn item(id: &str, data: &str) -> Item {
    Item {
        record_id: id.into(),
        data: data.as_bytes().to_vec(),
        arrival_ms: 1_000,
        kinesis: None,
        partition_keys: PartitionKeys::default(),
    }
}

fn partitioned_plan(query: &str) -> ProcessingPlan {
    ProcessingPlan {
        deaggregation: Some(SubRecords::Json),
        extraction: Some(metadata_extraction::Extraction::compile(query).expect("query")),
        dynamic_partitioning: true,
        ..ProcessingPlan::default()
    }
}

fn texts(records: &[Item]) -> Vec<&str> {
    records.iter().map(|r| std::str::from_utf8(&r.data).expect("utf-8")).collect()
}

#[tokio::test]
async fn records_are_split_keyed_and_grouped_by_the_keys_the_prefix_names() {
    let prefixes = Prefixes::new(Some("device=!{partitionKeyFromQuery:device}/"), Some("errors/")).expect("prefix");
    let plan = partitioned_plan("{device: .device, id: .id}");
    let context = Context { lambda: None, kinesis_source: false };
    let items = vec![
        item("1", r#"{"device":"cam","id":1}{"device":"phone","id":2}"#),
        item("2", r#"{"device":"cam","id":3}"#),
        item("3", "not json"),
        item("4", r#"{"id":4}"#),
        item("5", r#"{"device":"..","id":5}"#),
    ];
    let processed = process(&plan, prefixes.data(), &context, items).await;
    let by_device: BTreeMap<String, Vec<&str>> =
        processed.groups.iter().map(|(keys, records)| (keys.from_query["device"].clone(), texts(records))).collect();
    assert_eq!(
        by_device,
        BTreeMap::from([
            ("cam".to_string(), vec![r#"{"device":"cam","id":1}"#, r#"{"device":"cam","id":3}"#]),
            ("phone".to_string(), vec![r#"{"device":"phone","id":2}"#]),
        ])
    );
    assert!(processed.groups.keys().all(|keys| !keys.from_query.contains_key("id")), "only the prefix's keys group");
    let failures: Vec<(&str, &str, &[u8])> =
        processed.failures.iter().map(|f| (f.output_type, f.error_code.as_str(), f.raw.as_slice())).collect();
    assert_eq!(
        failures,
        [
            ("metadata-extraction-failed", "DynamicPartitioning.MetadataExtractionFailed", &b"not json"[..]),
            ("partitioning-failed", "DynamicPartitioning.PartitionKeyMissing", &br#"{"id":4}"#[..]),
            ("partitioning-failed", "DynamicPartitioning.PartitionKeyInvalid", &br#"{"device":"..","id":5}"#[..]),
        ]
    );
}

#[tokio::test]
async fn without_partitioning_everything_is_one_group_in_order() {
    let prefixes = Prefixes::new(None, None).expect("prefix");
    let plan = ProcessingPlan { deaggregation: Some(SubRecords::Json), ..ProcessingPlan::default() };
    let context = Context { lambda: None, kinesis_source: false };
    let processed =
        process(&plan, prefixes.data(), &context, vec![item("1", r#"{"a":1}{"a":2}"#), item("2", "x")]).await;
    assert_eq!(processed.groups.len(), 1);
    assert_eq!(texts(&processed.groups[&PartitionKeys::default()]), [r#"{"a":1}"#, r#"{"a":2}"#, "x"]);
    assert!(processed.failures.is_empty());
}

#[test]
fn error_records_carry_what_firehose_writes() {
    let failure = Failure {
        output_type: "processing-failed",
        error_code: "Lambda.ProcessingFailedStatus".into(),
        message: "ProcessingFailed status set for record".into(),
        raw: b"hi".to_vec(),
        arrival_ms: 5,
        attempts: 4,
        lambda_arn: Some("arn:aws:lambda:r:1:function:f".into()),
        catalog_table: None,
    };
    let text = String::from_utf8(error_records(&[&failure], 9)).expect("utf-8");
    let record: Value = serde_json::from_str(text.trim_end()).expect("one JSON line");
    assert_eq!(
        record,
        json!({"attemptsMade": 4, "arrivalTimestamp": 5, "errorCode": "Lambda.ProcessingFailedStatus",
               "errorMessage": "ProcessingFailed status set for record", "attemptEndingTimestamp": 9,
               "rawData": "aGk=", "lambdaArn": "arn:aws:lambda:r:1:function:f"})
    );
}
