//! One unit of work for the decode pool: the frames of one fragment (or of several merged ones)
//! and how the wanted pictures are to be encoded, and what comes back.

use std::collections::BTreeMap;

use crate::decode::FrameRequest;
use crate::encode::ImageFormat;
use crate::error::ImagingError;
use crate::fragment::{Picture, pictures};

/// Frames to decode and the pictures to make of them.
#[derive(Debug, Clone)]
pub struct PictureJob {
    pub request: FrameRequest,
    pub format: ImageFormat,
    /// The requested output size; see `output_size`.
    pub width: Option<u32>,
    pub height: Option<u32>,
}

/// The pictures made, by presentation time, and the first reason one could not be made.
#[derive(Debug, Clone, Default)]
pub struct Pictures {
    pub pictures: BTreeMap<i64, Picture>,
    pub failure: Option<ImagingError>,
}

impl PictureJob {
    /// Decodes and encodes on the calling thread.
    pub fn run(self) -> Pictures {
        let (pictures, failure) = pictures(self.request, self.format, self.width, self.height);
        Pictures { pictures, failure }
    }
}
