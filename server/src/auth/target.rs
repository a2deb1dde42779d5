//! What a request asks to do, in IAM's terms: the service it is signed for, the action
//! (`kinesis:PutRecord`, `kinesisvideo:GetMedia`) and the resource ARN it acts on.

use axum::http::{HeaderMap, Method};
use serde::Deserialize;

use super::Resources;
use crate::error::Protocol;

/// A request that must be authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub protocol: Protocol,
    /// The SigV4 service name the signature must be scoped to.
    pub service: &'static str,
    pub action: String,
    /// PutMedia's body is a stream: it is never buffered, and its signature cannot cover it.
    pub streaming: bool,
}

const KDS_TARGET_PREFIX: &str = "Kinesis_20131202.";
const FIREHOSE_TARGET_PREFIX: &str = "Firehose_20150804.";
const ANALYTICS_TARGET_PREFIX: &str = "KinesisAnalytics_20150814.";

/// Paths that need no signature: the console's assets and the HLS/DASH/WHEP URLs, whose session
/// token (minted by an authorized GetHLSStreamingSessionURL or getWHEPSessionURL) is their
/// authority. WHEP posts offers and deletes sessions.
pub fn is_public(method: &Method, path: &str, public_metrics: bool) -> bool {
    let read = method == Method::GET || method == Method::HEAD || method == Method::OPTIONS;
    let whep = [Method::POST, Method::DELETE, Method::OPTIONS].contains(method) && path.starts_with("/whep/v1/");
    whep || read
        && (path == "/"
            || path == "/favicon.ico"
            || path.starts_with("/console/")
            || path.starts_with("/hls/v1/")
            || path.starts_with("/dash/v1/")
            || (public_metrics && path == "/metrics"))
}

/// Classifies a request that is not public.
pub fn classify(method: &Method, path: &str, headers: &HeaderMap) -> Target {
    if let Some(wire) = crate::cloudwatch::Wire::of(path, headers) {
        // CloudWatch signs as `monitoring`; its IAM actions are `cloudwatch:`.
        return Target {
            protocol: Protocol::CloudWatch,
            service: "monitoring",
            action: format!("cloudwatch:{}", wire.operation(path, headers)),
            streaming: false,
        };
    }
    if path == "/" {
        let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
        // Firehose speaks KDS's protocol (awsJson1_1, every error 400) under its own service name.
        if let Some(operation) = target.strip_prefix(FIREHOSE_TARGET_PREFIX) {
            return Target {
                protocol: Protocol::Kds,
                service: "firehose",
                action: format!("firehose:{operation}"),
                streaming: false,
            };
        }
        // Kinesis Data Analytics too, signed as `kinesisanalytics`.
        if let Some(operation) = target.strip_prefix(ANALYTICS_TARGET_PREFIX) {
            return Target {
                protocol: Protocol::Kds,
                service: "kinesisanalytics",
                action: format!("kinesisanalytics:{operation}"),
                streaming: false,
            };
        }
        let operation = target.strip_prefix(KDS_TARGET_PREFIX).unwrap_or("Unknown");
        return Target {
            protocol: Protocol::Kds,
            service: "kinesis",
            action: format!("kinesis:{operation}"),
            streaming: false,
        };
    }
    if path == "/metrics" && method == Method::GET {
        return Target {
            protocol: Protocol::Kvs,
            service: "kinesisvideo",
            action: "framelog:GetMetrics".into(),
            streaming: false,
        };
    }
    let operation = path.trim_start_matches('/');
    Target {
        protocol: Protocol::Kvs,
        service: "kinesisvideo",
        action: format!("kinesisvideo:{}", capitalized(operation)),
        streaming: operation == "putMedia",
    }
}

