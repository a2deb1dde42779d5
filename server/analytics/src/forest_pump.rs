//! A pump that calls RANDOM_CUT_FOREST runs as two: the forest stage (the cursor's query, whose
//! rows the forest scores into a hidden stream of their columns and ANOMALY_SCORE) and the
//! pump's own query, reading that stream where the call was written.

use std::collections::BTreeMap;

use datafusion::arrow::datatypes::{DataType, Field, SchemaRef};
use datafusion::execution::SessionState;

use crate::cursor_stage;
use crate::error::{AnalyticsError, Result};
use crate::forest::{ANOMALY_EXPLANATION, ANOMALY_SCORE};
use crate::forest_call::{self, FUNCTION, ForestCall};
use crate::pump::{CompiledPump, PumpKind};
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
    if forest_call::find(&call.inner)?.is_some() {
        return Err(AnalyticsError::code(
            def.at.line,
            def.at.column,
            "A RANDOM_CUT_FOREST cursor cannot call RANDOM_CUT_FOREST again.",
        ));
    }
    let mut score = vec![Field::new(ANOMALY_SCORE, DataType::Float64, true)];
    if call.params.explanation.is_some() {
        score.push(Field::new(ANOMALY_EXPLANATION, DataType::Utf8, true));
    }
    let target = scored_stream_name(&def.name);
    let mut stage =
        cursor_stage::compile_cursor(def, FUNCTION, &call.inner, &target, score, streams, references, state).await?;
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
    let scored = scored_stream_name(&def.name);
    cursor_stage::compile_outer(def, (call.from, call.to), &scored, streams, references, state).await
}
