//! JSON records as rows of a table: each record holds one JSON object or several one after
//! another (Firehose reads `{"a":1}{"a":2}` as two rows); keys match columns case-insensitively;
//! a missing or null member is a null cell. A value that does not fit its column fails the
//! whole record, as the JSON SerDes fail it.

use serde_json::{Map, Value};

use super::table::{ColumnType, Table};
use crate::civil_date::days_from_civil;

/// One cell, typed as its column.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Text(String),
    Boolean(bool),
    Int32(i32),
    Int64(i64),
    Float32(f32),
    Float64(f64),
    TimestampMs(i64),
    Date(i32),
}

/// The rows of one record, or why it cannot be read.
pub fn rows_of(record: &[u8], table: &Table) -> Result<Vec<Vec<Cell>>, String> {
    let mut rows = Vec::new();
    for value in serde_json::Deserializer::from_slice(record).into_iter::<Value>() {
        let value = value.map_err(|e| format!("The record is not JSON: {e}"))?;
        let Value::Object(object) = value else {
            return Err("The record holds a JSON value that is not an object.".into());
        };
        rows.push(row_of(&object, table)?);
    }
    if rows.is_empty() {
        return Err("The record holds no JSON object.".into());
    }
    Ok(rows)
}

fn row_of(object: &Map<String, Value>, table: &Table) -> Result<Vec<Cell>, String> {
    let lower: Vec<(String, &Value)> = object.iter().map(|(k, v)| (k.to_lowercase(), v)).collect();
    table
        .columns
        .iter()
        .map(|(name, kind)| {
            let value = lower.iter().find(|(key, _)| key == name).map(|(_, v)| *v).unwrap_or(&Value::Null);
            cell(value, *kind).ok_or_else(|| format!("The value {value} does not fit column {name} ({kind:?})."))
        })
        .collect()
}

/// `value` as a `kind` cell; `None` when it does not fit.
fn cell(value: &Value, kind: ColumnType) -> Option<Cell> {
    if value.is_null() {
        return Some(Cell::Null);
    }
    let text = value.as_str();
    Some(match kind {
        ColumnType::Text => Cell::Text(text.map_or_else(|| value.to_string(), str::to_string)),
        ColumnType::Boolean => Cell::Boolean(value.as_bool().or_else(|| text?.to_lowercase().parse().ok())?),
        ColumnType::Int32 => Cell::Int32(integer(value).and_then(|i| i32::try_from(i).ok())?),
        ColumnType::Int64 => Cell::Int64(integer(value)?),
        ColumnType::Float32 => Cell::Float32(float(value)? as f32),
        ColumnType::Float64 => Cell::Float64(float(value)?),
        ColumnType::TimestampMs => Cell::TimestampMs(integer(value).or_else(|| timestamp_ms(text?))?),
        ColumnType::Date => Cell::Date(match text {
            Some(text) => date_days(text)?,
            None => i32::try_from(integer(value)?).ok()?,
        }),
    })
}

fn integer(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| value.as_str()?.trim().parse().ok())
}

fn float(value: &Value) -> Option<f64> {
    value.as_f64().or_else(|| value.as_str()?.trim().parse().ok())
}

/// `yyyy-MM-dd`.
fn date_days(text: &str) -> Option<i32> {
    let mut parts = text.trim().splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    i32::try_from(days_from_civil(year, month, day)).ok()
}

/// `yyyy-MM-dd'T'HH:mm:ss[.S...]['Z']` or with a space for the `T` (UTC), in ms.
fn timestamp_ms(text: &str) -> Option<i64> {
    let text = text.trim().trim_end_matches('Z');
    let (date, time) = text.split_once(['T', ' '])?;
    let days = i64::from(date_days(date)?);
    let (clock, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut parts = clock.splitn(3, ':');
    let hours: i64 = parts.next()?.parse().ok()?;
    let minutes: i64 = parts.next()?.parse().ok()?;
    let seconds: i64 = parts.next().unwrap_or("0").parse().ok()?;
    if hours > 23 || minutes > 59 || seconds > 60 || !fraction.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let millis: i64 = format!("{fraction:0<3}")[..3].parse().ok()?;
    Some(((days * 24 + hours) * 60 + minutes) * 60_000 + seconds * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        Table {
            columns: vec![
                ("id".into(), ColumnType::Int64),
                ("name".into(), ColumnType::Text),
                ("ok".into(), ColumnType::Boolean),
                ("at".into(), ColumnType::TimestampMs),
                ("day".into(), ColumnType::Date),
                ("score".into(), ColumnType::Float64),
            ],
        }
    }

    #[test]
    fn objects_become_rows_with_case_insensitive_keys_and_nulls() {
        let record = br#"{"ID": 1, "Name": "a", "ok": true, "at": "2017-02-07T15:13:01.39256Z", "day": "2020-01-02", "score": 1.5}
                         {"id": "2", "name": 7, "extra": [1]}"#;
        let rows = rows_of(record, &table()).expect("rows");
        assert_eq!(
            rows[0],
            vec![
                Cell::Int64(1),
                Cell::Text("a".into()),
                Cell::Boolean(true),
                Cell::TimestampMs(1_486_480_381_392),
                Cell::Date(18_263),
                Cell::Float64(1.5)
            ]
        );
        assert_eq!(
            rows[1],
            vec![Cell::Int64(2), Cell::Text("7".into()), Cell::Null, Cell::Null, Cell::Null, Cell::Null]
        );
    }

    #[test]
    fn records_that_do_not_fit_fail_whole() {
        assert!(rows_of(b"not json", &table()).is_err());
        assert!(rows_of(b"[1]", &table()).is_err());
        assert!(rows_of(br#"{"id": "x"}"#, &table()).expect_err("id").contains("column id"));
        assert!(rows_of(br#"{"at": "2020-13-01 00:00:00"}"#, &table()).is_err());
        assert!(rows_of(b"", &table()).is_err());
        assert_eq!(timestamp_ms("1970-01-01 00:00:01"), Some(1000));
    }
}
