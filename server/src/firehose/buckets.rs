//! Where `arn:aws:s3:::NAME` leads: `[buckets.NAME]` in the config names an S3-compatible store
//! (`endpoint`, `region`, credentials and the real `bucket` name) or a directory (`dir`); with
//! no `[buckets]` table at all, every bucket is the directory `<data dir>/buckets/NAME`, so a
//! delivery stream works out of the box on one machine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload};
use serde::Deserialize;

/// One `[buckets.NAME]` table.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketFile {
    /// Objects become files under this directory.
    pub dir: Option<PathBuf>,
    /// An S3-compatible endpoint, `http://host:port` or `https://...`.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// The bucket's real name there (NAME when unset).
    pub bucket: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl std::fmt::Debug for BucketFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketFile")
            .field("dir", &self.dir)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

/// Why an object could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("writing {key} to the directory failed")]
    File {
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {key} to the object store failed")]
    Object {
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error("reading {key} from the directory failed")]
    ReadFile {
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reading {key} from the object store failed")]
    ReadObject {
        key: String,
        #[source]
        source: object_store::Error,
    },
}

/// A bucket as delivery writes to it.
#[derive(Debug, Clone)]
pub enum Sink {
    Dir(PathBuf),
    S3(Arc<dyn ObjectStore>),
}

impl Sink {
    /// Writes `bytes` as `key`, whole or not at all; writing the same key again replaces it.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), SinkError> {
        match self {
            Sink::Dir(root) => {
                let path = file_path(root, key);
                let root = root.clone();
                let written = tokio::task::spawn_blocking(move || write_file(&root, &path, &bytes)).await;
                written
                    .unwrap_or_else(|join| Err(std::io::Error::other(join)))
                    .map_err(|source| SinkError::File { key: key.to_string(), source })
            }
            Sink::S3(store) => {
                let path = object_store::path::Path::from(key);
                store
                    .put(&path, PutPayload::from(bytes))
                    .await
                    .map(drop)
                    .map_err(|source| SinkError::Object { key: key.to_string(), source })
            }
        }
    }
}

/// The file for `key`: its `/`-separated parts as directories, with empty parts dropped and `.`
/// and `..` escaped, so no key (a partition key is client data) can leave the bucket's directory.
impl Sink {
    /// Reads an object back (reference data for analytics applications).
    pub async fn get(&self, key: &str) -> Result<Bytes, SinkError> {
        match self {
            Sink::Dir(root) => {
                let path = file_path(root, key);
                let read = tokio::task::spawn_blocking(move || std::fs::read(path)).await;
                read.unwrap_or_else(|join| Err(std::io::Error::other(join)))
                    .map(Bytes::from)
                    .map_err(|source| SinkError::ReadFile { key: key.to_string(), source })
            }
            Sink::S3(store) => {
                let path = object_store::path::Path::from(key);
                let failed = |source| SinkError::ReadObject { key: key.to_string(), source };
                store.get(&path).await.map_err(failed)?.bytes().await.map_err(failed)
            }
        }
    }
}

fn file_path(root: &Path, key: &str) -> PathBuf {
    let mut path = root.to_path_buf();
    for part in key.split('/').filter(|p| !p.is_empty()) {
        match part {
            "." => path.push("%2E"),
            ".." => path.push("%2E%2E"),
            _ => path.push(part),
        }
    }
    path
}

/// Creates the directories (each new one made durable in its parent), then the file through
/// `replace_file` (temp file, fsync, rename, fsync of the directory).
fn write_file(root: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let parent = path.parent().unwrap_or(root);
    let mut missing = Vec::new();
    let mut dir = parent;
    while !dir.exists() {
        missing.push(dir.to_path_buf());
        match dir.parent() {
            Some(up) => dir = up,
            None => break,
        }
    }
    std::fs::create_dir_all(parent)?;
    for created in missing.iter().rev() {
        if let Some(up) = created.parent() {
            std::fs::File::open(up)?.sync_all()?;
        }
    }
    crate::file_write::replace_file(path, bytes, 0o644)
}

