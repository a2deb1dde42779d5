//! A running application: its in-application streams as tables, its pumps, and the state of
//! their windows. Rows come in through `push` (a batch of the input stream) and time moves on
//! through `advance` (the watermark: no row with an earlier ROWTIME will come); both answer
//! the rows every pump wrote, stream by stream, and the errors of pumps that failed.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::TableReference;
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::batches::{
    Rowtime, in_value_order, into_target, keep_rows, rowtimes, split_by_window, stream_schema, visible,
};
use crate::dialect::{HIDDEN_NEW, HIDDEN_ROWTIME};
use crate::error::{AnalyticsError, Result};
use crate::join_rows::JoinRows;
use crate::model::Model;
use crate::model_pump::{self, ModelCall};
use crate::partition_windows::PartitionWindows;
use crate::pump::{CompiledPump, PumpKind, compile};
use crate::script::parse_script;
use crate::sliding_history::trim_history;
use crate::sql_type::SqlType;
use crate::swap_table::SwapTable;
use crate::{item_call, item_pump};

/// A stream the application reads (an input), with its columns.
#[derive(Debug, Clone, PartialEq)]
pub struct InputDef {
    pub name: String,
    pub columns: Vec<(String, SqlType)>,
}

/// Rows one pump wrote into a stream.
#[derive(Debug, Clone)]
pub struct Emitted {
    pub stream: String,
    /// ROWTIME and the stream's columns.
    pub rows: RecordBatch,
    /// The window the rows close, for a windowed pump: the same after a replay.
    pub window: Option<WindowId>,
}

/// A tumbling window's identity: its pump and its bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowId {
    pub pump: String,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// A pump that failed on a batch (or a window), whose rows it did not write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunError {
    pub pump: String,
    pub message: String,
    pub rows: usize,
    /// The earliest ROWTIME among the rows, in ms.
    pub rowtime_ms: i64,
}

/// What a step produced.
#[derive(Debug, Default)]
pub struct Step {
    pub emitted: Vec<Emitted>,
    pub errors: Vec<RunError>,
}

/// Where each windowed pump stands, for checkpoints: windows ending at or before
/// `emitted_through_ms` were written and are never written again.
pub type WindowMarks = BTreeMap<String, i64>;

#[derive(Debug)]
struct Pump {
    compiled: CompiledPump,
    /// Tumbling: rows by window start. Sliding: the history (one entry).
    open: BTreeMap<i64, Vec<RecordBatch>>,
    emitted_through_ms: i64,
    /// The model of a RANDOM_CUT_FOREST or HOTSPOTS stage.
    model: Option<Model>,
    /// The windows of a stagger or session pump.
    partitioned: Option<PartitionWindows>,
    /// A stream-to-stream join's windowed rows, and its driving rows waiting for the watermark.
    joined: Option<JoinRows>,
}

impl Pump {
    fn new(compiled: CompiledPump, model: Option<Model>) -> Pump {
        let partitioned = match compiled.kind {
            PumpKind::Partitioned(rule) => Some(PartitionWindows::new(rule)),
            _ => None,
        };
        let joined = matches!(compiled.kind, PumpKind::Join { .. }).then(JoinRows::default);
        Pump { compiled, open: BTreeMap::new(), emitted_through_ms: i64::MIN, model, partitioned, joined }
    }
}

pub struct Application {
    ctx: SessionContext,
    tables: BTreeMap<String, (SchemaRef, Arc<SwapTable>)>,
    pumps: Vec<Pump>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let streams: Vec<&String> = self.tables.keys().collect();
        let pumps: Vec<&str> = self.pumps.iter().map(|p| p.compiled.name.as_str()).collect();
        f.debug_struct("Application").field("streams", &streams).field("pumps", &pumps).finish_non_exhaustive()
    }
}

