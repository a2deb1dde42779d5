//! Records to rows: an input schema (JSON with a path per column, or CSV with delimiters) reads
//! each record into typed columns of the input stream. A record that does not fit becomes an
//! error row, not a failed batch.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use datafusion::arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int64Array, StringArray,
    TimestampMillisecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::Value;

use crate::batches::stream_schema;
use crate::error::{AnalyticsError, Result};
use crate::sql_type::{SqlType, parse_sql_type};

/// How records are laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordFormat {
    /// `row_path` selects the rows in a record (`$` for the record itself).
    Json {
        row_path: String,
    },
    Csv {
        row_delimiter: String,
        column_delimiter: String,
    },
}

/// One RecordColumn: its name, its JSON path (JSON only) and its type.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSpec {
    pub name: String,
    pub mapping: Option<String>,
    pub sql_type: SqlType,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InputSchema {
    pub format: RecordFormat,
    pub columns: Vec<ColumnSpec>,
}

impl InputSchema {
    /// Checks names, types and paths; `columns` are (name, mapping, SQL type) as given.
    pub fn new(format: RecordFormat, columns: &[(String, Option<String>, String)]) -> Result<InputSchema> {
        let columns = columns
            .iter()
            .map(|(name, mapping, sql_type)| {
                let sql_type = parse_sql_type(sql_type)?;
                if let Some(path) = mapping
                    && matches!(format, RecordFormat::Json { .. })
                {
                    parse_path(path)?;
                }
                Ok(ColumnSpec { name: name.clone(), mapping: mapping.clone(), sql_type })
            })
            .collect::<Result<Vec<_>>>()?;
        if let RecordFormat::Json { row_path } = &format {
            parse_path(row_path.trim_end_matches("[0:]"))?;
        }
        Ok(InputSchema { format, columns })
    }

    pub fn stream_columns(&self) -> Vec<(String, SqlType)> {
        self.columns.iter().map(|c| (c.name.clone(), c.sql_type.clone())).collect()
    }

    pub fn stream_schema(&self) -> SchemaRef {
        stream_schema(&self.stream_columns())
    }
}

/// A record that did not fit the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRecord {
    pub index: usize,
    pub message: String,
}

/// One value read from a record, before it joins its column.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Decimal(i128),
    Millis(i64),
    Days(i32),
    Bytes(Vec<u8>),
}

/// Reads `records` (their arrival times in ms, their bytes) into a batch of the input stream
/// (ROWTIME and the schema's columns, without the hidden flag); and the records that did not fit.
pub fn read_records(schema: &InputSchema, records: &[(i64, &[u8])]) -> (RecordBatch, Vec<RejectedRecord>) {
    let mut times = Vec::new();
    let mut cells: Vec<Vec<Cell>> = vec![Vec::new(); schema.columns.len()];
    let mut rejected = Vec::new();
    for (index, (arrival_ms, bytes)) in records.iter().enumerate() {
        match rows_of(schema, bytes) {
            Ok(rows) => {
                for row in rows {
                    times.push(*arrival_ms);
                    for (column, cell) in cells.iter_mut().zip(row) {
                        column.push(cell);
                    }
                }
            }
            Err(message) => rejected.push(RejectedRecord { index, message }),
        }
    }
    let mut columns: Vec<ArrayRef> = vec![Arc::new(TimestampMillisecondArray::from(times))];
    for (spec, column) in schema.columns.iter().zip(cells) {
        columns.push(array_of(&spec.sql_type.arrow, column));
    }
    let full = schema.stream_schema();
    let fields: Vec<_> = full.fields().iter().take(full.fields().len() - 1).cloned().collect();
    let without_flag = Arc::new(datafusion::arrow::datatypes::Schema::new(fields));
    let batch =
        RecordBatch::try_new(without_flag.clone(), columns).unwrap_or_else(|_| RecordBatch::new_empty(without_flag));
    (batch, rejected)
}

/// A reference file's rows: CSV rows, or one JSON document per line; without ROWTIME.
pub fn read_reference(schema: &InputSchema, bytes: &[u8]) -> (RecordBatch, Vec<RejectedRecord>) {
    let records: Vec<(i64, &[u8])> = match schema.format {
        RecordFormat::Csv { .. } => vec![(0, bytes)],
        RecordFormat::Json { .. } => {
            bytes.split(|b| *b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)).map(|l| (0, l)).collect()
        }
    };
    let (mut batch, rejected) = read_records(schema, &records);
    batch.remove_column(0);
    (batch, rejected)
}

