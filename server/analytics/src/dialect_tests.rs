use super::*;

fn columns(name: &str) -> Option<Vec<String>> {
    (name == "SOURCE_SQL_STREAM_001").then(|| vec!["TICKER_SYMBOL".into(), "PRICE".into()])
}

fn query(sql: &str) -> Translation {
    let mut t = translate(&tokenize(sql).expect("as the test set it up"), &columns).expect("as the test set it up");
    t.sql = squash(&t.sql);
    t
}

/// The SQL with runs of spaces as one, and none inside parentheses or before commas: the
/// rewrite keeps the code's whitespace around what it changes.
fn squash(sql: &str) -> String {
    let single = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    single.replace("( ", "(").replace(" )", ")").replace(" ,", ",")
}

#[test]
fn keywords_stay_and_identifiers_are_folded_to_upper_case() {
    let t = query("SELECT STREAM ticker_symbol, \"Mixed\" AS x FROM \"SOURCE_SQL_STREAM_001\" WHERE price > 10");
    assert_eq!(
        t.sql,
        "SELECT \"TICKER_SYMBOL\", \"Mixed\" AS \"X\", \"SOURCE_SQL_STREAM_001\".\"ROWTIME\" AS \"__FRAMELOG_ROWTIME\" FROM \"SOURCE_SQL_STREAM_001\" WHERE \"PRICE\" > 10"
    );
    assert_eq!((t.tumbling_ms, t.sliding, t.grouped), (None, None, false));
    assert_eq!(t.sources, ["SOURCE_SQL_STREAM_001"]);
}

#[test]
fn step_over_rowtime_in_the_group_by_is_a_tumbling_window() {
    let t = query(
        "SELECT STREAM ticker_symbol, COUNT(*) AS c FROM \"SOURCE_SQL_STREAM_001\" s \
         GROUP BY ticker_symbol, STEP(s.ROWTIME BY INTERVAL '10' SECOND)",
    );
    assert_eq!(t.tumbling_ms, Some(10_000));
    assert!(t.grouped);
    assert!(
        t.sql.contains("date_bin(INTERVAL '10' SECOND, \"S\".\"ROWTIME\", TIMESTAMP '1970-01-01 00:00:00')"),
        "{}",
        t.sql
    );
    assert!(!t.sql.contains("__FRAMELOG_ROWTIME"), "an aggregate carries no row's ROWTIME");
}

#[test]
fn floor_to_a_unit_is_date_trunc_and_floor_of_a_number_stays() {
    let t = query(
        "SELECT STREAM FLOOR(price), COUNT(*) FROM \"SOURCE_SQL_STREAM_001\" GROUP BY FLOOR(price), FLOOR(ROWTIME TO MINUTE)",
    );
    assert_eq!(t.tumbling_ms, Some(60_000));
    assert!(t.sql.contains("date_trunc('minute', \"ROWTIME\")"), "{}", t.sql);
    assert!(t.sql.contains("FLOOR(\"PRICE\")"), "{}", t.sql);
}

#[test]
fn a_sliding_window_is_ordered_by_rowtime_and_keeps_its_range() {
    let t = query(
        "SELECT STREAM ticker_symbol, AVG(price) OVER w FROM \"SOURCE_SQL_STREAM_001\" \
         WINDOW w AS (PARTITION BY ticker_symbol RANGE INTERVAL '1' MINUTE PRECEDING)",
    );
    assert_eq!(t.sliding, Some(History { range_ms: 60_000, rows: 0 }));
    assert!(
        t.sql.contains("PARTITION BY \"TICKER_SYMBOL\" ORDER BY \"ROWTIME\" RANGE INTERVAL '1' MINUTE PRECEDING"),
        "{}",
        t.sql
    );
    assert!(t.sql.contains("\"__FRAMELOG_NEW\" AS \"__FRAMELOG_NEW\""), "{}", t.sql);
}

#[test]
fn star_lists_the_visible_columns() {
    let t = query("SELECT STREAM * FROM \"SOURCE_SQL_STREAM_001\"");
    assert!(t.sql.starts_with("SELECT \"TICKER_SYMBOL\", \"PRICE\", "), "{}", t.sql);
}

#[test]
fn positions_map_back_to_the_code() {
    let code = "SELECT STREAM a,\n   b FROM s";
    let t = translate(&tokenize(code).expect("as the test set it up"), &columns).expect("as the test set it up");
    // `"B"` sits on line 2 of the rewritten SQL too, one column later than `b` after the quote.
    let line_two_start = t.sql.split('\n').nth(1).expect("as the test set it up");
    let column = line_two_start.find("\"B\"").expect("as the test set it up") as u64 + 1;
    let at = t.original(2, column);
    assert_eq!((at.line, at.column), (2, 4));
}

#[test]
fn a_step_without_an_interval_is_refused_where_it_is() {
    let tokens = tokenize("SELECT STREAM COUNT(*) FROM s GROUP BY STEP(ROWTIME)").expect("as the test set it up");
    match translate(&tokens, &columns) {
        Err(AnalyticsError::Code { line: 1, column, .. }) => assert_eq!(column, 44),
        other => panic!("expected a code error, got {other:?}"),
    }
}

#[test]
fn the_keyword_list_is_sorted_for_its_search() {
    assert!(KEYWORDS.windows(2).all(|pair| pair[0] < pair[1]));
}

#[test]
fn rows_windows_note_the_columns_they_partition_by() {
    let t = query(
        "SELECT STREAM AVG(price) OVER (PARTITION BY s.ticker_symbol ROWS 2 PRECEDING), \
         COUNT(*) OVER (PARTITION BY \"Mixed\", price ORDER BY ROWTIME ROWS 5 PRECEDING), \
         SUM(price) OVER (PARTITION BY ticker_symbol RANGE INTERVAL '1' MINUTE PRECEDING) \
         FROM \"SOURCE_SQL_STREAM_001\" s",
    );
    assert_eq!(t.sliding.map(|h| h.rows), Some(5));
    assert_eq!(t.rows_partition, Some(vec!["Mixed".into(), "PRICE".into(), "TICKER_SYMBOL".into()]));
    let t = query(
        "SELECT STREAM AVG(price) OVER (PARTITION BY UPPER(ticker_symbol) ROWS 2 PRECEDING) \
         FROM \"SOURCE_SQL_STREAM_001\"",
    );
    assert_eq!(t.rows_partition, None, "an expression is no column");
    let t = query("SELECT STREAM AVG(price) OVER (ROWS 2 PRECEDING) FROM \"SOURCE_SQL_STREAM_001\"");
    assert_eq!(t.rows_partition, Some(Vec::new()));
}
