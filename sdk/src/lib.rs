//! framelog-sdk: a client for Framelog and for AWS Kinesis Video Streams.
//!
//! - Control plane: [`Client::create_stream`], [`Client::describe_stream`], [`Client::ensure_stream`],
//!   [`Client::list_streams`], [`Client::delete_stream`], retention, tags, [`Client::get_data_endpoint`].
//! - [`Producer`]: encoded frames in (H.264/H.265/AAC, with key-frame flags and timestamps),
//!   fragments cut at video key frames, streamed over PutMedia; every fragment is kept until
//!   acknowledged, and a broken connection is retried with backoff, replaying what was not.
//!   [`MkvProducer`] does the same for ready-made MKV.
//! - Reader (`reader`): [`Client::get_media`], [`Client::get_media_for_fragment_list`] (as
//!   [`ConsumedFragment`]s with frames, tags, numbers and timestamps) and [`Client::list_fragments`].
//! - [`MediaUpload`]: one raw PutMedia connection (send fragments, read every [`Ack`]) for callers
//!   that keep their own durable fragment store, such as the edge agent.
//! - Records: [`Client::put_records`] (Kinesis Data Streams) and [`Client::put_record_batch`]
//!   (Firehose), with each record's fate.
//! - Data streams: [`RecordProducer`] (the KPL's role: routing, aggregation, batching, pacing,
//!   retries, a receipt per record) and the KDS calls under it ([`Client::list_shards`],
//!   [`Client::put_routed_records`], [`Client::get_records`]); consumer groups ([`Worker`], the
//!   KCL's role: shards shared by leases the server keeps, a [`RecordProcessor`] per shard,
//!   checkpoints, SHARD_END before children).
//! - Consumer hooks (`hooks`, Framelog's ML consumers): [`Client::create_consumer`] and friends.
//! - Requests are signed with SigV4 when [`ClientConfig::credentials`] is set (from the config,
//!   or AWS's standard places with [`ClientConfig::with_default_credentials`]); `https://`
//!   endpoints use rustls with the system's roots plus [`ClientConfig::with_ca_file`].
//!
//! The SDK speaks only the public wire protocol; it shares the pure Matroska code of
//! `framelog-media` and the ack format of `framelog-wire`, and nothing of the server.

mod connector;
mod consumer_group;
mod control;
mod credentials;
mod data_stream;
mod error;
mod hooks;
mod media_upload;
pub mod mkv;
mod mkv_producer;
mod producer;
mod reader;
mod record_producer;
mod records;
mod transport;
mod uploader;

pub use consumer_group::{
    Checkpointer, ConsumedRecord, InitialPosition, LeaseInfo, RecordProcessor, SHARD_END, Worker, WorkerConfig,
};
pub use control::{DataApi, NewStream, StreamInfo};
pub use credentials::Credentials;
pub use data_stream::{
    IteratorStart, RecordsPage, RoutedRecord, ShardInfo, StoredRecord, StreamRecord, partition_hash_key,
};
pub use error::{Error, Result};
pub use framelog_wire::{Ack, AckErrorClass, Backoff, classify as classify_ack_error};
pub use media_upload::MediaUpload;
pub use mkv::{EncodedFrame, TrackKind, TrackSpec};
pub use mkv_producer::{MkvProducer, TimecodeType};
pub use producer::{Producer, ProducerConfig};
pub use reader::{ConsumedFragment, FragmentInfo, MediaFrame, MediaReader, StartSelector, TimestampKind, TrackInfo};
pub use record_producer::{
    ProducerRecord, ProducerStats, PutReceipt, RecordProducer, RecordProducerConfig, RecordReceipt, ShardRate,
};
pub use records::{BatchOutcome, DataRecord, MAX_BATCH_RECORDS, RecordRefusal};
pub use transport::ClientConfig;
pub use uploader::{AckLevel, DeliveredFragment, ProducerReport, RejectedFragment, RetryPolicy};

/// A client for one service endpoint. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    transport: transport::Transport,
}

impl Client {
    pub fn new(config: ClientConfig) -> Self {
        Self { transport: transport::Transport::new(config) }
    }
}
