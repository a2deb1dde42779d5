//! The consumer operations on a context over a temporary engine, with a strict destination policy
//! (what a server with credentials runs): destinations that reach the server's own network, URLs
//! outside the allow-list and `file://` directories outside the images root are refused with
//! InvalidArgument when they are configured, and nothing is stored.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use framelog_store::{Engine, EngineOptions, ManualClock};
use serde_json::{Value, json};

use super::policy::DestinationPolicy;
use super::{ConsumersCtx, ImageFiles, OPERATIONS};
use crate::background::Background;
use crate::document::Document;
use crate::error::{ApiError, ErrorType};
use crate::kvs::{KvsCtx, KvsSettings};

struct Fixture {
    ctx: ConsumersCtx,
    images_root: PathBuf,
    outside: PathBuf,
    _dir: tempfile::TempDir,
}

fn fixture(allowed_prefixes: &[&str]) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = std::fs::canonicalize(dir.path()).expect("canonical");
    let clock = Arc::new(ManualClock::new(1_795_651_512_000));
    let engine = Engine::open(&base.join("engine"), clock, EngineOptions::default()).expect("engine");
    let video = KvsCtx {
        metrics: crate::cloudwatch::Recorder::new(engine.clone()),
        engine,
        settings: KvsSettings {
            account_id: "000000000000".into(),
            region: "us-east-1".into(),
            default_retention_hours: 168,
            data_endpoint: "http://127.0.0.1:1".into(),
        },
        sessions: framelog_wire::Signer::new(b"test".to_vec()),
        segments: Arc::new(crate::kvs::playback::SegmentCache::new(1 << 20)),
        edges: Arc::default(),
        ll_views: Arc::default(),
        whep: Arc::new(crate::kvs::webrtc::WhepSessions::new([127, 0, 0, 1].into(), 4)),
        transcoding: Arc::new(crate::kvs::playback::transcoded::Transcoding::new(
            framelog_imaging::TranscodePool::new(2, framelog_imaging::Isolation::InProcess).expect("transcode pool"),
        )),
    };
    let (changes, _) = tokio::sync::mpsc::unbounded_channel();
    let ctx = ConsumersCtx {
        video,
        images: framelog_imaging::DecodePool::new(1, 1, framelog_imaging::Isolation::InProcess).expect("decode pool"),
        changes,
        background: Background::new(),
        destinations: DestinationPolicy {
            allow_private: false,
            allowed_prefixes: allowed_prefixes.iter().map(|p| p.to_string()).collect(),
            ..DestinationPolicy::default()
        },
        image_files: ImageFiles::new(base.join("images"), 1 << 20),
    };
    let outside = base.join("outside");
    std::fs::create_dir(&outside).expect("outside");
    let kvs = crate::kvs::OPERATIONS.iter().find(|(name, _)| *name == "createStream").expect("createStream").1;
    kvs(&ctx.video, Document::parse(json!({"StreamName": "cam", "DataRetentionInHours": 1})).expect("object"))
        .expect("stream");
    Fixture { ctx, images_root: base.join("images"), outside, _dir: dir }
}

fn call(ctx: &ConsumersCtx, op: &str, document: Value) -> Result<Value, ApiError> {
    let (_, operation) = OPERATIONS.iter().find(|(name, _)| *name == op).expect("known operation");
    operation(ctx, Document::parse(document).expect("object"))
}

/// The InvalidArgument message of a refused call.
fn refused(result: Result<Value, ApiError>) -> String {
    let error = result.expect_err("refused");
    assert_eq!(error.kind, ErrorType::InvalidArgument, "{error:?}");
    error.message.unwrap_or_default()
}

fn consumer(url: &str) -> Value {
    json!({"StreamName": "cam", "ConsumerName": "detector", "Webhook": {"Url": url}})
}

fn images(uri: &str) -> Value {
    json!({"StreamName": "cam", "ImageGenerationConfiguration": {
        "Status": "ENABLED", "ImageSelectorType": "PRODUCER_TIMESTAMP",
        "DestinationConfig": {"Uri": uri, "DestinationRegion": "us-east-1"},
        "SamplingInterval": 1000, "Format": "JPEG"}})
}

fn notification(uri: &str) -> Value {
    json!({"StreamName": "cam", "NotificationConfiguration": {"Status": "ENABLED", "DestinationConfig": {"Uri": uri}}})
}

