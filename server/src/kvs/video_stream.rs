//! A KVS stream as video code sees it: the engine stream behind it (one shard), its public name,
//! its fragment numbers, whether it keeps an archive, and its fragments' records.

use framelog_media::FragmentRecord;
use framelog_store::{Engine, StreamHandle};

use super::fragment_number;
use crate::error::{ApiError, ErrorType};

/// A video stream has exactly one engine shard.
pub const VIDEO_SHARD: u32 = 0;

/// Video streams live in the engine under this prefix, so KVS and KDS names never collide
/// (KDS names cannot contain '/').
const ENGINE_PREFIX: &str = "video/";

/// A fragment's tags (labels written back included) as a JSON object, name to value, as
/// consumers' payloads and analytics' video rows show them.
pub fn tags_object(record: &FragmentRecord) -> serde_json::Map<String, serde_json::Value> {
    record.event_tags().map(|t| (t.name.clone(), serde_json::Value::String(t.value.clone()))).collect()
}

/// The engine's name for the video stream `name`.
pub fn engine_name(name: &str) -> String {
    format!("{ENGINE_PREFIX}{name}")
}

/// The client-facing name of the engine stream `engine_name` (unchanged if it is not a video one).
pub fn public_name(engine_name: &str) -> &str {
    engine_name.strip_prefix(ENGINE_PREFIX).unwrap_or(engine_name)
}

/// A video stream's engine handle with the questions video code keeps asking of it. It derefs to
/// the handle, so engine calls take it as they take a handle.
#[derive(Debug, Clone)]
pub struct VideoStream {
    handle: StreamHandle,
}

/// One stored fragment: its record (timestamps, tracks, tags, sample table) and its Cluster body.
#[derive(Debug, Clone)]
pub struct StoredFragment {
    pub seq: u64,
    pub record: FragmentRecord,
    pub payload: Vec<u8>,
}

impl std::ops::Deref for VideoStream {
    type Target = StreamHandle;

    fn deref(&self) -> &StreamHandle {
        &self.handle
    }
}

impl VideoStream {
    pub fn new(handle: StreamHandle) -> Self {
        Self { handle }
    }

    pub fn handle(&self) -> &StreamHandle {
        &self.handle
    }

    /// The stream's name as clients know it.
    pub fn public_name(&self) -> String {
        public_name(&self.handle.meta().name).to_string()
    }

    /// The engine sequence a fragment number names (ResourceNotFound when it is not ours).
    pub fn fragment_seq(&self, number: &str) -> Result<u64, ApiError> {
        fragment_number::decode(number, self.handle.meta().created_ms)
            .ok_or_else(|| ApiError::new(ErrorType::ResourceNotFound, format!("Fragment {number} was not found.")))
    }

    /// The fragment number of engine sequence `seq`.
    pub fn fragment_number(&self, seq: u64) -> String {
        fragment_number::encode(self.handle.meta().created_ms, seq)
    }

    /// Archive reads and playback need stored media: a stream with retention 0 keeps only a live
    /// buffer (docs/spec/kvs.md#retention), and these calls answer NoDataRetentionException.
    pub fn require_archive(&self) -> Result<(), ApiError> {
        if self.handle.meta().retention_hours == 0 {
            return Err(ApiError::new(
                ErrorType::NoDataRetention,
                "The stream does not retain data (DataRetentionInHours is 0).",
            ));
        }
        Ok(())
    }

    /// Fragment `seq` whole, if it exists and has not expired. A record that does not decode is
    /// an internal failure: the server wrote it.
    pub fn fragment(&self, engine: &Engine, seq: u64) -> Result<Option<StoredFragment>, ApiError> {
        let Some(entry) = engine.entry(&self.handle, VIDEO_SHARD, seq)? else { return Ok(None) };
        let record = FragmentRecord::decode(&entry.attrs).map_err(|e| ApiError::internal(&e))?;
        Ok(Some(StoredFragment { seq, record, payload: entry.payload }))
    }

    /// Fragment `seq`'s record without its body.
    pub fn record(&self, engine: &Engine, seq: u64) -> Result<Option<FragmentRecord>, ApiError> {
        let Some(header) = engine.header(&self.handle, VIDEO_SHARD, seq)? else { return Ok(None) };
        FragmentRecord::decode(&header.attrs).map(Some).map_err(|e| ApiError::internal(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_names_round_trip_to_public_names() {
        assert_eq!(public_name(&engine_name("front")), "front");
        assert_eq!(public_name("orders"), "orders");
    }
}
