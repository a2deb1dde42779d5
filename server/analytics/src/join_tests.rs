//! Stream-to-stream joins in process: each trade joins the orders of the minute before it, as
//! the SQL reference's example has it, against pairs found here.

use datafusion::arrow::array::Int64Array;

use super::*;

const ORDERS_AND_TRADES: &str = r#"
CREATE OR REPLACE STREAM "TRADES" (order_id INTEGER, amount DOUBLE);
CREATE OR REPLACE STREAM "ORDERS" (order_id INTEGER, ticker VARCHAR(4), amount DOUBLE);
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (order_id INTEGER, ticker VARCHAR(4), order_amount DOUBLE, trade_amount DOUBLE);
CREATE OR REPLACE PUMP "TRADE_PUMP" AS INSERT INTO "TRADES"
    SELECT STREAM order_id, amount FROM "SOURCE_SQL_STREAM_001" WHERE kind = 'T';
CREATE OR REPLACE PUMP "ORDER_PUMP" AS INSERT INTO "ORDERS"
    SELECT STREAM order_id, ticker, amount FROM "SOURCE_SQL_STREAM_001" WHERE kind = 'O';
CREATE OR REPLACE PUMP "JOIN_PUMP" AS INSERT INTO "DESTINATION_SQL_STREAM"
    SELECT STREAM o.order_id, o.ticker, o.amount, t.amount
    FROM "ORDERS" OVER (RANGE INTERVAL '1' MINUTE PRECEDING) AS o
    JOIN "TRADES" AS t
    ON o.order_id = t.order_id;
"#;

fn input() -> InputSchema {
    let columns: Vec<(String, Option<String>, String)> =
        [("KIND", "VARCHAR(1)"), ("ORDER_ID", "INTEGER"), ("TICKER", "VARCHAR(4)"), ("AMOUNT", "DOUBLE")]
            .iter()
            .map(|(name, sql)| (name.to_string(), Some(format!("$.{name}")), sql.to_string()))
            .collect();
    InputSchema::new(RecordFormat::Json { row_path: "$".into() }, &columns).expect("schema")
}