/// A record's rows, each a cell per column.
fn rows_of(schema: &InputSchema, bytes: &[u8]) -> Result<Vec<Vec<Cell>>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "The record is not UTF-8 text.".to_string())?;
    match &schema.format {
        RecordFormat::Json { row_path } => {
            let document: Value = serde_json::from_str(text).map_err(|e| format!("The record is not JSON: {e}"))?;
            let rows = json_rows(&document, row_path)?;
            rows.iter().map(|row| json_row(schema, row)).collect()
        }
        RecordFormat::Csv { row_delimiter, column_delimiter } => text
            .split(row_delimiter.as_str())
            .filter(|line| !line.trim().is_empty())
            .map(|line| csv_row(schema, line, column_delimiter))
            .collect(),
    }
}

/// The rows `row_path` selects: `$` is the record; `$.items[0:]` each element of an array.
fn json_rows<'a>(document: &'a Value, row_path: &str) -> Result<Vec<&'a Value>, String> {
    let (path, each) = match row_path.strip_suffix("[0:]") {
        Some(path) => (path, true),
        None => (row_path, false),
    };
    let steps = parse_path(path).map_err(|e| e.to_string())?;
    let found = follow(document, &steps).ok_or_else(|| format!("The record has nothing at {row_path}."))?;
    match (each, found) {
        (true, Value::Array(items)) => Ok(items.iter().collect()),
        (true, _) => Err(format!("The record has no array at {path}.")),
        (false, value) => Ok(vec![value]),
    }
}

fn json_row(schema: &InputSchema, row: &Value) -> Result<Vec<Cell>, String> {
    schema
        .columns
        .iter()
        .map(|column| {
            let path = column.mapping.clone().unwrap_or_else(|| format!("$.{}", column.name));
            let steps = parse_path(&path).map_err(|e| e.to_string())?;
            let value = follow(row, &steps).unwrap_or(&Value::Null);
            cell_of_json(value, &column.sql_type.arrow).map_err(|e| format!("Column {}: {e}", column.name))
        })
        .collect()
}

fn csv_row(schema: &InputSchema, line: &str, delimiter: &str) -> Result<Vec<Cell>, String> {
    let mut fields = line.trim_end_matches('\r').split(delimiter);
    schema
        .columns
        .iter()
        .map(|column| {
            let field = fields.next().map(str::trim).filter(|f| !f.is_empty());
            match field {
                None => Ok(Cell::Null),
                Some(text) => {
                    cell_of_text(text, &column.sql_type.arrow).map_err(|e| format!("Column {}: {e}", column.name))
                }
            }
        })
        .collect()
}

/// A path step: a member name or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PathStep {
    Member(String),
    Index(usize),
}

/// `$`, `$.a.b`, `$.a[2].b`, `$["a b"]`.
fn parse_path(path: &str) -> Result<Vec<PathStep>> {
    let bad =
        || AnalyticsError::Schema(format!("{path} is not a JSON path this server reads ($.member.member[index])."));
    let mut rest = path.trim().strip_prefix('$').ok_or_else(bad)?;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            if end == 0 {
                return Err(bad());
            }
            steps.push(PathStep::Member(after[..end].to_string()));
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']').ok_or_else(bad)?;
            let inside = after[..end].trim();
            let step = match inside.parse::<usize>() {
                Ok(index) => PathStep::Index(index),
                Err(_) => PathStep::Member(inside.trim_matches(['"', '\'']).to_string()),
            };
            steps.push(step);
            rest = &after[end + 1..];
        } else {
            return Err(bad());
        }
    }
    Ok(steps)
}

fn follow<'a>(value: &'a Value, steps: &[PathStep]) -> Option<&'a Value> {
    steps.iter().try_fold(value, |value, step| match step {
        PathStep::Member(name) => value.get(name),
        PathStep::Index(index) => value.get(index),
    })
}

fn cell_of_json(value: &Value, arrow: &DataType) -> Result<Cell, String> {
    match value {
        Value::Null => Ok(Cell::Null),
        Value::String(text) => cell_of_text(text, arrow),
        Value::Bool(b) if *arrow == DataType::Boolean => Ok(Cell::Bool(*b)),
        Value::Number(n) if matches!(arrow, DataType::Timestamp(..)) => {
            n.as_i64().map(Cell::Millis).ok_or_else(|| format!("{n} is not a time in ms"))
        }
        Value::Number(n) => cell_of_text(&n.to_string(), arrow),
        other if *arrow == DataType::Utf8 => Ok(Cell::Text(other.to_string())),
        other => Err(format!("{other} is not a {arrow}")),
    }
}

