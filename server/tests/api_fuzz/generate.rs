//! Documents for the fuzzer: mostly well-formed (the members an operation takes, values of the
//! right type and range, names of streams that exist) so requests get past parsing into the
//! handlers, with a share of each kind of wrongness a client can send.

use rand::Rng as _;
use rand::rngs::StdRng;
use serde_json::{Map, Value, json};

/// Names requests use: existing fuzz streams, and ones that never exist. The streams the test
/// checks afterwards have names outside this pool, so no request can legitimately change them.
pub const NAMES: [&str; 4] = ["fuzz-a", "fuzz-b", "fuzz-video", "fuzz-missing"];
const ACCOUNT: &str = "000000000000";

/// The KVS and consumer members, by name, with a generator of a plausible value for each.
const REST_MEMBERS: &[&str] = &[
    "StreamName",
    "StreamARN",
    "DeviceName",
    "MediaType",
    "KmsKeyId",
    "DataRetentionInHours",
    "Tags",
    "TagKeyList",
    "APIName",
    "MaxResults",
    "NextToken",
    "CurrentVersion",
    "Operation",
    "DataRetentionChangeInHours",
    "StreamNameCondition",
    "FragmentSelector",
    "PlaybackMode",
    "HLSFragmentSelector",
    "DASHFragmentSelector",
    "ContainerFormat",
    "DiscontinuityMode",
    "DisplayFragmentTimestamp",
    "Expires",
    "MaxMediaPlaylistFragmentResults",
    "StartSelector",
    "Fragments",
    "ClipFragmentSelector",
    "ImageSelectorType",
    "StartTimestamp",
    "EndTimestamp",
    "SamplingInterval",
    "Format",
    "FormatConfig",
    "WidthPixels",
    "HeightPixels",
    "ConsumerName",
    "DataStreamName",
    "Selection",
    "Output",
    "Webhook",
    "Batching",
    "Retry",
    "LagPolicy",
    "State",
    "VideoCodec",
    "ResourceARN",
    "NotificationConfiguration",
    "ImageGenerationConfiguration",
    "MaxManifestFragmentResults",
];

pub fn name(rng: &mut StdRng) -> String {
    match rng.random_range(0..10) {
        0 => text(rng, 200),
        _ => NAMES[rng.random_range(0..NAMES.len())].to_string(),
    }
}

fn arn(rng: &mut StdRng, service: &str) -> String {
    match rng.random_range(0..6) {
        0 => text(rng, 300),
        1 => format!("arn:aws:{service}:us-east-1:{ACCOUNT}:stream/{}/1700000000000", name(rng)),
        _ => format!("arn:aws:{service}:us-east-1:{ACCOUNT}:stream/{}", name(rng)),
    }
}

/// Text with the characters that break naive handling now and then.
pub fn text(rng: &mut StdRng, max_len: usize) -> String {
    const ODD: [&str; 8] = ["\u{0}", "é", "\u{202e}", "../", "%00", "\"", "\\", "🙂"];
    let len = rng.random_range(0..=max_len);
    (0..len)
        .map(|_| match rng.random_range(0..12) {
            0 => ODD[rng.random_range(0..ODD.len())].to_string(),
            _ => char::from(rng.random_range(b'a'..=b'z')).to_string(),
        })
        .collect()
}

/// A value of no particular shape: what a client with the wrong idea sends.
pub fn chaos(rng: &mut StdRng, depth: u32) -> Value {
    match rng.random_range(0..12) {
        0 => Value::Null,
        1 => json!(rng.random::<bool>()),
        2 => json!(-1),
        3 => json!(i64::MAX),
        4 => json!(1e308),
        5 => json!(rng.random_range(-1000..100_000)),
        6 => json!(text(rng, 40)),
        7 => json!("x".repeat(rng.random_range(1_000..200_000))),
        8 if depth < 40 => json!([chaos(rng, depth + 1)]),
        9 if depth < 40 => json!({ text(rng, 12): chaos(rng, depth + 1) }),
        10 => json!(rng.random_range(0..4_000_000_000_000i64) as f64 / 1000.0),
        _ => json!(""),
    }
}

