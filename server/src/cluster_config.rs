//! The `[cluster]` and `[objects]` tables: joining a cluster of nodes on NATS JetStream and an
//! S3-compatible object store instead of opening the local engine (docs/cluster.md).

use std::path::PathBuf;
use std::time::Duration;

use framelog_store::{ClusterOptions, DEFAULT_OBJECT_MIN_BYTES, ObjectStoreOptions};
use serde::Deserialize;

/// Replicas of every JetStream stream and bucket unless the config says otherwise.
const DEFAULT_REPLICAS: usize = 3;
/// Long enough to ride out a NATS leader election or an object store restart of a few seconds
/// (appends retry inside it); short enough that a client sees an error rather than a hang.
const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 30;

/// `[cluster]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// NATS server URLs.
    pub nats: Vec<String>,
    /// This node's name, unique in the cluster; the listen address when unset.
    pub node_id: Option<String>,
    pub replicas: Option<usize>,
    pub object_min_bytes: Option<u64>,
    pub request_timeout_secs: Option<u64>,
    /// The signing secret every node shares (32 bytes, mode 0600): shard iterators and
    /// streaming-session tokens made by one node must open on another.
    pub signing_secret_file: PathBuf,
}

/// `[objects]`. The keys may come from the environment (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`) rather than the file.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectsFile {
    pub endpoint: String,
    pub bucket: String,
    pub region: Option<String>,
    pub prefix: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl std::fmt::Debug for ObjectsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectsFile")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Both tables, as the server runs with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    pub cluster: ClusterFile,
    /// Required with `[cluster]`; checked when the server opens its state.
    pub objects: Option<ObjectsFile>,
}

impl ClusterSettings {
    /// The store's options; `listen` names the node when the file does not.
    pub fn options(&self, listen: &str) -> Result<ClusterOptions, String> {
        let cluster = &self.cluster;
        if cluster.nats.is_empty() {
            return Err("[cluster] nats lists no server".into());
        }
        let objects = self.objects.as_ref().ok_or("[cluster] needs an [objects] table: where payloads are stored")?;
        let from_env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let access_key_id = objects.access_key_id.clone().or_else(|| from_env("AWS_ACCESS_KEY_ID"));
        let secret_access_key = objects.secret_access_key.clone().or_else(|| from_env("AWS_SECRET_ACCESS_KEY"));
        let (Some(access_key_id), Some(secret_access_key)) = (access_key_id, secret_access_key) else {
            return Err(
                "[objects] needs access_key_id and secret_access_key (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
                    .into(),
            );
        };
        Ok(ClusterOptions {
            nats_urls: cluster.nats.clone(),
            replicas: cluster.replicas.unwrap_or(DEFAULT_REPLICAS).max(1),
            node_id: cluster.node_id.clone().unwrap_or_else(|| listen.to_string()),
            objects: ObjectStoreOptions {
                endpoint: objects.endpoint.clone(),
                bucket: objects.bucket.clone(),
                region: objects.region.clone().unwrap_or_else(|| "us-east-1".into()),
                access_key_id,
                secret_access_key,
                prefix: objects.prefix.clone().unwrap_or_else(|| "framelog".into()),
            },
            object_min_bytes: cluster.object_min_bytes.unwrap_or(DEFAULT_OBJECT_MIN_BYTES),
            request_timeout: Duration::from_secs(cluster.request_timeout_secs.unwrap_or(DEFAULT_REQUEST_TIMEOUT_SECS)),
            // The server sets it from `[encryption] master_key_file`.
            master_key: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(objects: Option<ObjectsFile>) -> ClusterSettings {
        let cluster: ClusterFile = toml::from_str(
            "nats = [\"nats://a:4222\", \"nats://b:4222\"]\nsigning_secret_file = \"/etc/framelog/iterator-secret\"",
        )
        .expect("parses");
        ClusterSettings { cluster, objects }
    }

    fn objects(keys: bool) -> ObjectsFile {
        let text = if keys {
            "endpoint = \"http://s3:8333\"\nbucket = \"b\"\naccess_key_id = \"k\"\nsecret_access_key = \"s\""
        } else {
            "endpoint = \"http://s3:8333\"\nbucket = \"b\""
        };
        toml::from_str(text).expect("parses")
    }

    #[test]
    fn defaults_fill_in_and_the_listen_address_names_the_node() {
        let options = settings(Some(objects(true))).options("127.0.0.1:4566").expect("valid");
        assert_eq!(options.nats_urls.len(), 2);
        assert_eq!((options.replicas, options.node_id.as_str()), (3, "127.0.0.1:4566"));
        assert_eq!(options.object_min_bytes, DEFAULT_OBJECT_MIN_BYTES);
        assert_eq!(options.request_timeout, Duration::from_secs(30));
        assert_eq!((options.objects.region.as_str(), options.objects.prefix.as_str()), ("us-east-1", "framelog"));
    }

    #[test]
    fn a_cluster_without_objects_or_servers_is_refused_with_the_reason() {
        let error = settings(None).options("n").expect_err("no [objects]");
        assert!(error.contains("[objects]"), "{error}");
        let mut no_servers = settings(Some(objects(true)));
        no_servers.cluster.nats.clear();
        assert!(no_servers.options("n").expect_err("no servers").contains("nats"));
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let shown = format!("{:?}", objects(true));
        assert!(!shown.contains("\"s\"") && !shown.contains("secret_access_key"), "{shown}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<ClusterFile>("nats = []\nsigning_secret_file = \"x\"\nnatz = 1").is_err());
    }
}
