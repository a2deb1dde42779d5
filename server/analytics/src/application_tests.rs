use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, Float64Array, Int64Array, StringArray, TimestampMillisecondArray};

use super::*;
use crate::rows::{InputSchema, RecordFormat, read_records};

pub(super) const SOURCE: &str = "SOURCE_SQL_STREAM_001";

fn ticker_input() -> InputSchema {
    let columns = [
        ("TICKER_SYMBOL".to_string(), Some("$.TICKER_SYMBOL".to_string()), "VARCHAR(4)".to_string()),
        ("PRICE".to_string(), Some("$.PRICE".to_string()), "DOUBLE".to_string()),
    ];
    InputSchema::new(RecordFormat::Json { row_path: "$".into() }, &columns).expect("as the test set it up")
}

pub(super) async fn app(code: &str) -> Application {
    let input = InputDef { name: SOURCE.into(), columns: ticker_input().stream_columns() };
    Application::compile(code, &[input], Vec::new()).await.expect("as the test set it up")
}

pub(super) fn rows(events: &[(i64, &str, f64)]) -> RecordBatch {
    let records: Vec<(i64, Vec<u8>)> = events
        .iter()
        .map(|(ms, symbol, price)| (*ms, format!(r#"{{"TICKER_SYMBOL":"{symbol}","PRICE":{price}}}"#).into_bytes()))
        .collect();
    let borrowed: Vec<(i64, &[u8])> = records.iter().map(|(ms, b)| (*ms, b.as_slice())).collect();
    read_records(&ticker_input(), &borrowed).0
}

fn strings(batch: &RecordBatch, column: usize) -> Vec<String> {
    let array = batch.column(column).as_any().downcast_ref::<StringArray>().expect("as the test set it up");
    (0..array.len()).map(|i| array.value(i).to_string()).collect()
}

const FILTER: &str = r#"
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (ticker_symbol VARCHAR(4), price DOUBLE);
CREATE OR REPLACE PUMP "STREAM_PUMP" AS INSERT INTO "DESTINATION_SQL_STREAM"
    SELECT STREAM ticker_symbol, price FROM "SOURCE_SQL_STREAM_001" WHERE price > 10;
"#;

#[tokio::test]
async fn a_row_pump_filters_and_keeps_each_rows_rowtime() {
    let mut app = app(FILTER).await;
    let step = app
        .push(SOURCE, rows(&[(1_000, "A", 5.0), (2_000, "B", 50.0), (3_000, "C", 11.0)]), false)
        .await
        .expect("as the test set it up");
    assert!(step.errors.is_empty(), "{:?}", step.errors);
    let [emitted] = step.emitted.as_slice() else { panic!("one batch written: {:?}", step.emitted) };
    assert_eq!(emitted.stream, "DESTINATION_SQL_STREAM");
    assert_eq!(strings(&emitted.rows, 1), ["B", "C"]);
    let rowtime =
        emitted.rows.column(0).as_any().downcast_ref::<TimestampMillisecondArray>().expect("as the test set it up");
    assert_eq!(rowtime.values().to_vec(), [2_000, 3_000]);
    assert_eq!(
        app.push(SOURCE, rows(&[(4_000, "D", 1.0)]), true).await.expect("as the test set it up").emitted.len(),
        0,
        "a replay writes nothing"
    );
}

const TUMBLING: &str = r#"
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (ticker_symbol VARCHAR(4), ticker_count INTEGER, average_price DOUBLE);
CREATE OR REPLACE PUMP "STREAM_PUMP" AS INSERT INTO "DESTINATION_SQL_STREAM"
    SELECT STREAM ticker_symbol, COUNT(*) AS ticker_count, AVG(price)
    FROM "SOURCE_SQL_STREAM_001"
    GROUP BY ticker_symbol, STEP("SOURCE_SQL_STREAM_001".ROWTIME BY INTERVAL '10' SECOND);
"#;

/// Counts per (window start, symbol), computed directly.
fn expected_counts(events: &[(i64, &str, f64)], length_ms: i64) -> BTreeMap<(i64, String), i64> {
    let mut counts = BTreeMap::new();
    for (ms, symbol, _) in events {
        *counts.entry((ms - ms % length_ms, symbol.to_string())).or_insert(0) += 1;
    }
    counts
}

#[tokio::test]
async fn a_tumbling_window_writes_once_when_the_watermark_passes_its_end() {
    let mut app = app(TUMBLING).await;
    let symbols = ["A", "B", "C"];
    let events: Vec<(i64, &str, f64)> =
        (0..300).map(|i| (i * 97 % 30_000, symbols[i as usize % 3], i as f64)).collect();
    let mut sorted = events.clone();
    sorted.sort_by_key(|e| e.0);
    for chunk in sorted.chunks(37) {
        let step = app.push(SOURCE, rows(chunk), false).await.expect("as the test set it up");
        assert!(step.emitted.is_empty(), "nothing before a window closes");
    }
    assert_eq!(app.held_from_ms(), Some(0));
    let step = app.advance(20_000).await.expect("as the test set it up");
    let mut seen = BTreeMap::new();
    for emitted in &step.emitted {
        let window = emitted.window.clone().expect("as the test set it up");
        assert_eq!(window.end_ms - window.start_ms, 10_000);
        let rowtime =
            emitted.rows.column(0).as_any().downcast_ref::<TimestampMillisecondArray>().expect("as the test set it up");
        assert!(rowtime.values().iter().all(|t| *t == window.end_ms), "a window's rows carry its end");
        let counts = emitted
            .rows
            .column(2)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int32Array>()
            .expect("as the test set it up");
        for (i, symbol) in strings(&emitted.rows, 1).into_iter().enumerate() {
            seen.insert((window.start_ms, symbol), i64::from(counts.value(i)));
        }
    }
    let expected: BTreeMap<_, _> =
        expected_counts(&events, 10_000).into_iter().filter(|((start, _), _)| *start < 20_000).collect();
    assert_eq!(seen, expected);
    assert_eq!(app.marks()["STREAM_PUMP"], 20_000);
    assert_eq!(app.held_from_ms(), Some(20_000));
    let late = app.push(SOURCE, rows(&[(5_000, "A", 1.0)]), false).await.expect("as the test set it up");
    assert_eq!(late.errors.len(), 1, "a row for a written window is late");
    assert!(late.errors[0].message.contains("Late"), "{}", late.errors[0].message);
}

#[tokio::test]
async fn after_a_restart_replayed_rows_refill_only_unwritten_windows() {
    let events = [(1_000, "A", 1.0), (12_000, "A", 2.0), (13_000, "B", 3.0)];
    let mut first = app(TUMBLING).await;
    first.push(SOURCE, rows(&events), false).await.expect("as the test set it up");
    let written = first.advance(10_000).await.expect("as the test set it up");
    assert_eq!(written.emitted.len(), 1);
    let marks = first.marks();
    let mut second = app(TUMBLING).await;
    second.restore(&marks);
    let replay = second.push(SOURCE, rows(&events), true).await.expect("as the test set it up");
    assert!(replay.errors.is_empty() && replay.emitted.is_empty());
    let step = second.advance(20_000).await.expect("as the test set it up");
    let windows: Vec<i64> =
        step.emitted.iter().map(|e| e.window.clone().expect("as the test set it up").start_ms).collect();
    assert_eq!(windows, [10_000], "the window written before the restart is not written again");
    assert_eq!(strings(&step.emitted[0].rows, 1), ["A", "B"]);
}

const SLIDING: &str = r#"
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (ticker_symbol VARCHAR(4), avg_price DOUBLE);
CREATE OR REPLACE PUMP "STREAM_PUMP" AS INSERT INTO "DESTINATION_SQL_STREAM"
    SELECT STREAM ticker_symbol, AVG(price) OVER w
    FROM "SOURCE_SQL_STREAM_001"
    WINDOW w AS (PARTITION BY ticker_symbol RANGE INTERVAL '10' SECOND PRECEDING);
"#;

#[tokio::test]
async fn a_sliding_window_averages_each_rows_preceding_range_across_batches() {
    let mut app = app(SLIDING).await;
    let events: Vec<(i64, &str, f64)> =
        (0..60).map(|i| (i * 1_000, if i % 2 == 0 { "A" } else { "B" }, i as f64)).collect();
    let mut averages = Vec::new();
    for chunk in events.chunks(7) {
        let step = app.push(SOURCE, rows(chunk), false).await.expect("as the test set it up");
        assert!(step.errors.is_empty(), "{:?}", step.errors);
        for emitted in step.emitted {
            let values =
                emitted.rows.column(2).as_any().downcast_ref::<Float64Array>().expect("as the test set it up").clone();
            let symbols = strings(&emitted.rows, 1);
            averages.extend(symbols.into_iter().zip(values.values().iter().copied()));
        }
    }
    assert_eq!(averages.len(), events.len(), "one result per row");
    for (i, (ms, symbol, _)) in events.iter().enumerate() {
        let window: Vec<f64> =
            events.iter().filter(|(t, s, _)| s == symbol && *t <= *ms && *t >= ms - 10_000).map(|e| e.2).collect();
        let expected = window.iter().sum::<f64>() / window.len() as f64;
        let found = averages
            .iter()
            .filter(|(s, _)| s == symbol)
            .nth(events[..i].iter().filter(|e| e.1 == *symbol).count())
            .expect("as the test set it up")
            .1;
        assert!((found - expected).abs() < 1e-9, "row {i}: {found} != {expected}");
    }
}

/// `ROWS n PRECEDING` counts within the row's partition: a symbol that ticks rarely still
/// finds its own last rows after batches of another symbol's.
#[tokio::test]
async fn a_rows_window_keeps_the_last_rows_of_each_partition_across_batches() {
    let code = r#"
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (ticker_symbol VARCHAR(4), avg_price DOUBLE);
CREATE OR REPLACE PUMP "STREAM_PUMP" AS INSERT INTO "DESTINATION_SQL_STREAM"
    SELECT STREAM ticker_symbol, AVG(price) OVER (PARTITION BY s.ticker_symbol ROWS 2 PRECEDING)
    FROM "SOURCE_SQL_STREAM_001" AS s;
"#;
    let mut app = app(code).await;
    let events: Vec<(i64, &str, f64)> =
        (0..60).map(|i| (i * 1_000, if i % 10 == 0 { "A" } else { "B" }, i as f64)).collect();
    let mut averages: Vec<(String, f64)> = Vec::new();
    for chunk in events.chunks(7) {
        let step = app.push(SOURCE, rows(chunk), false).await.expect("as the test set it up");
        assert!(step.errors.is_empty(), "{:?}", step.errors);
        for emitted in step.emitted {
            let values = emitted.rows.column(2).as_any().downcast_ref::<Float64Array>().expect("AVG").clone();
            averages.extend(strings(&emitted.rows, 1).into_iter().zip(values.values().iter().copied()));
        }
    }
    for symbol in ["A", "B"] {
        let prices: Vec<f64> = events.iter().filter(|e| e.1 == symbol).map(|e| e.2).collect();
        let expected: Vec<f64> = (0..prices.len())
            .map(|i| prices[i.saturating_sub(2)..=i].iter().sum::<f64>() / (i - i.saturating_sub(2) + 1) as f64)
            .collect();
        let found: Vec<f64> = averages.iter().filter(|(s, _)| s == symbol).map(|(_, avg)| *avg).collect();
        assert_eq!(found, expected, "{symbol}: each row with its own two before it");
    }
}

#[tokio::test]
async fn pumps_chain_through_in_application_streams() {
    let code = r#"
CREATE OR REPLACE STREAM "EXPENSIVE" (sym VARCHAR(4), price DOUBLE);
CREATE OR REPLACE STREAM "COUNTS" (sym VARCHAR(4), n BIGINT);
CREATE OR REPLACE PUMP "P1" AS INSERT INTO "EXPENSIVE" SELECT STREAM ticker_symbol, price FROM "SOURCE_SQL_STREAM_001" WHERE price >= 10;
CREATE OR REPLACE PUMP "P2" AS INSERT INTO "COUNTS" SELECT STREAM sym, COUNT(*) FROM "EXPENSIVE" GROUP BY sym, FLOOR("EXPENSIVE".ROWTIME TO MINUTE);
"#;
    let mut app = app(code).await;
    app.push(SOURCE, rows(&[(1_000, "A", 10.0), (2_000, "A", 1.0), (3_000, "A", 20.0)]), false)
        .await
        .expect("as the test set it up");
    let step = app.advance(60_000).await.expect("as the test set it up");
    let counts: Vec<&Emitted> = step.emitted.iter().filter(|e| e.stream == "COUNTS").collect();
    let n = counts[0].rows.column(2).as_any().downcast_ref::<Int64Array>().expect("as the test set it up");
    assert_eq!(n.value(0), 2);
}

async fn compile_error(code: &str) -> (u64, u64, String) {
    let input = InputDef { name: SOURCE.into(), columns: ticker_input().stream_columns() };
    match Application::compile(code, &[input], Vec::new()).await {
        Err(AnalyticsError::Code { line, column, message }) => (line, column, message),
        other => panic!("expected a code error, got {other:?}"),
    }
}

#[tokio::test]
async fn unknown_columns_and_bad_syntax_are_placed_in_the_code() {
    let unknown = "CREATE OR REPLACE STREAM \"D\" (p DOUBLE);\nCREATE OR REPLACE PUMP \"P\" AS INSERT INTO \"D\"\n  SELECT STREAM pricex FROM \"SOURCE_SQL_STREAM_001\";";
    let (line, column, message) = compile_error(unknown).await;
    assert_eq!((line, column), (3, 17), "{message}");
    assert!(message.contains("PRICEX"), "{message}");
    let syntax = "CREATE OR REPLACE STREAM \"D\" (p DOUBLE);\nCREATE OR REPLACE PUMP \"P\" AS INSERT INTO \"D\"\n  SELECT STREAM price FROM \"SOURCE_SQL_STREAM_001\" WHERE price > > 1;";
    let (line, _, message) = compile_error(syntax).await;
    assert_eq!(line, 3, "{message}");
    let ungrouped = "CREATE OR REPLACE STREAM \"D\" (n BIGINT);\nCREATE OR REPLACE PUMP \"P\" AS INSERT INTO \"D\" SELECT STREAM COUNT(*) FROM \"SOURCE_SQL_STREAM_001\" GROUP BY ticker_symbol;";
    let (line, _, message) = compile_error(ungrouped).await;
    assert_eq!(line, 2);
    assert!(message.contains("ROWTIME"), "{message}");
    let arity = "CREATE OR REPLACE STREAM \"D\" (a DOUBLE, b DOUBLE);\nCREATE OR REPLACE PUMP \"P\" AS INSERT INTO \"D\" SELECT STREAM price FROM \"SOURCE_SQL_STREAM_001\";";
    let (_, _, message) = compile_error(arity).await;
    assert!(
        message.contains("Number of INSERT target columns (2) does not equal number of source items (1)"),
        "{message}"
    );
}

/// The anomaly-detection example of the Kinesis Data Analytics developer guide, unchanged.
const ANOMALIES: &str = r#"
CREATE OR REPLACE STREAM "TEMP_STREAM" (
   "TICKER_SYMBOL" VARCHAR(4),
   "PRICE"         DOUBLE,
   "ANOMALY_SCORE" DOUBLE);
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (
   "TICKER_SYMBOL" VARCHAR(4),
   "PRICE"         DOUBLE,
   "ANOMALY_SCORE" DOUBLE);
CREATE OR REPLACE PUMP "STREAM_PUMP" AS INSERT INTO "TEMP_STREAM"
SELECT STREAM "TICKER_SYMBOL", "PRICE", ANOMALY_SCORE FROM
  TABLE(RANDOM_CUT_FOREST(
    CURSOR(SELECT STREAM * FROM "SOURCE_SQL_STREAM_001")
  )
);
CREATE OR REPLACE PUMP "OUTPUT_PUMP" AS INSERT INTO "DESTINATION_SQL_STREAM"
SELECT STREAM * FROM "TEMP_STREAM"
ORDER BY FLOOR("TEMP_STREAM".ROWTIME TO SECOND), ANOMALY_SCORE DESC;
"#;

#[tokio::test]
async fn the_guides_anomaly_example_scores_an_outlier_highest() {
    let mut app = app(ANOMALIES).await;
    let mut ordinary: Vec<(i64, &str, f64)> = (0..1_000).map(|i| (i, "A", 50.0 + (i % 7) as f64)).collect();
    ordinary.push((1_000, "A", 5_000.0));
    let mut written = Vec::new();
    for chunk in ordinary.chunks(100) {
        let step = app.push(SOURCE, rows(chunk), false).await.expect("pushed");
        assert!(step.errors.is_empty(), "{:?}", step.errors);
        written.extend(step.emitted.into_iter().filter(|e| e.stream == "DESTINATION_SQL_STREAM"));
    }
    let batches: Vec<RecordBatch> = written.iter().map(|e| e.rows.clone()).collect();
    let all = datafusion::arrow::compute::concat_batches(&batches[0].schema(), &batches).expect("one schema");
    assert_eq!(all.num_rows(), 1_001, "every row is scored and written");
    let prices = all.column(2).as_any().downcast_ref::<Float64Array>().expect("PRICE");
    let scores = all.column(3).as_any().downcast_ref::<Float64Array>().expect("ANOMALY_SCORE");
    let outlier = (0..all.num_rows()).find(|&i| prices.value(i) == 5_000.0).expect("the outlier is written");
    let highest_other = (500..all.num_rows()).filter(|&i| i != outlier).map(|i| scores.value(i)).fold(0.0, f64::max);
    assert!(scores.value(outlier) > 2.0 * highest_other, "{} vs {highest_other}", scores.value(outlier));
}

#[tokio::test]
async fn a_forest_over_text_only_or_misplaced_is_refused_with_its_place() {
    let input = InputDef { name: SOURCE.into(), columns: ticker_input().stream_columns() };
    let text_only = r#"CREATE OR REPLACE STREAM "D" ("S" VARCHAR(4), "ANOMALY_SCORE" DOUBLE);
CREATE OR REPLACE PUMP "P" AS INSERT INTO "D"
SELECT STREAM * FROM TABLE(RANDOM_CUT_FOREST(CURSOR(SELECT STREAM "TICKER_SYMBOL" FROM "SOURCE_SQL_STREAM_001")));"#;
    let error = Application::compile(text_only, std::slice::from_ref(&input), Vec::new()).await.expect_err("refused");
    assert!(matches!(error, AnalyticsError::Code { line: 2, .. }), "{error}");
    assert!(error.to_string().contains("numeric column"), "{error}");
    let grouped = r#"CREATE OR REPLACE STREAM "D" ("N" BIGINT, "ANOMALY_SCORE" DOUBLE);
CREATE OR REPLACE PUMP "P" AS INSERT INTO "D"
SELECT STREAM * FROM TABLE(RANDOM_CUT_FOREST(CURSOR(SELECT STREAM COUNT(*) FROM "SOURCE_SQL_STREAM_001" GROUP BY STEP(ROWTIME BY INTERVAL '1' SECOND))));"#;
    let error = Application::compile(grouped, &[input], Vec::new()).await.expect_err("refused");
    assert!(error.to_string().contains("no GROUP BY or OVER"), "{error}");
}

const HOTSPOTS: &str = r#"
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (
    TICKER_SYMBOL VARCHAR(4),
    PRICE DOUBLE,
    HOTSPOTS_RESULT VARCHAR(10000));
CREATE OR REPLACE PUMP "STREAM_PUMP" AS INSERT INTO "DESTINATION_SQL_STREAM"
    SELECT "TICKER_SYMBOL", "PRICE", "HOTSPOTS_RESULT"
    FROM TABLE (HOTSPOTS(CURSOR(SELECT STREAM "TICKER_SYMBOL", "PRICE" FROM "SOURCE_SQL_STREAM_001"), 100, 0.5, 10));
"#;

/// Each written row's HOTSPOTS_RESULT, parsed.
fn hotspot_results(step: &Step) -> Vec<serde_json::Value> {
    let written = step.emitted.iter().filter(|e| e.stream == "DESTINATION_SQL_STREAM");
    written.flat_map(|e| strings(&e.rows, 3)).map(|r| serde_json::from_str(&r).expect("JSON")).collect()
}

#[tokio::test]
async fn hotspots_describe_the_dense_prices_of_the_last_rows() {
    let mut app = app(HOTSPOTS).await;
    // Prices 10 apart, then twelve within 0.3 of 200: a hotspot from the tenth on.
    let spread: Vec<(i64, &str, f64)> = (0..50).map(|i| (i, "A", 5.0 + i as f64 * 10.0)).collect();
    let step = app.push(SOURCE, rows(&spread), false).await.expect("pushed");
    assert!(step.errors.is_empty(), "{:?}", step.errors);
    assert!(hotspot_results(&step).iter().all(|r| r["hotspots"] == serde_json::json!([])));
    let dense: Vec<(i64, &str, f64)> = (0..12).map(|i| (100 + i, "B", 200.0 + (i % 4) as f64 * 0.1)).collect();
    let results = hotspot_results(&app.push(SOURCE, rows(&dense), false).await.expect("pushed"));
    assert_eq!(results.len(), 12, "each row is written with its result");
    assert_eq!(results[8]["hotspots"], serde_json::json!([]), "nine rows are not ten");
    let spot = &results[11]["hotspots"][0];
    assert_eq!(spot["minValues"], serde_json::json!([200.0]), "{spot}");
    assert!((spot["maxValues"][0].as_f64().expect("a number") - 200.3).abs() < 1e-9, "{spot}");
    // A restarted application with the model put back describes the next row the same way.
    let stream = app.models().into_iter().map(|(stream, _)| stream).next().expect("a scoring stage");
    let snapshot = app.snapshot_model(&stream).expect("a snapshot");
    let mut restarted = self::app(HOTSPOTS).await;
    restarted.restore_model(&stream, &snapshot).expect("restored");
    assert!(hotspot_results(&restarted.push(SOURCE, rows(&dense), true).await.expect("replayed")).is_empty());
    let next = rows(&[(200, "B", 200.05)]);
    let again = hotspot_results(&restarted.push(SOURCE, next.clone(), false).await.expect("pushed"));
    assert_eq!(again, hotspot_results(&app.push(SOURCE, next, false).await.expect("pushed")));
    assert_eq!(again[0]["hotspots"][0]["minValues"], serde_json::json!([200.0]));
}

const STAGGER: &str = r#"
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (ticker_symbol VARCHAR(4), ticker_count INTEGER);
CREATE OR REPLACE PUMP "STREAM_PUMP" AS INSERT INTO "DESTINATION_SQL_STREAM"
    SELECT STREAM ticker_symbol, COUNT(*) AS ticker_count
    FROM "SOURCE_SQL_STREAM_001"
    WHERE price > 0
    WINDOWED BY STAGGER (PARTITION BY ticker_symbol RANGE INTERVAL '10' SECOND);
"#;

/// (ROWTIME, symbol, count) of what a step wrote.
pub(super) fn counts(step: &Step) -> Vec<(i64, String, i64)> {
    let mut found = Vec::new();
    for emitted in &step.emitted {
        let times = emitted.rows.column(0).as_any().downcast_ref::<TimestampMillisecondArray>().expect("ROWTIME");
        let symbols = strings(&emitted.rows, 1);
        let counts =
            emitted.rows.column(2).as_any().downcast_ref::<datafusion::arrow::array::Int32Array>().expect("count");
        for (row, symbol) in symbols.into_iter().enumerate() {
            found.push((times.value(row), symbol, counts.value(row) as i64));
        }
    }
    found.sort();
    found
}

#[tokio::test]
async fn a_stagger_window_opens_with_its_partitions_first_row() {
    let mut app = app(STAGGER).await;
    let first =
        rows(&[(1_000, "A", 1.0), (3_000, "B", 1.0), (4_000, "C", -1.0), (5_000, "A", 1.0), (11_000, "A", 1.0)]);
    let step = app.push(SOURCE, first, false).await.expect("pushed");
    assert!(step.errors.is_empty() && step.emitted.is_empty(), "{:?}", step.errors);
    assert_eq!(app.held_from_ms(), Some(1_000), "A's first window is not written yet");
    assert_eq!(counts(&app.advance(10_999).await.expect("advanced")), []);
    assert_eq!(counts(&app.advance(11_000).await.expect("advanced")), [(11_000, "A".into(), 2)]);
    app.push(SOURCE, rows(&[(12_000, "B", 1.0)]), false).await.expect("pushed");
    assert_eq!(counts(&app.advance(13_000).await.expect("advanced")), [(13_000, "B".into(), 2)]);
    assert_eq!(
        counts(&app.advance(30_000).await.expect("advanced")),
        [(21_000, "A".into(), 1)],
        "C's row failed the WHERE and opened nothing"
    );
}

#[tokio::test]
async fn after_a_restart_replayed_rows_refill_only_the_windows_open_at_the_checkpoint() {
    let mut before = app(STAGGER).await;
    let replayed =
        rows(&[(1_000, "A", 1.0), (2_000, "B", 1.0), (9_000, "A", 1.0), (12_000, "A", 1.0), (13_000, "B", 1.0)]);
    before.push(SOURCE, replayed.clone(), false).await.expect("pushed");
    let written = counts(&before.advance(12_500).await.expect("advanced"));
    assert_eq!(written, [(11_000, "A".into(), 2), (12_000, "B".into(), 1)]);
    let checkpoint = before.partition_windows();
    assert_eq!(checkpoint["STREAM_PUMP"].len(), 2, "A's second window and B's second are open");
    let mut after = app(STAGGER).await;
    after.restore_partition_windows(&checkpoint);
    let step = after.push(SOURCE, replayed, true).await.expect("replayed");
    assert!(step.emitted.is_empty());
    after.push(SOURCE, rows(&[(14_000, "A", 1.0), (15_000, "C", 1.0)]), false).await.expect("pushed");
    assert_eq!(
        counts(&after.advance(40_000).await.expect("advanced")),
        [(22_000, "A".into(), 2), (23_000, "B".into(), 1), (25_000, "C".into(), 1)],
        "the written windows are not written again; the open ones are whole"
    );
}

/// xorshift64: a fixed sequence, so a failure names the mutation that caused it.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// The examples with words and symbols dropped, doubled or swapped: the code an editor leaves
/// half-typed. Compiling it answers an error or an application, never a panic, and it still runs.
#[tokio::test]
async fn mangled_examples_compile_or_are_refused_without_panicking() {
    let examples = [
        FILTER,
        TUMBLING,
        SLIDING,
        ANOMALIES,
        HOTSPOTS,
        STAGGER,
        item_tests::TOP_K,
        item_tests::DISTINCT,
        super::session_tests::SESSIONS,
    ];
    let input = InputDef { name: SOURCE.into(), columns: ticker_input().stream_columns() };
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let (mut compiled, mut refused) = (0, 0);
    for round in 0..3_000 {
        let example = examples[round % examples.len()];
        let mut pieces: Vec<&str> = example.split_inclusive([' ', '(', ')', ',', ';', '\n', '\'']).collect();
        for _ in 0..=next(&mut state) % 3 {
            let at = (next(&mut state) % pieces.len() as u64) as usize;
            match next(&mut state) % 3 {
                0 => {
                    pieces.remove(at);
                }
                1 => pieces.insert(at, pieces[at]),
                _ => {
                    let other = (next(&mut state) % pieces.len() as u64) as usize;
                    pieces.swap(at, other);
                }
            }
        }
        let code: String = pieces.concat();
        match Application::compile(&code, std::slice::from_ref(&input), Vec::new()).await {
            Ok(mut app) => {
                compiled += 1;
                app.push(SOURCE, rows(&[(1_000, "A", 5.0), (2_000, "B", 50.0)]), false).await.expect("pushed");
                app.advance(100_000).await.expect("advanced");
            }
            Err(_) => refused += 1,
        }
    }
    assert!(compiled > 0 && refused > 0, "both outcomes are reached: {compiled} compiled, {refused} refused");
}

#[path = "item_tests.rs"]
mod item_tests;

#[path = "join_tests.rs"]
mod join_tests;
