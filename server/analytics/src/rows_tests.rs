use datafusion::arrow::array::{
    Array, Decimal128Array, Float64Array, Int32Array, StringArray, TimestampMillisecondArray,
};

use super::*;

fn ticker_schema() -> InputSchema {
    let columns = [
        ("TICKER_SYMBOL".to_string(), Some("$.TICKER_SYMBOL".to_string()), "VARCHAR(4)".to_string()),
        ("PRICE".to_string(), Some("$.PRICE".to_string()), "DOUBLE".to_string()),
        ("QTY".to_string(), Some("$.order.qty".to_string()), "INTEGER".to_string()),
        ("AMOUNT".to_string(), Some("$.order.amount".to_string()), "DECIMAL(8,2)".to_string()),
        ("AT".to_string(), Some("$.at".to_string()), "TIMESTAMP".to_string()),
    ];
    InputSchema::new(RecordFormat::Json { row_path: "$".into() }, &columns).expect("as the test set it up")
}

#[test]
fn json_records_become_typed_rows_and_misfits_are_rejected() {
    let good =
        br#"{"TICKER_SYMBOL":"AMZN","PRICE":12.5,"order":{"qty":3,"amount":"10.25"},"at":"2024-05-01 12:00:00.250"}"#;
    let missing = br#"{"TICKER_SYMBOL":"MSFT","PRICE":1}"#;
    let bad = br#"{"TICKER_SYMBOL":"X","PRICE":"cheap"}"#;
    let (batch, rejected) =
        read_records(&ticker_schema(), &[(1000, good), (1001, missing), (1002, bad), (1003, b"not json")]);
    assert_eq!(batch.num_rows(), 2);
    assert_eq!(rejected.iter().map(|r| r.index).collect::<Vec<_>>(), [2, 3]);
    assert!(rejected[0].message.contains("PRICE"), "{}", rejected[0].message);
    let rowtime = batch.column(0).as_any().downcast_ref::<TimestampMillisecondArray>().expect("as the test set it up");
    assert_eq!(rowtime.values().to_vec(), [1000, 1001]);
    let symbols = batch.column(1).as_any().downcast_ref::<StringArray>().expect("as the test set it up");
    assert_eq!(symbols.value(1), "MSFT");
    let prices = batch.column(2).as_any().downcast_ref::<Float64Array>().expect("as the test set it up");
    assert_eq!(prices.value(0), 12.5);
    let qty = batch.column(3).as_any().downcast_ref::<Int32Array>().expect("as the test set it up");
    assert_eq!((qty.value(0), qty.is_null(1)), (3, true));
    let amount = batch.column(4).as_any().downcast_ref::<Decimal128Array>().expect("as the test set it up");
    assert_eq!(amount.value(0), 1025);
    let at = batch.column(5).as_any().downcast_ref::<TimestampMillisecondArray>().expect("as the test set it up");
    assert_eq!(at.value(0), 1_714_564_800_250);
}

#[test]
fn csv_records_fill_columns_by_position() {
    let columns = [("A".to_string(), None, "VARCHAR(8)".to_string()), ("B".to_string(), None, "BIGINT".to_string())];
    let format = RecordFormat::Csv { row_delimiter: "\n".into(), column_delimiter: ",".into() };
    let schema = InputSchema::new(format, &columns).expect("as the test set it up");
    let (batch, rejected) = read_records(&schema, &[(5, b"x,1\ny,2\n"), (6, b"z,nope")]);
    assert_eq!(batch.num_rows(), 2);
    assert_eq!(rejected.len(), 1);
}

#[test]
fn a_row_path_reads_each_element_of_an_array() {
    let columns = [("V".to_string(), Some("$.v".to_string()), "INTEGER".to_string())];
    let schema = InputSchema::new(RecordFormat::Json { row_path: "$.items[0:]".into() }, &columns)
        .expect("as the test set it up");
    let (batch, rejected) = read_records(&schema, &[(1, br#"{"items":[{"v":1},{"v":2},{"v":3}]}"#)]);
    assert_eq!((batch.num_rows(), rejected.len()), (3, 0));
}

#[test]
fn bad_paths_and_types_are_schema_errors() {
    let format = RecordFormat::Json { row_path: "$".into() };
    let bad_path = [("V".to_string(), Some("v.x".to_string()), "INTEGER".to_string())];
    assert!(matches!(InputSchema::new(format.clone(), &bad_path), Err(AnalyticsError::Schema(_))));
    let bad_type = [("V".to_string(), Some("$.v".to_string()), "BLOB".to_string())];
    assert!(matches!(InputSchema::new(format, &bad_type), Err(AnalyticsError::Schema(_))));
}

#[test]
fn a_double_holds_the_number_written_to_its_last_digit() {
    // Adjacent doubles: a parser a unit off in the last place reads one as the other.
    let written = [0.011346109667493831_f64, 0.011346109667493833, 3.3794801657748073, 1e-300, 123_456_789.123_456_79];
    let records: Vec<Vec<u8>> = written.iter().map(|v| format!(r#"{{"PRICE":{v:?}}}"#).into_bytes()).collect();
    let borrowed: Vec<(i64, &[u8])> = records.iter().map(|r| (0, r.as_slice())).collect();
    let (batch, rejected) = read_records(&ticker_schema(), &borrowed);
    assert!(rejected.is_empty());
    let prices = batch.column(2).as_any().downcast_ref::<Float64Array>().expect("PRICE");
    assert_eq!(prices.values().to_vec(), written);
}
