//! The CloudWatch metrics Framelog publishes: each one's namespace, name and unit as CloudWatch
//! has them, and how it shows under Prometheus. The names are AWS's:
//! <https://docs.aws.amazon.com/streams/latest/dev/monitoring-with-cloudwatch.html>,
//! <https://docs.aws.amazon.com/kinesisvideostreams/latest/dg/monitoring-cloudwatch.html>,
//! <https://docs.aws.amazon.com/firehose/latest/dev/monitoring-with-cloudwatch-metrics.html>.

use std::sync::LazyLock;

/// A CloudWatch namespace Framelog answers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Namespace {
    Kinesis,
    KinesisVideo,
    Firehose,
}

impl Namespace {
    pub const ALL: [Namespace; 3] = [Namespace::Kinesis, Namespace::KinesisVideo, Namespace::Firehose];

    pub fn name(self) -> &'static str {
        match self {
            Namespace::Kinesis => "AWS/Kinesis",
            Namespace::KinesisVideo => "AWS/KinesisVideo",
            Namespace::Firehose => "AWS/Firehose",
        }
    }

    pub fn from_name(name: &str) -> Option<Namespace> {
        Self::ALL.into_iter().find(|namespace| namespace.name() == name)
    }

    /// The Prometheus prefix of its metrics. Firehose's are exported by firehose/metrics.rs
    /// from the delivery checkpoints, so they are not exported twice.
    pub fn prometheus_prefix(self) -> Option<&'static str> {
        match self {
            Namespace::Kinesis => Some("framelog_kinesis"),
            Namespace::KinesisVideo => Some("framelog_kinesisvideo"),
            Namespace::Firehose => None,
        }
    }
}

/// CloudWatch's unit of a metric (StandardUnit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Bytes,
    Milliseconds,
    Seconds,
}

impl Unit {
    pub fn name(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Bytes => "Bytes",
            Unit::Milliseconds => "Milliseconds",
            Unit::Seconds => "Seconds",
        }
    }
}

/// The unit called `name`, as a name that lives as long as the process ("None" if unknown).
pub fn unit_named(name: &str) -> &'static str {
    [Unit::Count, Unit::Bytes, Unit::Milliseconds, Unit::Seconds]
        .into_iter()
        .map(Unit::name)
        .find(|unit| *unit == name)
        .unwrap_or("None")
}

/// What a sample means, which decides its Prometheus type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// An amount (bytes, records): a counter of the sum.
    Total,
    /// 1 for a success, 0 for a failure (CloudWatch's `.Success`): counters of successes and of
    /// attempts.
    Outcome,
    /// A duration in milliseconds: a histogram.
    Latency,
    /// A level (an age, connections open): a gauge holding the latest sample.
    Level,
}

/// One CloudWatch metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    pub namespace: Namespace,
    pub name: &'static str,
    pub unit: Unit,
    pub shape: Shape,
}

const fn metric(namespace: Namespace, name: &'static str, unit: Unit, shape: Shape) -> Metric {
    Metric { namespace, name, unit, shape }
}

/// AWS/Kinesis, per stream (StreamName) and, for the shard-level ones, per shard (ShardId).
pub mod kinesis {
    use super::{Metric, Namespace::Kinesis, Shape::*, Unit::*, metric};

