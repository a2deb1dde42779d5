//! ML consumer hooks: per-stream consumers that take frames (every key frame, a rate, an
//! interval, or the key frames of tagged fragments), render them (JPEG/PNG on the decode pool, or
//! raw access units) and POST them in batches to a webhook, with checkpoints in the engine,
//! retries, a dead-letter log and a lag policy. See docs/consumers.md.

pub mod api;
mod deliver;
mod lag;
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
mod write_back;