/// KVS paths are lower camel case (`/getMedia`); IAM actions are upper (`GetMedia`).
fn capitalized(operation: &str) -> String {
    let mut chars = operation.chars();
    chars.next().map(|first| first.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
}

impl Target {
    /// Calls that change state, which the audit log records even when allowed.
    pub fn is_mutating(&self) -> bool {
        const VERBS: &[&str] = &[
            "Create",
            "Delete",
            "Update",
            "Put",
            "Tag",
            "Untag",
            "Add",
            "Remove",
            "Increase",
            "Decrease",
            "Start",
            "Stop",
            "Split",
            "Merge",
            "Register",
            "Deregister",
            "Enable",
            "Disable",
        ];
        let operation = self.action.split_once(':').map_or("", |(_, op)| op);
        VERBS.iter().any(|verb| operation.starts_with(verb))
    }
}

/// The members of a request body that name a resource.
#[derive(Debug, Default, Deserialize)]
struct Names {
    #[serde(rename = "StreamName")]
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    #[serde(rename = "ResourceARN")]
    resource_arn: Option<String>,
    #[serde(rename = "ConsumerARN")]
    consumer_arn: Option<String>,
    #[serde(rename = "ShardIterator")]
    shard_iterator: Option<String>,
    #[serde(rename = "NextToken")]
    next_token: Option<String>,
    #[serde(rename = "DataStreamName")]
    data_stream_name: Option<String>,
    #[serde(rename = "DataStreamARN")]
    data_stream_arn: Option<String>,
    #[serde(rename = "DeliveryStreamName")]
    delivery_stream_name: Option<String>,
    #[serde(rename = "ApplicationName")]
    application_name: Option<String>,
}

/// What the request acts on, as the operation will resolve it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub resource: String,
    /// The consumer API reading a data stream is a `kinesis:` action on it.
    pub action: Option<String>,
}

/// Why the resource could not be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolvable(pub &'static str);

/// The ARN the request acts on, found exactly as the operations find it (so that the policy is
/// evaluated on the stream the operation will touch): `*` for calls that name none
/// (ListStreams). A body that does not parse here is refused rather than evaluated as `*`:
/// a parse the operation accepts but this one does not (duplicate keys, a stray type) must not
/// become a way around a Deny.
pub fn resource(
    target: &Target,
    headers: &HeaderMap,
    body: Option<&[u8]>,
    resources: &dyn Resources,
) -> Result<Resolved, Unresolvable> {
    if target.streaming {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let resource = match (header("x-amzn-stream-arn"), header("x-amzn-stream-name")) {
            (Some(arn), _) => arn,
            (None, Some(name)) => resources.video_stream_arn(&name),
            (None, None) => "*".into(),
        };
        return Ok(Resolved { resource, action: None });
    }
    if target.protocol == Protocol::CloudWatch {
        // Its read actions act on no resource: IAM allows them on `*` only.
        return Ok(Resolved { resource: "*".into(), action: None });
    }
    let names = match body {
        Some(body) if !body.is_empty() => parse_names(headers, body)?,
        _ => Names::default(),
    };
    Ok(match target.protocol {
        Protocol::Kds if target.service == "kinesisanalytics" => {
            let resource = match (names.application_name, names.resource_arn) {
                (Some(name), _) => resources.application_arn(&name),
                (None, Some(arn)) => arn,
                (None, None) => "*".into(),
            };
            Resolved { resource, action: None }
        }
        Protocol::Kds if target.service == "firehose" => {
            let resource = names.delivery_stream_name.map_or_else(|| "*".into(), |n| resources.delivery_stream_arn(&n));
            Resolved { resource, action: None }
        }
        Protocol::Kds => {
            let operation = target.action.split_once(':').map_or("", |(_, op)| op);
            Resolved { resource: kds_resource(operation, names, resources), action: None }
        }
        Protocol::Kvs => kvs_resource(target, names, resources),
        Protocol::CloudWatch => Resolved { resource: "*".into(), action: None },
    })
}