    pub const INCOMING_BYTES: Metric = metric(Kinesis, "IncomingBytes", Bytes, Total);
    pub const INCOMING_RECORDS: Metric = metric(Kinesis, "IncomingRecords", Count, Total);
    pub const OUTGOING_BYTES: Metric = metric(Kinesis, "OutgoingBytes", Bytes, Total);
    pub const OUTGOING_RECORDS: Metric = metric(Kinesis, "OutgoingRecords", Count, Total);
    pub const PUT_RECORD_BYTES: Metric = metric(Kinesis, "PutRecord.Bytes", Bytes, Total);
    pub const PUT_RECORDS_BYTES: Metric = metric(Kinesis, "PutRecords.Bytes", Bytes, Total);
    pub const PUT_RECORDS_TOTAL_RECORDS: Metric = metric(Kinesis, "PutRecords.TotalRecords", Count, Total);
    pub const PUT_RECORDS_SUCCESSFUL_RECORDS: Metric = metric(Kinesis, "PutRecords.SuccessfulRecords", Count, Total);
    pub const PUT_RECORDS_FAILED_RECORDS: Metric = metric(Kinesis, "PutRecords.FailedRecords", Count, Total);
    pub const PUT_RECORDS_THROTTLED_RECORDS: Metric = metric(Kinesis, "PutRecords.ThrottledRecords", Count, Total);
    pub const GET_RECORDS_BYTES: Metric = metric(Kinesis, "GetRecords.Bytes", Bytes, Total);
    pub const GET_RECORDS_RECORDS: Metric = metric(Kinesis, "GetRecords.Records", Count, Total);
    pub const GET_RECORDS_ITERATOR_AGE: Metric =
        metric(Kinesis, "GetRecords.IteratorAgeMilliseconds", Milliseconds, Level);
    /// The shard-level name of the iterator age.
    pub const ITERATOR_AGE: Metric = metric(Kinesis, "IteratorAgeMilliseconds", Milliseconds, Level);
    pub const READ_THROTTLED: Metric = metric(Kinesis, "ReadProvisionedThroughputExceeded", Count, Total);
    pub const WRITE_THROTTLED: Metric = metric(Kinesis, "WriteProvisionedThroughputExceeded", Count, Total);
    pub const SUBSCRIBE_TO_SHARD_SUCCESS: Metric = metric(Kinesis, "SubscribeToShard.Success", Count, Outcome);
    pub const SUBSCRIBE_EVENT_BYTES: Metric = metric(Kinesis, "SubscribeToShardEvent.Bytes", Bytes, Total);
    pub const SUBSCRIBE_EVENT_RECORDS: Metric = metric(Kinesis, "SubscribeToShardEvent.Records", Count, Total);
    pub const SUBSCRIBE_EVENT_MILLIS_BEHIND: Metric =
        metric(Kinesis, "SubscribeToShardEvent.MillisBehindLatest", Milliseconds, Level);
    pub const SUBSCRIBE_EVENT_SUCCESS: Metric = metric(Kinesis, "SubscribeToShardEvent.Success", Count, Outcome);

    #[cfg(test)]
    pub const ALL: &[Metric] = &[
        INCOMING_BYTES,
        INCOMING_RECORDS,
        OUTGOING_BYTES,
        OUTGOING_RECORDS,
        PUT_RECORD_BYTES,
        PUT_RECORDS_BYTES,
        PUT_RECORDS_TOTAL_RECORDS,
        PUT_RECORDS_SUCCESSFUL_RECORDS,
        PUT_RECORDS_FAILED_RECORDS,
        PUT_RECORDS_THROTTLED_RECORDS,
        GET_RECORDS_BYTES,
        GET_RECORDS_RECORDS,
        GET_RECORDS_ITERATOR_AGE,
        ITERATOR_AGE,
        READ_THROTTLED,
        WRITE_THROTTLED,
        SUBSCRIBE_TO_SHARD_SUCCESS,
        SUBSCRIBE_EVENT_BYTES,
        SUBSCRIBE_EVENT_RECORDS,
        SUBSCRIBE_EVENT_MILLIS_BEHIND,
        SUBSCRIBE_EVENT_SUCCESS,
    ];
}

/// AWS/KinesisVideo, per stream (StreamName).
pub mod video {
    use super::{Metric, Namespace::KinesisVideo, Shape::*, Unit::*, metric};

