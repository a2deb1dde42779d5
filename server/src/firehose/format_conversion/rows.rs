//! JSON records as rows of a table: each record holds one JSON object or several one after
//! another (Firehose reads `{"a":1}{"a":2}` as two rows); keys match columns case-insensitively
//! (the first of the object's keys that matches a column gives its value); a missing or null
//! member is a null cell. A value that does not fit its column fails the whole record, as the
//! JSON SerDes fail it.
//!
//! Each object is read straight into its row's slots: members no column names are skipped
//! without being built, and no map of the object is made (conversion runs over every record
//! of a buffer, so this is its hot path).

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer as _, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;
use serde_json::error::Category;

use super::table::{ColumnType, Table};
use crate::civil_date::days_from_civil;

const NOT_AN_OBJECT: &str = "The record holds a JSON value that is not an object.";

/// One cell, typed as its column.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Text(String),
    Boolean(bool),
    Int8(i8),
    Int16(i16),
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
    let mut values = serde_json::Deserializer::from_slice(record);
    // `end` fails while anything but white space is left: the next value.
    while values.end().is_err() {
        let slots = values.deserialize_any(RowVisitor { table }).map_err(|error| match error.classify() {
            Category::Data => NOT_AN_OBJECT.to_string(),
            _ => format!("The record is not JSON: {error}"),
        })?;
        rows.push(row_of(slots, table)?);
    }
    if rows.is_empty() {
        return Err("The record holds no JSON object.".into());
    }
    Ok(rows)
}

/// The cells of a row from its columns' values.
fn row_of(slots: Vec<Option<Value>>, table: &Table) -> Result<Vec<Cell>, String> {
    slots
        .into_iter()
        .zip(&table.columns)
        .map(|(value, (name, kind))| match (value, kind) {
            (Some(Value::String(text)), ColumnType::Text) => Ok(Cell::Text(text)),
            (value, kind) => {
                let value = value.unwrap_or(Value::Null);
                cell(&value, *kind).ok_or_else(|| format!("The value {value} does not fit column {name} ({kind:?})."))
            }
        })
        .collect()
}

/// Reads one object into a slot per column.
struct RowVisitor<'t> {
    table: &'t Table,
}

impl<'de> Visitor<'de> for RowVisitor<'_> {
    type Value = Vec<Option<Value>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut slots: Vec<Option<Value>> = vec![None; self.table.columns.len()];
        while let Some(column) = map.next_key_seed(ColumnOf { table: self.table })? {
            match column.and_then(|index| slots.get_mut(index)).filter(|slot| slot.is_none()) {
                Some(slot) => *slot = Some(map.next_value()?),
                None => drop(map.next_value::<IgnoredAny>()?),
            }
        }
        Ok(slots)
    }
}

/// A member's key as the index of the column it names, if any, without keeping the key.
struct ColumnOf<'t> {
    table: &'t Table,
}

impl<'de> DeserializeSeed<'de> for ColumnOf<'_> {
    type Value = Option<usize>;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for ColumnOf<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Self::Value, E> {
        let columns = &self.table.columns;
        // Column names are lower case; a non-ASCII key needs Unicode's lower case.
        Ok(if key.is_ascii() {
            columns.iter().position(|(name, _)| key.eq_ignore_ascii_case(name))
        } else {
            let lower = key.to_lowercase();
            columns.iter().position(|(name, _)| *name == lower)
        })
    }
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
        ColumnType::Int8 => Cell::Int8(integer(value).and_then(|i| i8::try_from(i).ok())?),
        ColumnType::Int16 => Cell::Int16(integer(value).and_then(|i| i16::try_from(i).ok())?),
        ColumnType::Int32 => Cell::Int32(integer(value).and_then(|i| i32::try_from(i).ok())?),
        ColumnType::Int64 => Cell::Int64(integer(value)?),
        ColumnType::Float32 => Cell::Float32(Some(float(value)? as f32).filter(|f| f.is_finite())?),
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

/// `yyyy-MM-dd`, a real day of years 1 to 9999.
fn date_days(text: &str) -> Option<i32> {
    let mut parts = text.trim().splitn(3, '-');
    let year: u32 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    if !(1..=9999).contains(&year) || !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    i32::try_from(days_from_civil(i64::from(year), month, day)).ok()
}

fn days_in_month(year: u32, month: u32) -> u32 {
    let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `yyyy-MM-dd'T'HH:mm:ss[.S...]['Z']` or with a space for the `T` (UTC), in ms.
fn timestamp_ms(text: &str) -> Option<i64> {
    let text = text.trim().trim_end_matches('Z');
    let (date, time) = text.split_once(['T', ' '])?;
    let days = i64::from(date_days(date)?);
    let (clock, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut parts = clock.splitn(3, ':');
    // Unsigned: a sign is not part of a time of day.
    let hours = i64::from(parts.next()?.parse::<u8>().ok()?);
    let minutes = i64::from(parts.next()?.parse::<u8>().ok()?);
    let seconds = i64::from(parts.next().unwrap_or("0").parse::<u8>().ok()?);
    if hours > 23 || minutes > 59 || seconds > 60 || !fraction.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    // Milliseconds: the first three digits, padded with zeros.
    let millis =
        fraction.bytes().chain(std::iter::repeat(b'0')).take(3).fold(0, |ms, digit| ms * 10 + i64::from(digit - b'0'));
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
        assert!(rows_of(br#"{"day": "2021-02-31"}"#, &table()).is_err(), "no such day");
        assert!(rows_of(br#"{"day": "2020-02-29"}"#, &table()).is_ok(), "a leap day");
        assert!(rows_of(br#"{"at": "2020-01-01T-01:-05:-10"}"#, &table()).is_err(), "signed times");
        assert!(rows_of(br#"{"day": "99999999999999-01-01"}"#, &table()).is_err(), "years past 9999");
        assert!(rows_of(b"", &table()).is_err());
        assert_eq!(timestamp_ms("1970-01-01 00:00:01"), Some(1000));
    }
}
