//! Parquet encoding of a buffer's finished columns with each column chunk encoded on its own
//! share of the cores: encoding (dictionaries, SNAPPY) is half of conversion's work once parsing
//! runs in parallel, and a table's columns are independent of one another. The file is what
//! `ArrowWriter` writes (it lays out the schema and its Arrow metadata); only the column chunks
//! of each row group come from several threads.

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{ArrowColumnChunk, ArrowColumnWriter, ArrowLeafColumn, compute_leaves};
use parquet::errors::ParquetError;
use parquet::file::properties::{DEFAULT_MAX_ROW_GROUP_ROW_COUNT, WriterProperties};

/// The Parquet file of `batch`: row groups of at most the properties' row count, as
/// `ArrowWriter` would cut them.
pub fn parquet_file(batch: &RecordBatch, properties: WriterProperties) -> Result<Vec<u8>, ParquetError> {
    let rows_per_group = properties.max_row_group_row_count().unwrap_or(DEFAULT_MAX_ROW_GROUP_ROW_COUNT).max(1);
    let writer = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(properties))?;
    let (mut file, factory) = writer.into_serialized_writer()?;
    for (index, offset) in (0..batch.num_rows()).step_by(rows_per_group).enumerate() {
        let group = batch.slice(offset, rows_per_group.min(batch.num_rows() - offset));
        let chunks = encode_columns(factory.create_column_writers(index)?, &group)?;
        let mut row_group = file.next_row_group()?;
        for chunk in chunks {
            chunk.append_to_row_group(&mut row_group)?;
        }
        row_group.close()?;
    }
    file.into_inner()
}

/// Each leaf column of `group` encoded by its writer, in the schema's order, the columns dealt
/// out to one thread per core.
fn encode_columns(writers: Vec<ArrowColumnWriter>, group: &RecordBatch) -> Result<Vec<ArrowColumnChunk>, ParquetError> {
    let mut leaves = Vec::with_capacity(writers.len());
    for (field, column) in group.schema().fields().iter().zip(group.columns()) {
        leaves.extend(compute_leaves(field, column)?);
    }
    if leaves.len() != writers.len() {
        return Err(ParquetError::General("the schema's leaves and column writers differ".into()));
    }
    let threads = std::thread::available_parallelism().map_or(1, usize::from).min(writers.len()).max(1);
    let mut shares: Vec<Vec<(usize, ArrowColumnWriter, ArrowLeafColumn)>> = (0..threads).map(|_| Vec::new()).collect();
    for (index, (writer, leaf)) in writers.into_iter().zip(leaves).enumerate() {
        shares[index % threads].push((index, writer, leaf));
    }
    let mut chunks: Vec<(usize, ArrowColumnChunk)> = std::thread::scope(|scope| {
        let running: Vec<_> = shares.into_iter().map(|share| scope.spawn(move || encode_share(share))).collect();
        running
            .into_iter()
            .map(|thread| {
                thread.join().unwrap_or_else(|_| Err(ParquetError::General("a column encoder panicked".into())))
            })
            .collect::<Result<Vec<_>, _>>()
    })?
    .into_iter()
    .flatten()
    .collect();
    chunks.sort_by_key(|(index, _)| *index);
    Ok(chunks.into_iter().map(|(_, chunk)| chunk).collect())
}

fn encode_share(
    share: Vec<(usize, ArrowColumnWriter, ArrowLeafColumn)>,
) -> Result<Vec<(usize, ArrowColumnChunk)>, ParquetError> {
    share
        .into_iter()
        .map(|(index, mut writer, leaf)| {
            writer.write(&leaf)?;
            Ok((index, writer.close()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, BooleanArray, Int64Array, StringArray};
    use axum::body::Bytes;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::basic::Compression;

    use super::*;

    fn batch(rows: i64) -> RecordBatch {
        let ids: ArrayRef = Arc::new(Int64Array::from_iter((0..rows).map(|n| (n % 7 != 0).then_some(n))));
        let names: ArrayRef = Arc::new(StringArray::from_iter_values((0..rows).map(|n| format!("name-{}", n % 5))));
        let flags: ArrayRef = Arc::new(BooleanArray::from_iter((0..rows).map(|n| Some(n % 2 == 0))));
        RecordBatch::try_from_iter([("id", ids), ("name", names), ("flag", flags)]).expect("batch")
    }

    fn read_back(file: Vec<u8>) -> (usize, Vec<RecordBatch>) {
        let builder = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(file)).expect("parquet");
        let groups = builder.metadata().num_row_groups();
        (groups, builder.build().expect("reader").map(|b| b.expect("batch")).collect())
    }

    #[test]
    fn columns_encoded_apart_read_back_as_arrow_writer_writes_them_in_row_groups() {
        let properties = || {
            WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_max_row_group_row_count(Some(1_000))
                .build()
        };
        let batch = batch(2_500);
        let (groups, batches) = read_back(parquet_file(&batch, properties()).expect("encoded"));
        let mut single = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(properties())).expect("writer");
        single.write(&batch).expect("write");
        let (single_groups, single_batches) = read_back(single.into_inner().expect("file"));
        assert_eq!((groups, single_groups), (3, 3));
        assert_same_rows(&batches, &batch);
        assert_same_rows(&single_batches, &batch);
    }

    /// `read` holds `expected`'s rows in order, whatever batches they came back in.
    fn assert_same_rows(read: &[RecordBatch], expected: &RecordBatch) {
        let mut offset = 0;
        for part in read {
            let want = expected.slice(offset, part.num_rows());
            for (got, want) in part.columns().iter().zip(want.columns()) {
                assert_eq!(got.to_data(), want.to_data(), "rows from {offset}");
            }
            offset += part.num_rows();
        }
        assert_eq!(offset, expected.num_rows());
    }

    #[test]
    fn an_empty_batch_is_a_file_with_no_row_groups() {
        let (groups, batches) = read_back(parquet_file(&batch(0), WriterProperties::default()).expect("encoded"));
        assert_eq!((groups, batches.iter().map(RecordBatch::num_rows).sum::<usize>()), (0, 0));
    }
}
