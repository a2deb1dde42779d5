//! Session windows (`GROUP BY ..., SESSION(ROWTIME, INTERVAL ...)`) through a whole application.

use super::tests::{SOURCE, app, counts, rows};

pub(super) const SESSIONS: &str = r#"
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (ticker_symbol VARCHAR(4), ticks INTEGER, low DOUBLE);
CREATE OR REPLACE PUMP "STREAM_PUMP" AS INSERT INTO "DESTINATION_SQL_STREAM"
    SELECT STREAM ticker_symbol, COUNT(*) AS ticks, MIN(price) AS low
    FROM "SOURCE_SQL_STREAM_001"
    WHERE price > 0
    GROUP BY ticker_symbol, SESSION(ROWTIME, INTERVAL '5' SECOND);
"#;

#[tokio::test]
async fn a_session_lasts_while_its_rows_come_closer_than_the_gap() {
    let mut app = app(SESSIONS).await;
    let first = rows(&[(1_000, "A", 1.0), (2_000, "B", 1.0), (3_000, "A", 1.0), (4_000, "C", -1.0), (7_000, "A", 1.0)]);
    let step = app.push(SOURCE, first, false).await.expect("pushed");
    assert!(step.errors.is_empty() && step.emitted.is_empty(), "{:?}", step.errors);
    assert_eq!(counts(&app.advance(6_999).await.expect("advanced")), []);
    assert_eq!(counts(&app.advance(7_000).await.expect("advanced")), [(7_000, "B".into(), 1)]);
    // A's rows came 2 s and 4 s apart: one session, ending 5 s after its last row.
    assert_eq!(counts(&app.advance(11_999).await.expect("advanced")), []);
    app.push(SOURCE, rows(&[(12_000, "A", 1.0)]), false).await.expect("pushed");
    let step = app.advance(12_000).await.expect("advanced");
    assert_eq!(counts(&step), [(12_000, "A".into(), 3)], "a row 5 s after the last starts the next session");
    let window = step.emitted[0].window.clone().expect("a window id");
    assert_eq!((window.start_ms, window.end_ms), (1_000, 12_000));
    assert_eq!(
        counts(&app.advance(30_000).await.expect("advanced")),
        [(17_000, "A".into(), 1)],
        "C's row failed the WHERE and opened nothing"
    );
}

#[tokio::test]
async fn a_restart_refills_the_open_sessions_and_writes_no_closed_one_again() {
    let mut before = app(SESSIONS).await;
    let replayed = rows(&[(1_000, "A", 1.0), (2_000, "B", 1.0), (9_000, "A", 1.0), (10_000, "B", 1.0)]);
    before.push(SOURCE, replayed.clone(), false).await.expect("pushed");
    let written = counts(&before.advance(7_500).await.expect("advanced"));
    assert_eq!(written, [(6_000, "A".into(), 1), (7_000, "B".into(), 1)]);
    let checkpoint = before.partition_windows();
    assert_eq!(before.held_from_ms(), Some(9_000));
    let mut after = app(SESSIONS).await;
    after.restore_partition_windows(&checkpoint);
    assert!(after.push(SOURCE, replayed, true).await.expect("replayed").emitted.is_empty());
    after.push(SOURCE, rows(&[(12_000, "A", 1.0)]), false).await.expect("pushed");
    assert_eq!(
        counts(&after.advance(40_000).await.expect("advanced")),
        [(15_000, "B".into(), 1), (17_000, "A".into(), 2)],
        "the written sessions are not written again; the open ones are whole"
    );
}

#[tokio::test]
async fn a_session_without_other_keys_spans_every_row() {
    let code = r#"CREATE OR REPLACE STREAM "D" (n INTEGER);
CREATE OR REPLACE PUMP "P" AS INSERT INTO "D"
    SELECT STREAM COUNT(*) FROM "SOURCE_SQL_STREAM_001" GROUP BY SESSION(ROWTIME, INTERVAL '2' SECOND);"#;
    let mut app = app(code).await;
    app.push(SOURCE, rows(&[(0, "A", 1.0), (1_500, "B", 1.0), (5_000, "C", 1.0)]), false).await.expect("pushed");
    let step = app.advance(10_000).await.expect("advanced");
    let mut sessions: Vec<(i64, i64)> = Vec::new();
    for emitted in &step.emitted {
        let window = emitted.window.clone().expect("a window id");
        let n = emitted.rows.column(1).as_any().downcast_ref::<datafusion::arrow::array::Int32Array>().expect("n");
        sessions.push((window.end_ms, i64::from(n.value(0))));
    }
    assert_eq!(sessions, [(3_500, 2), (7_000, 1)]);
}
