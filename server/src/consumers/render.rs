//! Turning selected frames into what a consumer asked for: JPEG/PNG pictures decoded and encoded
//! on the shared decode pool (never on the async runtime), or the raw access units.

use std::collections::BTreeMap;
use std::time::Duration;

use framelog_imaging::{ImageFormat, ImagingError, output_size};
use framelog_media::FragmentRecord;
use framelog_media::package::PackagedTrack;
use tokio::sync::oneshot;

use super::ConsumersCtx;
use super::select::Picked;
use super::spec::{ConsumerSpec, Format};

/// One frame's delivered bytes (and picture size for images).
#[derive(Debug, Clone)]
pub struct Rendered {
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// Renders `picked` frames of one fragment; a frame that cannot be rendered is `None` (the
/// delivery says MEDIA_ERROR for it).
pub async fn render(
    ctx: &ConsumersCtx,
    spec: &ConsumerSpec,
    record: &FragmentRecord,
    payload: &[u8],
    video: &PackagedTrack,
    picked: &[Picked],
) -> Vec<Option<Rendered>> {
    let format = match spec.format {
        Format::Raw => {
            return picked
                .iter()
                .map(|p| {
                    let frame = record.frames.get(p.index)?;
                    let bytes = payload.get(frame.data.clone())?.to_vec();
                    Some(Rendered { bytes, width: video.width, height: video.height })
                })
                .collect();
        }
        Format::Jpeg { quality } => ImageFormat::Jpeg { quality },
        Format::Png => ImageFormat::Png,
    };
    let scale_to = (video.width > 0 && video.height > 0)
        .then(|| output_size((video.width, video.height), spec.width, spec.height))
        .flatten();
    let wanted: Vec<i64> = picked.iter().map(|p| p.pts_ms as i64).collect();
    let Some(request) = framelog_imaging::fragment_request(record, payload, video, wanted, scale_to) else {
        return vec![None; picked.len()];
    };
    let (width, height) = (spec.width, spec.height);
    let pictures = loop {
        let (reply, answer) = oneshot::channel();
        let job = framelog_imaging::PictureJob { request: request.clone(), format, width, height };
        let submitted = ctx.images.try_submit(job, move |answer| {
            if let Some(error) = answer.failure {
                tracing::warn!(%error, "not every consumer picture could be made");
            }
            let _ = reply.send(answer.pictures);
        });
        match submitted {
            Ok(()) => break answer.await.unwrap_or_default(),
            // A full pool makes consumers wait, never fail: they are the patient users of it.
            Err(ImagingError::Busy) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(_) => break BTreeMap::new(),
        }
    };
    picked
        .iter()
        .map(|p| {
            let picture = pictures.get(&(p.pts_ms as i64))?;
            Some(Rendered { bytes: picture.bytes.clone(), width: picture.width, height: picture.height })
        })
        .collect()
}
