//! The samples a query reads: the stored one-minute rollups of its time range and the minutes
//! not stored yet, merged into one statistic set per period for the series asked about.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Instant;

use super::recorder::{MINUTE_MS, Minute, Recorder};
use super::rollups;
use super::series::{SeriesKey, Stats};
use crate::error::ApiError;

/// Every minute of a time range, read once per request.
#[derive(Debug)]
pub struct Window {
    minutes: Vec<Minute>,
}

/// A period's statistics and the unit the series was recorded in.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub stats: Stats,
    pub unit: String,
}

impl Window {
    /// The minutes in `[start_ms, end_ms)` of the `asked` series, read before `deadline`.
    pub fn read(
        recorder: &Recorder,
        start_ms: u64,
        end_ms: u64,
        asked: &HashSet<SeriesKey>,
        deadline: Instant,
    ) -> Result<Window, ApiError> {
        let mut minutes =
            rollups::read(recorder.engine(), start_ms, end_ms, &rollups::Asked { series: asked, deadline })?;
        let pending = recorder.pending().into_iter().filter(|m| (start_ms..end_ms).contains(&m.minute_ms));
        minutes.extend(pending);
        Ok(Window { minutes })
    }

    /// The series' statistics per period: periods start at `start_ms` (a whole minute) and
    /// are `period_ms` long; periods without samples are absent, as in CloudWatch. With `unit`,
    /// only samples recorded in that unit count.
    pub fn points(&self, key: &SeriesKey, unit: Option<&str>, start_ms: u64, period_ms: u64) -> BTreeMap<u64, Point> {
        let mut points: BTreeMap<u64, Point> = BTreeMap::new();
        let period_ms = period_ms.max(MINUTE_MS);
        for minute in &self.minutes {
            let Some(offset_ms) = minute.minute_ms.checked_sub(start_ms) else { continue };
            let period_start_ms = start_ms + offset_ms / period_ms * period_ms;
            let found = minute.rollups.iter().filter(|r| r.key == *key && unit.is_none_or(|u| u == r.unit));
            for rollup in found {
                points
                    .entry(period_start_ms)
                    .and_modify(|point| point.stats.merge(&rollup.stats))
                    .or_insert_with(|| Point { stats: rollup.stats, unit: rollup.unit.clone() });
            }
        }
        points
    }
}

/// Every series recorded, with the last minute it had samples: the stored ones and those of
/// minutes not stored yet.
pub fn known_series(recorder: &Recorder) -> Result<BTreeMap<SeriesKey, u64>, ApiError> {
    let mut known = rollups::series(recorder.engine())?;
    for minute in recorder.pending() {
        let keys: BTreeSet<SeriesKey> = minute.rollups.into_iter().map(|r| r.key).collect();
        for key in keys {
            let last = known.entry(key).or_default();
            *last = (*last).max(minute.minute_ms);
        }
    }
    Ok(known)
}
