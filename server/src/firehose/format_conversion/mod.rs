//! DataFormatConversion: JSON records written as Apache Parquet (arrow-rs `parquet`), with the
//! columns of a table from the server's config (table.rs), one object per buffer (per partition).
//! Records that do not fit the table go to the error prefix as `format-conversion-failed`
//! (<https://docs.aws.amazon.com/firehose/latest/dev/record-format-conversion.html>).

mod columns;
mod encode;
mod rows;
mod table;

use arrow_array::{ArrayRef, RecordBatch};
use parquet::basic::{Compression, GzipLevel};
use parquet::file::properties::{WriterProperties, WriterVersion};
use serde_json::Value;

use columns::Column;
use rows::{Cell, rows_of};
#[cfg(test)]
use table::ColumnFile;
use table::Table;
pub use table::{GlueTableFile, GlueTables};

/// What conversion needs, read from a destination's DataFormatConversionConfiguration.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversionPlan {
    pub table: Table,
    /// SchemaConfiguration as given, for the error records' `dataCatalogTable`.
    pub database: String,
    pub table_name: String,
    compression: Compression,
    dictionary: bool,
    page_bytes: usize,
    writer_version: WriterVersion,
}

impl ConversionPlan {
    /// `None` when conversion is off; InvalidArgumentException's message when it cannot run.
    pub fn from_destination(destination: &Value, tables: &GlueTables) -> Result<Option<ConversionPlan>, String> {
        let Some(conversion) = destination.get("DataFormatConversionConfiguration") else { return Ok(None) };
        if conversion.get("Enabled").and_then(Value::as_bool) == Some(false) {
            return Ok(None);
        }
        if destination.get("CompressionFormat").and_then(Value::as_str).is_some_and(|c| c != "UNCOMPRESSED") {
            return Err("CompressionFormat must be UNCOMPRESSED when DataFormatConversion is enabled: the serializer compresses.".into());
        }
        let deserializer = conversion.pointer("/InputFormatConfiguration/Deserializer");
        if !deserializer.is_some_and(|d| d.get("OpenXJsonSerDe").is_some() || d.get("HiveJsonSerDe").is_some()) {
            return Err("InputFormatConfiguration needs a Deserializer: OpenXJsonSerDe or HiveJsonSerDe.".into());
        }
        let serializer = conversion.pointer("/OutputFormatConfiguration/Serializer");
        let parquet = match serializer {
            Some(s) if s.get("ParquetSerDe").is_some() => &s["ParquetSerDe"],
            Some(s) if s.get("OrcSerDe").is_some() => {
                return Err("OrcSerDe is not supported by this server yet: use ParquetSerDe.".into());
            }
            _ => return Err("OutputFormatConfiguration needs a Serializer: ParquetSerDe.".into()),
        };
        let schema = conversion
            .get("SchemaConfiguration")
            .ok_or("DataFormatConversionConfiguration needs a SchemaConfiguration.")?;
        let text = |name: &str| schema.get(name).and_then(Value::as_str).unwrap_or_default().to_string();
        let (database, table_name) = (text("DatabaseName"), text("TableName"));
        let table = Table::find(tables, &database, &table_name)?;
        let compression = match parquet.get("Compression").and_then(Value::as_str).unwrap_or("SNAPPY") {
            "SNAPPY" => Compression::SNAPPY,
            "GZIP" => Compression::GZIP(GzipLevel::default()),
            "UNCOMPRESSED" => Compression::UNCOMPRESSED,
            other => return Err(format!("ParquetSerDe Compression {other} is not one of SNAPPY, GZIP, UNCOMPRESSED.")),
        };
        let writer_version = match parquet.get("WriterVersion").and_then(Value::as_str).unwrap_or("V1") {
            "V2" => WriterVersion::PARQUET_2_0,
            _ => WriterVersion::PARQUET_1_0,
        };
        Ok(Some(ConversionPlan {
            table,
            database,
            table_name,
            compression,
            dictionary: parquet.get("EnableDictionaryCompression").and_then(Value::as_bool).unwrap_or(true),
            page_bytes: parquet.get("PageSizeBytes").and_then(Value::as_u64).unwrap_or(1 << 20) as usize,
            writer_version,
        }))
    }