/// A member value from the botocore shape in constraints.json (`type`, `min`, `max`, `enum`,
/// `item`, `members`), or, one time in five, chaos.
pub fn from_shape(rng: &mut StdRng, shape: &Value, depth: u32) -> Value {
    if rng.random_range(0..5) == 0 || depth > 8 {
        return chaos(rng, depth);
    }
    let name = shape["name"].as_str().unwrap_or_default();
    let min = shape["min"].as_i64().unwrap_or(0);
    let max = shape["max"].as_i64().unwrap_or(min.saturating_add(100)).max(min);
    match shape["type"].as_str().unwrap_or_default() {
        "string" if name.ends_with("StreamName") || name == "ConsumerName" => json!(name_or(rng, name)),
        "string" if name.ends_with("ARN") => json!(arn(rng, "kinesis")),
        "string" => match shape["enum"].as_array() {
            Some(values) if !values.is_empty() => values[rng.random_range(0..values.len())].clone(),
            _ => json!(text(rng, (max.clamp(1, 64)) as usize)),
        },
        "integer" | "long" => json!(rng.random_range(min..=max.min(min.saturating_add(1_000_000)))),
        "boolean" => json!(rng.random::<bool>()),
        "timestamp" => json!(rng.random_range(1_600_000_000..1_900_000_000)),
        "blob" => {
            let len = rng.random_range(0..=(max.clamp(0, 4_096) as usize));
            json!(base64_of(&(0..len).map(|_| rng.random::<u8>()).collect::<Vec<_>>()))
        }
        "list" => {
            let count = rng.random_range(0..=(max.clamp(0, 12) as usize));
            Value::Array((0..count).map(|_| from_shape(rng, &shape["item"], depth + 1)).collect())
        }
        "structure" => document(rng, shape["members"].as_array().map(Vec::as_slice).unwrap_or_default(), depth + 1),
        "map" => json!({ text(rng, 10): text(rng, 10) }),
        _ => chaos(rng, depth),
    }
}

fn name_or(rng: &mut StdRng, member: &str) -> String {
    if member == "ConsumerName" { pick(rng, &["fuzz-consumer", "other"]).to_string() } else { name(rng) }
}

/// A document of an operation's members: required ones nearly always, optional ones half the
/// time, now and then a member nobody defined.
pub fn document(rng: &mut StdRng, members: &[Value], depth: u32) -> Value {
    let mut document = Map::new();
    for member in members {
        let wanted = if member["required"].as_bool() == Some(true) { 9 } else { 5 };
        if rng.random_range(0..10) < wanted {
            let key = member["name"].as_str().unwrap_or_default().to_string();
            document.insert(key, from_shape(rng, member, depth));
        }
    }
    if rng.random_range(0..10) == 0 {
        document.insert(text(rng, 16), chaos(rng, depth));
    }
    Value::Object(document)
}

/// A rest-json document (KVS, consumers, media endpoints): members from the vocabulary.
pub fn rest_document(rng: &mut StdRng) -> Value {
    let mut document = Map::new();
    for _ in 0..rng.random_range(0..8) {
        let member = REST_MEMBERS[rng.random_range(0..REST_MEMBERS.len())];
        document.insert(member.to_string(), rest_value(rng, member));
    }
    if rng.random_range(0..4) != 0 {
        document.insert("StreamName".into(), json!(name(rng)));
    }
    Value::Object(document)
}

fn rest_value(rng: &mut StdRng, member: &str) -> Value {
    if rng.random_range(0..5) == 0 {
        return chaos(rng, 0);
    }
    let time = || json!(1_700_000_000 + (member.len() as i64) * 1000);
    match member {
        "StreamName" | "DataStreamName" | "DeviceName" => json!(name(rng)),
        "StreamARN" | "ResourceARN" => json!(arn(rng, "kinesisvideo")),
        "DataRetentionInHours"
        | "DataRetentionChangeInHours"
        | "MaxResults"
        | "Expires"
        | "WidthPixels"
        | "HeightPixels"
        | "SamplingInterval"
        | "MaxMediaPlaylistFragmentResults"
        | "MaxManifestFragmentResults" => {
            json!(rng.random_range(-5..100_000))
        }
        "StartTimestamp" | "EndTimestamp" => time(),
        "Fragments" | "TagKeyList" => json!([text(rng, 30), "91343852333181432392682062622220590765191907586"]),
        "Tags" => json!({ text(rng, 10): text(rng, 10) }),
        "FragmentSelector" | "HLSFragmentSelector" | "DASHFragmentSelector" | "ClipFragmentSelector" => json!({
            "FragmentSelectorType": pick(rng, &["SERVER_TIMESTAMP", "PRODUCER_TIMESTAMP", "x"]),
            "TimestampRange": {"StartTimestamp": rng.random_range(0..2_000_000_000), "EndTimestamp": rng.random_range(0..2_000_000_000)},
        }),
        "StartSelector" => json!({
            "StartSelectorType": pick(rng, &["NOW", "EARLIEST", "FRAGMENT_NUMBER", "SERVER_TIMESTAMP", "CONTINUATION_TOKEN", "x"]),
            "AfterFragmentNumber": text(rng, 50), "StartTimestamp": time(), "ContinuationToken": text(rng, 80),
        }),
        "Webhook" => {
            json!({"Url": pick(rng, &["http://127.0.0.1:9/x", "file:///etc/passwd", "http://169.254.169.254/"])})
        }
        "Selection" => {
            json!({"Type": pick(rng, &["KEY_FRAMES", "FRAMES_PER_SECOND", "TAG", "x"]), "FramesPerSecond": rng.random_range(-1.0..500.0)})
        }
        "Output" => {
            json!({"Format": pick(rng, &["JPEG", "PNG", "RAW", "GIF"]), "WidthPixels": rng.random_range(-1..100_000)})
        }
        _ => json!(text(rng, 24)),
    }
}

fn pick(rng: &mut StdRng, choices: &[&'static str]) -> &'static str {
    choices[rng.random_range(0..choices.len())]
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
