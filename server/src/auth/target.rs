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

/// Paths that need no signature: the console's assets and the HLS/DASH URLs, whose session
/// token (minted by an authorized GetHLSStreamingSessionURL) is their authority.
pub fn is_public(method: &Method, path: &str, public_metrics: bool) -> bool {
    let read = method == Method::GET || method == Method::HEAD || method == Method::OPTIONS;
    read && (path == "/"
        || path == "/favicon.ico"
        || path.starts_with("/console/")
        || path.starts_with("/hls/v1/")
        || path.starts_with("/dash/v1/")
        || (public_metrics && path == "/metrics"))
}

/// Classifies a request that is not public.
pub fn classify(method: &Method, path: &str, headers: &HeaderMap) -> Target {
    if path == "/" {
        let operation = headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .and_then(|t| t.strip_prefix(KDS_TARGET_PREFIX))
            .unwrap_or("Unknown");
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
}

/// The ARN the request acts on; `*` for calls that name none (ListStreams) and for bodies that
/// do not parse (the operation will refuse them), so that only a `Resource: "*"` policy can
/// allow them.
pub fn resource(target: &Target, headers: &HeaderMap, body: Option<&[u8]>, resources: &dyn Resources) -> String {
    if target.streaming {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        if let Some(arn) = header("x-amzn-stream-arn") {
            return arn;
        }
        return header("x-amzn-stream-name").map_or_else(|| "*".into(), |name| resources.video_stream_arn(&name));
    }
    let names = body.map(|body| parse_names(headers, body)).unwrap_or_default();
    match target.protocol {
        Protocol::Kds => names
            .stream_arn
            .or_else(|| names.stream_name.map(|name| resources.data_stream_arn(&name)))
            .or(names.consumer_arn)
            .or_else(|| names.shard_iterator.and_then(|it| resources.iterator_stream_arn(&it)))
            .unwrap_or_else(|| "*".into()),
        Protocol::Kvs => names
            .stream_arn
            .or(names.resource_arn)
            .or_else(|| names.stream_name.map(|name| resources.video_stream_arn(&name)))
            .unwrap_or_else(|| "*".into()),
    }
}

fn parse_names(headers: &HeaderMap, body: &[u8]) -> Names {
    let cbor = headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|t| t.contains("cbor"));
    let parsed = if cbor { ciborium::from_reader(body).ok() } else { serde_json::from_slice(body).ok() };
    parsed.unwrap_or_default()
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
        let arn = resource(&target, &headers, Some(br#"{"ShardIterator":"it"}"#), &Fixed);
        assert_eq!(arn, "arn:aws:kinesis:us-east-1:0:stream/from-iterator");
        let target = classify(&Method::POST, "/getHLSStreamingSessionURL", &HeaderMap::new());
        assert_eq!(target.action, "kinesisvideo:GetHLSStreamingSessionURL");
        let arn = resource(&target, &HeaderMap::new(), Some(br#"{"StreamName":"cam"}"#), &Fixed);
        assert_eq!(arn, "arn:aws:kinesisvideo:us-east-1:0:stream/cam/1");
        assert_eq!(resource(&target, &HeaderMap::new(), Some(b"{"), &Fixed), "*");
    }

    #[test]
    fn put_media_is_streamed_and_names_its_stream_in_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("x-amzn-stream-name", "cam".parse().expect("header"));
        let target = classify(&Method::POST, "/putMedia", &headers);
        assert!(target.streaming && target.is_mutating());
        assert_eq!(resource(&target, &headers, None, &Fixed), "arn:aws:kinesisvideo:us-east-1:0:stream/cam/1");
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
