//! The recorder, the stored rollups and the three operations over them, on a manual clock.

use std::sync::Arc;

use framelog_store::{Engine, EngineOptions, ManualClock};
use serde_json::{Value, json};

use super::api::dispatch;
use super::recorder::Recorder;
use super::{kinesis, rollups, video};
use crate::error::ErrorType;

/// 2026-12-06T00:00:00Z, a whole minute.
const START_MS: u64 = 1_796_515_200_000;
const START_SECS: f64 = (START_MS / 1000) as f64;

fn recorder(dir: &std::path::Path, clock: &Arc<ManualClock>) -> Recorder {
    Recorder::new(Engine::open(dir, clock.clone(), EngineOptions::default()).expect("engine"))
}

fn store_finished(recorder: &Recorder) {
    rollups::store(recorder.engine(), &recorder.take_finished()).expect("stored");
}

fn statistics(recorder: &Recorder, period_secs: u64, end_secs: f64) -> Value {
    let request = json!({
        "Namespace": "AWS/Kinesis", "MetricName": "IncomingBytes",
        "Dimensions": [{"Name": "StreamName", "Value": "orders"}],
        "StartTime": START_SECS, "EndTime": end_secs, "Period": period_secs,
        "Statistics": ["Sum", "SampleCount", "Maximum", "Minimum", "Average"],
    });
    dispatch(recorder, "GetMetricStatistics", request).expect("answered")
}

/// Two minutes of IncomingBytes on `orders`: 100 and 300, then 50; stored once over.
fn two_minutes(recorder: &Recorder, clock: &ManualClock) {
    let orders = [("StreamName", "orders")];
    recorder.record(&kinesis::INCOMING_BYTES, &orders, 100.0);
    recorder.record(&kinesis::INCOMING_BYTES, &orders, 300.0);
    recorder.record(&kinesis::INCOMING_BYTES, &[("StreamName", "other")], 7.0);
    clock.advance_ms(60_000);
    recorder.record(&kinesis::INCOMING_BYTES, &orders, 50.0);
    clock.advance_ms(60_000);
    store_finished(recorder);
}

#[test]
fn stored_minutes_answer_each_period_with_the_five_statistics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(START_MS));
    let recorder = recorder(dir.path(), &clock);
    two_minutes(&recorder, &clock);
    assert!(recorder.pending().is_empty(), "both minutes were stored");
    let per_minute = statistics(&recorder, 60, START_SECS + 180.0);
    let points = per_minute["Datapoints"].as_array().expect("datapoints");
    assert_eq!(points.len(), 2, "{per_minute}");
    assert_eq!(points[0]["Timestamp"], json!(START_SECS));
    assert_eq!((points[0]["Sum"].as_f64(), points[0]["SampleCount"].as_f64()), (Some(400.0), Some(2.0)));
    assert_eq!(points[0]["Average"].as_f64(), Some(200.0));
    assert_eq!(points[0]["Unit"], "Bytes");
    assert_eq!(points[1]["Sum"].as_f64(), Some(50.0));
    let merged = statistics(&recorder, 120, START_SECS + 180.0);
    let point = &merged["Datapoints"][0];
    assert_eq!(merged["Datapoints"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        (point["Sum"].as_f64(), point["Minimum"].as_f64(), point["Maximum"].as_f64()),
        (Some(450.0), Some(50.0), Some(300.0))
    );
    assert_eq!(merged["Label"], "IncomingBytes");
}

#[test]
fn rollups_outlive_the_process_and_samples_not_stored_yet_are_answered_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(START_MS));
    {
        let recorder = recorder(dir.path(), &clock);
        two_minutes(&recorder, &clock);
        recorder.engine().close().expect("closed");
    }
    let recorder = recorder(dir.path(), &clock);
    recorder.record(&kinesis::INCOMING_BYTES, &[("StreamName", "orders")], 5.0);
    let answer = statistics(&recorder, 60, START_SECS + 240.0);
    let sums: Vec<f64> =
        answer["Datapoints"].as_array().expect("points").iter().filter_map(|p| p["Sum"].as_f64()).collect();
    assert_eq!(sums, vec![400.0, 50.0, 5.0], "two stored minutes, one pending: {answer}");
}

#[test]
fn get_metric_data_pages_newest_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(START_MS));
    let recorder = recorder(dir.path(), &clock);
    two_minutes(&recorder, &clock);
    let query = |token: Option<&str>| {
        let mut request = json!({
            "MetricDataQueries": [{"Id": "bytes", "MetricStat": {"Metric": {"Namespace": "AWS/Kinesis",
                "MetricName": "IncomingBytes", "Dimensions": [{"Name": "StreamName", "Value": "orders"}]},
                "Period": 60, "Stat": "Sum"}}],
            "StartTime": START_SECS, "EndTime": START_SECS + 600.0, "MaxDatapoints": 1,
        });
        if let Some(token) = token {
            request["NextToken"] = token.into();
        }
        dispatch(&recorder, "GetMetricData", request).expect("answered")
    };
    let first = query(None);
    let result = &first["MetricDataResults"][0];
    assert_eq!((result["Id"].as_str(), result["StatusCode"].as_str()), (Some("bytes"), Some("PartialData")));
    assert_eq!(result["Values"], json!([50.0]), "newest first: {first}");
    assert_eq!(result["Timestamps"], json!([START_SECS + 60.0]));
    let second = query(first["NextToken"].as_str());
    assert_eq!(second["MetricDataResults"][0]["Values"], json!([400.0]));
    assert_eq!(second["MetricDataResults"][0]["StatusCode"], "Complete");
    assert!(second.get("NextToken").is_none());
}

