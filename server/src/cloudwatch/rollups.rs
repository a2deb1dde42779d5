//! One-minute rollups in the engine: one stream of kind `Metrics`, one entry per minute (and per
//! node that recorded in it) holding every series' statistic set as JSON, kept 15 days as
//! CloudWatch keeps one-minute data. The stream's metadata lists every series and the last
//! minute it had samples, which is what ListMetrics answers from.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use framelog_store::{Engine, NewEntry, Position, StoreError, StreamHandle, StreamKind};
use serde::{Deserialize, Serialize};

use super::recorder::{MINUTE_MS, Minute, Recorder};
use super::series::{Rollup, SeriesKey};

/// A name no KDS, KVS or Firehose stream can have (they never contain `/`).
pub const ENGINE_NAME: &str = "cloudwatch/rollups";
const RETENTION_HOURS: u32 = 15 * 24;
pub const RETENTION_MS: u64 = RETENTION_HOURS as u64 * 3_600_000;
const SERIES_SETTING: &str = "series";
/// How long after its minute a rollup may still be stored (a flush retried, a slow node) and be
/// found by a query that ends at that minute.
const STORE_LAG_MS: u64 = 10 * MINUTE_MS;
/// How often finished minutes are stored.
const STORE_EVERY: Duration = Duration::from_secs(10);
const READ_BATCH_ENTRIES: usize = 256;
const READ_BATCH_BYTES: usize = 8 << 20;

#[derive(Debug, Serialize, Deserialize)]
struct StoredMinute {
    minute_ms: u64,
    rollups: Vec<Rollup>,
}

/// A series and the last minute it had samples.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Known {
    #[serde(flatten)]
    key: SeriesKey,
    last_ms: u64,
}

fn handle(engine: &Engine) -> Result<StreamHandle, StoreError> {
    match engine.stream(ENGINE_NAME) {
        Err(StoreError::StreamNotFound(_)) => {
            let now_ms = engine.now_ms();
            let meta = framelog_store::new_stream_meta(
                ENGINE_NAME,
                StreamKind::Metrics,
                "arn:framelog:cloudwatch:rollups",
                1,
                RETENTION_HOURS,
                now_ms,
            );
            match engine.create_stream(meta) {
                // Another node made it first.
                Err(StoreError::StreamExists(_)) => engine.stream(ENGINE_NAME),
                created => created,
            }
        }
        found => found,
    }
}

/// Stores `minutes` (one entry each) and notes their series as seen.
pub fn store(engine: &Engine, minutes: &[Minute]) -> Result<(), StoreError> {
    if minutes.is_empty() {
        return Ok(());
    }
    let handle = handle(engine)?;
    let mut entries = Vec::with_capacity(minutes.len());
    for minute in minutes {
        let stored = StoredMinute { minute_ms: minute.minute_ms, rollups: minute.rollups.clone() };
        let payload = serde_json::to_vec(&stored).map_err(|e| StoreError::Backend {
            what: "a metrics rollup could not be encoded",
            detail: e.to_string(),
        })?;
        entries.push(NewEntry { shard: 0, producer_ts_ms: Some(minute.minute_ms), attrs: Vec::new(), payload });
    }
    engine.append(&handle, entries)?.wait_blocking()?;
    // The minutes are stored: a failure to list their series must not store them again.
    if let Err(error) = note_series(engine, &handle, minutes) {
        tracing::warn!(%error, "the list of metric series could not be updated");
    }
    Ok(())
}

fn note_series(engine: &Engine, handle: &StreamHandle, minutes: &[Minute]) -> Result<(), StoreError> {
    let mut seen: BTreeMap<&SeriesKey, u64> = BTreeMap::new();
    for minute in minutes {
        for rollup in &minute.rollups {
            let last = seen.entry(&rollup.key).or_default();
            *last = (*last).max(minute.minute_ms);
        }
    }
    let oldest_kept_ms = engine.now_ms().saturating_sub(RETENTION_MS);
    engine.update_meta_unsynced(handle, |meta| {
        let mut known = known_in(&meta.settings);
        for (key, last_ms) in &seen {
            let last = known.entry((*key).clone()).or_default();
            *last = (*last).max(*last_ms);
        }
        known.retain(|_, last_ms| *last_ms >= oldest_kept_ms);
        let list: Vec<Known> = known.into_iter().map(|(key, last_ms)| Known { key, last_ms }).collect();
        if let Ok(text) = serde_json::to_string(&list) {
            meta.settings.insert(SERIES_SETTING.into(), text);
        }
    })?;
    Ok(())
}