impl Application {
    /// Compiles `code` with `inputs` (the input streams) and `references` (reference tables).
    pub async fn compile(
        code: &str,
        inputs: &[InputDef],
        references: Vec<(String, RecordBatch)>,
    ) -> Result<Application> {
        let script = parse_script(code)?;
        let config = SessionConfig::new().with_target_partitions(1).with_information_schema(false);
        let ctx = SessionContext::new_with_config(config);
        let mut schemas: BTreeMap<String, SchemaRef> = BTreeMap::new();
        for input in inputs {
            schemas.insert(input.name.clone(), stream_schema(&input.columns));
        }
        for stream in &script.streams {
            if schemas.insert(stream.name.clone(), stream_schema(&stream.columns)).is_some() {
                let at = stream.at;
                return Err(AnalyticsError::code(
                    at.line,
                    at.column,
                    format!("Stream {} is defined twice.", stream.name),
                ));
            }
        }
        let mut tables = BTreeMap::new();
        for (name, schema) in &schemas {
            let table = SwapTable::new(schema.clone());
            register(&ctx, name, table.clone())?;
            tables.insert(name.clone(), (schema.clone(), table));
        }
        let reference_names: Vec<String> = references.iter().map(|(name, _)| name.clone()).collect();
        for (name, batch) in references {
            let table = MemTable::try_new(batch.schema(), vec![vec![batch]]).map_err(AnalyticsError::Runtime)?;
            register(&ctx, &name, Arc::new(table))?;
        }
        let mut pumps = Vec::new();
        for def in &script.pumps {
            if let Some(item) = item_call::find(&def.query)? {
                let state = ctx.state();
                let cursor = item_pump::compile_cursor(def, &item, &mut schemas, &reference_names, &state).await?;
                add_stream(&ctx, &mut tables, &schemas, &cursor.target)?;
                pumps.push(Pump::new(cursor, None));
                let direct = item_pump::writes_directly(def, &item);
                let counting =
                    item_pump::compile_counting(def, &item, direct, &mut schemas, &reference_names, &state).await?;
                let outer = match direct {
                    true => None,
                    false => {
                        add_stream(&ctx, &mut tables, &schemas, &counting.target)?;
                        Some(item_pump::compile_outer(def, &item, &schemas, &reference_names, &ctx.state()).await?)
                    }
                };
                pumps.push(Pump::new(counting, None));
                pumps.extend(outer.map(|outer| Pump::new(outer, None)));
                continue;
            }
            let Some(call) = ModelCall::find(&def.query)? else {
                pumps.push(Pump::new(compile(def, &schemas, &reference_names, &ctx.state()).await?, None));
                continue;
            };
            let stage = model_pump::compile_stage(def, &call, &mut schemas, &reference_names, &ctx.state()).await?;
            let scored = add_stream(&ctx, &mut tables, &schemas, &stage.target)?;
            let model =
                call.model(&scored).map_err(|e| AnalyticsError::code(def.at.line, def.at.column, e.to_string()))?;
            let outer = model_pump::compile_outer(def, &call, &schemas, &reference_names, &ctx.state()).await?;
            pumps.push(Pump::new(stage, Some(model)));
            pumps.push(Pump::new(outer, None));
        }
        Ok(Application { ctx, tables, pumps })
    }

    /// The columns of a stream's table (ROWTIME first, the hidden flag last).
    pub fn schema(&self, stream: &str) -> Option<SchemaRef> {
        self.tables.get(stream).map(|(schema, _)| schema.clone())
    }

    /// Restores where windowed pumps stood at a checkpoint.
    pub fn restore(&mut self, marks: &WindowMarks) {
        for pump in &mut self.pumps {
            if let Some(mark) = marks.get(&pump.compiled.name) {
                pump.emitted_through_ms = *mark;
            }
        }
    }

    /// The streams of scoring stages (RANDOM_CUT_FOREST, HOTSPOTS), with the ROWTIME of the last
    /// row each model took in.
    pub fn models(&self) -> Vec<(String, Option<i64>)> {
        self.pumps
            .iter()
            .filter_map(|p| p.model.as_ref().map(|m| (p.compiled.target.clone(), m.absorbed_through_ms())))
            .collect()
    }

