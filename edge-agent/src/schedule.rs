//! Record and upload windows: a cron expression opens a window that lasts a fixed duration.

use std::str::FromStr;

use anyhow::Context;
use chrono::{DateTime, Duration, Utc};

use crate::config::Schedule;

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Window {
    cron: cron::Schedule,
    duration: Duration,
}

pub fn parse(schedule: &Schedule) -> anyhow::Result<Window> {
    let cron =
        cron::Schedule::from_str(&schedule.cron).with_context(|| format!("cron expression {:?}", schedule.cron))?;
    let duration = Duration::seconds(i64::try_from(schedule.duration_s).context("duration_s is too large")?);
    Ok(Window { cron, duration })
}

impl Window {
    /// Whether `now` lies in a window: some fire time in `(now - duration, now]`.
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        self.cron.after(&(now - self.duration)).next().is_some_and(|fire| fire <= now)
    }
}

/// Open when there is no schedule.
pub fn is_open(window: Option<&Window>) -> bool {
    window.is_none_or(|w| w.is_open(Utc::now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("time").with_timezone(&Utc)
    }

    #[test]
    fn a_window_opens_at_each_fire_time_for_its_duration() {
        let window = parse(&Schedule { cron: "0 0 8 * * *".into(), duration_s: 3_600 }).expect("valid");
        assert!(!window.is_open(at("2026-11-26T07:59:59Z")));
        assert!(window.is_open(at("2026-11-26T08:00:00Z")));
        assert!(window.is_open(at("2026-11-26T08:59:59Z")));
        assert!(!window.is_open(at("2026-11-26T09:00:01Z")));
    }

    #[test]
    fn a_bad_expression_is_an_error() {
        assert!(parse(&Schedule { cron: "every morning".into(), duration_s: 60 }).is_err());
    }
}
