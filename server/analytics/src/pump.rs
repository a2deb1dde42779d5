//! A pump compiled: its query rewritten (dialect.rs) and planned by DataFusion against the
//! application's streams, its result columns matched to its target stream's, and what kind of
//! continuous query it is (row by row, tumbling window, sliding window).

use std::collections::BTreeMap;

use datafusion::arrow::compute::can_cast_types;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::tokenizer::{Location, TokenWithSpan};

use crate::dialect::{HIDDEN_NEW, HIDDEN_ROWTIME, History, ROWTIME, Translation, translate};
use crate::error::{AnalyticsError, Result};
use crate::partition_windows::Rule;
use crate::script::PumpDef;
use crate::{session_clause, stagger_clause, stream_join};

/// How a pump turns rows into rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PumpKind {
    /// Each batch on its own (projection, WHERE, joins with reference tables).
    Rows,
    /// GROUP BY a STEP or FLOOR of ROWTIME: one result per window when it closes.
    Tumbling { length_ms: i64 },
    /// OVER windows: each row's result over the rows before it.
    Sliding(History),
    /// The cursor of RANDOM_CUT_FOREST or HOTSPOTS: each row's result, scored by the pump's
    /// model.
    Scored,
    /// WINDOWED BY STAGGER or GROUP BY SESSION: a window per partition, opened by its first
    /// row and ended by the rule.
    Partitioned(Rule),
    /// A stream-to-stream join: each row of the source joins the rows of `history` (the
    /// windowed stream) from `range_ms` before it.
    Join { range_ms: i64 },
}

#[derive(Debug, Clone)]
pub struct CompiledPump {
    pub name: String,
    pub target: String,
    pub source: String,
    pub kind: PumpKind,
    pub plan: LogicalPlan,
    /// For each visible column of the target, the result column that fills it.
    pub mapping: Vec<Option<usize>>,
    pub rowtime_column: Option<usize>,
    pub new_column: Option<usize>,
    /// For a stagger or session window: each source row's partition and whether the WHERE
    /// keeps it.
    pub key_plan: Option<LogicalPlan>,
    /// For a stream-to-stream join: the windowed stream.
    pub history: Option<String>,
    /// For a sliding window: the source columns its `ROWS n PRECEDING` count within (`None`:
    /// an expression, so the last rows of the whole stream are kept).
    pub rows_partition: Option<Vec<String>>,
}

/// The visible columns of a stream's table (neither ROWTIME nor the hidden flag).
pub fn visible_columns(schema: &SchemaRef) -> Vec<String> {
    schema.fields().iter().map(|f| f.name().clone()).filter(|n| n != ROWTIME && n != HIDDEN_NEW).collect()
}

