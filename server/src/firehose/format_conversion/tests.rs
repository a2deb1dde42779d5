use axum::body::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::json;

use super::*;

#[test]
fn rows_are_written_as_parquet_that_reads_back_column_by_column() {
    let plan = plan_for(&[("id", "bigint"), ("name", "string"), ("score", "double")]);
    let records: Vec<&[u8]> =
        vec![br#"{"id": 1, "name": "a", "score": 0.5}{"id": 2}"#, b"broken", br#"{"ID": 3, "NAME": "c"}"#];
    let (bytes, failed) = plan.convert(&records);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0, 1);
    let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes.expect("a file")))
        .expect("parquet")
        .build()
        .expect("reader");
    let batches: Vec<RecordBatch> = reader.map(|b| b.expect("batch")).collect();
    let batch = arrow_select_all(&batches);
    assert_eq!(batch.num_rows(), 3);
    let ids = batch.column(0).as_any().downcast_ref::<arrow_array::Int64Array>().expect("bigint");
    assert_eq!(ids.iter().collect::<Vec<_>>(), [Some(1), Some(2), Some(3)]);
    let names = batch.column(1).as_any().downcast_ref::<arrow_array::StringArray>().expect("string");
    assert_eq!(names.iter().collect::<Vec<_>>(), [Some("a"), None, Some("c")]);
}

fn arrow_select_all(batches: &[RecordBatch]) -> RecordBatch {
    assert_eq!(batches.len(), 1, "one row group for a small file");
    batches[0].clone()
}

#[test]
fn a_buffer_where_nothing_fits_writes_no_file() {
    let plan = plan_for(&[("id", "int")]);
    let (bytes, failed) = plan.convert(&[br#"{"id": "nope"}"#]);
    assert!(bytes.is_none());
    assert_eq!(failed.len(), 1);
}

#[test]
fn configurations_aws_would_refuse_or_this_server_cannot_run_are_refused() {
    let tables = GlueTables::new();
    let conversion = |extra: Value| {
        let mut destination = json!({"DataFormatConversionConfiguration": {
            "SchemaConfiguration": {"DatabaseName": "db", "TableName": "t"},
            "InputFormatConfiguration": {"Deserializer": {"HiveJsonSerDe": {}}},
            "OutputFormatConfiguration": {"Serializer": {"ParquetSerDe": {}}}}});
        if let (Some(d), Some(e)) = (destination.as_object_mut(), extra.as_object()) {
            d.extend(e.clone());
        }
        ConversionPlan::from_destination(&destination, &tables)
    };
    assert!(conversion(json!({})).expect_err("no table").contains("[glue_tables.db.t]"));
    assert!(conversion(json!({"CompressionFormat": "GZIP"})).expect_err("compressed").contains("UNCOMPRESSED"));
    let off = json!({"DataFormatConversionConfiguration": {"Enabled": false}});
    assert_eq!(ConversionPlan::from_destination(&off, &tables), Ok(None));
    let orc = json!({"DataFormatConversionConfiguration": {"OutputFormatConfiguration": {"Serializer": {"OrcSerDe": {}}},
        "InputFormatConfiguration": {"Deserializer": {"HiveJsonSerDe": {}}}}});
    assert!(ConversionPlan::from_destination(&orc, &tables).expect_err("orc").contains("OrcSerDe"));
}
