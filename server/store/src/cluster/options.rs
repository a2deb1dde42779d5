//! How a cluster backend is reached: the NATS servers, the object store, and this node's name.

use std::time::Duration;

/// Payloads at least this large go to the object store (docs/cluster.md section 2): NATS
/// messages are limited to 1 MiB by default and meant to be small.
pub const DEFAULT_OBJECT_MIN_BYTES: u64 = 256 << 10;

/// Options of the cluster backend.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// NATS server URLs (`nats://host:4222`, credentials in the URL if the servers want them).
    pub nats_urls: Vec<String>,
    /// Replicas of every JetStream stream and bucket; 3 in production, 1 for a one-server test.
    pub replicas: usize,
    /// This node's name, in message ids and leases; unique within the cluster.
    pub node_id: String,
    pub objects: ObjectStoreOptions,
    pub object_min_bytes: u64,
    /// How long one call to NATS or the object store may take, retries included, before the
    /// operation fails (an append then answers an error and is not acknowledged).
    pub request_timeout: Duration,
    /// Wraps the streams' data keys; every node must have the same one, or a node could not open
    /// what another sealed. Without it, encrypted streams cannot be written or read.
    pub master_key: Option<std::sync::Arc<crate::crypto::MasterKey>>,
}

/// An S3-compatible object store.
#[derive(Clone)]
pub struct ObjectStoreOptions {
    /// `http://127.0.0.1:8333` for a local SeaweedFS; the AWS endpoint for S3.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Prefix of every key this cluster writes, so several clusters may share a bucket.
    pub prefix: String,
}

impl std::fmt::Debug for ObjectStoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStoreOptions")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}
