//! Runs one application: reads its input stream's shards from the engine, turns records into
//! rows (ROWTIME is each record's arrival time in the engine, so a replay sees the same times),
//! pushes them through the compiled application, moves its watermark with the clock, writes
//! what the pumps emit to the outputs, and checkpoints where it stands.
//!
//! Guarantees: a checkpoint is written after the outputs of a round are stored. After a crash,
//! input from the oldest open window on is read again as replay (it refills windows, emits
//! nothing), so each window is written once unless the crash fell between its write and the
//! checkpoint, when it is written again with the same partition keys. Rows of row-by-row and
//! sliding pumps after the last checkpoint are written again (at least once).

use std::collections::BTreeMap;
use std::time::Duration;

use framelog_analytics::arrow::compute::{sort_to_indices, take_record_batch};
use framelog_analytics::arrow::record_batch::RecordBatch;
use framelog_analytics::{Application, InputSchema, RunError, Step, read_records};
use framelog_store::{NewEntry, Position, StreamHandle};
use serde_json::json;

use super::api::ERROR_STREAM;
use super::context::AnalyticsCtx;
use super::feed::{Feed, Item};
use super::models::ModelStore;
use super::outputs::{OutRecord, Outputs};
use super::preprocess::{Preprocessor, Rejected};
use super::reference;
use super::schema::{input_defs, input_schema};
use super::spec::{ApplicationSpec, CHECKPOINT_KEY, Checkpoint};
use crate::background::Background;
use crate::civil_date::sql_timestamp;

/// How long after a ROWTIME the watermark passes it: appends that were in flight land by then.
const GRACE_MS: i64 = 100;
/// How often an idle application looks for new records and closes windows.
const IDLE_WAIT_MS: u64 = 50;
/// A checkpoint at least this often while rows flow, and after every window written.
const CHECKPOINT_EVERY_MS: u64 = 1_000;

pub async fn run(ctx: AnalyticsCtx, background: Background, app_stream: StreamHandle, spec: ApplicationSpec) {
    let name = spec.name.clone();
    match Runner::start(ctx, background, app_stream, spec).await {
        Ok(runner) => runner.run().await,
        Err(message) => tracing::error!(application = %name, %message, "the application cannot run"),
    }
}

struct Runner {
    ctx: AnalyticsCtx,
    background: Background,
    app_stream: StreamHandle,
    spec: ApplicationSpec,
    feed: Feed,
    schema: InputSchema,
    /// The in-application streams the input fills (InputParallelism).
    streams: Vec<String>,
    app: Application,
    outputs: Outputs,
    /// Per input part: where the next read starts, and the first record not yet processed
    /// before this run (records before it are replay).
    cursor: BTreeMap<String, u64>,
    replay_until: BTreeMap<String, u64>,
    last_checkpoint_ms: u64,
    models: ModelStore,
    preprocessor: Option<Preprocessor>,
}

impl Runner {
    async fn start(
        ctx: AnalyticsCtx,
        background: Background,
        app_stream: StreamHandle,
        spec: ApplicationSpec,
    ) -> Result<Runner, String> {
        let input = spec.inputs.first().ok_or("it has no input")?.clone();
        let feed = Feed::open(&ctx, &input.resource_arn)?;
        let preprocessor = match &input.processor {
            Some(processor) => {
                Some(Preprocessor::new(&ctx, processor, ctx.arn(&spec.name), input.resource_arn.clone())?)
            }
            None => None,
        };
        let schema = input_schema(&input.schema).map_err(|e| e.message.unwrap_or_default())?;
        let mut references = Vec::new();
        for table in &spec.references {
            let (rows, rejected) = reference::load(&ctx, table).await.map_err(|e| e.message.unwrap_or_default())?;
            if rejected > 0 {
                tracing::warn!(application = %spec.name, table = %table.table_name, rejected, "reference rows that do not fit the schema were left out");
            }
            references.push((table.table_name.clone(), rows));
        }
        let inputs = input_defs(&input).map_err(|e| e.message.unwrap_or_default())?;
        let mut app = Application::compile(&spec.code, &inputs, references).await.map_err(|e| e.to_string())?;
        let checkpoint = Checkpoint::from_settings(&app_stream.meta().settings).unwrap_or_default();
        app.restore(&checkpoint.marks);
        app.restore_partition_windows(&checkpoint.stagger);
        let mut models = ModelStore::new(ctx.clone(), background.clone(), &spec.name);
        // A model of other code may score other columns, or with other parameters.
        if checkpoint.version == spec.version {
            models.restore(&mut app, &checkpoint.models).await;
        }
        let outputs = Outputs::new(ctx.clone(), background.clone(), spec.outputs.clone(), ctx.arn(&spec.name));
        let mut runner = Runner {
            ctx,
            background,
            app_stream,
            streams: input.stream_names(),
            spec,
            feed,
            schema,
            app,
            outputs,
            cursor: BTreeMap::new(),
            replay_until: BTreeMap::new(),
            last_checkpoint_ms: 0,
            models,
            preprocessor,
        };
        runner.place_shards(&checkpoint);
        Ok(runner)
    }

