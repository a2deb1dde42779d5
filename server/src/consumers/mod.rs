//! ML consumer hooks: per-stream consumers that take frames (every key frame, a rate, an
//! interval, or the key frames of tagged fragments), render them (JPEG/PNG on the decode pool, or
//! raw access units) and POST them in batches to a webhook, with checkpoints in the engine,
//! retries, a dead-letter log and a lag policy. See docs/consumers.md.

mod address;
pub mod api;
mod context;
mod deliver;
mod image_files;
mod image_quota;
mod image_root;
mod labelled;
mod lag;
pub(crate) mod outbound;
mod outbound_tls;
mod policy;
mod prefetch;
pub mod prometheus;
mod record_api;
mod record_runner;
mod record_spec;
mod render;
pub mod runner;
mod select;
mod sink;
mod spec;
mod state;
pub mod stream_hooks;
pub mod supervisor;
#[cfg(test)]
mod tests;
pub(crate) mod webhook_url;
mod write_back;

pub use context::ConsumersCtx;
pub use image_files::ImageFiles;
pub use image_quota::DEFAULT_IMAGES_QUOTA_BYTES;
pub use labelled::labelled_before;
#[cfg(test)]
pub use labelled::test_settings as labelling_consumer_settings;
pub use outbound_tls::OutboundTrust;
pub use policy::DestinationPolicy;

use crate::rest_json::Operation;

/// The consumer API's rest-json operations, beside the KVS ones.
pub const OPERATIONS: &[(&str, Operation<ConsumersCtx>)] = &[
    ("createConsumer", api::create_consumer),
    ("describeConsumer", api::describe_consumer),
    ("listConsumers", api::list_consumers),
    ("updateConsumer", api::update_consumer),
    ("deleteConsumer", api::delete_consumer),
    ("listConsumerDeadLetters", api::list_consumer_dead_letters),
    ("updateNotificationConfiguration", stream_hooks::update_notification_configuration),
    ("describeNotificationConfiguration", stream_hooks::describe_notification_configuration),
    ("updateImageGenerationConfiguration", stream_hooks::update_image_generation_configuration),
    ("describeImageGenerationConfiguration", stream_hooks::describe_image_generation_configuration),
];