#[tokio::test]
async fn private_destinations_are_refused_when_a_consumer_or_hook_is_configured() {
    let f = fixture(&[]);
    let message = refused(call(&f.ctx, "createConsumer", consumer("http://admin:s3cret@10.0.0.5:8080/frames")));
    assert!(message.contains("Webhook.Url http://***@10.0.0.5:8080/frames is refused"), "{message}");
    assert!(message.contains("private network address") && !message.contains("s3cret"), "{message}");
    let message = refused(call(&f.ctx, "createConsumer", consumer("http://localhost:9000/frames")));
    assert!(message.contains("localhost resolves to") && message.contains("loopback"), "{message}");
    assert_eq!(call(&f.ctx, "listConsumers", json!({"StreamName": "cam"})).expect("list")["Consumers"], json!([]));

    let message = refused(call(&f.ctx, "updateNotificationConfiguration", notification("http://169.254.169.254/")));
    assert!(
        message.starts_with("NotificationConfiguration.DestinationConfig.Uri http://169.254.169.254/"),
        "{message}"
    );
    let message = refused(call(&f.ctx, "updateImageGenerationConfiguration", images("http://[::ffff:127.0.0.1]/")));
    assert!(message.contains("loopback"), "{message}");
    for op in ["describeNotificationConfiguration", "describeImageGenerationConfiguration"] {
        assert_eq!(call(&f.ctx, op, json!({"StreamName": "cam"})).expect("describe"), json!({}), "{op}");
    }
    call(&f.ctx, "createConsumer", consumer("http://93.184.216.34/frames")).expect("a public address");
}

#[tokio::test]
async fn destinations_outside_the_allow_list_are_refused() {
    let f = fixture(&["http://93.184.216.34/hooks/"]);
    call(&f.ctx, "createConsumer", consumer("http://93.184.216.34/hooks/frames")).expect("allowed");
    let message = refused(call(&f.ctx, "updateNotificationConfiguration", notification("http://93.184.216.35/hooks/")));
    assert!(message.contains("allowed destination prefix (http://93.184.216.34/hooks/)"), "{message}");
    let update =
        json!({"StreamName": "cam", "ConsumerName": "detector", "Webhook": {"Url": "http://93.184.216.34/other"}});
    refused(call(&f.ctx, "updateConsumer", update));
}

#[tokio::test]
async fn file_destinations_must_stay_under_the_images_root() {
    let f = fixture(&[]);
    let uri = |path: &Path| format!("file://{}", path.display());
    let outside = refused(call(&f.ctx, "updateImageGenerationConfiguration", images(&uri(&f.outside))));
    assert!(
        outside.contains("is outside the images root") && outside.contains("must be directories under"),
        "{outside}"
    );
    let dot_dot = format!("file://{}/../outside", f.images_root.display());
    assert!(refused(call(&f.ctx, "updateImageGenerationConfiguration", images(&dot_dot))).contains("'..'"));
    std::fs::create_dir_all(&f.images_root).expect("root");
    std::os::unix::fs::symlink(&f.outside, f.images_root.join("link")).expect("symlink");
    let linked = uri(&f.images_root.join("link/cam"));
    assert!(refused(call(&f.ctx, "updateImageGenerationConfiguration", images(&linked))).contains("outside"));

    let inside = uri(&f.images_root.join("front-door"));
    call(&f.ctx, "updateImageGenerationConfiguration", images(&inside)).expect("under the root");
    let described = call(&f.ctx, "describeImageGenerationConfiguration", json!({"StreamName": "cam"})).expect("d");
    assert_eq!(described["ImageGenerationConfiguration"]["DestinationConfig"]["Uri"], json!(inside));
}

#[test]
fn debug_output_of_consumer_definitions_hides_webhook_credentials() {
    let strict =
        DestinationPolicy { allow_private: false, allowed_prefixes: Vec::new(), ..DestinationPolicy::default() };
    let request = consumer("http://alice:s3cret@93.184.216.34/frames?token=t0ken");
    let spec = super::spec::parse(&Document::parse(request.clone()).expect("object"), 0, &strict).expect("video");
    let record = super::record_spec::parse(&Document::parse(request).expect("object"), 0, &strict).expect("data");
    for shown in [format!("{spec:?}"), format!("{record:?}")] {
        assert!(!shown.contains("s3cret") && !shown.contains("t0ken"), "{shown}");
        assert!(shown.contains("http://***@93.184.216.34/frames?***"), "{shown}");
    }
    // What is stored keeps the whole URL: the call needs it.
    assert!(serde_json::to_string(&spec).expect("json").contains("alice:s3cret@"));
}

#[tokio::test]
async fn a_stream_takes_at_most_twenty_consumers() {
    let f = fixture(&[]);
    for i in 0..20 {
        let document =
            json!({"StreamName": "cam", "ConsumerName": format!("c{i}"), "Webhook": {"Url": "http://93.184.216.34/f"}});
        call(&f.ctx, "createConsumer", document).expect("within the limit");
    }
    let document = json!({"StreamName": "cam", "ConsumerName": "c20", "Webhook": {"Url": "http://93.184.216.34/f"}});
    let error = call(&f.ctx, "createConsumer", document).expect_err("the 21st");
    assert_eq!(error.kind, ErrorType::LimitExceeded);
    let listed = call(&f.ctx, "listConsumers", json!({"StreamName": "cam"})).expect("list");
    assert_eq!(listed["Consumers"].as_array().map(Vec::len), Some(20), "the refused one was not stored");
}