#[test]
fn list_metrics_filters_by_namespace_name_and_dimension() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(START_MS));
    let recorder = recorder(dir.path(), &clock);
    two_minutes(&recorder, &clock);
    recorder.record(&video::PUT_MEDIA_INCOMING_FRAGMENTS, &[("StreamName", "cam")], 1.0);
    let list = |request: Value| dispatch(&recorder, "ListMetrics", request).expect("answered")["Metrics"].clone();
    let kinesis = list(json!({"Namespace": "AWS/Kinesis"}));
    assert_eq!(kinesis.as_array().map(Vec::len), Some(2), "orders and other: {kinesis}");
    let orders = list(json!({"Dimensions": [{"Name": "StreamName", "Value": "orders"}]}));
    assert_eq!(
        orders,
        json!([{"Namespace": "AWS/Kinesis", "MetricName": "IncomingBytes",
        "Dimensions": [{"Name": "StreamName", "Value": "orders"}]}])
    );
    let video = list(json!({"Namespace": "AWS/KinesisVideo", "MetricName": "PutMedia.IncomingFragments"}));
    assert_eq!(video.as_array().map(Vec::len), Some(1), "a pending minute's series is listed: {video}");
    clock.advance_ms(4 * 3_600_000);
    let recent = list(json!({"Namespace": "AWS/Kinesis", "RecentlyActive": "PT3H"}));
    assert_eq!(recent, json!([]), "nothing in the past three hours");
}

#[test]
fn refusals_carry_cloudwatch_types_and_messages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(START_MS));
    let recorder = recorder(dir.path(), &clock);
    let base = json!({"Namespace": "AWS/Kinesis", "MetricName": "IncomingBytes", "StartTime": START_SECS,
        "EndTime": START_SECS + 3600.0, "Period": 60, "Statistics": ["Sum"]});
    let refused = |change: &dyn Fn(&mut Value)| {
        let mut request = base.clone();
        change(&mut request);
        dispatch(&recorder, "GetMetricStatistics", request).expect_err("refused")
    };
    let missing = refused(&|r| {
        r.as_object_mut().map(|o| o.remove("StartTime"));
    });
    assert_eq!(missing.kind, ErrorType::MissingParameter);
    assert_eq!(missing.message.as_deref(), Some("The parameter StartTime is required."));
    let seconds = refused(&|r| r["Period"] = 30.into());
    assert_eq!(seconds.kind, ErrorType::InvalidParameterValue);
    assert_eq!(seconds.message.as_deref(), Some("The parameter Period must be a multiple of 60."));
    let backwards = refused(&|r| r["EndTime"] = (START_SECS - 60.0).into());
    assert_eq!(backwards.kind, ErrorType::InvalidParameterValue);
    let both = refused(&|r| r["ExtendedStatistics"] = json!(["p99"]));
    assert_eq!(both.kind, ErrorType::InvalidParameterCombination);
    let too_many = refused(&|r| r["EndTime"] = (START_SECS + 2.0 * 86_400.0).into());
    assert_eq!(too_many.kind, ErrorType::InvalidParameterCombination);
    assert!(too_many.message.as_deref().is_some_and(|m| m.contains("2880 datapoints")), "{too_many:?}");
    let math = json!({"MetricDataQueries": [{"Id": "e1", "Expression": "SUM(METRICS())"}],
        "StartTime": START_SECS, "EndTime": START_SECS + 60.0});
    assert_eq!(dispatch(&recorder, "GetMetricData", math).expect_err("math").kind, ErrorType::InvalidParameterValue);
    let token = json!({"NextToken": "forged"});
    assert_eq!(dispatch(&recorder, "ListMetrics", token).expect_err("token").kind, ErrorType::InvalidNextToken);
}

#[test]
fn open_connections_are_sampled_as_they_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(START_MS));
    let recorder = recorder(dir.path(), &clock);
    let cam = [("StreamName", "cam")];
    let first = recorder.open(&video::PUT_MEDIA_ACTIVE_CONNECTIONS, &cam);
    let second = recorder.open(&video::PUT_MEDIA_ACTIVE_CONNECTIONS, &cam);
    drop(first);
    drop(second);
    let minute = recorder.take_all().pop().expect("a minute");
    let stats = minute.rollups[0].stats;
    assert_eq!((stats.count, stats.max, stats.min), (4.0, 2.0, 0.0), "1, 2, 1, 0");
}