    /// The records as one Parquet file (`None` when none fit), and the index and reason of each
    /// record that does not fit.
    pub fn convert(&self, records: &[&[u8]]) -> (Option<Vec<u8>>, Vec<(usize, String)>) {
        let mut columns: Vec<Column> = self.table.columns.iter().map(|(_, kind)| Column::new(*kind)).collect();
        let (mut rows, mut failed) = (0, Vec::new());
        for (window, read) in records.chunks(PARSE_WINDOW_RECORDS).zip(0..) {
            for (index, parsed) in parse_window(window, &self.table).into_iter().enumerate() {
                match parsed {
                    Ok(record_rows) => {
                        for row in record_rows {
                            rows += 1;
                            for (column, cell) in columns.iter_mut().zip(row) {
                                column.append(cell);
                            }
                        }
                    }
                    Err(reason) => failed.push((read * PARSE_WINDOW_RECORDS + index, reason)),
                }
            }
        }
        if rows == 0 {
            return (None, failed);
        }
        let columns: Vec<ArrayRef> = columns.iter_mut().map(Column::finish).collect();
        match self.write(columns) {
            Ok(bytes) => (Some(bytes), failed),
            // Every cell was checked against its column, so a writer error is a fault here: the
            // records are reported failed rather than lost.
            Err(error) => {
                let reason = format!("The Parquet writer failed: {error}");
                (None, (0..records.len()).map(|i| (i, reason.clone())).collect())
            }
        }
    }

    fn write(&self, columns: Vec<ArrayRef>) -> Result<Vec<u8>, String> {
        let batch = RecordBatch::try_new(self.table.schema(), columns).map_err(|e| e.to_string())?;
        let properties = WriterProperties::builder()
            .set_compression(self.compression)
            .set_dictionary_enabled(self.dictionary)
            .set_data_page_size_limit(self.page_bytes)
            .set_writer_version(self.writer_version)
            .build();
        encode::parquet_file(&batch, properties).map_err(|e| e.to_string())
    }
}

/// Records parsed at once before their cells are appended: bounds the cells held beside the
/// columns to a window's worth, whatever the buffer's size.
const PARSE_WINDOW_RECORDS: usize = 8192;
/// Below this many records a window is parsed on the calling thread: a thread's start would
/// cost more than it saves.
const PARALLEL_MIN_RECORDS: usize = 1024;

/// The rows of each record of `window`, in order, parsed on as many threads as there are cores
/// (JSON parsing is most of conversion's work; appending stays on one thread, in order).
fn parse_window(window: &[&[u8]], table: &Table) -> Vec<Result<Vec<Vec<Cell>>, String>> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    if threads < 2 || window.len() < PARALLEL_MIN_RECORDS {
        return window.iter().map(|record| rows_of(record, table)).collect();
    }
    let share = window.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = window
            .chunks(share)
            .map(|part| scope.spawn(move || part.iter().map(|record| rows_of(record, table)).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .zip(window.chunks(share))
            .flat_map(|(part, records)| {
                // A parser thread only ends early by panicking: its records are failed, not lost.
                part.join().unwrap_or_else(|_| vec![Err("The record could not be parsed.".to_string()); records.len()])
            })
            .collect()
    })
}

/// The `dataCatalogTable` of a format conversion error record.
pub fn catalog_table(plan: &ConversionPlan, region: &str) -> Value {
    serde_json::json!({"databaseName": plan.database, "tableName": plan.table_name, "region": region})
}

#[cfg(test)]
mod tests;

/// For tests elsewhere in the crate: a plan over `columns` (name, Hive type).
#[cfg(test)]
pub fn plan_for(columns: &[(&str, &str)]) -> ConversionPlan {
    let tables: GlueTables = [(
        "db".to_string(),
        [(
            "t".to_string(),
            GlueTableFile {
                columns: columns
                    .iter()
                    .map(|(n, t)| ColumnFile { name: n.to_string(), hive_type: t.to_string() })
                    .collect(),
            },
        )]
        .into(),
    )]
    .into();
    let destination = serde_json::json!({"DataFormatConversionConfiguration": {
        "SchemaConfiguration": {"DatabaseName": "db", "TableName": "t"},
        "InputFormatConfiguration": {"Deserializer": {"OpenXJsonSerDe": {}}},
        "OutputFormatConfiguration": {"Serializer": {"ParquetSerDe": {}}}}});
    ConversionPlan::from_destination(&destination, &tables).ok().flatten().expect("a plan")
}
