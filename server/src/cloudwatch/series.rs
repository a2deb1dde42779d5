//! A metric series (namespace, name, dimensions) and the statistic set CloudWatch keeps of its
//! samples over a period: count, sum, minimum and maximum. Sets of the same series merge, which
//! is what lets one-minute rollups (and rollups from several nodes) answer any longer period.

use serde::{Deserialize, Serialize};

/// One series, as CloudWatch names it. Dimensions are sorted by name, so a series has one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeriesKey {
    pub namespace: String,
    pub metric: String,
    pub dimensions: Vec<(String, String)>,
}

impl SeriesKey {
    pub fn new(namespace: &str, metric: &str, dimensions: &[(&str, &str)]) -> SeriesKey {
        let mut dimensions: Vec<(String, String)> =
            dimensions.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect();
        dimensions.sort();
        SeriesKey { namespace: namespace.to_string(), metric: metric.to_string(), dimensions }
    }
}

/// Count, sum, minimum and maximum of a series' samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    #[serde(rename = "n")]
    pub count: f64,
    #[serde(rename = "s")]
    pub sum: f64,
    #[serde(rename = "lo")]
    pub min: f64,
    #[serde(rename = "hi")]
    pub max: f64,
}

impl Stats {
    pub fn one(value: f64) -> Stats {
        Stats { count: 1.0, sum: value, min: value, max: value }
    }

    pub fn add(&mut self, value: f64) {
        self.merge(&Stats::one(value));
    }

    pub fn merge(&mut self, other: &Stats) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// One of CloudWatch's five statistics, by its name.
    pub fn statistic(&self, name: &str) -> Option<f64> {
        match name {
            "SampleCount" => Some(self.count),
            "Sum" => Some(self.sum),
            "Minimum" => Some(self.min),
            "Maximum" => Some(self.max),
            "Average" if self.count > 0.0 => Some(self.sum / self.count),
            _ => None,
        }
    }
}

/// A series' statistics over one minute, with its unit: what is stored for each minute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollup {
    #[serde(flatten)]
    pub key: SeriesKey,
    pub unit: String,
    #[serde(flatten)]
    pub stats: Stats,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_sets_keep_the_statistics_of_all_samples() {
        let mut first = Stats::one(4.0);
        first.add(10.0);
        let mut second = Stats::one(1.0);
        second.add(5.0);
        first.merge(&second);
        assert_eq!(first.statistic("SampleCount"), Some(4.0));
        assert_eq!(first.statistic("Sum"), Some(20.0));
        assert_eq!(first.statistic("Average"), Some(5.0));
        assert_eq!(first.statistic("Minimum"), Some(1.0));
        assert_eq!(first.statistic("Maximum"), Some(10.0));
        assert_eq!(first.statistic("p99"), None);
    }

    #[test]
    fn a_series_has_one_key_whatever_the_order_of_its_dimensions() {
        let one = SeriesKey::new("AWS/Kinesis", "IncomingBytes", &[("StreamName", "a"), ("ShardId", "s")]);
        let other = SeriesKey::new("AWS/Kinesis", "IncomingBytes", &[("ShardId", "s"), ("StreamName", "a")]);
        assert_eq!(one, other);
    }
}
