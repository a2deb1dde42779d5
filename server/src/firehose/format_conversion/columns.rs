//! A table's columns being built: one arrow builder per column, typed as the column, so a cell
//! is appended by a match rather than a downcast (conversion appends every cell of a buffer).

use std::sync::Arc;

use arrow_array::ArrayRef;
use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Float32Builder, Float64Builder, Int8Builder, Int16Builder, Int32Builder,
    Int64Builder, StringBuilder, TimestampMillisecondBuilder,
};

use super::rows::Cell;
use super::table::ColumnType;

pub enum Column {
    Text(StringBuilder),
    Boolean(BooleanBuilder),
    Int8(Int8Builder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    TimestampMs(TimestampMillisecondBuilder),
    Date(Date32Builder),
}

/// `$apply` on the builder inside any `Column`.
macro_rules! each_builder {
    ($column:expr, $builder:ident => $apply:expr) => {
        match $column {
            Column::Text($builder) => $apply,
            Column::Boolean($builder) => $apply,
            Column::Int8($builder) => $apply,
            Column::Int16($builder) => $apply,
            Column::Int32($builder) => $apply,
            Column::Int64($builder) => $apply,
            Column::Float32($builder) => $apply,
            Column::Float64($builder) => $apply,
            Column::TimestampMs($builder) => $apply,
            Column::Date($builder) => $apply,
        }
    };
}

impl Column {
    pub fn new(kind: ColumnType) -> Column {
        match kind {
            ColumnType::Text => Column::Text(StringBuilder::new()),
            ColumnType::Boolean => Column::Boolean(BooleanBuilder::new()),
            ColumnType::Int8 => Column::Int8(Int8Builder::new()),
            ColumnType::Int16 => Column::Int16(Int16Builder::new()),
            ColumnType::Int32 => Column::Int32(Int32Builder::new()),
            ColumnType::Int64 => Column::Int64(Int64Builder::new()),
            ColumnType::Float32 => Column::Float32(Float32Builder::new()),
            ColumnType::Float64 => Column::Float64(Float64Builder::new()),
            ColumnType::TimestampMs => Column::TimestampMs(TimestampMillisecondBuilder::new()),
            ColumnType::Date => Column::Date(Date32Builder::new()),
        }
    }

    /// Appends `cell`, which rows.rs typed as this column; anything else is a null, so the
    /// columns stay the same length whatever happens.
    pub fn append(&mut self, cell: Cell) {
        match (self, cell) {
            (Column::Text(b), Cell::Text(v)) => b.append_value(v),
            (Column::Boolean(b), Cell::Boolean(v)) => b.append_value(v),
            (Column::Int8(b), Cell::Int8(v)) => b.append_value(v),
            (Column::Int16(b), Cell::Int16(v)) => b.append_value(v),
            (Column::Int32(b), Cell::Int32(v)) => b.append_value(v),
            (Column::Int64(b), Cell::Int64(v)) => b.append_value(v),
            (Column::Float32(b), Cell::Float32(v)) => b.append_value(v),
            (Column::Float64(b), Cell::Float64(v)) => b.append_value(v),
            (Column::TimestampMs(b), Cell::TimestampMs(v)) => b.append_value(v),
            (Column::Date(b), Cell::Date(v)) => b.append_value(v),
            (column, _) => each_builder!(column, b => b.append_null()),
        }
    }

    pub fn finish(&mut self) -> ArrayRef {
        each_builder!(self, b => Arc::new(b.finish()))
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::Array;

    use super::*;

    #[test]
    fn a_cell_of_another_type_is_a_null_so_columns_keep_their_length() {
        let mut column = Column::new(ColumnType::Int64);
        column.append(Cell::Int64(3));
        column.append(Cell::Text("x".into()));
        column.append(Cell::Null);
        let array = column.finish();
        assert_eq!((array.len(), array.null_count()), (3, 2));
    }
}
