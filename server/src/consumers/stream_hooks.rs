//! KVS's tag-triggered stream features, run on the consumer machinery:
//! `UpdateNotificationConfiguration` (fragments tagged AWS_KINESISVIDEO_NOTIFICATION post an
//! SNS-shaped notification to the configured URI) and `UpdateImageGenerationConfiguration`
//! (fragments tagged AWS_KINESISVIDEO_IMAGE_GENERATION become pictures in a directory or at a
//! webhook), with their Describe calls. Each is a hidden consumer named `$notification` /
//! `$image-generation` (names the consumer API cannot create), so they get the same checkpoints,
//! retries and dead-letter log. The request's configuration is kept verbatim for Describe.
//! Destinations are checked when configured: URLs by the destination policy, `file://`
//! directories against the images root (docs/consumers.md, "Destinations").

use serde_json::{Value, json};

use super::ConsumersCtx;
use super::runner::start_seq;
use super::sink::{IMAGE_GENERATION_TAG, NOTIFICATION_TAG};
use super::spec::{ConsumerSpec, Format, LagPolicy, Selection, Sink, Start, TimestampKind, range};
use super::state::{self, Checkpoint};
use super::webhook_url::{WebhookUrl, redact};
use crate::document::Document;
use crate::error::ApiError;
use crate::kvs::VideoStream;

/// Which of the two features a call is about.
#[derive(Clone, Copy)]
struct Feature {
    /// The request and response member.
    member: &'static str,
    /// The hidden consumer's name.
    consumer: &'static str,
    /// Where the verbatim configuration lives in the stream's settings.
    config_key: &'static str,
}

const NOTIFICATION: Feature = Feature {
    member: "NotificationConfiguration",
    consumer: "$notification",
    config_key: "kvs.notification_configuration",
};

const IMAGE_GENERATION: Feature = Feature {
    member: "ImageGenerationConfiguration",
    consumer: "$image-generation",
    config_key: "kvs.image_generation_configuration",
};

/// True for the consumers this module runs (listConsumers leaves them out).
pub fn is_hidden(consumer: &str) -> bool {
    consumer.starts_with('$')
}

fn required_str(document: &Document, field: &str, path: &str) -> Result<String, ApiError> {
    document.str(field)?.ok_or_else(|| ApiError::invalid(format!("{path} is required.")))
}

fn required_object(document: &Document, field: &str, path: &str) -> Result<Document, ApiError> {
    document.object(field)?.ok_or_else(|| ApiError::invalid(format!("{path} is required.")))
}

/// ENABLED → running, DISABLED → kept but paused.
fn paused(config: &Document, member: &str) -> Result<bool, ApiError> {
    match required_str(config, "Status", &format!("{member}.Status"))?.as_str() {
        "ENABLED" => Ok(false),
        "DISABLED" => Ok(true),
        other => Err(ApiError::invalid(format!("{member}.Status must be ENABLED or DISABLED, not {other}."))),
    }
}

/// A hidden consumer that starts at the newest fragment (a configuration applies to what is
/// ingested after it) and takes the fragments carrying `tag`.
fn hook(consumer: &str, tag: &str, every_ms: Option<u64>, paused: bool, now_ms: u64) -> ConsumerSpec {
    ConsumerSpec {
        name: consumer.to_string(),
        start: Start::Now,
        selection: Selection::Tag { name: tag.to_string(), value: None, every_ms },
        format: Format::Raw,
        width: None,
        height: None,
        webhook_url: WebhookUrl::default(),
        max_frames_per_batch: 1,
        max_wait_ms: 0,
        lag: LagPolicy::Block,
        max_attempts: 5,
        paused,
        created_ms: now_ms,
        sink: Sink::Notification,
    }
}

