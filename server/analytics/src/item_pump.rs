//! A pump that calls TOP_K_ITEMS_TUMBLING or COUNT_DISTINCT_ITEMS_TUMBLING runs as stages: the
//! cursor's query into a hidden stream; a tumbling count over it (the K most frequent values
//! with their counts, most frequent first, ties by value; or the number of distinct values);
//! and the pump's own query reading the counts where the call was. When the pump's query is
//! only `SELECT STREAM * FROM TABLE(...)`, the count writes the pump's target itself, so its
//! rows carry the window's id. Counts are exact: the service approximated them.

use std::collections::BTreeMap;

use datafusion::arrow::datatypes::{DataType, Field, SchemaRef};
use datafusion::execution::SessionState;
use datafusion::sql::sqlparser::tokenizer::TokenWithSpan;

use crate::cursor_stage::{self, stream_schema};
use crate::dialect::{is_blank, tokenize};
use crate::error::{AnalyticsError, Result};
use crate::item_call::{ItemCall, ItemFunction};
use crate::pump::{CompiledPump, compile, visible_columns};
use crate::script::PumpDef;

pub const MOST_FREQUENT_VALUES: &str = "MOST_FREQUENT_VALUES";
pub const NUMBER_OF_DISTINCT_ITEMS: &str = "NUMBER_OF_DISTINCT_ITEMS";

pub fn cursor_stream_name(pump: &str) -> String {
    format!("__FRAMELOG_CURSOR_{pump}")
}

pub fn counts_stream_name(pump: &str) -> String {
    format!("__FRAMELOG_ITEMS_{pump}")
}

/// The cursor's stage: its rows into the cursor stream, whose schema goes into `streams`.
pub async fn compile_cursor(
    def: &PumpDef,
    item: &ItemCall,
    streams: &mut BTreeMap<String, SchemaRef>,
    references: &[String],
    state: &SessionState,
) -> Result<CompiledPump> {
    let function = match item.function {
        ItemFunction::TopK { .. } => "TOP_K_ITEMS_TUMBLING",
        ItemFunction::CountDistinct => "COUNT_DISTINCT_ITEMS_TUMBLING",
    };
    let target = cursor_stream_name(&def.name);
    cursor_stage::compile_cursor(def, function, &item.call.inner, &target, Vec::new(), streams, references, state).await
}

/// Whether the pump's query is `SELECT STREAM * FROM` the call and nothing more.
pub fn writes_directly(def: &PumpDef, item: &ItemCall) -> bool {
    let significant = |tokens: &[TokenWithSpan]| -> Vec<String> {
        tokens.iter().filter(|t| !is_blank(&t.token)).map(|t| t.token.to_string().to_ascii_uppercase()).collect()
    };
    significant(&def.query[..item.call.from]) == ["SELECT", "STREAM", "*", "FROM"]
        && significant(&def.query[item.call.to..]).is_empty()
}

/// The tumbling count over the cursor stream. With `direct`, it is the pump itself writing
/// its target; otherwise it writes the counts stream, whose schema goes into `streams`.
pub async fn compile_counting(
    def: &PumpDef,
    item: &ItemCall,
    direct: bool,
    streams: &mut BTreeMap<String, SchemaRef>,
    references: &[String],
    state: &SessionState,
) -> Result<CompiledPump> {
    let at = |message: String| AnalyticsError::code(item.call.at.line, item.call.at.column, message);
    let source = cursor_stream_name(&def.name);
    let cursor = streams.get(&source).cloned().ok_or_else(|| AnalyticsError::Plan(source.clone()))?;
    let columns = visible_columns(&cursor);
    let column = columns
        .iter()
        .find(|c| **c == item.column)
        .or_else(|| columns.iter().find(|c| c.eq_ignore_ascii_case(&item.column)))
        .cloned()
        .ok_or_else(|| at(format!("The cursor has no column '{}'.", item.column)))?;
    let window = format!("STEP(\"{source}\".ROWTIME BY INTERVAL '{}' SECOND)", item.window_s);
    let (sql, fields) = match item.function {
        ItemFunction::TopK { k } => {
            let field = cursor.field_with_name(&column).map_err(|e| at(e.to_string()))?.clone();
            (
                format!(
                    "SELECT STREAM \"{column}\", COUNT(*) AS \"{MOST_FREQUENT_VALUES}\" FROM \"{source}\" \
                     GROUP BY \"{column}\", {window} ORDER BY \"{MOST_FREQUENT_VALUES}\" DESC, \"{column}\" LIMIT {k}"
                ),
                vec![field, Field::new(MOST_FREQUENT_VALUES, DataType::Int64, true)],
            )
        }
        ItemFunction::CountDistinct => (
            format!(
                "SELECT STREAM COUNT(DISTINCT \"{column}\") AS \"{NUMBER_OF_DISTINCT_ITEMS}\" FROM \"{source}\" GROUP BY {window}"
            ),
            vec![Field::new(NUMBER_OF_DISTINCT_ITEMS, DataType::Int64, true)],
        ),
    };
    let query = tokenize(&sql)?;
    if direct {
        return compile(&PumpDef { query, ..def.clone() }, streams, references, state).await;
    }
    let target = counts_stream_name(&def.name);
    streams.insert(target.clone(), stream_schema(fields.clone()));
    let stage = PumpDef {
        name: target.clone(),
        target,
        target_columns: Some(fields.iter().map(|f| f.name().clone()).collect()),
        query,
        at: def.at,
    };
    compile(&stage, streams, references, state).await
}

/// The pump's own query reading the counts stream where the call was.
pub async fn compile_outer(
    def: &PumpDef,
    item: &ItemCall,
    streams: &BTreeMap<String, SchemaRef>,
    references: &[String],
    state: &SessionState,
) -> Result<CompiledPump> {
    let counts = counts_stream_name(&def.name);
    cursor_stage::compile_outer(def, (item.call.from, item.call.to), &counts, streams, references, state).await
}
