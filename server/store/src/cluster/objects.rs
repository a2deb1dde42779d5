//! The object store half of the cluster backend: payload objects written before their log
//! entry, read whole or by range, and deleted by time range (docs/cluster.md sections 3 and 5).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload, RetryConfig};

use super::bridge::Bridge;
use super::names;
use super::options::ObjectStoreOptions;
use crate::error::{Result, StoreError};
use crate::payload_ref::RangeRead;

#[derive(Debug, Clone)]
pub(crate) struct Objects {
    store: Arc<dyn ObjectStore>,
    pub(crate) prefix: String,
}

fn failed(what: &'static str) -> impl FnOnce(object_store::Error) -> StoreError {
    move |error| StoreError::Backend { what, detail: error.to_string() }
}

impl Objects {
    pub(crate) fn connect(options: &ObjectStoreOptions, timeout: Duration) -> Result<Self> {
        // Retries stay inside the request timeout, so a store that is down fails the call
        // rather than holding an append past its deadline.
        let retry = RetryConfig { retry_timeout: timeout, max_retries: 10, ..Default::default() };
        let store = AmazonS3Builder::new()
            .with_endpoint(&options.endpoint)
            .with_bucket_name(&options.bucket)
            .with_region(&options.region)
            .with_access_key_id(&options.access_key_id)
            .with_secret_access_key(&options.secret_access_key)
            .with_allow_http(options.endpoint.starts_with("http://"))
            .with_virtual_hosted_style_request(false)
            .with_retry(retry)
            .build()
            .map_err(failed("configuring the object store"))?;
        Ok(Self { store: Arc::new(store), prefix: options.prefix.trim_end_matches('/').to_string() })
    }

    pub(crate) async fn put(&self, key: &str, payload: Bytes) -> Result<()> {
        self.store
            .put(&Path::from(key), PutPayload::from(payload))
            .await
            .map_err(failed("writing a payload object"))?;
        Ok(())
    }

    /// The whole object, or `None` when it no longer exists (retention deleted it).
    pub(crate) async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        match self.store.get(&Path::from(key)).await {
            Ok(found) => Ok(Some(found.bytes().await.map_err(failed("reading a payload object"))?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(failed("reading a payload object")(error)),
        }
    }

    pub(crate) async fn get_range(&self, key: &str, from: u64, len_bytes: u64) -> Result<Bytes> {
        self.store
            .get_range(&Path::from(key), from..from + len_bytes)
            .await
            .map_err(failed("reading a payload object range"))
    }

    /// Deletes a shard's objects whose key time lies before `cutoff_ms`; lists in key order and
    /// stops at the first one kept, so the cost follows what expired. Returns how many went.
    pub(crate) async fn delete_before(&self, id: u64, shard: u32, cutoff_ms: u64) -> Result<u64> {
        let prefix = Path::from(names::shard_object_prefix(&self.prefix, id, shard));
        let mut listing = self.store.list(Some(&prefix));
        let mut expired = Vec::new();
        while let Some(item) = listing.next().await {
            let meta = item.map_err(failed("listing payload objects"))?;
            match names::object_key_time_ms(meta.location.as_ref()) {
                Some(time_ms) if time_ms < cutoff_ms => expired.push(meta.location),
                Some(_) => break,
                None => {}
            }
        }
        self.delete_all(expired).await
    }

    /// Deletes every object of a stream (DeleteStream).
    pub(crate) async fn delete_stream(&self, id: u64) -> Result<u64> {
        let prefix = Path::from(names::stream_object_prefix(&self.prefix, id));
        let mut listing = self.store.list(Some(&prefix));
        let mut all = Vec::new();
        while let Some(item) = listing.next().await {
            all.push(item.map_err(failed("listing payload objects"))?.location);
        }
        self.delete_all(all).await
    }

    async fn delete_all(&self, keys: Vec<Path>) -> Result<u64> {
        let count = keys.len() as u64;
        for key in keys {
            match self.store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(failed("deleting a payload object")(error)),
            }
        }
        Ok(count)
    }
}

/// One payload object, read in ranges from a blocking caller (GetMedia's streamed bodies).
#[derive(Debug)]
pub(crate) struct ObjectRange {
    pub(crate) objects: Objects,
    pub(crate) key: String,
    pub(crate) bridge: Arc<Bridge>,
}

impl RangeRead for ObjectRange {
    fn read_range(&self, from: u64, len_bytes: u64) -> Result<Vec<u8>> {
        let objects = self.objects.clone();
        let key = self.key.clone();
        self.bridge.run(async move { Ok(objects.get_range(&key, from, len_bytes).await?.to_vec()) })
    }
}