fn notification_hook(ctx: &ConsumersCtx, config: &Document, now_ms: u64) -> Result<ConsumerSpec, ApiError> {
    let member = NOTIFICATION.member;
    let paused = paused(config, member)?;
    let destination = required_object(config, "DestinationConfig", &format!("{member}.DestinationConfig"))?;
    let field = format!("{member}.DestinationConfig.Uri");
    let uri = required_str(&destination, "Uri", &field)?;
    if !uri.starts_with("http://") && !uri.starts_with("https://") {
        return Err(ApiError::invalid(format!(
            "{field} must be an http:// or https:// URL (Framelog posts SNS-shaped notifications to it), not {}.",
            redact(&uri)
        )));
    }
    let mut spec = hook(NOTIFICATION.consumer, NOTIFICATION_TAG, None, paused, now_ms);
    spec.webhook_url = ctx.destinations.check_configured(&uri, &field)?;
    Ok(spec)
}

fn image_generation_hook(ctx: &ConsumersCtx, config: &Document, now_ms: u64) -> Result<ConsumerSpec, ApiError> {
    let member = IMAGE_GENERATION.member;
    let paused = paused(config, member)?;
    let timestamp = match required_str(config, "ImageSelectorType", &format!("{member}.ImageSelectorType"))?.as_str() {
        "PRODUCER_TIMESTAMP" => TimestampKind::Producer,
        "SERVER_TIMESTAMP" => TimestampKind::Server,
        other => {
            return Err(ApiError::invalid(format!(
                "ImageSelectorType must be PRODUCER_TIMESTAMP or SERVER_TIMESTAMP, not {other}."
            )));
        }
    };
    let destination = required_object(config, "DestinationConfig", &format!("{member}.DestinationConfig"))?;
    let field = format!("{member}.DestinationConfig.Uri");
    let uri = required_str(&destination, "Uri", &field)?;
    let region =
        required_str(&destination, "DestinationRegion", &format!("{member}.DestinationConfig.DestinationRegion"))?;
    if region != ctx.video.settings.region {
        return Err(ApiError::invalid(format!(
            "DestinationRegion {region} must be the stream's region, {}.",
            ctx.video.settings.region
        )));
    }
    let Some(interval_ms) = config.int("SamplingInterval")? else {
        return Err(ApiError::invalid(format!("{member}.SamplingInterval is required.")));
    };
    let interval_ms = range(interval_ms, 200, 20_000, "SamplingInterval")? as u64;
    let format = match required_str(config, "Format", &format!("{member}.Format"))?.as_str() {
        "JPEG" => {
            let quality = match config.object("FormatConfig")?.map(|c| c.str("JPEGQuality")).transpose()?.flatten() {
                None => 80,
                Some(text) => text
                    .parse::<u8>()
                    .ok()
                    .filter(|q| (1..=100).contains(q))
                    .ok_or_else(|| ApiError::invalid(format!("JPEGQuality must be 1 to 100, not {text}.")))?,
            };
            Format::Jpeg { quality }
        }
        "PNG" => Format::Png,
        other => return Err(ApiError::invalid(format!("Format must be JPEG or PNG, not {other}."))),
    };
    let dimension = |field: &str, max: i64| -> Result<Option<u32>, ApiError> {
        config.int(field)?.map(|value| range(value, 1, max, field).map(|v| v as u32)).transpose()
    };
    let mut spec = hook(IMAGE_GENERATION.consumer, IMAGE_GENERATION_TAG, Some(interval_ms), paused, now_ms);
    spec.format = format;
    spec.width = dimension("WidthPixels", 3840)?;
    spec.height = dimension("HeightPixels", 2160)?;
    if let Some(path) = uri.strip_prefix("file://") {
        spec.sink = Sink::Directory { root: image_directory(ctx, path, &field)?, timestamp };
    } else if uri.starts_with("http://") || uri.starts_with("https://") {
        spec.sink = Sink::Frames;
        spec.webhook_url = ctx.destinations.check_configured(&uri, &field)?;
    } else {
        return Err(ApiError::invalid(format!(
            "DestinationConfig.Uri must be file:///<directory> or an http(s):// URL (S3 is not available), not {}.",
            redact(&uri)
        )));
    }
    Ok(spec)
}