/// The resource a KDS operation acts on, read from the member its handler reads, so that a
/// request cannot be authorized for one resource while acting on another it also names:
/// GetRecords reads only its iterator, ListShards its NextToken when it has one; the tag and
/// policy calls a ResourceARN; SubscribeToShard a ConsumerARN; the consumer registry calls a
/// ConsumerARN or else a StreamARN; the others StreamName before StreamARN
/// (kds::context::stream_name, which refuses two that disagree). Handlers find a stream by the
/// name at the end of its ARN, so a stream ARN is judged as the stream's own ARN, whatever
/// region or account it was written with; consumer ARNs must match exactly to be found at all.
fn kds_resource(operation: &str, names: Names, resources: &dyn Resources) -> String {
    let by_arn = |arn: Option<String>| match arn {
        Some(arn) if arn.contains("/consumer/") => arn,
        Some(arn) => match arn.rsplit_once(":stream/") {
            Some((_, name)) => resources.data_stream_arn(name),
            None => arn,
        },
        None => "*".into(),
    };
    match operation {
        "GetRecords" => {
            names.shard_iterator.and_then(|i| resources.iterator_stream_arn(&i)).unwrap_or_else(|| "*".into())
        }
        "ListShards" if names.next_token.is_some() => {
            names.next_token.and_then(|token| resources.list_token_stream_arn(&token)).unwrap_or_else(|| "*".into())
        }
        "TagResource"
        | "UntagResource"
        | "ListTagsForResource"
        | "PutResourcePolicy"
        | "GetResourcePolicy"
        | "DeleteResourcePolicy" => by_arn(names.resource_arn),
        "SubscribeToShard" => by_arn(names.consumer_arn),
        "RegisterStreamConsumer" | "ListStreamConsumers" | "DescribeStreamConsumer" | "DeregisterStreamConsumer" => {
            by_arn(names.consumer_arn.or(names.stream_arn))
        }
        _ => match names.stream_name {
            Some(name) => resources.data_stream_arn(&name),
            None => by_arn(names.stream_arn),
        },
    }
}

/// KVS operations take StreamName or an ARN (never both; kvs::context::stream): ResourceARN
/// for the *Resource tag calls, StreamARN for the others. The consumer API may name a data
/// stream instead, which makes it a `kinesis:` action on that stream.
fn kvs_resource(target: &Target, names: Names, resources: &dyn Resources) -> Resolved {
    let operation = target.action.split_once(':').map_or("", |(_, op)| op);
    if names.data_stream_name.is_some() || names.data_stream_arn.is_some() {
        let resource = match (names.data_stream_name, names.data_stream_arn) {
            (Some(name), _) => resources.data_stream_arn(&name),
            (None, Some(arn)) => arn,
            (None, None) => "*".into(),
        };
        return Resolved { resource, action: Some(format!("kinesis:{operation}")) };
    }
    let arn = if operation.ends_with("Resource") { names.resource_arn } else { names.stream_arn };
    let resource = match (names.stream_name, arn) {
        (Some(name), _) => resources.video_stream_arn(&name),
        (None, Some(arn)) => arn,
        (None, None) => "*".into(),
    };
    Resolved { resource, action: None }
}

