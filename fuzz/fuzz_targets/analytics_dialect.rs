//! Fuzzes the analytics SQL dialect with arbitrary application code: compiling answers an
//! application or an error, never a panic, and what compiles runs a batch of rows through every
//! pump and closes its windows without panicking either. The input stream carries the columns
//! of every example in the corpus, so mutations of them reach planning and running, not only
//! the tokenizer.
#![no_main]

use std::sync::OnceLock;

use framelog_analytics::{Application, InputDef, InputSchema, RecordFormat, read_records};
use libfuzzer_sys::fuzz_target;

const SOURCE: &str = "SOURCE_SQL_STREAM_001";

const COLUMNS: [(&str, &str); 6] = [
    ("TICKER_SYMBOL", "VARCHAR(4)"),
    ("PRICE", "DOUBLE"),
    ("KIND", "VARCHAR(1)"),
    ("ORDER_ID", "INTEGER"),
    ("TICKER", "VARCHAR(4)"),
    ("AMOUNT", "DOUBLE"),
];

fn schema() -> InputSchema {
    let columns: Vec<(String, Option<String>, String)> =
        COLUMNS.iter().map(|(name, sql)| (name.to_string(), Some(format!("$.{name}")), sql.to_string())).collect();
    InputSchema::new(RecordFormat::Json { row_path: "$".into() }, &columns).expect("a fixed, valid schema")
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().expect("a runtime"))
}

async fn compile_and_run(code: &str) {
    let schema = schema();
    let input = InputDef { name: SOURCE.into(), columns: schema.stream_columns() };
    let Ok(mut app) = Application::compile(code, &[input], Vec::new()).await else { return };
    let records: Vec<(i64, &[u8])> = vec![
        (1_000, br#"{"TICKER_SYMBOL":"A","PRICE":5.0,"KIND":"O","ORDER_ID":1,"TICKER":"T1","AMOUNT":2.5}"#),
        (2_000, br#"{"TICKER_SYMBOL":"B","PRICE":-1,"KIND":"T","ORDER_ID":1,"TICKER":"T1","AMOUNT":3}"#),
        (2_500, br#"{"TICKER_SYMBOL":null,"PRICE":null,"KIND":"","ORDER_ID":null}"#),
    ];
    let rows = read_records(&schema, &records).0;
    // Runtime errors are the rows' own (they go to the error stream); only a panic is a finding.
    let _ = app.push(SOURCE, rows, false).await;
    let _ = app.advance(120_000).await;
}

fuzz_target!(|data: &[u8]| {
    let code = String::from_utf8_lossy(data);
    runtime().block_on(compile_and_run(&code));
});
