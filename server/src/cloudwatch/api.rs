//! GetMetricStatistics, GetMetricData and ListMetrics
//! (<https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_Operations.html>), over
//! the one-minute rollups: periods are whole minutes, and the five statistics (SampleCount,
//! Average, Sum, Minimum, Maximum) are answered; percentiles and metric math are refused.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};

use super::query::{Point, Window, known_series};
use super::recorder::{MINUTE_MS, Recorder};
use super::rollups::RETENTION_MS;
use super::series::SeriesKey;
use crate::error::{ApiError, ErrorType};

const STATISTICS: [&str; 5] = ["SampleCount", "Average", "Sum", "Minimum", "Maximum"];
/// Datapoints one GetMetricStatistics may answer.
const MAX_STATISTICS_POINTS: u64 = 1_440;
/// GetMetricData's default and largest MaxDatapoints.
const MAX_DATA_POINTS: usize = 100_800;
const MAX_DATA_QUERIES: usize = 500;
const LIST_PAGE: usize = 500;
/// ListMetrics' RecentlyActive: the past three hours.
const RECENTLY_MS: u64 = 3 * 3_600_000;
/// How long a query reads rollups before it gives up (the handler answers at the same bound).
const READ_DEADLINE: Duration = Duration::from_secs(25);

fn deadline() -> Instant {
    Instant::now() + READ_DEADLINE
}

pub fn dispatch(recorder: &Recorder, operation: &str, document: Value) -> Result<Value, ApiError> {
    match operation {
        "GetMetricStatistics" => get_metric_statistics(recorder, parse(document)?),
        "GetMetricData" => get_metric_data(recorder, parse(document)?),
        "ListMetrics" => list_metrics(recorder, parse(document)?),
        other => Err(ApiError::new(ErrorType::UnknownOperation, format!("Operation {other} is not supported."))),
    }
}

