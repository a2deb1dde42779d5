//! The SQL types of in-application stream columns and input schemas (RecordColumns' SqlType),
//! as Arrow types. Kinesis Data Analytics used its own names (VARCHAR(n), DOUBLE, TIMESTAMP...);
//! lengths are kept for checks but Arrow strings have none.

use datafusion::arrow::datatypes::{DataType, TimeUnit};

use crate::error::{AnalyticsError, Result};

/// A column's declared type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlType {
    /// As written, normalised to upper case (what DescribeApplication gives back).
    pub name: String,
    pub arrow: DataType,
}

/// Parses a type such as `VARCHAR(8)`, `DECIMAL(10,2)`, `DOUBLE`, `TIMESTAMP`.
pub fn parse_sql_type(text: &str) -> Result<SqlType> {
    let name = text.split_whitespace().collect::<Vec<_>>().join(" ").to_ascii_uppercase();
    let base = name.split('(').next().unwrap_or_default().trim();
    let arrow = match base {
        "VARCHAR" | "CHAR" | "CHARACTER" | "CHARACTER VARYING" | "STRING" => DataType::Utf8,
        "VARBINARY" | "BINARY" => DataType::Binary,
        "TINYINT" => DataType::Int8,
        "SMALLINT" => DataType::Int16,
        "INTEGER" | "INT" => DataType::Int32,
        "BIGINT" => DataType::Int64,
        "REAL" | "FLOAT" => DataType::Float32,
        "DOUBLE" | "DOUBLE PRECISION" => DataType::Float64,
        "DECIMAL" | "NUMERIC" => decimal(&name)?,
        "BOOLEAN" => DataType::Boolean,
        "DATE" => DataType::Date32,
        "TIME" => DataType::Time64(TimeUnit::Microsecond),
        "TIMESTAMP" => DataType::Timestamp(TimeUnit::Millisecond, None),
        _ => return Err(AnalyticsError::Schema(format!("Unknown SQL type {text}."))),
    };
    Ok(SqlType { name, arrow })
}

/// DECIMAL(p[, s]); DECIMAL alone is DECIMAL(18, 0) here, Arrow's decimal needing a precision.
fn decimal(name: &str) -> Result<DataType> {
    let args = name.split_once('(').map(|(_, rest)| rest.trim_end_matches(')')).unwrap_or("18");
    let mut numbers = args.split(',').map(|n| n.trim().parse::<u8>());
    let precision = numbers.next().and_then(|n| n.ok()).filter(|p| (1..=38).contains(p));
    let scale = numbers.next().map_or(Some(0), |n| n.ok());
    match (precision, scale) {
        (Some(p), Some(s)) if s <= p => Ok(DataType::Decimal128(p, s as i8)),
        _ => Err(AnalyticsError::Schema(format!("{name} is not a valid DECIMAL type."))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_arrow_types() {
        assert_eq!(parse_sql_type("varchar(4)").expect("as the test set it up").arrow, DataType::Utf8);
        assert_eq!(parse_sql_type("VARCHAR(4)").expect("as the test set it up").name, "VARCHAR(4)");
        assert_eq!(parse_sql_type("DOUBLE").expect("as the test set it up").arrow, DataType::Float64);
        assert_eq!(parse_sql_type("decimal(10, 2)").expect("as the test set it up").arrow, DataType::Decimal128(10, 2));
        assert_eq!(
            parse_sql_type("TIMESTAMP").expect("as the test set it up").arrow,
            DataType::Timestamp(TimeUnit::Millisecond, None)
        );
    }

    #[test]
    fn unknown_and_malformed_types_are_refused() {
        assert!(parse_sql_type("GEOMETRY").is_err());
        assert!(parse_sql_type("DECIMAL(2, 5)").is_err());
        assert!(parse_sql_type("DECIMAL(x)").is_err());
    }
}