    pub const PUT_MEDIA_INCOMING_BYTES: Metric = metric(KinesisVideo, "PutMedia.IncomingBytes", Bytes, Total);
    pub const PUT_MEDIA_INCOMING_FRAGMENTS: Metric = metric(KinesisVideo, "PutMedia.IncomingFragments", Count, Total);
    pub const PUT_MEDIA_INCOMING_FRAMES: Metric = metric(KinesisVideo, "PutMedia.IncomingFrames", Count, Total);
    pub const PUT_MEDIA_ACTIVE_CONNECTIONS: Metric = metric(KinesisVideo, "PutMedia.ActiveConnections", Count, Level);
    pub const PUT_MEDIA_CONNECTION_ERRORS: Metric = metric(KinesisVideo, "PutMedia.ConnectionErrors", Count, Total);
    pub const PUT_MEDIA_ERROR_ACKS: Metric = metric(KinesisVideo, "PutMedia.ErrorAckCount", Count, Total);
    pub const PUT_MEDIA_INGESTION_LATENCY: Metric =
        metric(KinesisVideo, "PutMedia.FragmentIngestionLatency", Milliseconds, Latency);
    pub const PUT_MEDIA_PERSIST_LATENCY: Metric =
        metric(KinesisVideo, "PutMedia.FragmentPersistLatency", Milliseconds, Latency);
    pub const GET_MEDIA_OUTGOING_BYTES: Metric = metric(KinesisVideo, "GetMedia.OutgoingBytes", Bytes, Total);
    pub const GET_MEDIA_OUTGOING_FRAGMENTS: Metric = metric(KinesisVideo, "GetMedia.OutgoingFragments", Count, Total);
    pub const GET_MEDIA_MILLIS_BEHIND_NOW: Metric =
        metric(KinesisVideo, "GetMedia.MillisBehindNow", Milliseconds, Level);

    #[cfg(test)]
    pub const ALL: &[Metric] = &[
        PUT_MEDIA_INCOMING_BYTES,
        PUT_MEDIA_INCOMING_FRAGMENTS,
        PUT_MEDIA_INCOMING_FRAMES,
        PUT_MEDIA_ACTIVE_CONNECTIONS,
        PUT_MEDIA_CONNECTION_ERRORS,
        PUT_MEDIA_ERROR_ACKS,
        PUT_MEDIA_INGESTION_LATENCY,
        PUT_MEDIA_PERSIST_LATENCY,
        GET_MEDIA_OUTGOING_BYTES,
        GET_MEDIA_OUTGOING_FRAGMENTS,
        GET_MEDIA_MILLIS_BEHIND_NOW,
    ];
}

/// AWS/Firehose, per delivery stream (DeliveryStreamName).
pub mod firehose {
    use super::{Metric, Namespace::Firehose, Shape::*, Unit::*, metric};

    pub const INCOMING_BYTES: Metric = metric(Firehose, "IncomingBytes", Bytes, Total);
    pub const INCOMING_RECORDS: Metric = metric(Firehose, "IncomingRecords", Count, Total);
    pub const THROTTLED_RECORDS: Metric = metric(Firehose, "ThrottledRecords", Count, Total);

    #[cfg(test)]
    pub const ALL: &[Metric] = &[INCOMING_BYTES, INCOMING_RECORDS, THROTTLED_RECORDS];
}

/// The calls whose latency and outcome are measured where every request is answered
/// (access_log.rs), by IAM action: `{Operation}.Latency` and `{Operation}.Success`, and for video
/// `{Operation}.Requests`. Playback reached through a session URL is named by its path.
pub fn request_metrics(action: &str) -> Option<&'static RequestMetrics> {
    REQUEST_TABLE.iter().find(|(known, _)| known == action).map(|(_, metrics)| metrics)
}

/// Every metric recorded: the fixed ones and each measured call's.
#[cfg(test)]
pub fn all() -> Vec<Metric> {
    let fixed = kinesis::ALL.iter().chain(video::ALL).chain(firehose::ALL).copied();
    let per_call = REQUEST_TABLE.iter().flat_map(|(_, m)| [Some(m.latency), Some(m.success), m.requests]).flatten();
    fixed.chain(per_call).collect()
}

