//! A pump that calls RANDOM_CUT_FOREST runs as two: the forest stage (the cursor's query, whose
//! rows the forest scores into a hidden stream of their columns and ANOMALY_SCORE) and the
//! pump's own query, reading that stream where the call was written.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::execution::SessionState;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Word};

use crate::batches::ROWTIME_TYPE;
use crate::dialect::{HIDDEN_NEW, HIDDEN_ROWTIME, ROWTIME};
use crate::error::{AnalyticsError, Result};
use crate::forest::ANOMALY_SCORE;
use crate::forest_call::{self, ForestCall};
use crate::pump::{CompiledPump, PumpKind, compile, plan_query};
use crate::script::PumpDef;

/// The stream a pump's forest writes its scored rows into.
pub fn scored_stream_name(pump: &str) -> String {
    format!("__FRAMELOG_RCF_{pump}")
}

/// The forest stage of `def`, whose query holds `call`: the cursor's query writing the scored
/// stream, whose schema is added to `streams` (the caller registers its table).
pub async fn compile_stage(
    def: &PumpDef,
    call: &ForestCall,
    streams: &mut BTreeMap<String, SchemaRef>,
    references: &[String],
    state: &SessionState,
) -> Result<CompiledPump> {
    let at = |message: &str| AnalyticsError::code(def.at.line, def.at.column, message);
    if forest_call::find(&call.inner)?.is_some() {
        return Err(at("A RANDOM_CUT_FOREST cursor cannot call RANDOM_CUT_FOREST again."));
    }
    let scored = scored_stream_name(&def.name);
    let mut inner = PumpDef { target: scored.clone(), query: call.inner.clone(), ..def.clone() };
    let (translation, plan) = plan_query(&inner, streams, state).await?;
    if translation.grouped || translation.sliding.is_some() {
        return Err(at("The cursor of RANDOM_CUT_FOREST reads rows one by one: no GROUP BY or OVER in it."));
    }
    let columns: Vec<Field> = plan
        .schema()
        .fields()
        .iter()
        .filter(|f| f.name() != HIDDEN_ROWTIME && f.name() != HIDDEN_NEW && f.name() != ROWTIME)
        .map(|f| Field::new(f.name(), f.data_type().clone(), true))
        .collect();
    inner.target_columns = Some(columns.iter().map(|f| f.name().clone()).collect());
    streams.insert(scored, scored_schema(columns));
    let mut stage = compile(&inner, streams, references, state).await?;
    stage.kind = PumpKind::Forest(call.params);
    Ok(stage)
}

/// The pump's own query, reading the scored stream (registered in `state`) where the call was.
pub async fn compile_outer(
    def: &PumpDef,
    call: &ForestCall,
    streams: &BTreeMap<String, SchemaRef>,
    references: &[String],
    state: &SessionState,
) -> Result<CompiledPump> {
    let outer = PumpDef { query: with_scored_stream(&def.query, call, &scored_stream_name(&def.name)), ..def.clone() };
    compile(&outer, streams, references, state).await
}

/// ROWTIME, the cursor's columns, ANOMALY_SCORE, then the hidden flag.
fn scored_schema(columns: Vec<Field>) -> SchemaRef {
    let mut fields = vec![Field::new(ROWTIME, ROWTIME_TYPE, false)];
    fields.extend(columns);
    fields.push(Field::new(ANOMALY_SCORE, DataType::Float64, true));
    fields.push(Field::new(HIDDEN_NEW, DataType::Boolean, false));
    Arc::new(Schema::new(fields))
}

/// The query with the call's tokens replaced by the scored stream's quoted name.
fn with_scored_stream(query: &[TokenWithSpan], call: &ForestCall, scored: &str) -> Vec<TokenWithSpan> {
    let name = Token::Word(Word { value: scored.to_string(), quote_style: Some('"'), keyword: Keyword::NoKeyword });
    let mut tokens = query[..call.from].to_vec();
    tokens.push(TokenWithSpan { token: name, span: query[call.from].span });
    tokens.extend_from_slice(&query[call.to..]);
    tokens
}