    /// The model of the stage writing `stream`, as bytes (`restore_model` takes it up).
    pub fn snapshot_model(&self, stream: &str) -> Result<Vec<u8>> {
        self.model_of(stream).ok_or_else(|| AnalyticsError::Plan(format!("no model writes {stream}")))?.snapshot()
    }

    /// Puts back a model after a restart: rows it took in are skipped in the replay.
    pub fn restore_model(&mut self, stream: &str, snapshot: &[u8]) -> Result<()> {
        let pump = self.pumps.iter_mut().find(|p| p.model.is_some() && p.compiled.target == stream);
        match pump.and_then(|p| p.model.as_mut()) {
            Some(model) => model.restore(snapshot),
            None => Err(AnalyticsError::Plan(format!("no model writes {stream}"))),
        }
    }

    fn model_of(&self, stream: &str) -> Option<&Model> {
        self.pumps.iter().find(|p| p.compiled.target == stream).and_then(|p| p.model.as_ref())
    }

    /// Where windowed pumps stand now.
    pub fn marks(&self) -> WindowMarks {
        self.pumps
            .iter()
            .filter(|p| matches!(p.compiled.kind, PumpKind::Tumbling { .. } | PumpKind::Join { .. }))
            .map(|p| (p.compiled.name.clone(), p.emitted_through_ms))
            .collect()
    }

    /// The earliest ROWTIME still held by an open window: input from there on must be read
    /// again after a restart.
    pub fn held_from_ms(&self) -> Option<i64> {
        let tumbling = self
            .pumps
            .iter()
            .filter(|p| matches!(p.compiled.kind, PumpKind::Tumbling { .. }))
            .filter_map(|p| p.open.keys().next().copied());
        let partitioned = self.pumps.iter().filter_map(|p| p.partitioned.as_ref()?.held_from_ms());
        let joined = self.pumps.iter().filter_map(|p| p.joined.as_ref()?.held_from_ms());
        tumbling.chain(partitioned).chain(joined).min()
    }

    /// Each stagger or session pump's open windows (partition in hex, opening ms), for a
    /// checkpoint.
    pub fn partition_windows(&self) -> BTreeMap<String, Vec<(String, i64)>> {
        let open = |p: &Pump| Some((p.compiled.name.clone(), p.partitioned.as_ref()?.open_windows()));
        self.pumps.iter().filter_map(open).collect()
    }

    /// Where stagger and session windows stood at a checkpoint: a replay refills those.
    pub fn restore_partition_windows(&mut self, windows: &BTreeMap<String, Vec<(String, i64)>>) {
        for pump in &mut self.pumps {
            if let (Some(partitioned), Some(open)) = (pump.partitioned.as_mut(), windows.get(&pump.compiled.name)) {
                partitioned.restore(open);
            }
        }
    }

    /// Rows of the input `stream` (ROWTIME and its columns, in order). With `replay`, the rows
    /// were processed before a restart: they only refill windows and history.
    pub async fn push(&mut self, stream: &str, rows: RecordBatch, replay: bool) -> Result<Step> {
        let schema = self.schema(stream).ok_or_else(|| AnalyticsError::Plan(format!("Unknown stream {stream}.")))?;
        let rows = with_flag_column(&rows, &schema)?;
        let mut step = Step::default();
        self.cascade(VecDeque::from([(stream.to_string(), rows)]), replay, &mut step).await;
        Ok(step)
    }