fn known_in(settings: &BTreeMap<String, String>) -> BTreeMap<SeriesKey, u64> {
    let list: Vec<Known> =
        settings.get(SERIES_SETTING).and_then(|text| serde_json::from_str(text).ok()).unwrap_or_default();
    list.into_iter().map(|known| (known.key, known.last_ms)).collect()
}

/// Every series stored, with the last minute it had samples.
pub fn series(engine: &Engine) -> Result<BTreeMap<SeriesKey, u64>, StoreError> {
    match engine.stream(ENGINE_NAME) {
        Ok(handle) => Ok(known_in(&handle.meta().settings)),
        Err(StoreError::StreamNotFound(_)) => Ok(BTreeMap::new()),
        Err(error) => Err(error),
    }
}

/// What a read keeps, and until when it may run.
pub struct Asked<'a> {
    pub series: &'a HashSet<SeriesKey>,
    /// Past it the read stops with an error rather than run on after its answer was given up.
    pub deadline: Instant,
}

/// The stored minutes in `[start_ms, end_ms)` with only the asked series, in the order they were
/// stored.
pub fn read(engine: &Engine, start_ms: u64, end_ms: u64, asked: &Asked<'_>) -> Result<Vec<Minute>, StoreError> {
    let handle = match engine.stream(ENGINE_NAME) {
        Ok(handle) => handle,
        Err(StoreError::StreamNotFound(_)) => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut seq = engine.resolve(&handle, 0, Position::AtArrivalMs(start_ms))?;
    let stop_ms = end_ms.saturating_add(STORE_LAG_MS);
    let mut minutes = Vec::new();
    loop {
        if Instant::now() > asked.deadline {
            return Err(StoreError::Backend { what: "a metrics query ran past its deadline", detail: String::new() });
        }
        let batch = engine.read(&handle, 0, seq, READ_BATCH_ENTRIES, READ_BATCH_BYTES)?;
        for entry in &batch.entries {
            if entry.arrival_ms > stop_ms {
                return Ok(minutes);
            }
            match serde_json::from_slice::<StoredMinute>(&entry.payload) {
                Ok(stored) if (start_ms..end_ms).contains(&stored.minute_ms) => {
                    let rollups: Vec<Rollup> =
                        stored.rollups.into_iter().filter(|r| asked.series.contains(&r.key)).collect();
                    if !rollups.is_empty() {
                        minutes.push(Minute { minute_ms: stored.minute_ms, rollups });
                    }
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, seq = entry.seq, "a metrics rollup could not be read"),
            }
        }
        if batch.entries.is_empty() || batch.next_seq >= batch.tip_seq {
            return Ok(minutes);
        }
        seq = batch.next_seq;
    }
}

/// Stores each finished minute shortly after it ends; a minute that cannot be stored is kept
/// and tried again.
pub async fn store_periodically(recorder: Recorder) {
    let mut ticks = tokio::time::interval(STORE_EVERY);
    loop {
        ticks.tick().await;
        store_taken(&recorder, Recorder::take_finished).await;
    }
}

/// Stores what `take` takes from the recorder, putting it back if it could not be stored.
pub async fn store_taken(recorder: &Recorder, take: fn(&Recorder) -> Vec<Minute>) {
    let minutes = take(recorder);
    if minutes.is_empty() {
        return;
    }
    let engine = recorder.engine().clone();
    let stored = tokio::task::spawn_blocking(move || {
        let outcome = store(&engine, &minutes);
        (outcome, minutes)
    })
    .await;
    match stored {
        Ok((Ok(()), _)) => {}
        Ok((Err(error), minutes)) => {
            tracing::warn!(%error, minutes = minutes.len(), "metrics rollups not stored; trying again");
            recorder.put_back(minutes);
        }
        Err(error) => tracing::error!(%error, "storing metrics rollups panicked"),
    }
}