/// A `file://` destination's directory in its canonical form, when it is under the images root.
fn image_directory(ctx: &ConsumersCtx, path: &str, field: &str) -> Result<std::path::PathBuf, ApiError> {
    if !path.starts_with('/') {
        return Err(ApiError::invalid(format!("A file:// Uri must name an absolute directory, not file://{path}.")));
    }
    ctx.image_files.destination(std::path::Path::new(path)).map_err(|escape| {
        ApiError::invalid(format!(
            "{field} file://{path} is refused: {escape}; file:// destinations must be directories under the images root {}.",
            ctx.image_files.root().display()
        ))
    })
}

/// Stores (or with `None`, removes) a feature's configuration and hidden consumer, and tells the
/// supervisor.
fn install(
    ctx: &ConsumersCtx,
    handle: &framelog_store::StreamHandle,
    feature: Feature,
    config: Option<(Document, ConsumerSpec)>,
) -> Result<Value, ApiError> {
    let name = feature.consumer;
    let entry = match config {
        Some((document, spec)) => {
            VideoStream::new(handle.clone()).require_archive()?;
            let checkpoint = Checkpoint { seq: Some(start_seq(ctx, handle, &Start::Now)?), ..Checkpoint::default() };
            Some((Value::Object(document.0).to_string(), serde_json::to_string(&spec).unwrap_or_default(), checkpoint))
        }
        None => None,
    };
    ctx.video.engine.update_meta(handle, |meta| {
        meta.settings.remove(&state::dead_key(name));
        match &entry {
            Some((config, spec, checkpoint)) => {
                meta.settings.insert(feature.config_key.to_string(), config.clone());
                meta.settings.insert(state::spec_key(name), spec.clone());
                meta.settings
                    .insert(state::checkpoint_key(name), serde_json::to_string(checkpoint).unwrap_or_default());
            }
            None => {
                meta.settings.remove(feature.config_key);
                meta.settings.remove(&state::spec_key(name));
                meta.settings.remove(&state::checkpoint_key(name));
            }
        }
    })?;
    super::api::notify(ctx, handle, name);
    Ok(json!({}))
}

fn describe(ctx: &ConsumersCtx, body: Document, feature: Feature) -> Result<Value, ApiError> {
    let handle = ctx.video.stream(&body, "StreamARN")?;
    let stored =
        handle.meta().settings.get(feature.config_key).and_then(|text| serde_json::from_str::<Value>(text).ok());
    Ok(match stored {
        Some(config) => json!({ feature.member: config }),
        None => json!({}),
    })
}

pub fn update_notification_configuration(ctx: &ConsumersCtx, body: Document) -> Result<Value, ApiError> {
    let handle = ctx.video.stream(&body, "StreamARN")?;
    let config = match body.object(NOTIFICATION.member)? {
        Some(document) => {
            let spec = notification_hook(ctx, &document, ctx.video.engine.now_ms())?;
            Some((document, spec))
        }
        None => None,
    };
    install(ctx, &handle, NOTIFICATION, config)
}

pub fn describe_notification_configuration(ctx: &ConsumersCtx, body: Document) -> Result<Value, ApiError> {
    describe(ctx, body, NOTIFICATION)
}

pub fn update_image_generation_configuration(ctx: &ConsumersCtx, body: Document) -> Result<Value, ApiError> {
    let handle = ctx.video.stream(&body, "StreamARN")?;
    let config = match body.object(IMAGE_GENERATION.member)? {
        Some(document) => {
            let spec = image_generation_hook(ctx, &document, ctx.video.engine.now_ms())?;
            Some((document, spec))
        }
        None => None,
    };
    install(ctx, &handle, IMAGE_GENERATION, config)
}

pub fn describe_image_generation_configuration(ctx: &ConsumersCtx, body: Document) -> Result<Value, ApiError> {
    describe(ctx, body, IMAGE_GENERATION)
}
