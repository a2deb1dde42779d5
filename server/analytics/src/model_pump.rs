//! A pump that calls RANDOM_CUT_FOREST (or its explained form) or HOTSPOTS runs as two: the
//! scoring stage (the cursor's query, whose rows the model scores into a hidden stream of their
//! columns and the function's own) and the pump's own query, reading that stream where the
//! call was written.

use std::collections::BTreeMap;

use datafusion::arrow::datatypes::{DataType, Field, SchemaRef};
use datafusion::execution::SessionState;
use datafusion::sql::sqlparser::tokenizer::TokenWithSpan;

use crate::cursor_stage;
use crate::error::{AnalyticsError, Result};
use crate::forest::{ANOMALY_EXPLANATION, ANOMALY_SCORE, Forest};
use crate::forest_call::{self, ForestCall};
use crate::hotspot_call::{self, HotspotCall};
use crate::hotspots::{HOTSPOTS_RESULT, Hotspots};
use crate::model::Model;
use crate::pump::{CompiledPump, PumpKind};
use crate::script::PumpDef;

/// A call of a scoring function in a pump's query.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelCall {
    Forest(ForestCall),
    Hotspots(HotspotCall),
}

impl ModelCall {
    /// The call in `tokens`, if there is one.
    pub fn find(tokens: &[TokenWithSpan]) -> Result<Option<ModelCall>> {
        if let Some(forest) = forest_call::find(tokens)? {
            return Ok(Some(ModelCall::Forest(forest)));
        }
        Ok(hotspot_call::find(tokens)?.map(ModelCall::Hotspots))
    }

    fn function(&self) -> &'static str {
        match self {
            ModelCall::Forest(_) => forest_call::FUNCTION,
            ModelCall::Hotspots(_) => hotspot_call::FUNCTION,
        }
    }

    fn inner(&self) -> &[TokenWithSpan] {
        match self {
            ModelCall::Forest(call) => &call.inner,
            ModelCall::Hotspots(call) => &call.call.inner,
        }
    }

    /// The call's tokens, `TABLE` to its closing parenthesis: `[from, to)`.
    fn extent(&self) -> (usize, usize) {
        match self {
            ModelCall::Forest(call) => (call.from, call.to),
            ModelCall::Hotspots(call) => (call.call.from, call.call.to),
        }
    }

    /// The columns the function adds to the cursor's.
    fn added(&self) -> Vec<Field> {
        match self {
            ModelCall::Forest(call) => {
                let mut added = vec![Field::new(ANOMALY_SCORE, DataType::Float64, true)];
                if call.params.explanation.is_some() {
                    added.push(Field::new(ANOMALY_EXPLANATION, DataType::Utf8, true));
                }
                added
            }
            ModelCall::Hotspots(_) => vec![Field::new(HOTSPOTS_RESULT, DataType::Utf8, true)],
        }
    }

    /// The stream the stage of pump `pump` writes its scored rows into.
    fn scored_stream(&self, pump: &str) -> String {
        match self {
            ModelCall::Forest(_) => format!("__FRAMELOG_RCF_{pump}"),
            ModelCall::Hotspots(_) => format!("__FRAMELOG_HOTSPOTS_{pump}"),
        }
    }

    /// A fresh model for rows of the scored stream's `schema`.
    pub fn model(&self, schema: &SchemaRef) -> Result<Model> {
        Ok(match self {
            ModelCall::Forest(call) => Model::Forest(Box::new(Forest::new(call.params, schema)?)),
            ModelCall::Hotspots(call) => Model::Hotspots(Box::new(Hotspots::new(call.params, schema)?)),
        })
    }
}

/// The scoring stage of `def`, whose query holds `call`: the cursor's query writing the scored
/// stream, whose schema is added to `streams` (the caller registers its table).
pub async fn compile_stage(
    def: &PumpDef,
    call: &ModelCall,
    streams: &mut BTreeMap<String, SchemaRef>,
    references: &[String],
    state: &SessionState,
) -> Result<CompiledPump> {
    if ModelCall::find(call.inner())?.is_some() {
        return Err(AnalyticsError::code(
            def.at.line,
            def.at.column,
            format!("The cursor of {} cannot call a scoring function again.", call.function()),
        ));
    }
    let target = call.scored_stream(&def.name);
    let mut stage = cursor_stage::compile_cursor(
        def,
        call.function(),
        call.inner(),
        &target,
        call.added(),
        streams,
        references,
        state,
    )
    .await?;
    stage.kind = PumpKind::Scored;
    Ok(stage)
}

/// The pump's own query, reading the scored stream (registered in `state`) where the call was.
pub async fn compile_outer(
    def: &PumpDef,
    call: &ModelCall,
    streams: &BTreeMap<String, SchemaRef>,
    references: &[String],
    state: &SessionState,
) -> Result<CompiledPump> {
    let scored = call.scored_stream(&def.name);
    cursor_stage::compile_outer(def, call.extent(), &scored, streams, references, state).await
}