    /// Where each part's reading starts: the checkpoint's replay point, or the start position.
    fn place_shards(&mut self, checkpoint: &Checkpoint) {
        self.feed.refresh(&self.ctx.engine);
        let keys: Vec<String> = self.feed.keys().filter(|key| !self.cursor.contains_key(*key)).cloned().collect();
        for key in keys {
            let (from, until) = match checkpoint.next_seq.get(&key) {
                Some(next) => (checkpoint.replay_seq.get(&key).copied().unwrap_or(*next).min(*next), *next),
                None => {
                    let position = match (self.spec.starting_position.as_deref(), self.spec.started_ms) {
                        (Some("TRIM_HORIZON"), _) => Position::TrimHorizon,
                        (_, Some(started_ms)) => Position::AtArrivalMs(started_ms),
                        _ => Position::Latest,
                    };
                    let at = self.feed.resolve(&self.ctx.engine, &key, position).unwrap_or(0);
                    (at, at)
                }
            };
            self.cursor.insert(key.clone(), from);
            self.replay_until.insert(key, until);
        }
    }

    async fn run(mut self) {
        loop {
            let clock_ms = self.ctx.engine.now_ms() as i64 - GRACE_MS;
            self.place_shards(&Checkpoint::default());
            let (entries, frontier_ms) = self.read_round().await;
            let more = frontier_ms.is_some();
            // Behind on a shard (a backlog, a replay), time is where reading stands there, not
            // the clock: windows of records not read yet stay open.
            let watermark_ms = frontier_ms.map_or(clock_ms, |frontier| frontier.min(clock_ms));
            let mut wrote_window = false;
            if !entries.is_empty() {
                self.process(entries).await;
            }
            match self.app.advance(watermark_ms).await {
                Ok(step) => {
                    wrote_window = !step.emitted.is_empty();
                    self.handle(step, &format!("w{watermark_ms}")).await;
                }
                Err(error) => tracing::warn!(application = %self.spec.name, %error, "closing windows failed"),
            }
            let now_ms = self.ctx.engine.now_ms();
            self.models.save_due(&self.app, now_ms).await;
            if wrote_window || now_ms >= self.last_checkpoint_ms + CHECKPOINT_EVERY_MS {
                self.checkpoint().await;
                self.last_checkpoint_ms = now_ms;
            }
            if !more {
                tokio::time::sleep(Duration::from_millis(IDLE_WAIT_MS)).await;
            }
        }
    }

    /// One read of every part: the items, and, when a part has more to read, the earliest
    /// ROWTIME such a part has reached (its later items come no earlier).
    async fn read_round(&mut self) -> (Vec<Item>, Option<i64>) {
        let mut items = Vec::new();
        let mut frontier_ms: Option<i64> = None;
        for (key, cursor) in self.cursor.iter_mut() {
            if !self.feed.has(key) {
                continue;
            }
            match self.feed.read(&self.ctx.engine, &self.background, key, *cursor).await {
                Ok(read) => {
                    if let Some(behind_ms) = read.behind_ms {
                        frontier_ms = Some(frontier_ms.map_or(behind_ms as i64, |f| f.min(behind_ms as i64)));
                    }
                    *cursor = read.next_seq;
                    items.extend(read.items);
                }
                Err(error) => {
                    tracing::warn!(application = %self.spec.name, part = %key, %error, "reading the input failed")
                }
            }
        }
        (items, frontier_ms)
    }