/// Compiles `def` against `streams` (in-application streams by name) and `references`
/// (reference tables by name); `state` knows them all as tables.
pub async fn compile(
    def: &PumpDef,
    streams: &BTreeMap<String, SchemaRef>,
    references: &[String],
    state: &SessionState,
) -> Result<CompiledPump> {
    let stagger = match stagger_clause::find(&def.query)? {
        Some(clause) => Some(clause),
        None => session_clause::find(&def.query)?,
    };
    let joined = if stagger.is_none() { stream_join::find(&def.query)? } else { None };
    let def = &match (&stagger, &joined) {
        (Some(clause), _) => PumpDef { query: clause.query.clone(), ..def.clone() },
        (None, Some(join)) => PumpDef { query: join.query.clone(), ..def.clone() },
        (None, None) => def.clone(),
    };
    let (translation, plan) = plan_query(def, streams, state).await?;
    let at = |message: String| AnalyticsError::code(def.at.line, def.at.column, message);
    let key_plan = match &stagger {
        Some(clause) => {
            Some(plan_query(&PumpDef { query: clause.key_query.clone(), ..def.clone() }, streams, state).await?.1)
        }
        None => None,
    };
    if translation.grouped && translation.tumbling_ms.is_none() && stagger.is_none() {
        return Err(at(format!(
            "Pump {}: a streaming GROUP BY needs a window on ROWTIME: STEP(ROWTIME BY INTERVAL 'n' SECOND) or FLOOR(ROWTIME TO MINUTE).",
            def.name
        )));
    }
    let stream_sources: Vec<&String> = translation.sources.iter().filter(|s| !references.contains(s)).collect();
    let source = match (stream_sources.as_slice(), &joined) {
        ([one], None) => (*one).clone(),
        ([driving, history], Some(join)) if **history == join.history => (*driving).clone(),
        ([], _) => return Err(at(format!("Pump {} reads no in-application stream.", def.name))),
        _ => {
            return Err(at(format!(
                "Pump {}: two streams join only with a window on one of them: FROM a OVER (RANGE INTERVAL 'n' unit PRECEDING) JOIN b ON ...",
                def.name
            )));
        }
    };
    if joined.is_some() && (translation.grouped || translation.sliding.is_some()) {
        return Err(at(format!(
            "Pump {}: a stream-to-stream join writes rows one by one; aggregate its rows in a pump of its own.",
            def.name
        )));
    }
    let target = streams.get(&def.target).ok_or_else(|| at(format!("Object '{}' not found", def.target)))?;
    let kind = match (&joined, &stagger, translation.tumbling_ms, translation.sliding) {
        (Some(join), ..) => PumpKind::Join { range_ms: join.range_ms as i64 },
        (None, Some(clause), _, _) => PumpKind::Partitioned(clause.rule),
        (None, None, Some(length_ms), _) => PumpKind::Tumbling { length_ms: length_ms as i64 },
        (None, None, None, Some(history)) => PumpKind::Sliding(history),
        (None, None, None, None) => PumpKind::Rows,
    };
    let result = plan.schema().clone();
    let find = |name: &str| result.fields().iter().position(|f| f.name() == name);
    let (rowtime_column, new_column) = (find(HIDDEN_ROWTIME), find(HIDDEN_NEW));
    let outputs: Vec<usize> =
        (0..result.fields().len()).filter(|i| Some(*i) != rowtime_column && Some(*i) != new_column).collect();
    let mapping = map_columns(def, target, &outputs)?;
    for (field, source_index) in target.fields().iter().skip(1).zip(&mapping) {
        let Some(index) = source_index else { continue };
        let from = result.field(*index);
        if !can_cast_types(from.data_type(), field.data_type()) {
            return Err(at(format!(
                "Cannot assign to target field '{}' of type {} from source field '{}' of type {}",
                field.name(),
                field.data_type(),
                from.name(),
                from.data_type()
            )));
        }
    }
    Ok(CompiledPump {
        name: def.name.clone(),
        target: def.target.clone(),
        source,
        kind,
        plan,
        mapping,
        rowtime_column,
        new_column,
        key_plan,
        history: joined.map(|join| join.history),
        rows_partition: translation.rows_partition.clone(),
    })
}

/// A pump's query rewritten and planned against the application's streams.
pub async fn plan_query(
    def: &PumpDef,
    streams: &BTreeMap<String, SchemaRef>,
    state: &SessionState,
) -> Result<(Translation, LogicalPlan)> {
    let columns_of = |name: &str| streams.get(name).map(visible_columns);
    let translation = translate(&def.query, &columns_of)?;
    let plan =
        state.create_logical_plan(&translation.sql).await.map_err(|e| locate(e, &translation, &def.query, def.at))?;
    Ok((translation, plan))
}

/// Which result column fills each visible target column: by the INSERT's column list, or by
/// position.
fn map_columns(def: &PumpDef, target: &SchemaRef, outputs: &[usize]) -> Result<Vec<Option<usize>>> {
    let target_columns = visible_columns(target);
    let named = def.target_columns.clone().unwrap_or_else(|| target_columns.clone());
    if named.len() != outputs.len() {
        return Err(AnalyticsError::code(
            def.at.line,
            def.at.column,
            format!(
                "Number of INSERT target columns ({}) does not equal number of source items ({})",
                named.len(),
                outputs.len()
            ),
        ));
    }
    if let Some(unknown) = named.iter().find(|n| !target_columns.contains(n)) {
        return Err(AnalyticsError::code(
            def.at.line,
            def.at.column,
            format!("Unknown target column '{unknown}' in stream {}", def.target),
        ));
    }
    Ok(target_columns.iter().map(|column| named.iter().position(|n| n == column).map(|i| outputs[i])).collect())
}

