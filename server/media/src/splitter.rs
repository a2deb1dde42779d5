//! One interface over both upload containers, so the ingest path does not care which it gets.

use crate::error::MediaError;
use crate::fragmenter::{Event, Fragmenter, Limits, OpenClusterView};
use crate::mp4::Mp4Fragmenter;

/// A streaming splitter for Matroska or fragmented MP4 input.
#[derive(Debug)]
pub enum Splitter {
    Matroska(Fragmenter),
    Mp4(Mp4Fragmenter),
}

impl Splitter {
    /// Picks the splitter for a Content-Type: `video/mp4` (and `audio/mp4`) is fragmented MP4,
    /// anything else Matroska, as KVS producers send it.
    pub fn for_content_type(content_type: &str, limits: Limits) -> Splitter {
        let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if essence == "video/mp4" || essence == "audio/mp4" {
            Splitter::Mp4(Mp4Fragmenter::new(limits))
        } else {
            Splitter::Matroska(Fragmenter::new(limits))
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        match self {
            Splitter::Matroska(f) => f.push(data),
            Splitter::Mp4(f) => f.push(data),
        }
    }

    pub fn next_event(&mut self) -> Result<Option<Event>, MediaError> {
        match self {
            Splitter::Matroska(f) => f.next_event(),
            Splitter::Mp4(f) => f.next_event(),
        }
    }

    /// The fragment being received, frames so far. Only Matroska exposes one: an fMP4 fragment's
    /// sample table (`moof`) may describe frames whose bytes have not arrived yet.
    pub fn open_cluster(&self) -> Option<OpenClusterView<'_>> {
        match self {
            Splitter::Matroska(f) => f.open_cluster(),
            Splitter::Mp4(_) => None,
        }
    }

    pub fn finish(&mut self) -> Result<Option<Event>, MediaError> {
        match self {
            Splitter::Matroska(f) => f.finish(),
            Splitter::Mp4(f) => f.finish(),
        }
    }
}