fn parse_names(headers: &HeaderMap, body: &[u8]) -> Result<Names, Unresolvable> {
    // The same test kds::handle uses to choose its decoder.
    let cbor = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-amz-cbor-1.1"));
    let parsed = if cbor { ciborium::from_reader(body).ok() } else { serde_json::from_slice(body).ok() };
    parsed.ok_or(Unresolvable("The request body could not be read to find the resource it names."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed;

    impl Resources for Fixed {
        fn video_stream_arn(&self, name: &str) -> String {
            format!("arn:aws:kinesisvideo:us-east-1:0:stream/{name}/1")
        }
        fn data_stream_arn(&self, name: &str) -> String {
            format!("arn:aws:kinesis:us-east-1:0:stream/{name}")
        }
        fn iterator_stream_arn(&self, iterator: &str) -> Option<String> {
            (iterator == "it").then(|| "arn:aws:kinesis:us-east-1:0:stream/from-iterator".to_string())
        }
        fn list_token_stream_arn(&self, token: &str) -> Option<String> {
            (token == "tok").then(|| "arn:aws:kinesis:us-east-1:0:stream/from-token".to_string())
        }
        fn delivery_stream_arn(&self, name: &str) -> String {
            format!("arn:aws:firehose:us-east-1:0:deliverystream/{name}")
        }
        fn application_arn(&self, name: &str) -> String {
            format!("arn:aws:kinesisanalytics:us-east-1:0:application/{name}")
        }
    }

    fn kds(operation: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-amz-target", format!("Kinesis_20131202.{operation}").parse().expect("header"));
        headers
    }

    #[test]
    fn kds_and_kvs_requests_name_their_action_and_resource() {
        let headers = kds("GetRecords");
        let target = classify(&Method::POST, "/", &headers);
        assert_eq!(target.action, "kinesis:GetRecords");
        assert!(!target.is_mutating());
        let arn = resource(&target, &headers, Some(br#"{"ShardIterator":"it","StreamName":"other"}"#), &Fixed);
        assert_eq!(arn.expect("resolves").resource, "arn:aws:kinesis:us-east-1:0:stream/from-iterator");
        let target = classify(&Method::POST, "/getHLSStreamingSessionURL", &HeaderMap::new());
        assert_eq!(target.action, "kinesisvideo:GetHLSStreamingSessionURL");
        let arn = resource(&target, &HeaderMap::new(), Some(br#"{"StreamName":"cam"}"#), &Fixed);
        assert_eq!(arn.expect("resolves").resource, "arn:aws:kinesisvideo:us-east-1:0:stream/cam/1");
        assert!(resource(&target, &HeaderMap::new(), Some(b"{"), &Fixed).is_err(), "unreadable bodies are refused");
        let duplicate = br#"{"StreamName":"cam","StreamName":"secret"}"#;
        assert!(resource(&target, &HeaderMap::new(), Some(duplicate), &Fixed).is_err());
        assert_eq!(resource(&target, &HeaderMap::new(), Some(b""), &Fixed).expect("empty").resource, "*");
    }

    #[test]
    fn analytics_calls_are_kinesisanalytics_actions_on_their_application() {
        let mut headers = HeaderMap::new();
        headers.insert("x-amz-target", "KinesisAnalytics_20150814.StartApplication".parse().expect("header"));
        let target = classify(&Method::POST, "/", &headers);
        assert_eq!((target.service, target.action.as_str()), ("kinesisanalytics", "kinesisanalytics:StartApplication"));
        assert!(target.is_mutating());
        let resolved = resource(&target, &headers, Some(br#"{"ApplicationName":"sums"}"#), &Fixed);
        assert_eq!(resolved.expect("resolves").resource, "arn:aws:kinesisanalytics:us-east-1:0:application/sums");
    }

    #[test]
    fn firehose_calls_are_firehose_actions_on_their_delivery_stream() {
        let mut headers = HeaderMap::new();
        headers.insert("x-amz-target", "Firehose_20150804.PutRecordBatch".parse().expect("header"));
        let target = classify(&Method::POST, "/", &headers);
        assert_eq!((target.service, target.action.as_str()), ("firehose", "firehose:PutRecordBatch"));
        assert!(target.is_mutating());
        let resolved = resource(&target, &headers, Some(br#"{"DeliveryStreamName":"logs"}"#), &Fixed);
        assert_eq!(resolved.expect("resolves").resource, "arn:aws:firehose:us-east-1:0:deliverystream/logs");
        let list = resource(&target, &headers, Some(b"{}"), &Fixed).expect("resolves");
        assert_eq!(list.resource, "*");
    }

    #[test]
    fn put_media_is_streamed_and_names_its_stream_in_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("x-amzn-stream-name", "cam".parse().expect("header"));
        let target = classify(&Method::POST, "/putMedia", &headers);
        assert!(target.streaming && target.is_mutating());
        let resolved = resource(&target, &headers, None, &Fixed).expect("resolves");
        assert_eq!(resolved.resource, "arn:aws:kinesisvideo:us-east-1:0:stream/cam/1");
    }

    #[test]
    fn the_resource_is_the_one_each_operation_acts_on() {
        let deleting = classify(&Method::POST, "/", &kds("DeleteStream"));
        let both = br#"{"StreamARN":"arn:aws:kinesis:us-east-1:0:stream/allowed","StreamName":"secret"}"#;
        let resolved = resource(&deleting, &HeaderMap::new(), Some(both), &Fixed).expect("resolves");
        assert_eq!(resolved.resource, "arn:aws:kinesis:us-east-1:0:stream/secret", "StreamName wins, as in KDS");
        let kds_tag = classify(&Method::POST, "/", &kds("TagResource"));
        let mixed = br#"{"StreamName":"allowed","ResourceARN":"arn:aws:kinesis:us-east-1:0:stream/secret"}"#;
        let resolved = resource(&kds_tag, &HeaderMap::new(), Some(mixed), &Fixed).expect("resolves");
        assert_eq!(resolved.resource, "arn:aws:kinesis:us-east-1:0:stream/secret", "the member the handler acts on");
        let delete = classify(&Method::POST, "/", &kds("DeleteStream"));
        let decoy = br#"{"StreamName":"secret","ShardIterator":"it","ResourceARN":"arn:allowed"}"#;
        let resolved = resource(&delete, &HeaderMap::new(), Some(decoy), &Fixed).expect("resolves");
        assert_eq!(resolved.resource, "arn:aws:kinesis:us-east-1:0:stream/secret");
        let register = classify(&Method::POST, "/", &kds("RegisterStreamConsumer"));
        let body = br#"{"StreamName":"allowed","StreamARN":"arn:aws:kinesis:eu-fake-1:9:stream/secret"}"#;
        let resolved = resource(&register, &HeaderMap::new(), Some(body), &Fixed).expect("resolves");
        assert_eq!(resolved.resource, "arn:aws:kinesis:us-east-1:0:stream/secret", "the ARN's stream, as its own ARN");
        let list = classify(&Method::POST, "/", &kds("ListShards"));
        let resolved = resource(&list, &HeaderMap::new(), Some(br#"{"NextToken":"tok"}"#), &Fixed).expect("resolves");
        assert_eq!(resolved.resource, "arn:aws:kinesis:us-east-1:0:stream/from-token");
        let subscribe = classify(&Method::POST, "/", &kds("SubscribeToShard"));
        let body = br#"{"StreamName":"allowed","ConsumerARN":"arn:aws:kinesis:us-east-1:0:stream/s/consumer/c:1"}"#;
        let resolved = resource(&subscribe, &HeaderMap::new(), Some(body), &Fixed).expect("resolves");
        assert_eq!(resolved.resource, "arn:aws:kinesis:us-east-1:0:stream/s/consumer/c:1");
        let tag = classify(&Method::POST, "/TagResource", &HeaderMap::new());
        let body = br#"{"ResourceARN":"arn:secret","StreamARN":"arn:allowed"}"#;
        assert_eq!(resource(&tag, &HeaderMap::new(), Some(body), &Fixed).expect("resolves").resource, "arn:secret");
        let consumer = classify(&Method::POST, "/createConsumer", &HeaderMap::new());
        let resolved = resource(&consumer, &HeaderMap::new(), Some(br#"{"DataStreamName":"orders"}"#), &Fixed);
        let resolved = resolved.expect("resolves");
        assert_eq!(resolved.resource, "arn:aws:kinesis:us-east-1:0:stream/orders");
        assert_eq!(resolved.action.as_deref(), Some("kinesis:CreateConsumer"));
    }

    #[test]
    fn only_reads_of_the_console_and_playlists_are_public() {
        assert!(is_public(&Method::GET, "/", false));
        assert!(is_public(&Method::GET, "/hls/v1/getHLSMasterPlaylist.m3u8", false));
        assert!(!is_public(&Method::POST, "/", false));
        assert!(!is_public(&Method::GET, "/metrics", false));
        assert!(is_public(&Method::GET, "/metrics", true));
        assert!(!is_public(&Method::GET, "/listStreams", false));
    }
}
