use datafusion::arrow::array::{BooleanArray, Int32Array, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{Field, Schema};

use super::*;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("ROWTIME", crate::batches::ROWTIME_TYPE, false),
        Field::new("X", DataType::Float64, true),
        Field::new("Y", DataType::Int32, true),
        Field::new("IS_HOT", DataType::Utf8, true),
        Field::new(HOTSPOTS_RESULT, DataType::Utf8, true),
        Field::new("__FRAMELOG_NEW", DataType::Boolean, false),
    ]))
}

fn batch(points: &[(i64, f64, i32)]) -> RecordBatch {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampMillisecondArray::from(points.iter().map(|p| p.0).collect::<Vec<_>>())),
        Arc::new(Float64Array::from(points.iter().map(|p| p.1).collect::<Vec<_>>())),
        Arc::new(Int32Array::from(points.iter().map(|p| p.2).collect::<Vec<_>>())),
        Arc::new(StringArray::from(vec!["N"; points.len()])),
        Arc::new(StringArray::from(vec![None::<&str>; points.len()])),
        Arc::new(BooleanArray::from(vec![true; points.len()])),
    ];
    RecordBatch::try_new(schema(), columns).expect("as the test set it up")
}

fn results(hotspots: &mut Hotspots, points: &[(i64, f64, i32)], replay: bool) -> Vec<Option<serde_json::Value>> {
    let array = hotspots.score(&batch(points), replay).expect("described");
    let strings = array.as_any().downcast_ref::<StringArray>().expect("as the test set it up");
    (0..strings.len())
        .map(|i| (!strings.is_null(i)).then(|| serde_json::from_str(strings.value(i)).expect("JSON")))
        .collect()
}

fn params() -> HotspotParams {
    HotspotParams { window_size: 100, scan_radius: 1.5, minimum_points: 5 }
}

/// `count` rows spread 10 apart on x from 1,000, each its own: no hotspot among them.
fn scattered(count: usize, first_ms: i64) -> Vec<(i64, f64, i32)> {
    (0..count).map(|i| (first_ms + i as i64, 1_000.0 + i as f64 * 10.0, 0)).collect()
}

#[test]
fn a_cluster_becomes_a_hotspot_with_its_bounds_and_density() {
    let mut hotspots = Hotspots::new(params(), &schema()).expect("hotspots");
    let quiet = results(&mut hotspots, &scattered(20, 0), false);
    assert_eq!(quiet[19], Some(json!({"hotspots": []})));
    let cluster: Vec<(i64, f64, i32)> = (0..6).map(|i| (100 + i, 500.0 + i as f64 * 0.5, 7)).collect();
    let described = results(&mut hotspots, &cluster, false);
    assert_eq!(described[3], Some(json!({"hotspots": []})), "four rows are not five");
    let last = described[5].clone().expect("described");
    let spot = &last["hotspots"][0];
    assert_eq!(last["hotspots"].as_array().map(Vec::len), Some(1), "{last}");
    assert_eq!(spot["minValues"], json!([500.0, 7.0]));
    assert_eq!(spot["maxValues"], json!([502.5, 7.0]));
    // 6 rows over (2.5 + 1.5) x (0 + 1.5).
    assert_eq!(spot["density"], json!(1.0));
}

#[test]
fn rows_leave_the_window_and_their_hotspot_with_them() {
    let mut hotspots = Hotspots::new(HotspotParams { window_size: 10, ..params() }, &schema()).expect("hotspots");
    let cluster: Vec<(i64, f64, i32)> = (0..5).map(|i| (i, 0.0, 0)).collect();
    let described = results(&mut hotspots, &cluster, false);
    assert_eq!(described[4].as_ref().map(|r| r["hotspots"].as_array().map(Vec::len)), Some(Some(1)));
    let after = results(&mut hotspots, &scattered(6, 10), false);
    assert_eq!(after[4].as_ref().map(|r| r["hotspots"].as_array().map(Vec::len)), Some(Some(1)), "one left");
    assert_eq!(after[5], Some(json!({"hotspots": []})), "the sixth pushes the cluster's first out");
}

#[test]
fn the_densest_hotspot_comes_first() {
    let mut hotspots = Hotspots::new(params(), &schema()).expect("hotspots");
    let loose: Vec<(i64, f64, i32)> = (0..5).map(|i| (i, i as f64 * 0.3, 0)).collect();
    let tight: Vec<(i64, f64, i32)> = (0..5).map(|i| (10 + i, 100.0 + i as f64 * 0.1, 0)).collect();
    results(&mut hotspots, &loose, false);
    let last = results(&mut hotspots, &tight, false).pop().flatten().expect("described");
    assert_eq!(last["hotspots"][0]["minValues"], json!([100.0, 0.0]), "{last}");
    assert_eq!(last["hotspots"][1]["minValues"], json!([0.0, 0.0]), "{last}");
}

#[test]
fn a_restored_window_describes_the_next_rows_as_the_original_does() {
    let mut original = Hotspots::new(params(), &schema()).expect("hotspots");
    let cluster: Vec<(i64, f64, i32)> = (0..30).map(|i| (i, (i % 4) as f64, (i % 3) as i32)).collect();
    results(&mut original, &cluster, false);
    let snapshot = original.snapshot().expect("a snapshot");
    let mut restored = Hotspots::new(params(), &schema()).expect("hotspots");
    restored.restore(&snapshot).expect("restored");
    assert_eq!(restored.absorbed_through_ms(), Some(29));
    // The replay of rows the snapshot holds adds nothing; the next rows are described alike.
    assert_eq!(results(&mut restored, &cluster[20..], true), vec![None; 10]);
    let next = scattered(5, 100);
    assert_eq!(results(&mut restored, &next, false), results(&mut original, &next, false));
}

#[test]
fn a_snapshot_of_other_columns_is_refused() {
    let narrow = Arc::new(Schema::new(vec![
        Field::new("ROWTIME", crate::batches::ROWTIME_TYPE, false),
        Field::new("X", DataType::Float64, true),
        Field::new("__FRAMELOG_NEW", DataType::Boolean, false),
    ]));
    let mut one = Hotspots::new(params(), &narrow).expect("hotspots");
    let rows = RecordBatch::try_new(
        narrow.clone(),
        vec![
            Arc::new(TimestampMillisecondArray::from(vec![1])),
            Arc::new(Float64Array::from(vec![1.0])),
            Arc::new(BooleanArray::from(vec![true])),
        ],
    )
    .expect("as the test set it up");
    one.score(&rows, false).expect("described");
    let mut two = Hotspots::new(params(), &schema()).expect("hotspots");
    assert!(two.restore(&one.snapshot().expect("a snapshot")).is_err());
    let text_only = Arc::new(Schema::new(vec![
        Field::new("ROWTIME", crate::batches::ROWTIME_TYPE, false),
        Field::new("NAME", DataType::Utf8, true),
    ]));
    assert!(Hotspots::new(params(), &text_only).is_err(), "no numeric column");
}
