//! The stages a table function over a cursor compiles into: the cursor's query writing a hidden
//! stream of its columns (and any the function adds), and the pump's own query reading a
//! hidden stream where the call was written.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::execution::SessionState;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Word};

use crate::batches::ROWTIME_TYPE;
use crate::dialect::{HIDDEN_NEW, HIDDEN_ROWTIME, ROWTIME};
use crate::error::{AnalyticsError, Result};
use crate::pump::{CompiledPump, compile, plan_query};
use crate::script::PumpDef;

/// The cursor `inner` of `def`'s call to `function`, compiled to write `target`: its rows one
/// by one (no GROUP BY or OVER), its columns then `added`. `target`'s schema goes into
/// `streams` (the caller registers its table).
#[allow(clippy::too_many_arguments)]
pub async fn compile_cursor(
    def: &PumpDef,
    function: &str,
    inner: &[TokenWithSpan],
    target: &str,
    added: Vec<Field>,
    streams: &mut BTreeMap<String, SchemaRef>,
    references: &[String],
    state: &SessionState,
) -> Result<CompiledPump> {
    let at = |message: String| AnalyticsError::code(def.at.line, def.at.column, message);
    let mut stage = PumpDef { target: target.to_string(), query: inner.to_vec(), ..def.clone() };
    let (translation, plan) = plan_query(&stage, streams, state).await?;
    if translation.grouped || translation.sliding.is_some() {
        return Err(at(format!("The cursor of {function} reads rows one by one: no GROUP BY or OVER in it.")));
    }
    let columns: Vec<Field> = plan
        .schema()
        .fields()
        .iter()
        .filter(|f| f.name() != HIDDEN_ROWTIME && f.name() != HIDDEN_NEW && f.name() != ROWTIME)
        .map(|f| Field::new(f.name(), f.data_type().clone(), true))
        .collect();
    stage.target_columns = Some(columns.iter().map(|f| f.name().clone()).collect());
    streams.insert(target.to_string(), stream_schema(columns.into_iter().chain(added).collect()));
    compile(&stage, streams, references, state).await
}

/// An in-application stream's schema of these columns: ROWTIME first, the hidden flag last.
pub fn stream_schema(columns: Vec<Field>) -> SchemaRef {
    let mut fields = vec![Field::new(ROWTIME, ROWTIME_TYPE, false)];
    fields.extend(columns);
    fields.push(Field::new(HIDDEN_NEW, DataType::Boolean, false));
    Arc::new(Schema::new(fields))
}

/// The pump's own query reading `stream` in place of the call's tokens `[from, to)`.
pub async fn compile_outer(
    def: &PumpDef,
    (from, to): (usize, usize),
    stream: &str,
    streams: &BTreeMap<String, SchemaRef>,
    references: &[String],
    state: &SessionState,
) -> Result<CompiledPump> {
    let name = Token::Word(Word { value: stream.to_string(), quote_style: Some('"'), keyword: Keyword::NoKeyword });
    let mut tokens = def.query[..from].to_vec();
    tokens.push(TokenWithSpan { token: name, span: def.query[from].span });
    tokens.extend_from_slice(&def.query[to..]);
    compile(&PumpDef { query: tokens, ..def.clone() }, streams, references, state).await
}
