use datafusion::arrow::array::{BooleanArray, Float64Array, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{Field, Schema};

use super::*;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("ROWTIME", crate::batches::ROWTIME_TYPE, false),
        Field::new("NAME", DataType::Utf8, true),
        Field::new("X", DataType::Float64, true),
        Field::new("Y", DataType::Int32, true),
        Field::new("__FRAMELOG_NEW", DataType::Boolean, false),
    ]))
}

/// Points on a 10 x 10 grid around the origin, in a fixed order, with `outliers` far out.
fn points(count: usize, first_ms: i64) -> Vec<(i64, f64, i32)> {
    (0..count).map(|i| (first_ms + i as i64, (i % 10) as f64, ((i / 10) % 10) as i32)).collect()
}

fn batch(points: &[(i64, f64, i32)]) -> RecordBatch {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampMillisecondArray::from(points.iter().map(|p| p.0).collect::<Vec<_>>())),
        Arc::new(StringArray::from(vec!["n"; points.len()])),
        Arc::new(Float64Array::from(points.iter().map(|p| p.1).collect::<Vec<_>>())),
        Arc::new(datafusion::arrow::array::Int32Array::from(points.iter().map(|p| p.2).collect::<Vec<_>>())),
        Arc::new(BooleanArray::from(vec![true; points.len()])),
    ];
    RecordBatch::try_new(schema(), columns).expect("as the test set it up")
}

fn scores(forest: &mut Forest, points: &[(i64, f64, i32)], replay: bool) -> Vec<f64> {
    let (scores, _) = forest.score(&batch(points), replay).expect("scored");
    scores.as_any().downcast_ref::<Float64Array>().expect("as the test set it up").values().to_vec()
}

fn small() -> ForestParams {
    ForestParams { number_of_trees: 30, sub_sample_size: 64, time_decay: 1_000, shingle_size: 1, explanation: None }
}

#[test]
fn a_point_far_from_the_rest_scores_higher_than_any_ordinary_point() {
    let mut forest = Forest::new(small(), &schema()).expect("a forest");
    let warm = scores(&mut forest, &points(200, 0), false);
    assert_eq!(warm[0], 0.0, "the first row is scored by an empty forest");
    let ordinary = scores(&mut forest, &points(100, 1_000), false);
    let far = scores(&mut forest, &[(2_000, 80.0, -60)], false)[0];
    let highest_ordinary = ordinary.iter().copied().fold(f64::MIN, f64::max);
    assert!(ordinary.iter().all(|s| *s > 0.0), "a warm forest scores every row: {ordinary:?}");
    assert!(far > 2.0 * highest_ordinary, "far {far}, highest ordinary {highest_ordinary}");
}

#[test]
fn a_restored_forest_scores_the_next_rows_as_the_original_does() {
    let mut original = Forest::new(small(), &schema()).expect("a forest");
    scores(&mut original, &points(300, 0), false);
    let snapshot = original.snapshot().expect("a snapshot");
    let mut restored = Forest::new(small(), &schema()).expect("a forest");
    restored.restore(&snapshot).expect("restored");
    assert_eq!(restored.absorbed_through_ms(), Some(299));
    // The restart replays rows from before the snapshot: the restored forest skips them.
    assert_eq!(scores(&mut restored, &points(300, 0), true), vec![0.0; 300]);
    let next = [(400, 3.0, 4), (401, 40.0, 2), (402, 5.0, 5)];
    assert_eq!(scores(&mut restored, &next, false), scores(&mut original, &next, false));
}

#[test]
fn replayed_rows_after_the_snapshot_rebuild_the_forest_without_scores() {
    let mut original = Forest::new(small(), &schema()).expect("a forest");
    scores(&mut original, &points(200, 0), false);
    let snapshot = original.snapshot().expect("a snapshot");
    let later = points(50, 500);
    scores(&mut original, &later, false);
    let mut restored = Forest::new(small(), &schema()).expect("a forest");
    restored.restore(&snapshot).expect("restored");
    assert_eq!(scores(&mut restored, &later, true), vec![0.0; 50], "a replay writes no scores");
    let next = [(900, 1.0, 1), (901, 30.0, 30)];
    assert_eq!(scores(&mut restored, &next, false), scores(&mut original, &next, false));
}

#[test]
fn a_snapshot_of_another_shape_is_refused() {
    let mut forest = Forest::new(small(), &schema()).expect("a forest");
    let one_column = Arc::new(Schema::new(vec![
        Field::new("ROWTIME", crate::batches::ROWTIME_TYPE, false),
        Field::new("X", DataType::Float64, true),
        Field::new("__FRAMELOG_NEW", DataType::Boolean, false),
    ]));
    let other = Forest::new(small(), &one_column).expect("a forest");
    assert!(forest.restore(&other.snapshot().expect("a snapshot")).is_err());
    assert!(forest.restore(b"not a snapshot").is_err());
}

#[test]
fn rows_without_numeric_columns_cannot_be_scored() {
    let text_only = Arc::new(Schema::new(vec![
        Field::new("ROWTIME", crate::batches::ROWTIME_TYPE, false),
        Field::new("NAME", DataType::Utf8, true),
        Field::new("__FRAMELOG_NEW", DataType::Boolean, false),
    ]));
    let error = Forest::new(ForestParams::default(), &text_only).expect_err("nothing to score");
    assert!(error.to_string().contains("numeric column"), "{error}");
}

#[test]
fn an_explanation_puts_an_outliers_attribution_on_the_column_that_stands_out() {
    let mut forest = Forest::new(ForestParams { explanation: Some(true), ..small() }, &schema()).expect("forest");
    let ordinary: Vec<(i64, f64, i32)> =
        (0..400).map(|i| (i, 10.0 + (i % 7) as f64 / 10.0, 5 + (i % 3) as i32)).collect();
    forest.score(&batch(&ordinary), false).expect("warm");
    // X far below the rest; Y as usual.
    let (scores, explained) = forest.score(&batch(&[(400, -500.0, 6)]), false).expect("scored");
    let score = scores.as_any().downcast_ref::<Float64Array>().expect("scores").value(0);
    let explained = explained.expect("an explanation column");
    let text = explained.as_any().downcast_ref::<datafusion::arrow::array::StringArray>().expect("text").value(0);
    let explanation: serde_json::Value = serde_json::from_str(text).expect("JSON");
    let attribution = |column: &str| {
        explanation[column]["ATTRIBUTION_SCORE"].as_str().expect("a number as text").parse::<f64>().expect("number")
    };
    assert_eq!(explanation["X"]["DIRECTION"], "LOW", "{explanation}");
    assert!(attribution("X") > 10.0 * attribution("Y"), "{explanation}");
    assert!(
        (attribution("X") + attribution("Y") - score).abs() < 1e-3,
        "the attributions add up to {score}: {explanation}"
    );
}