/// Every bucket a delivery stream may name.
#[derive(Debug, Clone)]
pub struct Buckets {
    default_root: PathBuf,
    configured: BTreeMap<String, BucketFile>,
}

impl Buckets {
    pub fn new(data_dir: &Path, configured: BTreeMap<String, BucketFile>) -> Buckets {
        Buckets { default_root: data_dir.join("buckets"), configured }
    }

    /// The sink for bucket `name`; the message says why there is none (InvalidArgumentException).
    pub fn sink(&self, name: &str) -> Result<Sink, String> {
        if self.configured.is_empty() {
            return Ok(Sink::Dir(self.default_root.join(name)));
        }
        let Some(bucket) = self.configured.get(name) else {
            return Err(format!("Bucket {name} is not configured on this server (add a [buckets.{name}] table)."));
        };
        match (&bucket.dir, &bucket.endpoint) {
            (Some(dir), None) => Ok(Sink::Dir(dir.clone())),
            (None, Some(endpoint)) => s3(name, endpoint, bucket).map(Sink::S3),
            _ => Err(format!("[buckets.{name}] needs exactly one of dir and endpoint.")),
        }
    }
}

fn s3(name: &str, endpoint: &str, bucket: &BucketFile) -> Result<Arc<dyn ObjectStore>, String> {
    let env = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
    let key_id = bucket.access_key_id.clone().or_else(|| env("AWS_ACCESS_KEY_ID"));
    let secret = bucket.secret_access_key.clone().or_else(|| env("AWS_SECRET_ACCESS_KEY"));
    let (Some(key_id), Some(secret)) = (key_id, secret) else {
        return Err(format!("[buckets.{name}] needs access_key_id and secret_access_key."));
    };
    let store = AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_bucket_name(bucket.bucket.as_deref().unwrap_or(name))
        .with_region(bucket.region.as_deref().unwrap_or("us-east-1"))
        .with_access_key_id(key_id)
        .with_secret_access_key(secret)
        .with_allow_http(endpoint.starts_with("http://"))
        .with_virtual_hosted_style_request(false)
        .build()
        .map_err(|e| format!("[buckets.{name}] is not a usable S3 configuration: {e}"))?;
    Ok(Arc::new(store))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_leave_the_buckets_directory() {
        let root = Path::new("/b");
        assert_eq!(file_path(root, "2024/01/02/03/x-1"), Path::new("/b/2024/01/02/03/x-1"));
        assert_eq!(file_path(root, "../../etc//passwd"), Path::new("/b/%2E%2E/%2E%2E/etc/passwd"));
        assert_eq!(file_path(root, "/./a"), Path::new("/b/%2E/a"));
    }

    #[tokio::test]
    async fn a_directory_bucket_writes_and_replaces_whole_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let buckets = Buckets::new(dir.path(), BTreeMap::new());
        let sink = buckets.sink("logs").expect("default directory");
        sink.put("2024/01/02/03/obj", Bytes::from_static(b"first")).await.expect("written");
        sink.put("2024/01/02/03/obj", Bytes::from_static(b"second")).await.expect("replaced");
        let path = dir.path().join("buckets/logs/2024/01/02/03/obj");
        assert_eq!(std::fs::read(path).expect("read"), b"second");
    }

    #[test]
    fn configured_buckets_are_the_only_ones() {
        let configured =
            BTreeMap::from([("files".to_string(), BucketFile { dir: Some("/x".into()), ..Default::default() })]);
        let buckets = Buckets::new(Path::new("/data"), configured);
        assert!(matches!(buckets.sink("files"), Ok(Sink::Dir(dir)) if dir == Path::new("/x")));
        assert!(buckets.sink("other").expect_err("unknown").contains("[buckets.other]"));
    }
}