fn parse<T: serde::de::DeserializeOwned>(document: Value) -> Result<T, ApiError> {
    serde_json::from_value(document).map_err(|e| ApiError::serialization(e.to_string()))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Dimension {
    name: String,
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StatisticsInput {
    namespace: Option<String>,
    metric_name: Option<String>,
    #[serde(default)]
    dimensions: Vec<Dimension>,
    start_time: Option<f64>,
    end_time: Option<f64>,
    period: Option<i64>,
    #[serde(default)]
    statistics: Vec<String>,
    #[serde(default)]
    extended_statistics: Vec<String>,
    unit: Option<String>,
}

fn required<T>(value: Option<T>, name: &str) -> Result<T, ApiError> {
    value.ok_or_else(|| ApiError::new(ErrorType::MissingParameter, format!("The parameter {name} is required.")))
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorType::InvalidParameterValue, message)
}

fn key_of(namespace: String, metric: String, dimensions: &[Dimension]) -> SeriesKey {
    let dimensions: Vec<(&str, &str)> = dimensions.iter().map(|d| (d.name.as_str(), d.value.as_str())).collect();
    SeriesKey::new(&namespace, &metric, &dimensions)
}

/// A query's time range and period, checked as CloudWatch checks them, in milliseconds: the
/// start rounded down to its minute.
fn time_range(
    start_secs: f64,
    end_secs: f64,
    period_secs: i64,
    period_name: &str,
) -> Result<(u64, u64, u64), ApiError> {
    if period_secs <= 0 {
        return Err(invalid(format!("The parameter {period_name} must be greater than 0.")));
    }
    if period_secs % 60 != 0 {
        // Only one-minute rollups are kept: no high-resolution periods.
        return Err(invalid(format!("The parameter {period_name} must be a multiple of 60.")));
    }
    if start_secs.partial_cmp(&end_secs) != Some(std::cmp::Ordering::Less) {
        return Err(invalid("The parameter StartTime must be less than the parameter EndTime."));
    }
    let to_ms = |secs: f64| (secs.max(0.0) * 1000.0) as u64;
    let start_ms = to_ms(start_secs) / MINUTE_MS * MINUTE_MS;
    let period_ms = (period_secs as u64).checked_mul(1000).filter(|&ms| ms <= RETENTION_MS).ok_or_else(|| {
        invalid(format!("The parameter {period_name} must be at most {} seconds.", RETENTION_MS / 1000))
    })?;
    Ok((start_ms, to_ms(end_secs), period_ms))
}

fn get_metric_statistics(recorder: &Recorder, input: StatisticsInput) -> Result<Value, ApiError> {
    let namespace = required(input.namespace, "Namespace")?;
    let metric = required(input.metric_name, "MetricName")?;
    let start = required(input.start_time, "StartTime")?;
    let end = required(input.end_time, "EndTime")?;
    let period = required(input.period, "Period")?;
    if input.statistics.is_empty() == input.extended_statistics.is_empty() {
        return Err(ApiError::new(
            ErrorType::InvalidParameterCombination,
            "Must specify either Statistics or ExtendedStatistics, but not both.",
        ));
    }
    if !input.extended_statistics.is_empty() {
        return Err(invalid("The parameter ExtendedStatistics is not supported: percentiles are not kept."));
    }
    for (i, statistic) in input.statistics.iter().enumerate() {
        if !STATISTICS.contains(&statistic.as_str()) {
            return Err(invalid(format!(
                "The parameter Statistics.member.{} must be a value in the set [ {} ].",
                i + 1,
                STATISTICS.join(", ")
            )));
        }
    }
    let (start_ms, end_ms, period_ms) = time_range(start, end, period, "Period")?;
    let points_asked = (end_ms - start_ms).div_ceil(period_ms);
    if points_asked > MAX_STATISTICS_POINTS {
        return Err(ApiError::new(
            ErrorType::InvalidParameterCombination,
            format!(
                "You have requested up to {points_asked} datapoints, which exceeds the limit of {MAX_STATISTICS_POINTS}. You may reduce the datapoints requested by increasing Period, or decreasing the time range."
            ),
        ));
    }
    let key = key_of(namespace, metric.clone(), &input.dimensions);
    let window = Window::read(recorder, start_ms, end_ms, &HashSet::from([key.clone()]), deadline())?;
    let datapoints: Vec<Value> = window
        .points(&key, input.unit.as_deref(), start_ms, period_ms)
        .into_iter()
        .map(|(period_start_ms, point)| datapoint(period_start_ms, &point, &input.statistics))
        .collect();
    Ok(json!({"Label": metric, "Datapoints": datapoints}))
}

fn datapoint(period_start_ms: u64, point: &Point, statistics: &[String]) -> Value {
    let mut datapoint = serde_json::Map::new();
    datapoint.insert("Timestamp".into(), json!(period_start_ms as f64 / 1000.0));
    for statistic in statistics {
        if let Some(value) = point.stats.statistic(statistic) {
            datapoint.insert(statistic.clone(), json!(value));
        }
    }
    datapoint.insert("Unit".into(), point.unit.clone().into());
    Value::Object(datapoint)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DataInput {
    #[serde(default)]
    metric_data_queries: Vec<DataQuery>,
    start_time: Option<f64>,
    end_time: Option<f64>,
    next_token: Option<String>,
    scan_by: Option<String>,
    max_datapoints: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DataQuery {
    id: Option<String>,
    metric_stat: Option<MetricStat>,
    expression: Option<String>,
    label: Option<String>,
    return_data: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MetricStat {
    metric: MetricName,
    period: Option<i64>,
    stat: Option<String>,
    unit: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MetricName {
    namespace: Option<String>,
    metric_name: Option<String>,
    #[serde(default)]
    dimensions: Vec<Dimension>,
}

/// One query, checked.
struct Asked {
    id: String,
    label: String,
    key: SeriesKey,
    unit: Option<String>,
    stat: String,
    period_ms: u64,
    returned: bool,
}

fn get_metric_data(recorder: &Recorder, input: DataInput) -> Result<Value, ApiError> {
    let start = required(input.start_time, "StartTime")?;
    let end = required(input.end_time, "EndTime")?;
    if input.metric_data_queries.is_empty() || input.metric_data_queries.len() > MAX_DATA_QUERIES {
        return Err(invalid(format!("The parameter MetricDataQueries must hold 1 to {MAX_DATA_QUERIES} queries.")));
    }
    let max_points = match input.max_datapoints {
        None => MAX_DATA_POINTS,
        Some(n) if n > 0 => (n as usize).min(MAX_DATA_POINTS),
        Some(_) => return Err(invalid("The parameter MaxDatapoints must be greater than 0.")),
    };
    let descending = match input.scan_by.as_deref() {
        None | Some("TimestampDescending") => true,
        Some("TimestampAscending") => false,
        Some(other) => return Err(invalid(format!("The value {other} for parameter ScanBy is not valid."))),
    };
    let skip = match &input.next_token {
        None => 0,
        Some(token) => token
            .strip_prefix("points-")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| ApiError::new(ErrorType::InvalidNextToken, "The NextToken is not valid."))?,
    };
    let asked = input
        .metric_data_queries
        .into_iter()
        .enumerate()
        .map(|(i, query)| check_query(i + 1, query, start, end))
        .collect::<Result<Vec<_>, _>>()?;
    let (start_ms, end_ms, _) = time_range(start, end, 60, "Period")?;
    let asked_series: HashSet<SeriesKey> = asked.iter().map(|query| query.key.clone()).collect();
    let window = Window::read(recorder, start_ms, end_ms, &asked_series, deadline())?;
    let mut results = Vec::new();
    let (mut seen, mut returned) = (0usize, 0usize);
    let mut next_token = None;
    for query in asked.iter().filter(|q| q.returned) {
        let mut series: Vec<(u64, f64)> = window
            .points(&query.key, query.unit.as_deref(), start_ms, query.period_ms)
            .into_iter()
            .filter_map(|(at_ms, point)| Some((at_ms, point.stats.statistic(&query.stat)?)))
            .collect();
        if descending {
            series.reverse();
        }
        let mut kept = Vec::new();
        for point in series {
            seen += 1;
            if seen <= skip {
                continue;
            }
            if returned == max_points {
                next_token = Some(format!("points-{}", seen - 1));
                break;
            }
            returned += 1;
            kept.push(point);
        }
        let status = if next_token.is_some() { "PartialData" } else { "Complete" };
        results.push(json!({
            "Id": query.id,
            "Label": query.label,
            "Timestamps": kept.iter().map(|(at_ms, _)| *at_ms as f64 / 1000.0).collect::<Vec<_>>(),
            "Values": kept.iter().map(|(_, value)| *value).collect::<Vec<_>>(),
            "StatusCode": status,
        }));
        if next_token.is_some() {
            break;
        }
    }
    let mut answer = json!({"MetricDataResults": results, "Messages": []});
    if let Some(token) = next_token {
        answer["NextToken"] = token.into();
    }
    Ok(answer)
}

fn check_query(n: usize, query: DataQuery, start: f64, end: f64) -> Result<Asked, ApiError> {
    let member = format!("MetricDataQueries.member.{n}");
    let id = required(query.id, &format!("{member}.Id"))?;
    let id_ok = id.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !id_ok {
        return Err(invalid(format!(
            "The value {id} for parameter {member}.Id is not valid: it must start with a lowercase letter and hold only letters, digits and underscores."
        )));
    }
    if query.expression.is_some() {
        return Err(invalid(format!(
            "The parameter {member}.Expression is not supported: metric math is not evaluated."
        )));
    }
    let stat = required(query.metric_stat, &format!("{member}.MetricStat"))?;
    let period = required(stat.period, &format!("{member}.MetricStat.Period"))?;
    let (_, _, period_ms) = time_range(start, end, period, &format!("{member}.MetricStat.Period"))?;
    let statistic = required(stat.stat, &format!("{member}.MetricStat.Stat"))?;
    if !STATISTICS.contains(&statistic.as_str()) {
        return Err(invalid(format!(
            "The value {statistic} for parameter {member}.MetricStat.Stat is not supported: one of {} is.",
            STATISTICS.join(", ")
        )));
    }
    let namespace = required(stat.metric.namespace, &format!("{member}.MetricStat.Metric.Namespace"))?;
    let metric = required(stat.metric.metric_name, &format!("{member}.MetricStat.Metric.MetricName"))?;
    Ok(Asked {
        id,
        label: query.label.unwrap_or_else(|| metric.clone()),
        key: key_of(namespace, metric, &stat.metric.dimensions),
        unit: stat.unit,
        stat: statistic,
        period_ms,
        returned: query.return_data.unwrap_or(true),
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListInput {
    namespace: Option<String>,
    metric_name: Option<String>,
    #[serde(default)]
    dimensions: Vec<DimensionFilter>,
    next_token: Option<String>,
    recently_active: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DimensionFilter {
    name: String,
    value: Option<String>,
}

fn list_metrics(recorder: &Recorder, input: ListInput) -> Result<Value, ApiError> {
    let now_ms = recorder.engine().now_ms();
    let since_ms = match input.recently_active.as_deref() {
        None => now_ms.saturating_sub(RETENTION_MS),
        Some("PT3H") => now_ms.saturating_sub(RECENTLY_MS),
        Some(other) => return Err(invalid(format!("The value {other} for parameter RecentlyActive is not valid."))),
    };
    let skip = match &input.next_token {
        None => 0,
        Some(token) => token
            .strip_prefix("metrics-")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| ApiError::new(ErrorType::InvalidNextToken, "The NextToken is not valid."))?,
    };
    let matching: Vec<SeriesKey> = known_series(recorder)?
        .into_iter()
        .filter(|(key, last_ms)| *last_ms >= since_ms && matches(key, &input))
        .map(|(key, _)| key)
        .collect();
    let page: Vec<Value> = matching.iter().skip(skip).take(LIST_PAGE).map(metric_json).collect();
    let mut answer = json!({"Metrics": page});
    if skip.saturating_add(LIST_PAGE) < matching.len() {
        answer["NextToken"] = format!("metrics-{}", skip + LIST_PAGE).into();
    }
    Ok(answer)
}

fn matches(key: &SeriesKey, input: &ListInput) -> bool {
    input.namespace.as_ref().is_none_or(|n| *n == key.namespace)
        && input.metric_name.as_ref().is_none_or(|m| *m == key.metric)
        && input.dimensions.iter().all(|filter| {
            key.dimensions
                .iter()
                .any(|(name, value)| *name == filter.name && filter.value.as_ref().is_none_or(|v| v == value))
        })
}

fn metric_json(key: &SeriesKey) -> Value {
    let dimensions: Vec<Value> =
        key.dimensions.iter().map(|(name, value)| json!({"Name": name, "Value": value})).collect();
    json!({"Namespace": key.namespace, "MetricName": key.metric, "Dimensions": dimensions})
}