    /// Items into rows, replayed ones apart, each in ROWTIME order; rows pushed through.
    async fn process(&mut self, items: Vec<Item>) {
        let (replayed, fresh): (Vec<_>, Vec<_>) =
            items.into_iter().partition(|i| i.seq < self.replay_until.get(&i.part).copied().unwrap_or(0));
        // A replayed record's preprocessing failure was written to the error stream before.
        let (replayed, _) = self.preprocess(replayed).await;
        let (fresh, failed) = self.preprocess(fresh).await;
        let now_ms = self.ctx.engine.now_ms() as i64;
        let failed: Vec<OutRecord> =
            failed.into_iter().map(|r| input_error(&r.item, r.name, r.message, now_ms)).collect();
        self.write_errors(failed).await;
        for (stream, items) in self.by_stream(replayed) {
            let (rows, _) = self.rows(&items);
            if let Err(error) = self.app.push(&stream, rows, true).await {
                tracing::warn!(application = %self.spec.name, %error, "replaying input failed");
            }
        }
        for (stream, items) in self.by_stream(fresh) {
            let (rows, rejected) = self.rows(&items);
            let errors: Vec<OutRecord> =
                rejected.into_iter().map(|(item, message)| input_error(item, "Parse_Error", message, now_ms)).collect();
            self.write_errors(errors).await;
            let first = items.first().map(|i| format!("s{}-{}", i.part, i.seq)).unwrap_or_default();
            match self.app.push(&stream, rows, false).await {
                Ok(step) => self.handle(step, &first).await,
                Err(error) => tracing::warn!(application = %self.spec.name, %error, "processing input failed"),
            }
        }
    }

    /// The items by the in-application stream their part fills (none empty).
    fn by_stream(&self, items: Vec<Item>) -> BTreeMap<String, Vec<Item>> {
        let mut grouped: BTreeMap<String, Vec<Item>> = BTreeMap::new();
        for item in items {
            let index = self.spec.inputs.first().map_or(0, |input| input.stream_of_part(&item.part));
            let stream = self.streams.get(index).or(self.streams.first()).cloned().unwrap_or_default();
            grouped.entry(stream).or_default().push(item);
        }
        grouped
    }

    /// The items through the input's Lambda function, if it has one.
    async fn preprocess(&self, items: Vec<Item>) -> (Vec<Item>, Vec<Rejected>) {
        match &self.preprocessor {
            Some(preprocessor) if !items.is_empty() => preprocessor.run(Some(&self.feed), items).await,
            _ => (items, Vec::new()),
        }
    }