fn cell_of_text(text: &str, arrow: &DataType) -> Result<Cell, String> {
    let not = || format!("'{text}' is not a {arrow}");
    Ok(match arrow {
        DataType::Utf8 => Cell::Text(text.to_string()),
        DataType::Binary => Cell::Bytes(text.as_bytes().to_vec()),
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            Cell::Int(parse_integer(text).ok_or_else(not)?)
        }
        DataType::Float32 | DataType::Float64 => Cell::Float(text.trim().parse().map_err(|_| not())?),
        DataType::Boolean => Cell::Bool(match text.trim().to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            _ => return Err(not()),
        }),
        DataType::Decimal128(_, scale) => Cell::Decimal(parse_decimal(text, *scale).ok_or_else(not)?),
        DataType::Timestamp(..) => Cell::Millis(parse_timestamp_ms(text).ok_or_else(not)?),
        DataType::Date32 => {
            let date = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map_err(|_| not())?;
            Cell::Days(date.signed_duration_since(NaiveDate::default()).num_days() as i32)
        }
        _ => Cell::Text(text.to_string()),
    })
}

/// An integer, or a number with no fraction written as a decimal ("3.0").
fn parse_integer(text: &str) -> Option<i64> {
    let text = text.trim();
    text.parse::<i64>()
        .ok()
        .or_else(|| text.parse::<f64>().ok().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15).map(|f| f as i64))
}

/// A decimal's unscaled value at `scale` digits after the point.
fn parse_decimal(text: &str, scale: i8) -> Option<i128> {
    let value: f64 = text.trim().parse().ok()?;
    let scaled = (value * 10f64.powi(i32::from(scale))).round();
    scaled.is_finite().then_some(scaled as i128)
}

/// `2024-05-01 12:00:00.123`, ISO 8601 with a zone, or ms since the epoch.
fn parse_timestamp_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms);
    }
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.timestamp_millis());
    }
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .map(|time| time.and_utc().timestamp_millis())
}

/// A column of cells as an array of `arrow` type (cells were checked against it).
fn array_of(arrow: &DataType, cells: Vec<Cell>) -> ArrayRef {
    let array: ArrayRef = match arrow {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => Arc::new(Int64Array::from(
            cells.iter().map(|c| if let Cell::Int(v) = c { Some(*v) } else { None }).collect::<Vec<_>>(),
        )),
        DataType::Float32 | DataType::Float64 => Arc::new(Float64Array::from(
            cells.iter().map(|c| if let Cell::Float(v) = c { Some(*v) } else { None }).collect::<Vec<_>>(),
        )),
        DataType::Boolean => Arc::new(BooleanArray::from(
            cells.iter().map(|c| if let Cell::Bool(v) = c { Some(*v) } else { None }).collect::<Vec<_>>(),
        )),
        DataType::Decimal128(precision, scale) => {
            let values: Vec<Option<i128>> =
                cells.iter().map(|c| if let Cell::Decimal(v) = c { Some(*v) } else { None }).collect();
            match Decimal128Array::from(values).with_precision_and_scale(*precision, *scale) {
                Ok(array) => Arc::new(array),
                Err(_) => datafusion::arrow::array::new_null_array(arrow, cells.len()),
            }
        }
        DataType::Timestamp(..) => Arc::new(TimestampMillisecondArray::from(
            cells.iter().map(|c| if let Cell::Millis(v) = c { Some(*v) } else { None }).collect::<Vec<_>>(),
        )),
        DataType::Date32 => Arc::new(Date32Array::from(
            cells.iter().map(|c| if let Cell::Days(v) = c { Some(*v) } else { None }).collect::<Vec<_>>(),
        )),
        DataType::Binary => Arc::new(BinaryArray::from(
            cells.iter().map(|c| if let Cell::Bytes(v) = c { Some(v.as_slice()) } else { None }).collect::<Vec<_>>(),
        )),
        _ => Arc::new(StringArray::from(
            cells.into_iter().map(|c| if let Cell::Text(v) = c { Some(v) } else { None }).collect::<Vec<_>>(),
        )),
    };
    // Integers and floats were read wide; a value too wide for its column becomes NULL.
    cast(&array, arrow).unwrap_or(array)
}

#[cfg(test)]
#[path = "rows_tests.rs"]
mod tests;
