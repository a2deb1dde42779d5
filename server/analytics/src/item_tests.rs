//! TOP_K_ITEMS_TUMBLING and COUNT_DISTINCT_ITEMS_TUMBLING run in process: each window's counts
//! against counts made here, through a restart's replay too.

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, Int64Array};

use super::*;

pub(super) const TOP_K: &str = r#"
CREATE OR REPLACE STREAM DESTINATION_SQL_STREAM ("TICKER_SYMBOL" VARCHAR(4), "MOST_FREQUENT_VALUES" BIGINT);
CREATE OR REPLACE PUMP "STREAM_PUMP" AS
    INSERT INTO "DESTINATION_SQL_STREAM"
    SELECT STREAM *
        FROM TABLE (TOP_K_ITEMS_TUMBLING(
            CURSOR(SELECT STREAM * FROM "SOURCE_SQL_STREAM_001"),
            'TICKER_SYMBOL',
            2,
            10
            )
        );
"#;

pub(super) const DISTINCT: &str = r#"
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (NUMBER_OF_DISTINCT_ITEMS BIGINT);
CREATE OR REPLACE PUMP "STREAM_PUMP" AS INSERT INTO "DESTINATION_SQL_STREAM"
SELECT STREAM NUMBER_OF_DISTINCT_ITEMS FROM TABLE(COUNT_DISTINCT_ITEMS_TUMBLING(
  CURSOR(SELECT STREAM * FROM "SOURCE_SQL_STREAM_001" WHERE price > 2),
  'ticker_symbol',
  10
  )
);
"#;

fn longs(batch: &RecordBatch, column: usize) -> Vec<i64> {
    let array = batch.column(column).as_any().downcast_ref::<Int64Array>().expect("BIGINT");
    (0..array.len()).map(|i| array.value(i)).collect()
}

/// Per window start: the two most frequent symbols with their counts, ties by symbol.
fn top_two(events: &[(i64, &str, f64)]) -> BTreeMap<i64, Vec<(String, i64)>> {
    let mut tallies: BTreeMap<i64, BTreeMap<String, i64>> = BTreeMap::new();
    for (ms, symbol, _) in events {
        *tallies.entry(ms - ms % 10_000).or_default().entry(symbol.to_string()).or_default() += 1;
    }
    tallies
        .into_iter()
        .map(|(start, counts)| {
            let mut ranked: Vec<(String, i64)> = counts.into_iter().collect();
            ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            ranked.truncate(2);
            (start, ranked)
        })
        .collect()
}

fn written_top(step: &Step) -> BTreeMap<i64, Vec<(String, i64)>> {
    let mut found: BTreeMap<i64, Vec<(String, i64)>> = BTreeMap::new();
    for emitted in &step.emitted {
        let window = emitted.window.clone().expect("a window's rows");
        let rows: Vec<(String, i64)> = strings(&emitted.rows, 1).into_iter().zip(longs(&emitted.rows, 2)).collect();
        found.entry(window.start_ms).or_default().extend(rows);
    }
    for rows in found.values_mut() {
        rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    }
    found
}

fn events() -> Vec<(i64, &'static str, f64)> {
    let symbols = ["AMZN", "MSFT", "GOOG", "NFLX"];
    // Skewed: lower indexes come more often, differently in each window.
    (0..400i64).map(|i| (i * 71, symbols[((i * i + i / 37) % 7 % 4) as usize], (i % 5) as f64)).collect()
}

#[tokio::test]
async fn top_k_writes_each_windows_most_frequent_values() {
    let events = events();
    let mut app = app(TOP_K).await;
    for chunk in events.chunks(53) {
        let step = app.push(SOURCE, rows(chunk), false).await.expect("push");
        assert!(step.errors.is_empty(), "{:?}", step.errors);
    }
    let step = app.advance(30_000).await.expect("advance");
    let expected: BTreeMap<_, _> = top_two(&events).into_iter().filter(|(start, _)| *start < 30_000).collect();
    assert_eq!(written_top(&step), expected);
    assert!(step.emitted.iter().all(|e| e.stream == "DESTINATION_SQL_STREAM"), "the count writes the target itself");
}

#[tokio::test]
async fn top_k_after_a_restart_counts_the_replayed_rows_of_an_open_window() {
    let events = events();
    let (before, after): (Vec<_>, Vec<_>) = events.iter().partition(|e| e.0 < 15_000);
    let mut first = app(TOP_K).await;
    first.push(SOURCE, rows(&before), false).await.expect("push");
    first.advance(10_000).await.expect("advance");
    let marks = first.marks();
    let mut second = app(TOP_K).await;
    second.restore(&marks);
    // The replay is read from the open window's start, as the runner does.
    let replayed: Vec<_> = before.iter().copied().filter(|e| e.0 >= 10_000).collect();
    second.push(SOURCE, rows(&replayed), true).await.expect("replay");
    second.push(SOURCE, rows(&after), false).await.expect("push");
    let step = second.advance(20_000).await.expect("advance");
    let expected: BTreeMap<_, _> = top_two(&events).into_iter().filter(|(start, _)| *start == 10_000).collect();
    assert_eq!(written_top(&step), expected, "the window open at the crash counts its replayed rows");
}

#[tokio::test]
async fn count_distinct_counts_each_windows_distinct_values_through_a_query_of_its_own() {
    let events = events();
    let mut app = app(DISTINCT).await;
    app.push(SOURCE, rows(&events), false).await.expect("push");
    let step = app.advance(30_000).await.expect("advance");
    let mut expected: BTreeMap<i64, std::collections::BTreeSet<&str>> = BTreeMap::new();
    for (ms, symbol, price) in &events {
        if *price > 2.0 && *ms < 30_000 {
            expected.entry(ms - ms % 10_000).or_default().insert(symbol);
        }
    }
    let written: Vec<i64> =
        step.emitted.iter().filter(|e| e.stream == "DESTINATION_SQL_STREAM").flat_map(|e| longs(&e.rows, 1)).collect();
    assert_eq!(written, expected.values().map(|s| s.len() as i64).collect::<Vec<_>>());
}
