//! Which ack error a media parse failure is (the ack format itself lives in `framelog_wire`,
//! shared with the SDK and the edge agent).

use framelog_media::MediaError;
use framelog_wire::AckError;

/// A Cluster over the size limit is 4001; any other parse failure is invalid MKV (4006).
pub fn for_media_error(error: &MediaError) -> AckError {
    match error {
        MediaError::TooLarge { path, .. } if path.ends_with("Cluster") => AckError::MaxFragmentSize,
        _ => AckError::InvalidMkv,
    }
}
