//! One random request to one of the server's operations: KDS, Firehose and Analytics (awsJson, the members
//! from their constraints.json), the KVS and consumer rest-json operations, the media endpoints (PutMedia,
//! GetMedia, clips, images), HLS/DASH playback URLs (often a real session's, tampered with),
//! WHEP, the console and /metrics.

use axum::body::Body;
use axum::http::Request;
use rand::Rng as _;
use rand::rngs::StdRng;
use serde_json::Value;

use super::generate::{self, text};

/// What the fuzzer knows of the server: every operation and a real playback URL's query.
pub struct Targets {
    /// Every awsJson operation: its `X-Amz-Target` prefix, name and members.
    pub aws_json: Vec<(&'static str, String, Vec<Value>)>,
    pub rest: Vec<&'static str>,
    /// A real HLS session's query string (SessionToken and all), to tamper with.
    pub hls_query: String,
}

const MEDIA_PATHS: [&str; 4] = ["/getMedia", "/getMediaForFragmentList", "/getClip", "/getImages"];
const PLAYBACK_FILES: [&str; 7] = [
    "hls/v1/getHLSMasterPlaylist.m3u8",
    "hls/v1/getHLSMediaPlaylist.m3u8",
    "hls/v1/getMP4InitFragment.mp4",
    "hls/v1/getMP4MediaFragment.mp4",
    "hls/v1/getTSFragment.ts",
    "dash/v1/getDASHManifest.mpd",
    "hls/v1/nothing.here",
];

impl Targets {
    pub fn new(hls_query: String) -> Targets {
        let tables = [
            ("Kinesis_20131202.", include_str!("../../src/kds/constraints.json")),
            ("Firehose_20150804.", include_str!("../../src/firehose/constraints.json")),
            ("KinesisAnalytics_20150814.", include_str!("../../src/analytics/constraints.json")),
        ];
        let mut aws_json = Vec::new();
        for (prefix, json) in tables {
            let table: Value = serde_json::from_str(json).expect("constraints");
            for (name, members) in table["operations"].as_object().expect("operations") {
                aws_json.push((prefix, name.clone(), members.as_array().cloned().unwrap_or_default()));
            }
        }
        Targets { aws_json, rest: framelog_server::rest_json_operations(), hls_query }
    }

    /// A request and a one-line description of it (for the failure message).
    pub fn request(&self, rng: &mut StdRng) -> (Request<Body>, String) {
        match rng.random_range(0..20) {
            0..=7 => self.aws_json(rng),
            8..=12 => {
                let op = self.rest[rng.random_range(0..self.rest.len())];
                let document = generate::rest_document(rng);
                post_json(&format!("/{op}"), body(rng, document))
            }
            13..=14 => {
                let path = MEDIA_PATHS[rng.random_range(0..MEDIA_PATHS.len())];
                let document = generate::rest_document(rng);
                post_json(path, body(rng, document))
            }
            15 => put_media(rng),
            16..=17 => self.playback(rng),
            18 => whep(rng),
            _ => {
                get(["/metrics", "/", "/console/console.js", "/console/..%2f..%2fetc%2fpasswd"][rng.random_range(0..4)])
            }
        }
    }

    fn aws_json(&self, rng: &mut StdRng) -> (Request<Body>, String) {
        let (prefix, op, members) = &self.aws_json[rng.random_range(0..self.aws_json.len())];
        let target = if rng.random_range(0..30) == 0 { header_safe(&text(rng, 30)) } else { format!("{prefix}{op}") };
        let content_type =
            ["application/x-amz-json-1.1", "application/x-amz-cbor-1.1", "text/plain"][rng.random_range(0..3)];
        let document = generate::document(rng, members, 0);
        let payload = body(rng, document);
        let description = format!("awsJson {target} ({content_type}): {}", preview(&payload));
        let request = Request::post("/")
            .header("content-type", content_type)
            .header("x-amz-target", target)
            .header("authorization", "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/kinesis/aws4_request")
            .body(Body::from(payload))
            .expect("request");
        (request, description)
    }

    fn playback(&self, rng: &mut StdRng) -> (Request<Body>, String) {
        let file = PLAYBACK_FILES[rng.random_range(0..PLAYBACK_FILES.len())];
        let query = match rng.random_range(0..3) {
            0 => format!("SessionToken={}", text(rng, 300)),
            1 => format!(
                "{}&TrackNumber={}&FragmentNumber={}",
                self.hls_query,
                rng.random_range(-3..70_000),
                text(rng, 50)
            ),
            _ => self.hls_query.clone(),
        };
        let uri = format!("/{file}?{}", query.replace(' ', "%20").replace('#', "%23"));
        get(&uri)
    }
}

/// The document as JSON, or (one time in ten) the JSON cut short or replaced with noise.
fn body(rng: &mut StdRng, document: Value) -> Vec<u8> {
    let json = document.to_string().into_bytes();
    match rng.random_range(0..20) {
        0 => json[..rng.random_range(0..=json.len())].to_vec(),
        1 => (0..rng.random_range(0..2_000)).map(|_| rng.random::<u8>()).collect(),
        _ => json,
    }
}

/// Text a client library would put in a header: what it cannot carry becomes `_`.
fn header_safe(text: &str) -> String {
    text.replace(|c: char| !c.is_ascii_graphic(), "_")
}

fn preview(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned()
}

fn post_json(path: &str, payload: Vec<u8>) -> (Request<Body>, String) {
    let description = format!("POST {path}: {}", preview(&payload));
    let request = Request::post(path)
        .header("content-type", "application/json")
        .header("authorization", "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/kinesisvideo/aws4_request")
        .body(Body::from(payload))
        .expect("request");
    (request, description)
}

fn get(uri: &str) -> (Request<Body>, String) {
    match Request::get(uri).body(Body::empty()) {
        Ok(request) => (request, format!("GET {uri}")),
        // A URI the client library itself would not send: ask for the console instead.
        Err(_) => (Request::get("/").body(Body::empty()).expect("request"), format!("GET / (for {uri})")),
    }
}

fn put_media(rng: &mut StdRng) -> (Request<Body>, String) {
    let mut payload = vec![0x1a, 0x45, 0xdf, 0xa3];
    payload.extend((0..rng.random_range(0..4_000)).map(|_| rng.random::<u8>()));
    let timecode_type = ["ABSOLUTE", "RELATIVE", "x"][rng.random_range(0..3)];
    let start = if rng.random::<bool>() { String::from("1700000000.000") } else { text(rng, 20) };
    let name = generate::name(rng);
    let request = Request::post("/putMedia")
        .header("authorization", "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/kinesisvideo/aws4_request")
        .header("x-amzn-stream-name", header_safe(&name))
        .header("x-amzn-fragment-timecode-type", timecode_type)
        .header("x-amzn-producer-start-timestamp", header_safe(&start))
        .body(Body::from(payload))
        .expect("request");
    (request, format!("PutMedia to {name} ({timecode_type})"))
}

fn whep(rng: &mut StdRng) -> (Request<Body>, String) {
    let name = generate::name(rng).replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_");
    let sdp = format!("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\n{}\r\n", text(rng, 400));
    let (method, body) = if rng.random::<bool>() { ("POST", sdp) } else { ("DELETE", String::new()) };
    let uri = format!("/whep/v1/{name}?{}", text(rng, 30).replace(|c: char| !c.is_ascii_alphanumeric(), ""));
    let request =
        Request::builder().method(method).uri(&uri).header("content-type", "application/sdp").body(Body::from(body));
    match request {
        Ok(request) => (request, format!("{method} {uri}")),
        Err(_) => get("/"),
    }
}