static REQUEST_TABLE: LazyLock<Vec<(String, RequestMetrics)>> = LazyLock::new(|| {
    const KINESIS: &[&str] = &["PutRecord", "PutRecords", "GetRecords"];
    const VIDEO: &[&str] = &[
        "PutMedia",
        "GetMedia",
        "GetMediaForFragmentList",
        "ListFragments",
        "GetHLSStreamingSessionURL",
        "GetDASHStreamingSessionURL",
        "GetClip",
        "GetImages",
        "GetHLSMasterPlaylist",
        "GetHLSMediaPlaylist",
        "GetMP4InitFragment",
        "GetMP4MediaFragment",
        "GetTSFragment",
        "GetDASHManifest",
    ];
    let kinesis = KINESIS.iter().map(|op| (format!("kinesis:{op}"), RequestMetrics::of(Namespace::Kinesis, op)));
    let video = VIDEO.iter().map(|op| (format!("kinesisvideo:{op}"), RequestMetrics::of(Namespace::KinesisVideo, op)));
    kinesis.chain(video).collect()
});

/// A measured call's metrics.
#[derive(Debug)]
pub struct RequestMetrics {
    pub latency: Metric,
    pub success: Metric,
    /// KVS counts requests; KDS does not.
    pub requests: Option<Metric>,
}

impl RequestMetrics {
    /// Built once, for the table above: the names live as long as the process.
    fn of(namespace: Namespace, operation: &str) -> RequestMetrics {
        let name = |suffix: &str| -> &'static str { format!("{operation}.{suffix}").leak() };
        RequestMetrics {
            latency: metric(namespace, name("Latency"), Unit::Milliseconds, Shape::Latency),
            success: metric(namespace, name("Success"), Unit::Count, Shape::Outcome),
            requests: (namespace == Namespace::KinesisVideo)
                .then(|| metric(namespace, name("Requests"), Unit::Count, Shape::Total)),
        }
    }
}

/// The Prometheus name of a CloudWatch metric name: snake case, `.` as `_`
/// (`PutRecords.SuccessfulRecords` is `put_records_successful_records`, `GetMP4InitFragment`
/// is `get_mp4_init_fragment`).
pub fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 8);
    for (i, &c) in chars.iter().enumerate() {
        if c == '.' {
            out.push('_');
            continue;
        }
        if c.is_ascii_uppercase() && i > 0 {
            let before = chars[i - 1];
            let after_is_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            let word_starts = before.is_ascii_lowercase()
                || before.is_ascii_digit()
                || (before.is_ascii_uppercase() && after_is_lower);
            if word_starts && !out.ends_with('_') {
                out.push('_');
            }
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_names_follow_the_cloudwatch_names() {
        assert_eq!(snake_case("PutRecords.SuccessfulRecords"), "put_records_successful_records");
        assert_eq!(snake_case("GetRecords.IteratorAgeMilliseconds"), "get_records_iterator_age_milliseconds");
        assert_eq!(snake_case("GetMP4InitFragment.Latency"), "get_mp4_init_fragment_latency");
        assert_eq!(snake_case("GetHLSMasterPlaylist.Requests"), "get_hls_master_playlist_requests");
        assert_eq!(snake_case("GetDASHStreamingSessionURL.Success"), "get_dash_streaming_session_url_success");
        assert_eq!(snake_case("IncomingBytes"), "incoming_bytes");
    }

    #[test]
    fn request_metrics_name_only_measured_calls() {
        let put = request_metrics("kinesis:PutRecords").expect("measured");
        assert_eq!((put.latency.namespace, put.latency.name), (Namespace::Kinesis, "PutRecords.Latency"));
        assert!(put.requests.is_none(), "KDS has no .Requests");
        let clip = request_metrics("kinesisvideo:GetClip").expect("measured");
        assert_eq!(clip.requests.map(|m| m.name), Some("GetClip.Requests"));
        assert!(request_metrics("kinesis:ListStreams").is_none());
        assert!(request_metrics("firehose:PutRecord").is_none());
    }
}
