//! What every KVS control-plane operation needs, and how a request names its stream.

use framelog_store::{Engine, StreamKind};

use super::video_stream::{VideoStream, engine_name};

use crate::document::Document;
use crate::error::{ApiError, ErrorType};

/// Account-level settings of the KVS personality.
#[derive(Debug, Clone)]
pub struct KvsSettings {
    pub account_id: String,
    pub region: String,
    /// Retention of a stream created without `DataRetentionInHours` (AWS's default is 0; ours keeps video).
    pub default_retention_hours: u32,
    /// The base URL that GetDataEndpoint hands out (no trailing slash).
    pub data_endpoint: String,
}

#[derive(Debug, Clone)]
pub struct KvsCtx {
    pub engine: Engine,
    pub settings: KvsSettings,
    /// Seals HLS/DASH session tokens.
    pub sessions: framelog_wire::Signer,
    /// Recently served HLS/DASH segments (bounded in bytes).
    pub segments: std::sync::Arc<crate::kvs::playback::SegmentCache>,
    /// The frames of the fragments PutMedia is receiving, before they are stored (LL-HLS).
    pub edges: std::sync::Arc<crate::kvs::live_edge::LiveEdges>,
    /// The newest LL-HLS view of each stream, shared by its viewers.
    pub ll_views: std::sync::Arc<crate::kvs::playback::LlViews>,
    /// The WebRTC (WHEP) sessions being served.
    pub whep: std::sync::Arc<crate::kvs::webrtc::WhepSessions>,
    /// H.265 to H.264 for sessions that ask for it: the bounded transcode pool.
    pub transcoding: std::sync::Arc<crate::kvs::playback::transcoded::Transcoding>,
    /// Where CloudWatch's AWS/KinesisVideo metrics are recorded.
    pub metrics: crate::cloudwatch::Recorder,
}

pub fn not_found() -> ApiError {
    ApiError::new(ErrorType::ResourceNotFound, "The requested stream is not found or not active.")
}

impl KvsCtx {
    pub fn arn(&self, name: &str, created_ms: u64) -> String {
        format!("arn:aws:kinesisvideo:{}:{}:stream/{name}/{created_ms}", self.settings.region, self.settings.account_id)
    }

    /// The stream named by `StreamName` or `StreamARN` (`ResourceARN` for the *Resource calls).
    pub fn stream(&self, body: &Document, arn_field: &str) -> Result<VideoStream, ApiError> {
        let name = body.str("StreamName")?;
        let arn = body.str(arn_field)?;
        if let Some(name) = &name {
            check_name(name)?;
        }
        let handle = match (&name, &arn) {
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid(format!("Provide either StreamName or {arn_field}, not both.")));
            }
            (Some(name), None) => self.lookup(name)?,
            (None, Some(arn)) => {
                let name = name_from_arn(arn).ok_or_else(|| ApiError::invalid(format!("Invalid ARN {arn}")))?;
                let handle = self.lookup(name)?;
                // An ARN names one incarnation: a re-created stream has a new creation time.
                if handle.meta().arn != *arn {
                    return Err(not_found());
                }
                handle
            }
            (None, None) => return Err(ApiError::invalid("Either StreamName or StreamARN must be provided.")),
        };
        Ok(handle)
    }

    pub fn lookup(&self, name: &str) -> Result<VideoStream, ApiError> {
        match self.engine.stream(&engine_name(name)) {
            Ok(handle) if handle.meta().kind == StreamKind::Video => Ok(VideoStream::new(handle)),
            _ => Err(not_found()),
        }
    }
}

/// `arn:aws:kinesisvideo:<region>:<account>:stream/<name>/<creation ms>` → name.
fn name_from_arn(arn: &str) -> Option<&str> {
    let rest = arn.split_once(":stream/")?.1;
    Some(rest.rsplit_once('/')?.0)
}

pub fn check_name(name: &str) -> Result<(), ApiError> {
    let valid = (1..=256).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "1 validation error detected: Value '{name}' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_name_their_stream() {
        assert_eq!(
            name_from_arn("arn:aws:kinesisvideo:us-east-1:000000000000:stream/cam.1/1705489836421"),
            Some("cam.1")
        );
        assert_eq!(name_from_arn("arn:aws:kinesis:us-east-1:000000000000:stream"), None);
    }
}