    /// Rows of the items, sorted by ROWTIME; the items that did not fit the schema.
    fn rows<'a>(&self, items: &'a [Item]) -> (RecordBatch, Vec<(&'a Item, String)>) {
        let records: Vec<(i64, &[u8])> = items.iter().map(|i| (i.arrival_ms as i64, i.data.as_slice())).collect();
        let (rows, rejected) = read_records(&self.schema, &records);
        let rejected = rejected.into_iter().map(|r| (&items[r.index], r.message)).collect();
        (sorted_by_rowtime(rows), rejected)
    }

    /// Writes a step's rows to the outputs and its errors to the error stream.
    async fn handle(&mut self, step: Step, batch_id: &str) {
        self.outputs.deliver(&step.emitted, batch_id).await;
        let now_ms = self.ctx.engine.now_ms() as i64;
        let errors: Vec<OutRecord> = step.errors.iter().map(|e| pump_error(e, now_ms)).collect();
        self.write_errors(errors).await;
    }

    /// Error rows into the application's error stream (its engine stream) and to outputs of it.
    async fn write_errors(&self, errors: Vec<OutRecord>) {
        if errors.is_empty() {
            return;
        }
        // Each row's id is unique in its batch (a Lambda output answers by record id).
        let errors: Vec<OutRecord> = errors
            .into_iter()
            .enumerate()
            .map(|(i, e)| OutRecord { key: format!("{}/{i}", e.key), data: e.data })
            .collect();
        tracing::debug!(application = %self.spec.name, rows = errors.len(), "rows to the error stream");
        let entries = errors
            .iter()
            .map(|e| NewEntry {
                shard: 0,
                producer_ts_ms: None,
                attrs: e.key.clone().into_bytes(),
                payload: e.data.clone(),
            })
            .collect();
        let (engine, stream) = (self.ctx.engine.clone(), self.app_stream.clone());
        let appended = self.background.spawn_blocking(move || engine.append_blocking(&stream, entries)).await;
        if !matches!(appended, Ok(Ok(_))) {
            tracing::warn!(application = %self.spec.name, "the error stream could not be written");
        }
        if self.outputs.reads(ERROR_STREAM) {
            self.outputs.deliver_records(ERROR_STREAM, errors).await;
        }
    }

    /// Stores where each shard stands and the windows written, synced.
    async fn checkpoint(&self) {
        let held_ms = [self.app.held_from_ms(), self.models.held_from_ms()].into_iter().flatten().min();
        let mut checkpoint = Checkpoint {
            version: self.spec.version,
            marks: self.app.marks(),
            models: self.models.marks.clone(),
            stagger: self.app.partition_windows(),
            ..Checkpoint::default()
        };
        for (key, &cursor) in &self.cursor {
            let replay = held_ms
                .and_then(|ms| self.feed.resolve(&self.ctx.engine, key, Position::AtArrivalMs(ms.max(0) as u64)))
                .map_or(cursor, |seq| seq.min(cursor));
            checkpoint.next_seq.insert(key.clone(), cursor.max(self.replay_until.get(key).copied().unwrap_or(0)));
            checkpoint.replay_seq.insert(key.clone(), replay);
        }
        let text = serde_json::to_string(&checkpoint).unwrap_or_default();
        let (engine, stream) = (self.ctx.engine.clone(), self.app_stream.clone());
        let written = self
            .background
            .spawn_blocking(move || {
                engine.update_meta(&stream, |meta| meta.settings.insert(CHECKPOINT_KEY.into(), text.clone()))
            })
            .await;
        if !matches!(written, Ok(Ok(_))) {
            tracing::warn!(application = %self.spec.name, "the checkpoint could not be written");
        }
    }
}

fn sorted_by_rowtime(rows: RecordBatch) -> RecordBatch {
    let sorted = sort_to_indices(rows.column(0), None, None).and_then(|indices| take_record_batch(&rows, &indices));
    sorted.unwrap_or(rows)
}

/// A row of the error stream, with the columns Kinesis Data Analytics gave it.
struct ErrorRow<'a> {
    at_ms: i64,
    name: &'a str,
    message: String,
    rowtime_ms: i64,
    data: &'a [u8],
    pump: &'a str,
}

fn error_record(row: &ErrorRow) -> OutRecord {
    let data = json!({
        "ERROR_TIME": sql_timestamp(row.at_ms),
        "ERROR_LEVEL": "ERROR",
        "ERROR_NAME": row.name,
        "MESSAGE": row.message,
        "DATA_ROWTIME": sql_timestamp(row.rowtime_ms),
        "DATA_ROW": hex::encode(row.data),
        "PUMP_NAME": row.pump,
    });
    OutRecord { key: format!("error/{}", row.rowtime_ms), data: data.to_string().into_bytes() }
}

/// The error row of an input record that did not become a row.
fn input_error(item: &Item, name: &str, message: String, at_ms: i64) -> OutRecord {
    error_record(&ErrorRow { at_ms, name, message, rowtime_ms: item.arrival_ms as i64, data: &item.data, pump: "" })
}

fn pump_error(error: &RunError, at_ms: i64) -> OutRecord {
    let name = if error.message.starts_with("Late rows") { "Late_Rows" } else { "Runtime_Error" };
    let message = format!("{} ({} rows)", error.message, error.rows);
    error_record(&ErrorRow { at_ms, name, message, rowtime_ms: error.rowtime_ms, data: &[], pump: &error.pump })
}