/// (ROWTIME ms, kind, order id, amount)
type Event = (i64, &'static str, i64, f64);

fn events_rows(events: &[Event]) -> RecordBatch {
    let records: Vec<(i64, Vec<u8>)> = events
        .iter()
        .map(|(ms, kind, id, amount)| {
            (*ms, format!(r#"{{"KIND":"{kind}","ORDER_ID":{id},"TICKER":"T{id}","AMOUNT":{amount}}}"#).into_bytes())
        })
        .collect();
    let borrowed: Vec<(i64, &[u8])> = records.iter().map(|(ms, b)| (*ms, b.as_slice())).collect();
    read_records(&input(), &borrowed).0
}

async fn join_app() -> Application {
    let input = InputDef { name: SOURCE.into(), columns: input().stream_columns() };
    Application::compile(ORDERS_AND_TRADES, &[input], Vec::new()).await.expect("compiles")
}

/// (order id, trade ROWTIME) of each pair the step wrote.
fn pairs(step: &Step) -> Vec<(i64, i64)> {
    let mut found = Vec::new();
    for emitted in step.emitted.iter().filter(|e| e.stream == "DESTINATION_SQL_STREAM") {
        let times = emitted.rows.column(0).as_any().downcast_ref::<TimestampMillisecondArray>().expect("ROWTIME");
        let ids =
            datafusion::arrow::compute::cast(emitted.rows.column(1), &datafusion::arrow::datatypes::DataType::Int64)
                .expect("ids");
        let ids = ids.as_any().downcast_ref::<Int64Array>().expect("ids");
        for row in 0..emitted.rows.num_rows() {
            found.push((ids.value(row), times.value(row)));
        }
    }
    found.sort();
    found
}

/// The pairs the reference's rule gives: a trade and an order of its id from the minute up
/// to the trade's ROWTIME.
fn expected(events: &[Event]) -> Vec<(i64, i64)> {
    let mut found = Vec::new();
    for (trade_ms, kind, id, _) in events {
        if *kind != "T" {
            continue;
        }
        for (order_ms, other, order_id, _) in events {
            if *other == "O" && order_id == id && *order_ms <= *trade_ms && *order_ms >= trade_ms - 60_000 {
                found.push((*id, *trade_ms));
            }
        }
    }
    found.sort();
    found
}

#[tokio::test]
async fn each_trade_joins_the_orders_of_the_minute_before_it() {
    let events: Vec<Event> = vec![
        (1_000, "O", 1, 10.0),
        (2_000, "T", 1, 10.5), // joins order 1
        (2_500, "T", 2, 3.0),  // no order 2 yet
        (3_000, "O", 2, 3.0),  // after its trade: no pair
        (5_000, "O", 3, 7.0),
        (5_000, "T", 3, 7.1), // same ms, same batch, trade pump first in the code
        (10_000, "O", 4, 1.0),
        (71_000, "T", 4, 1.0), // 61 s after its order: too late
        (80_000, "O", 5, 2.0),
        (80_100, "O", 5, 2.5),
        (90_000, "T", 5, 2.2), // joins both orders of id 5
    ];
    let mut app = join_app().await;
    let mut written = Vec::new();
    // Batches split so some orders come in a batch before their trade's, some in the same one.
    for chunk in [&events[..2], &events[2..6], &events[6..8], &events[8..]] {
        let step = app.push(SOURCE, events_rows(chunk), false).await.expect("push");
        assert!(step.errors.is_empty() && pairs(&step).is_empty(), "a trade waits for the watermark");
        let step = app.advance(chunk.last().expect("a chunk").0).await.expect("advance");
        assert!(step.errors.is_empty(), "{:?}", step.errors);
        written.extend(pairs(&step));
    }
    written.sort();
    assert_eq!(written, expected(&events));
    assert_eq!(written, vec![(1, 2_000), (3, 5_000), (5, 90_000), (5, 90_000)]);
    assert_eq!(app.held_from_ms(), Some(80_000), "a restart must replay the kept orders");
}

#[tokio::test]
async fn a_restart_refills_the_window_from_the_replay() {
    let before: Vec<Event> = vec![(1_000, "O", 1, 10.0)];
    let after: Vec<Event> = vec![(30_000, "T", 1, 11.0)];
    let mut first = join_app().await;
    first.push(SOURCE, events_rows(&before), false).await.expect("push");
    let mut second = join_app().await;
    let replay = second.push(SOURCE, events_rows(&before), true).await.expect("replay");
    assert!(pairs(&replay).is_empty());
    second.push(SOURCE, events_rows(&after), false).await.expect("push");
    let step = second.advance(30_000).await.expect("advance");
    assert_eq!(pairs(&step), vec![(1, 30_000)], "the replayed order is joined");
}

/// Rows of two shards are read in separate rounds: an order can come a round after a trade
/// that follows it by a few ms. Until the watermark passes the trade, the trade waits.
#[tokio::test]
async fn an_order_read_a_round_after_its_trade_is_still_joined() {
    let mut app = join_app().await;
    app.push(SOURCE, events_rows(&[(1_005, "T", 1, 10.5)]), false).await.expect("push");
    app.advance(1_004).await.expect("advance");
    app.push(SOURCE, events_rows(&[(1_000, "O", 1, 10.0)]), false).await.expect("push");
    let step = app.advance(1_005).await.expect("advance");
    assert_eq!(pairs(&step), vec![(1, 1_005)]);
    assert_eq!(pairs(&app.advance(90_000).await.expect("advance")), vec![], "joined once");
}

/// A trade the watermark had passed before a crash was written: its replay joins nothing. One
/// still waiting was not: its replay joins.
#[tokio::test]
async fn after_a_restart_only_the_trades_not_yet_joined_are_joined() {
    let events: Vec<Event> = vec![(1_000, "O", 1, 10.0), (2_000, "T", 1, 10.5), (3_000, "T", 1, 10.6)];
    let mut first = join_app().await;
    first.push(SOURCE, events_rows(&events), false).await.expect("push");
    assert_eq!(pairs(&first.advance(2_500).await.expect("advance")), vec![(1, 2_000)]);
    assert_eq!(first.held_from_ms(), Some(1_000), "the order and the waiting trade are held");
    let mut second = join_app().await;
    second.restore(&first.marks());
    let replay = second.push(SOURCE, events_rows(&events), true).await.expect("replay");
    assert!(pairs(&replay).is_empty());
    assert_eq!(pairs(&second.advance(3_000).await.expect("advance")), vec![(1, 3_000)]);
}

async fn join_error(code: &str) -> String {
    let input = InputDef { name: SOURCE.into(), columns: input().stream_columns() };
    Application::compile(code, &[input], Vec::new()).await.expect_err("refused").to_string()
}

#[tokio::test]
async fn joins_the_server_does_not_run_are_refused_with_their_place() {
    let right_windowed = ORDERS_AND_TRADES.replace(
        "FROM \"ORDERS\" OVER (RANGE INTERVAL '1' MINUTE PRECEDING) AS o\n    JOIN \"TRADES\" AS t",
        "FROM \"ORDERS\" AS o\n    RIGHT JOIN \"TRADES\" OVER (RANGE INTERVAL '1' MINUTE PRECEDING) AS t",
    );
    assert!(join_error(&right_windowed).await.contains("inner join"), "a RIGHT JOIN");
    let unwindowed = ORDERS_AND_TRADES.replace(" OVER (RANGE INTERVAL '1' MINUTE PRECEDING)", "");
    let message = join_error(&unwindowed).await;
    assert!(message.contains("only with a window") && message.contains("line 9, column 1"), "{message}");
}