/// DataFusion's error at the place in the code it concerns: a parse error's line and column,
/// or the first mention of the identifier a planning error names.
fn locate(
    error: DataFusionError,
    translation: &Translation,
    tokens: &[TokenWithSpan],
    pump_at: Location,
) -> AnalyticsError {
    let message = error.to_string();
    let place = parse_position(&message)
        .map(|(line, column)| translation.original(line, column))
        .or_else(|| named_identifiers(&message).iter().find_map(|name| translation.find_identifier(tokens, name)))
        .unwrap_or(pump_at);
    let message = message
        .trim_start_matches("SQL error: ")
        .trim_start_matches("Error during planning: ")
        .trim_start_matches("Schema error: ")
        .to_string();
    AnalyticsError::code(place.line, place.column, without_hidden(message))
}

/// The message without the hidden columns a planner lists among valid fields
/// (`, "S"."__FRAMELOG_NEW"`).
fn without_hidden(mut message: String) -> String {
    while let Some(hidden) = message.find("\"__FRAMELOG_") {
        let start = message[..hidden].rfind(", ").unwrap_or(hidden);
        let end = message[hidden + 1..].find('"').map_or(message.len(), |e| hidden + e + 2);
        message.replace_range(start..end, "");
    }
    message
}

/// `... at Line: 3, Column: 14` in a parser's message.
fn parse_position(message: &str) -> Option<(u64, u64)> {
    let (_, rest) = message.rsplit_once("Line: ")?;
    let (line, rest) = rest.split_once(", Column: ")?;
    let column: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    Some((line.trim().parse().ok()?, column.parse().ok()?))
}

/// Names quoted in a planner's message (`No field named "S"."PRICE"`, `table 'X' not found`),
/// innermost part last.
fn named_identifiers(message: &str) -> Vec<String> {
    // Pieces alternate between unquoted text and quoted names; quoted names joined by "." are
    // one qualified name.
    let mut qualified: Vec<Vec<String>> = Vec::new();
    let mut joined = false;
    for (i, piece) in message.split(['"', '\'']).enumerate() {
        if i % 2 == 0 {
            joined = piece == ".";
        } else if joined && let Some(last) = qualified.last_mut() {
            last.push(piece.to_string());
        } else {
            qualified.push(vec![piece.to_string()]);
        }
    }
    let mut names: Vec<String> =
        qualified.into_iter().flat_map(|parts| parts.into_iter().rev()).filter(|s| !s.is_empty()).collect();
    if let Some((_, after)) = message.split_once("named ") {
        let bare: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        names.push(bare.to_ascii_uppercase());
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parser_position_is_read() {
        assert_eq!(parse_position("sql parser error: Expected: ), found: x at Line: 3, Column: 14"), Some((3, 14)));
        assert_eq!(parse_position("no position"), None);
    }

    #[test]
    fn hidden_columns_leave_messages() {
        let message = "Valid fields are \"S\".\"ROWTIME\", \"S\".\"PRICE\", \"S\".\"__FRAMELOG_NEW\".".to_string();
        assert_eq!(without_hidden(message), "Valid fields are \"S\".\"ROWTIME\", \"S\".\"PRICE\".");
    }

    #[test]
    fn quoted_names_are_found_innermost_first() {
        let names =
            named_identifiers("Schema error: No field named \"S\".\"PRICEX\". Valid fields are \"S\".\"PRICE\".");
        assert_eq!(names[0], "PRICEX");
        assert!(names.contains(&"S".to_string()));
    }
}
