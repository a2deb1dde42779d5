//! From one stored fragment to pictures: which encoded frames to hand the decoder for the
//! presentation times wanted, and the decode-and-encode step that GetImages and the consumers share.

use std::collections::BTreeMap;

use framelog_media::FragmentRecord;
use framelog_media::package::{Codec, PackagedTrack, frame_times_ms};

use crate::decode::{EncodedFrame, FrameRequest, decode_frames};
use crate::encode::{ImageFormat, encode_image, output_size};
use crate::error::ImagingError;

/// An encoded picture and its size in pixels.
#[derive(Debug, Clone)]
pub struct Picture {
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// The decode job for `wanted_pts` of `video` in one stored fragment: the decode-order prefix of
/// the track's frames up to the last wanted one (always decodable from the fragment's key frame).
/// None when the codec is not one the decoder takes or no wanted time is a frame of the track.
pub fn fragment_request(
    record: &FragmentRecord,
    payload: &[u8],
    video: &PackagedTrack,
    wanted_pts: Vec<i64>,
    scale_to: Option<(u32, u32)>,
) -> Option<FrameRequest> {
    if !matches!(video.codec, Codec::Avc | Codec::Hevc) {
        return None;
    }
    let times = frame_times_ms(record);
    let frames: Vec<(&framelog_media::Frame, i64)> =
        record.frames.iter().zip(times).filter(|(frame, _)| frame.track == video.number).collect();
    let last_needed = frames.iter().rposition(|(_, pts)| wanted_pts.contains(pts))?;
    let encoded = frames[..=last_needed]
        .iter()
        .map(|(frame, pts)| EncodedFrame {
            pts_ms: *pts,
            keyframe: frame.keyframe,
            data: payload.get(frame.data.clone()).unwrap_or_default().to_vec(),
        })
        .collect();
    Some(FrameRequest {
        codec: video.codec,
        config: video.config.clone(),
        frames: encoded,
        wanted_pts_ms: wanted_pts,
        scale_to,
        jpeg_quality: None,
    })
}

/// Decodes `request` and encodes each wanted frame (resized to `width`/`height` when given), by
/// presentation time. Blocking: run it on the decode pool. A frame that could not be made is
/// missing from the answer, and the first cause is returned beside what was made.
pub fn pictures(
    mut request: FrameRequest,
    format: ImageFormat,
    width: Option<u32>,
    height: Option<u32>,
) -> (BTreeMap<i64, Picture>, Option<ImagingError>) {
    // The pipeline encodes JPEGs itself when the decoded picture is the wanted size.
    if let ImageFormat::Jpeg { quality } = format
        && (request.scale_to.is_some() || (width.is_none() && height.is_none()))
    {
        request.jpeg_quality = Some(quality);
    }
    let mut pictures = BTreeMap::new();
    let mut failure: Option<ImagingError> = None;
    let decoded = decode_frames(request, |frame| {
        let pts_ms = frame.pts_ms;
        let size = output_size((frame.width, frame.height), width, height);
        let (w, h) = size.unwrap_or((frame.width, frame.height));
        match encode_image(frame, format, size) {
            Ok(bytes) => {
                pictures.insert(pts_ms, Picture { bytes, width: w, height: h });
            }
            Err(error) => failure = Some(error),
        }
    });
    (pictures, decoded.err().or(failure))
}
