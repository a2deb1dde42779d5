//! Where the services report their metrics. Each sample goes two ways: into the statistic set
//! of its series for the current minute (stored as a rollup once the minute is over, by
//! rollups.rs) and into the Prometheus families (exported.rs).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use framelog_store::Engine;
use prometheus_client::registry::Registry;

use super::catalogue::{Metric, Namespace};
use super::exported::Families;
use super::series::{Rollup, SeriesKey, Stats};

pub const MINUTE_MS: u64 = 60_000;

/// The minutes not stored yet, each a statistic set per series with its unit.
type Minutes = BTreeMap<u64, HashMap<SeriesKey, (&'static str, Stats)>>;

#[derive(Debug, Default)]
struct Shared {
    minutes: Mutex<Minutes>,
    families: Families,
    /// Connections open per series of a level metric (PutMedia.ActiveConnections).
    open: Mutex<HashMap<SeriesKey, u64>>,
}

/// The engine's name of a service's stream (a video stream's is prefixed): set by whoever knows
/// the services' naming, so this module depends on none of them.
pub type EngineName = fn(Namespace, &str) -> String;

/// Cheap to clone; every clone records into the same minutes.
#[derive(Debug, Clone)]
pub struct Recorder {
    engine: Engine,
    shared: Arc<Shared>,
    engine_name: EngineName,
}

/// A minute's rollups, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Minute {
    pub minute_ms: u64,
    pub rollups: Vec<Rollup>,
}

impl Recorder {
    /// Minutes are told by the engine's clock, so tests that move it move the minutes.
    pub fn new(engine: Engine) -> Recorder {
        Recorder { engine, shared: Arc::default(), engine_name: |_, stream| stream.to_string() }
    }

    /// How a service's stream is named in the engine (by default, as the client names it).
    pub fn with_engine_names(self, engine_name: EngineName) -> Recorder {
        Recorder { engine_name, ..self }
    }

    /// Whether `stream` of `namespace`'s service exists.
    pub fn stream_exists(&self, namespace: Namespace, stream: &str) -> bool {
        self.engine.stream(&(self.engine_name)(namespace, stream)).is_ok()
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// One sample of `metric` for the series `dimensions` names.
    pub fn record(&self, metric: &Metric, dimensions: &[(&str, &str)], value: f64) {
        let minute_ms = self.engine.now_ms() / MINUTE_MS * MINUTE_MS;
        let key = SeriesKey::new(metric.namespace.name(), metric.name, dimensions);
        {
            let mut minutes = self.shared.minutes.lock().unwrap_or_else(|e| e.into_inner());
            let series = minutes.entry(minute_ms).or_default();
            match series.get_mut(&key) {
                Some((_, stats)) => stats.add(value),
                None => {
                    series.insert(key, (metric.unit.name(), Stats::one(value)));
                }
            }
        }
        self.shared.families.observe(metric, dimensions, value);
    }

    /// Counts a connection of a level metric's series as open until the guard drops, sampling
    /// the number open at each change.
    pub fn open(&self, metric: &'static Metric, dimensions: &[(&'static str, &str)]) -> OpenGuard {
        let dimensions: Vec<(&'static str, String)> =
            dimensions.iter().map(|(name, value)| (*name, value.to_string())).collect();
        let guard = OpenGuard { recorder: self.clone(), metric, dimensions };
        guard.change(|open| *open += 1);
        guard
    }

    /// The minutes before the current one, taken out to be stored.
    pub fn take_finished(&self) -> Vec<Minute> {
        let current_ms = self.engine.now_ms() / MINUTE_MS * MINUTE_MS;
        let mut minutes = self.shared.minutes.lock().unwrap_or_else(|e| e.into_inner());
        let current = minutes.split_off(&current_ms);
        let finished = std::mem::replace(&mut *minutes, current);
        finished.into_iter().map(as_minute).collect()
    }

    /// Every minute, the current one too (at shutdown).
    pub fn take_all(&self) -> Vec<Minute> {
        let mut minutes = self.shared.minutes.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *minutes).into_iter().map(as_minute).collect()
    }

    /// Puts back minutes that could not be stored, merged with what arrived since.
    pub fn put_back(&self, unstored: Vec<Minute>) {
        let mut minutes = self.shared.minutes.lock().unwrap_or_else(|e| e.into_inner());
        for minute in unstored {
            let series = minutes.entry(minute.minute_ms).or_default();
            for rollup in minute.rollups {
                let unit = super::catalogue::unit_named(&rollup.unit);
                series
                    .entry(rollup.key)
                    .and_modify(|(_, stats)| stats.merge(&rollup.stats))
                    .or_insert((unit, rollup.stats));
            }
        }
    }

    /// The minutes not stored yet, for queries that must see the newest samples.
    pub fn pending(&self) -> Vec<Minute> {
        let minutes = self.shared.minutes.lock().unwrap_or_else(|e| e.into_inner());
        minutes.iter().map(|(&minute_ms, series)| as_minute((minute_ms, series.clone()))).collect()
    }

    pub fn register(&self, registry: &mut Registry) {
        self.shared.families.register(registry);
    }
}

fn as_minute((minute_ms, series): (u64, HashMap<SeriesKey, (&'static str, Stats)>)) -> Minute {
    let mut rollups: Vec<Rollup> =
        series.into_iter().map(|(key, (unit, stats))| Rollup { key, unit: unit.to_string(), stats }).collect();
    rollups.sort_by(|a, b| a.key.cmp(&b.key));
    Minute { minute_ms, rollups }
}

/// An open connection, counted in its series until dropped.
#[derive(Debug)]
pub struct OpenGuard {
    recorder: Recorder,
    metric: &'static Metric,
    dimensions: Vec<(&'static str, String)>,
}

impl OpenGuard {
    fn change(&self, change: impl FnOnce(&mut u64)) {
        let dimensions: Vec<(&str, &str)> = self.dimensions.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let key = SeriesKey::new(self.metric.namespace.name(), self.metric.name, &dimensions);
        let open_now = {
            let mut open = self.recorder.shared.open.lock().unwrap_or_else(|e| e.into_inner());
            let count = open.entry(key.clone()).or_default();
            change(count);
            let now = *count;
            if now == 0 {
                open.remove(&key);
            }
            now
        };
        self.recorder.record(self.metric, &dimensions, open_now as f64);
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.change(|open| *open = open.saturating_sub(1));
    }
}
