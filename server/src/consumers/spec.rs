//! A consumer's definition: where it starts, which frames it takes, what it delivers where, and
//! how it batches, retries and handles lag. Parsed from the rest-json request and stored as JSON
//! in the stream's metadata (docs/consumers.md).

use serde::{Deserialize, Serialize};

use super::policy::DestinationPolicy;
use super::webhook_url::WebhookUrl;
use crate::document::Document;
use crate::error::ApiError;

pub const MAX_NAME_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Start {
    Now,
    Earliest,
    ProducerTimestamp(u64),
    ServerTimestamp(u64),
    /// Starts after this fragment.
    FragmentNumber(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Selection {
    KeyFrames,
    /// At most this many frames per second of video time.
    FramesPerSecond(f64),
    /// One frame per this many ms of video time.
    SamplingIntervalMs(u64),
    /// The key frames of fragments with this tag (and value, when given), or with `every_ms`
    /// one frame per that many ms of their video time (image generation's SamplingInterval).
    Tag {
        name: String,
        value: Option<String>,
        #[serde(default)]
        every_ms: Option<u64>,
    },
}

/// Whose frame time names an image file (image generation's ImageSelectorType).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimestampKind {
    Producer,
    Server,
}

/// Where a consumer's output goes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub enum Sink {
    /// Batches of frames POSTed to `webhook_url` (docs/consumers.md).
    #[default]
    Frames,
    /// One SNS-style notification per selected fragment, POSTed to `webhook_url`
    /// (UpdateNotificationConfiguration).
    Notification,
    /// One picture file per frame under `root` (UpdateImageGenerationConfiguration's file:// URI).
    Directory { root: std::path::PathBuf, timestamp: TimestampKind },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Format {
    Jpeg {
        quality: u8,
    },
    Png,
    /// The encoded access unit with the codec configuration, untouched.
    Raw,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LagPolicy {
    /// Never skip.
    Block,
    /// When the consumer is more than this far behind the newest fragment, jump to it and count
    /// what was skipped.
    Latest { max_lag_ms: u64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsumerSpec {
    pub name: String,
    pub start: Start,
    pub selection: Selection,
    pub format: Format,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Debug shows it redacted: it may carry credentials.
    pub webhook_url: WebhookUrl,
    pub max_frames_per_batch: usize,
    pub max_wait_ms: u64,
    pub lag: LagPolicy,
    pub max_attempts: u32,
    pub paused: bool,
    pub created_ms: u64,
    #[serde(default)]
    pub sink: Sink,
}

pub fn range<T: PartialOrd + Copy + std::fmt::Display>(value: T, min: T, max: T, what: &str) -> Result<T, ApiError> {
    if value < min || value > max {
        return Err(ApiError::invalid(format!("{what} must be between {min} and {max}.")));
    }
    Ok(value)
}

pub fn uint(document: &Document, field: &str, default: u64, min: u64, max: u64) -> Result<u64, ApiError> {
    match document.int(field)? {
        None => Ok(default),
        Some(value) if value < 0 => Err(ApiError::invalid(format!("{field} must be between {min} and {max}."))),
        Some(value) => range(value as u64, min, max, field),
    }
}

pub fn check_name(name: &str) -> Result<(), ApiError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    if !valid {
        return Err(ApiError::invalid(format!(
            "ConsumerName must be 1 to {MAX_NAME_LEN} characters of letters, digits, '_' and '-'."
        )));
    }
    Ok(())
}

fn start_of(document: &Document) -> Result<Start, ApiError> {
    let Some(selector) = document.object("StartSelector")? else { return Ok(Start::Now) };
    let kind = selector.str("StartSelectorType")?.ok_or_else(|| ApiError::invalid("StartSelectorType is required."))?;
    let timestamp = || {
        selector
            .timestamp_ms("StartTimestamp")?
            .ok_or_else(|| ApiError::invalid(format!("StartTimestamp is required for {kind}.")))
    };
    Ok(match kind.as_str() {
        "NOW" => Start::Now,
        "EARLIEST" => Start::Earliest,
        "PRODUCER_TIMESTAMP" => Start::ProducerTimestamp(timestamp()?),
        "SERVER_TIMESTAMP" => Start::ServerTimestamp(timestamp()?),
        "FRAGMENT_NUMBER" => Start::FragmentNumber(
            selector
                .str("AfterFragmentNumber")?
                .ok_or_else(|| ApiError::invalid("AfterFragmentNumber is required for FRAGMENT_NUMBER."))?,
        ),
        other => return Err(ApiError::invalid(format!("StartSelectorType {other} is not supported."))),
    })
}

fn selection_of(document: &Document) -> Result<Selection, ApiError> {
    let Some(selection) = document.object("Selection")? else { return Ok(Selection::KeyFrames) };
    let kind = selection.str("Type")?.unwrap_or_else(|| "KEY_FRAMES".into());
    Ok(match kind.as_str() {
        "KEY_FRAMES" => Selection::KeyFrames,
        "FRAMES_PER_SECOND" => {
            let fps = match selection.get_f64("FramesPerSecond")? {
                Some(fps) => fps,
                None => return Err(ApiError::invalid("FramesPerSecond is required for FRAMES_PER_SECOND.")),
            };
            Selection::FramesPerSecond(range(fps, 0.001, 120.0, "FramesPerSecond")?)
        }
        "SAMPLING_INTERVAL" => {
            let Some(ms) = selection.int("SamplingIntervalMs")? else {
                return Err(ApiError::invalid("SamplingIntervalMs is required for SAMPLING_INTERVAL."));
            };
            Selection::SamplingIntervalMs(range(ms, 1, 86_400_000, "SamplingIntervalMs")? as u64)
        }
        "TAG" => Selection::Tag {
            name: selection.str("TagName")?.ok_or_else(|| ApiError::invalid("TagName is required for TAG."))?,
            value: selection.str("TagValue")?,
            every_ms: None,
        },
        other => return Err(ApiError::invalid(format!("Selection Type {other} is not supported."))),
    })
}

fn output_of(document: &Document) -> Result<(Format, Option<u32>, Option<u32>), ApiError> {
    let Some(output) = document.object("Output")? else { return Ok((Format::Jpeg { quality: 80 }, None, None)) };
    let format = match output.str("Format")?.as_deref().unwrap_or("JPEG") {
        "JPEG" => Format::Jpeg { quality: uint(&output, "JPEGQuality", 80, 1, 100)? as u8 },
        "PNG" => Format::Png,
        "RAW" => Format::Raw,
        other => return Err(ApiError::invalid(format!("Output Format must be JPEG, PNG or RAW, not {other}."))),
    };
    let dimension = |field: &str, max: u64| -> Result<Option<u32>, ApiError> {
        Ok(match output.int(field)? {
            None => None,
            Some(_) => Some(uint(&output, field, 0, 1, max)? as u32),
        })
    };
    Ok((format, dimension("WidthPixels", 3840)?, dimension("HeightPixels", 2160)?))
}

fn lag_of(document: &Document) -> Result<LagPolicy, ApiError> {
    let Some(lag) = document.object("LagPolicy")? else { return Ok(LagPolicy::Block) };
    Ok(match lag.str("Type")?.as_deref().unwrap_or("BLOCK") {
        "BLOCK" => LagPolicy::Block,
        "LATEST" => LagPolicy::Latest { max_lag_ms: uint(&lag, "MaxLagMs", 10_000, 1, 86_400_000)? },
        other => return Err(ApiError::invalid(format!("LagPolicy Type must be BLOCK or LATEST, not {other}."))),
    })
}

/// The request's `Webhook.Url` (http or https), when `policy` allows it.
pub fn webhook_url(document: &Document, policy: &DestinationPolicy) -> Result<WebhookUrl, ApiError> {
    let webhook = document.object("Webhook")?.ok_or_else(|| ApiError::invalid("Webhook is required."))?;
    let url = webhook.str("Url")?.ok_or_else(|| ApiError::invalid("Webhook.Url is required."))?;
    policy.check_configured(&url, "Webhook.Url")
}

/// Parses a CreateConsumer request.
pub fn parse(document: &Document, now_ms: u64, policy: &DestinationPolicy) -> Result<ConsumerSpec, ApiError> {
    let name = document.str("ConsumerName")?.ok_or_else(|| ApiError::invalid("ConsumerName is required."))?;
    check_name(&name)?;
    let url = webhook_url(document, policy)?;
    let (format, width, height) = output_of(document)?;
    let batching = document.object("Batching")?;
    let (max_frames_per_batch, max_wait_ms) = match &batching {
        Some(b) => (uint(b, "MaxFrames", 1, 1, 100)? as usize, uint(b, "MaxWaitMs", 1_000, 0, 60_000)?),
        None => (1, 1_000),
    };
    let max_attempts = match document.object("Retry")? {
        Some(retry) => uint(&retry, "MaxAttempts", 5, 1, 100)? as u32,
        None => 5,
    };
    Ok(ConsumerSpec {
        name,
        start: start_of(document)?,
        selection: selection_of(document)?,
        format,
        width,
        height,
        webhook_url: url,
        max_frames_per_batch,
        max_wait_ms,
        lag: lag_of(document)?,
        max_attempts,
        paused: false,
        created_ms: now_ms,
        sink: Sink::Frames,
    })
}