    /// Feeds each queued batch to the pumps reading its stream, and what they write to the pumps
    /// reading theirs, until nothing is written.
    async fn cascade(&mut self, mut queue: VecDeque<(String, RecordBatch)>, replay: bool, step: &mut Step) {
        while let Some((stream, rows)) = queue.pop_front() {
            for index in 0..self.pumps.len() {
                self.keep_joined(index, &stream, &rows);
                if self.pumps[index].compiled.source != stream {
                    continue;
                }
                for (target, batch, window) in self.feed(index, &rows, replay, step).await {
                    if !replay {
                        step.emitted.push(Emitted { stream: target.clone(), rows: visible(&batch), window });
                    }
                    queue.push_back((target, batch));
                }
            }
            if queue.is_empty() {
                // A driving row the watermark has passed already (a late one) joins now, once
                // everything the step wrote is in.
                for (target, batch) in self.run_joins(None, step).await {
                    step.emitted.push(Emitted { stream: target.clone(), rows: visible(&batch), window: None });
                    queue.push_back((target, batch));
                }
            }
        }
    }

    /// Keeps `rows` of `stream` if pump `index` joins it as its windowed stream.
    fn keep_joined(&mut self, index: usize, stream: &str, rows: &RecordBatch) {
        let pump = &mut self.pumps[index];
        if let Some(joined) = pump.joined.as_mut().filter(|_| pump.compiled.history.as_deref() == Some(stream)) {
            joined.keep(rows);
        }
    }

    /// Runs each join over its driving rows the watermark has passed, moved to `watermark_ms`
    /// if given: its windowed stream's table holds the rows it kept while the plan runs.
    async fn run_joins(&mut self, watermark_ms: Option<i64>, step: &mut Step) -> Vec<(String, RecordBatch)> {
        let mut written = Vec::new();
        for index in 0..self.pumps.len() {
            let pump = &mut self.pumps[index];
            let (Some(joined), PumpKind::Join { range_ms }) = (pump.joined.as_mut(), pump.compiled.kind) else {
                continue;
            };
            let moved = watermark_ms.filter(|&ms| ms > pump.emitted_through_ms);
            pump.emitted_through_ms = moved.unwrap_or(pump.emitted_through_ms);
            let driving = joined.take_due(pump.emitted_through_ms);
            let history_rows = joined.history().to_vec();
            // The cutoff moves only with the watermark: trimming at every step end copied the
            // whole history again for nothing.
            if moved.is_some() {
                joined.trim(pump.emitted_through_ms, range_ms);
            }
            let history = pump.compiled.history.clone().unwrap_or_default();
            let Some((_, table)) = self.tables.get(&history).cloned().filter(|_| !driving.is_empty()) else {
                continue;
            };
            table.set(history_rows);
            let rowtime = self.pumps[index].compiled.rowtime_column.map_or(Rowtime::At(0), Rowtime::Column);
            let result = self.run(index, driving, rowtime, step).await;
            table.set(Vec::new());
            if let Some(batch) = result {
                written.push((self.pumps[index].compiled.target.clone(), batch));
            }
        }
        written
    }

    /// Closes every window that ends at or before `watermark_ms` and runs what reads the rows
    /// they write.
    pub async fn advance(&mut self, watermark_ms: i64) -> Result<Step> {
        let mut step = Step::default();
        for index in 0..self.pumps.len() {
            for (window, rows) in self.closing(index, watermark_ms) {
                self.pumps[index].emitted_through_ms = self.pumps[index].emitted_through_ms.max(window.end_ms);
                let written = self.run(index, rows, Rowtime::At(window.end_ms), &mut step).await;
                if let Some(batch) = written.and_then(|b| in_value_order(&b).ok()) {
                    let target = self.pumps[index].compiled.target.clone();
                    step.emitted.push(Emitted { stream: target.clone(), rows: visible(&batch), window: Some(window) });
                    self.cascade(VecDeque::from([(target, batch)]), false, &mut step).await;
                }
            }
        }
        for (target, batch) in self.run_joins(Some(watermark_ms), &mut step).await {
            step.emitted.push(Emitted { stream: target.clone(), rows: visible(&batch), window: None });
            self.cascade(VecDeque::from([(target, batch)]), false, &mut step).await;
        }
        Ok(step)
    }

