//! The table a DataFormatConversionConfiguration's SchemaConfiguration names. There is no Glue
//! Data Catalog here: the server's config defines the tables, `[glue_tables.DATABASE.TABLE]` with
//! its columns in Hive's type names, and `DatabaseName` / `TableName` select one
//! (docs/firehose.md, "Parquet").

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, TimeUnit};
use serde::Deserialize;

/// `[glue_tables.DATABASE.TABLE]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlueTableFile {
    pub columns: Vec<ColumnFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnFile {
    pub name: String,
    /// A Hive type: string, varchar(n), char(n), boolean, tinyint, smallint, int, bigint, float,
    /// double, timestamp, date.
    #[serde(rename = "type")]
    pub hive_type: String,
}

/// Every configured table, by database then table name.
pub type GlueTables = BTreeMap<String, BTreeMap<String, GlueTableFile>>;

/// A column's type as conversion writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Text,
    Boolean,
    Int8,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    /// Milliseconds since the epoch, no time zone (Hive's timestamp).
    TimestampMs,
    /// Days since the epoch.
    Date,
}

/// A table's columns, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Lower case: the JSON SerDes match keys case-insensitively.
    pub columns: Vec<(String, ColumnType)>,
}

impl Table {
    /// The table `database`.`table` of `tables`, or InvalidArgumentException's message.
    pub fn find(tables: &GlueTables, database: &str, table: &str) -> Result<Table, String> {
        let file = tables.get(database).and_then(|d| d.get(table)).ok_or_else(|| {
            format!("The table {database}.{table} is not known to this server: configure [glue_tables.{database}.{table}] with its columns.")
        })?;
        if file.columns.is_empty() {
            return Err(format!("The table {database}.{table} has no columns."));
        }
        let columns = file
            .columns
            .iter()
            .map(|c| column_type(&c.hive_type).map(|t| (c.name.to_lowercase(), t)))
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Table { columns })
    }

    pub fn schema(&self) -> Arc<Schema> {
        let fields: Vec<Field> =
            self.columns.iter().map(|(name, kind)| Field::new(name, arrow_type(*kind), true)).collect();
        Arc::new(Schema::new(fields))
    }
}

fn column_type(hive: &str) -> Result<ColumnType, String> {
    let base = hive.trim().to_lowercase();
    let base = base.split('(').next().unwrap_or_default();
    Ok(match base {
        "string" | "varchar" | "char" => ColumnType::Text,
        "boolean" => ColumnType::Boolean,
        "tinyint" => ColumnType::Int8,
        "smallint" => ColumnType::Int16,
        "int" | "integer" => ColumnType::Int32,
        "bigint" => ColumnType::Int64,
        "float" => ColumnType::Float32,
        "double" => ColumnType::Float64,
        "timestamp" => ColumnType::TimestampMs,
        "date" => ColumnType::Date,
        _ => return Err(format!("The column type {hive} is not supported by this server's Parquet conversion.")),
    })
}

fn arrow_type(kind: ColumnType) -> DataType {
    match kind {
        ColumnType::Text => DataType::Utf8,
        ColumnType::Boolean => DataType::Boolean,
        ColumnType::Int8 => DataType::Int8,
        ColumnType::Int16 => DataType::Int16,
        ColumnType::Int32 => DataType::Int32,
        ColumnType::Int64 => DataType::Int64,
        ColumnType::Float32 => DataType::Float32,
        ColumnType::Float64 => DataType::Float64,
        ColumnType::TimestampMs => DataType::Timestamp(TimeUnit::Millisecond, None),
        ColumnType::Date => DataType::Date32,
    }
}