    /// A windowed pump's windows ending at or before `watermark_ms`, taken out with their rows.
    fn closing(&mut self, index: usize, watermark_ms: i64) -> Vec<(WindowId, Vec<RecordBatch>)> {
        let pump = &mut self.pumps[index];
        let name = pump.compiled.name.clone();
        match pump.compiled.kind {
            PumpKind::Tumbling { length_ms } => {
                let starts: Vec<i64> = pump.open.keys().copied().filter(|s| s + length_ms <= watermark_ms).collect();
                starts
                    .into_iter()
                    .map(|start| {
                        let rows = pump.open.remove(&start).unwrap_or_default();
                        (WindowId { pump: name.clone(), start_ms: start, end_ms: start + length_ms }, rows)
                    })
                    .collect()
            }
            PumpKind::Partitioned(_) => {
                let Some(partitioned) = pump.partitioned.as_mut() else { return Vec::new() };
                partitioned
                    .close(watermark_ms)
                    .into_iter()
                    .map(|(end, closing)| {
                        (WindowId { pump: name.clone(), start_ms: closing.start_ms, end_ms: end }, closing.rows)
                    })
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    /// Gives one pump a batch of its source: rows to a window, or a result now.
    async fn feed(
        &mut self,
        index: usize,
        rows: &RecordBatch,
        replay: bool,
        step: &mut Step,
    ) -> Vec<(String, RecordBatch, Option<WindowId>)> {
        let target = self.pumps[index].compiled.target.clone();
        match self.pumps[index].compiled.kind {
            PumpKind::Tumbling { length_ms } => {
                self.hold(index, rows, length_ms, replay, step);
                Vec::new()
            }
            // Replayed rows go through too: a window downstream is refilled by them (the
            // runner writes nothing of a replay).
            PumpKind::Rows => {
                let rowtime = self.pumps[index].compiled.rowtime_column.map_or(Rowtime::At(0), Rowtime::Column);
                self.run(index, vec![rows.clone()], rowtime, step)
                    .await
                    .map(|b| vec![(target, b, None)])
                    .unwrap_or_default()
            }
            PumpKind::Sliding(history) => self
                .slide(index, rows, history, replay, step)
                .await
                .map(|b| vec![(target, b, None)])
                .unwrap_or_default(),
            PumpKind::Partitioned(_) => {
                self.hold_partitioned(index, rows, replay, step).await;
                Vec::new()
            }
            // A replayed driving row the watermark had passed joins nothing: its result was
            // written before the restart.
            PumpKind::Join { .. } => {
                let pump = &mut self.pumps[index];
                let after_ms = if replay { pump.emitted_through_ms } else { i64::MIN };
                if let Some(joined) = pump.joined.as_mut() {
                    joined.pend(rows, after_ms);
                }
                Vec::new()
            }
            PumpKind::Scored => {
                let scored = self.score(index, rows, replay, step).await;
                scored.filter(|_| !replay).map(|b| vec![(target, b, None)]).unwrap_or_default()
            }
        }
    }

    /// A scoring stage's step: the cursor's rows with the columns the model adds. Replayed rows
    /// only rebuild the model.
    async fn score(&mut self, index: usize, rows: &RecordBatch, replay: bool, step: &mut Step) -> Option<RecordBatch> {
        let rowtime = self.pumps[index].compiled.rowtime_column.map_or(Rowtime::At(0), Rowtime::Column);
        let cursor_rows = self.run(index, vec![rows.clone()], rowtime, step).await?;
        let pump = &mut self.pumps[index];
        let model = pump.model.as_mut()?;
        let scored = model.score(&cursor_rows, replay).and_then(|added| {
            // The scored stream ends with the added columns, then the hidden flag.
            let mut columns = cursor_rows.columns().to_vec();
            let first = columns.len() - 1 - added.len();
            columns.splice(first..first + added.len(), added);
            RecordBatch::try_new(cursor_rows.schema(), columns).map_err(|e| AnalyticsError::Runtime(e.into()))
        });
        match scored {
            Ok(batch) => Some(batch),
            Err(error) => {
                step.errors.push(run_error(&pump.compiled.name, error.to_string(), &cursor_rows));
                None
            }
        }
    }

    /// Puts rows into their tumbling windows; rows of a window already written are late.
    fn hold(&mut self, index: usize, rows: &RecordBatch, length_ms: i64, replay: bool, step: &mut Step) {
        let pump = &mut self.pumps[index];
        let windows = match split_by_window(rows, length_ms) {
            Ok(windows) => windows,
            Err(error) => return step.errors.push(run_error(&pump.compiled.name, error.to_string(), rows)),
        };
        for (start, batch) in windows {
            if start + length_ms <= pump.emitted_through_ms {
                if !replay {
                    let message =
                        format!("Late rows: the window ending at {} ms was already written.", start + length_ms);
                    step.errors.push(run_error(&pump.compiled.name, message, &batch));
                }
                continue;
            }
            pump.open.entry(start).or_default().push(batch);
        }
    }

    /// Puts rows into their partitions' stagger or session windows, by the pump's key query.
    async fn hold_partitioned(&mut self, index: usize, rows: &RecordBatch, replay: bool, step: &mut Step) {
        let pump = &self.pumps[index].compiled;
        let Some(key_plan) = pump.key_plan.clone() else { return };
        if rows.num_rows() == 0 {
            return;
        }
        let keys = self.execute(&pump.source, key_plan, vec![rows.clone()]).await;
        let keys = keys.map_err(AnalyticsError::Runtime).and_then(|batches| key_columns(&batches));
        let name = pump.name.clone();
        let held = match (keys, self.pumps[index].partitioned.as_mut()) {
            (Ok(keys), Some(partitioned)) => partitioned.hold(rows, &keys, replay).map_err(|e| e.to_string()),
            (Err(error), _) => Err(error.to_string()),
            (Ok(_), None) => Ok(()),
        };
        if let Err(message) = held {
            step.errors.push(run_error(&name, message, rows));
        }
    }

    /// A sliding window's step: the batch with the history it needs, results for the new rows.
    async fn slide(
        &mut self,
        index: usize,
        rows: &RecordBatch,
        history: crate::dialect::History,
        replay: bool,
        step: &mut Step,
    ) -> Option<RecordBatch> {
        let kept = self.pumps[index].open.remove(&0).unwrap_or_default();
        let mut input = kept.clone();
        input.push(rows.clone());
        let rowtime = self.pumps[index].compiled.rowtime_column.map_or(Rowtime::At(0), Rowtime::Column);
        let result = if replay { None } else { self.run(index, input.clone(), rowtime, step).await };
        let kept = trim_history(input, history, self.pumps[index].compiled.rows_partition.as_deref());
        self.pumps[index].open.insert(0, kept);
        result
    }

    /// Runs `plan` with the table of `source` holding `rows` (and nothing once it is done).
    async fn execute(
        &self,
        source: &str,
        plan: datafusion::logical_expr::LogicalPlan,
        rows: Vec<RecordBatch>,
    ) -> datafusion::error::Result<Vec<RecordBatch>> {
        let Some((_, table)) = self.tables.get(source) else {
            return Err(datafusion::error::DataFusionError::Plan(format!("Unknown stream {source}.")));
        };
        table.set(rows);
        let outcome = match self.ctx.execute_logical_plan(plan).await {
            Ok(frame) => frame.collect().await,
            Err(error) => Err(error),
        };
        table.set(Vec::new());
        outcome
    }

    /// Runs a pump's plan over `rows` of its source; its result as rows of its target, or its
    /// error noted in `step`.
    async fn run(
        &mut self,
        index: usize,
        rows: Vec<RecordBatch>,
        rowtime: Rowtime,
        step: &mut Step,
    ) -> Option<RecordBatch> {
        let pump = &self.pumps[index].compiled;
        let (target_schema, _) = self.tables.get(&pump.target)?;
        let count: usize = rows.iter().map(RecordBatch::num_rows).sum();
        let earliest =
            rows.iter().filter_map(|b| rowtimes(b).ok()).flat_map(|t| t.values().iter().copied().min()).min();
        let outcome = self.execute(&pump.source, pump.plan.clone(), rows).await;
        let failed = |message: String| RunError {
            pump: pump.name.clone(),
            message,
            rows: count,
            rowtime_ms: earliest.unwrap_or(0),
        };
        let batches = match outcome {
            Ok(batches) => batches,
            Err(error) => {
                step.errors.push(failed(error.to_string()));
                return None;
            }
        };
        let mut written = Vec::new();
        for batch in batches {
            let batch = match pump.new_column {
                Some(flag) => only_new(&batch, flag),
                None => Ok(batch),
            };
            match batch.and_then(|b| into_target(&b, target_schema, &pump.mapping, rowtime)) {
                Ok(rows) => written.push(rows),
                Err(error) => step.errors.push(failed(error.to_string())),
            }
        }
        datafusion::arrow::compute::concat_batches(target_schema, &written).ok().filter(|b| b.num_rows() > 0)
    }
}

/// Registers the hidden stream `name` (its schema already in `schemas`) as a table; its schema.
fn add_stream(
    ctx: &SessionContext,
    tables: &mut BTreeMap<String, (SchemaRef, Arc<SwapTable>)>,
    schemas: &BTreeMap<String, SchemaRef>,
    name: &str,
) -> Result<SchemaRef> {
    let schema = schemas.get(name).cloned().ok_or_else(|| AnalyticsError::Plan(name.to_string()))?;
    let table = SwapTable::new(schema.clone());
    register(ctx, name, table.clone())?;
    tables.insert(name.to_string(), (schema.clone(), table));
    Ok(schema)
}

fn register(ctx: &SessionContext, name: &str, table: Arc<dyn datafusion::catalog::TableProvider>) -> Result<()> {
    ctx.register_table(TableReference::bare(name), table).map(|_| ()).map_err(AnalyticsError::Runtime)
}

fn run_error(pump: &str, message: String, rows: &RecordBatch) -> RunError {
    let earliest = rowtimes(rows).ok().and_then(|t| t.values().iter().copied().min()).unwrap_or(0);
    RunError { pump: pump.to_string(), message, rows: rows.num_rows(), rowtime_ms: earliest }
}

/// The key query's rows as one batch, without the hidden ROWTIME it carries.
fn key_columns(batches: &[RecordBatch]) -> Result<RecordBatch> {
    let Some(first) = batches.first() else { return Err(AnalyticsError::Plan("the key query wrote nothing".into())) };
    let all = datafusion::arrow::compute::concat_batches(&first.schema(), batches)
        .map_err(|e| AnalyticsError::Runtime(e.into()))?;
    let keep: Vec<usize> = (0..all.num_columns()).filter(|&i| all.schema().field(i).name() != HIDDEN_ROWTIME).collect();
    all.project(&keep).map_err(|e| AnalyticsError::Runtime(e.into()))
}

/// An input batch (ROWTIME and columns) with the hidden flag column the stream's table has.
fn with_flag_column(rows: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let mut columns = rows.columns().to_vec();
    if rows.schema().fields().last().is_none_or(|f| f.name() != HIDDEN_NEW) {
        columns.push(Arc::new(datafusion::arrow::array::BooleanArray::from(vec![true; rows.num_rows()])));
    }
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| AnalyticsError::Runtime(e.into()))
}

/// The result rows of the batch's own rows (not of its history).
fn only_new(batch: &RecordBatch, flag: usize) -> Result<RecordBatch, datafusion::arrow::error::ArrowError> {
    let column = batch.column(flag).as_any().downcast_ref::<datafusion::arrow::array::BooleanArray>().cloned();
    let column = column.ok_or_else(|| datafusion::arrow::error::ArrowError::SchemaError("hidden flag".into()))?;
    keep_rows(batch, |row| column.value(row))
}

#[cfg(test)]
#[path = "application_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "session_tests.rs"]
mod session_tests;
