//! The init segment (`moov`): one track description per `trak`, with the codec configuration
//! that Matroska's CodecPrivate carries (avcC, hvcC, or the AAC AudioSpecificConfig from esds),
//! and the `trex` defaults that fragments may rely on.

use super::boxes::{Cursor, child, children, malformed};
use crate::error::MediaError;

/// What one `trak` describes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Mp4Track {
    pub track_id: u32,
    pub timescale: u32,
    /// The sample entry's four-character code (avc1, hvc1, mp4a, ...).
    pub format: [u8; 4],
    pub is_video: bool,
    pub codec_private: Vec<u8>,
    pub width: u16,
    pub height: u16,
    pub channels: u16,
    pub sample_rate_hz: u32,
    pub default_duration: u32,
    pub default_size: u32,
    pub default_flags: u32,
}

impl Mp4Track {
    /// The Matroska CodecID for this track's format.
    pub fn codec_id(&self) -> String {
        match &self.format {
            b"avc1" | b"avc3" => "V_MPEG4/ISO/AVC".to_string(),
            b"hvc1" | b"hev1" => "V_MPEGH/ISO/HEVC".to_string(),
            b"mp4a" => "A_AAC".to_string(),
            other => format!("{}_MP4/{}", if self.is_video { "V" } else { "A" }, String::from_utf8_lossy(other)),
        }
    }
}

/// Parses a `moov` payload.
pub fn parse_moov(moov: &[u8], base: u64) -> Result<Vec<Mp4Track>, MediaError> {
    let mut tracks = Vec::new();
    for (kind, payload, at) in children(moov, base)? {
        if &kind == b"trak" {
            tracks.push(parse_trak(payload, at)?);
        }
    }
    if let Some((_, mvex, at)) = child(moov, base, b"mvex")? {
        for (kind, payload, at) in children(mvex, at)? {
            if &kind != b"trex" {
                continue;
            }
            let mut c = Cursor::new(payload, at, kind);
            c.version_flags()?;
            let track_id = c.u32()?;
            let _description_index = c.u32()?;
            let (duration, size, flags) = (c.u32()?, c.u32()?, c.u32()?);
            if let Some(track) = tracks.iter_mut().find(|t| t.track_id == track_id) {
                (track.default_duration, track.default_size, track.default_flags) = (duration, size, flags);
            }
        }
    }
    Ok(tracks)
}

fn required<'a>(data: &'a [u8], base: u64, kind: &[u8; 4], parent: &[u8; 4]) -> Result<(&'a [u8], u64), MediaError> {
    child(data, base, kind)?
        .map(|(_, payload, at)| (payload, at))
        .ok_or_else(|| malformed(base, parent, "required child box missing"))
}

fn parse_trak(trak: &[u8], base: u64) -> Result<Mp4Track, MediaError> {
    let mut track = Mp4Track::default();
    let (tkhd, at) = required(trak, base, b"tkhd", b"trak")?;
    let mut c = Cursor::new(tkhd, at, *b"tkhd");
    let (version, _) = c.version_flags()?;
    c.take(if version == 1 { 16 } else { 8 })?;
    track.track_id = c.u32()?;

    let (mdia, at) = required(trak, base, b"mdia", b"trak")?;
    let (mdhd, mdhd_at) = required(mdia, at, b"mdhd", b"mdia")?;
    let mut c = Cursor::new(mdhd, mdhd_at, *b"mdhd");
    let (version, _) = c.version_flags()?;
    c.take(if version == 1 { 16 } else { 8 })?;
    track.timescale = c.u32()?.max(1);
    let (hdlr, hdlr_at) = required(mdia, at, b"hdlr", b"mdia")?;
    let mut c = Cursor::new(hdlr, hdlr_at, *b"hdlr");
    c.version_flags()?;
    c.u32()?;
    track.is_video = c.take(4)? == b"vide";

    let (minf, at) = required(mdia, at, b"minf", b"mdia")?;
    let (stbl, at) = required(minf, at, b"stbl", b"minf")?;
    let (stsd, at) = required(stbl, at, b"stsd", b"stbl")?;
    let mut c = Cursor::new(stsd, at, *b"stsd");
    c.version_flags()?;
    c.u32()?;
    let entries = children(c.rest(), at + 8)?;
    let Some((format, entry, entry_at)) = entries.into_iter().next() else {
        return Err(malformed(at, b"stsd", "no sample entry"));
    };
    track.format = format;
    let mut c = Cursor::new(entry, entry_at, format);
    c.take(8)?; // reserved (6) + data_reference_index (2)
    if track.is_video {
        c.take(16)?;
        track.width = c.u16()?;
        track.height = c.u16()?;
        c.take(50)?;
        let config: &[u8; 4] = match &format {
            b"hvc1" | b"hev1" => b"hvcC",
            _ => b"avcC",
        };
        if let Some((_, payload, _)) = child(c.rest(), entry_at + c.at as u64, config)? {
            track.codec_private = payload.to_vec();
        }
    } else {
        c.take(8)?;
        track.channels = c.u16()?;
        c.u16()?; // sample size
        c.take(4)?;
        track.sample_rate_hz = c.u32()? >> 16;
        if let Some((_, esds, esds_at)) = child(c.rest(), entry_at + c.at as u64, b"esds")? {
            track.codec_private = decoder_specific_info(esds, esds_at)?.unwrap_or_default();
        }
    }
    Ok(track)
}

/// Reads an MPEG-4 descriptor length (ISO/IEC 14496-1 §8.3.3: up to four 7-bit groups).
fn descriptor_len(c: &mut Cursor<'_>) -> Result<usize, MediaError> {
    let mut len = 0usize;
    for _ in 0..4 {
        let b = c.u8()?;
        len = (len << 7) | usize::from(b & 0x7F);
        if b & 0x80 == 0 {
            break;
        }
    }
    Ok(len)
}

/// The AudioSpecificConfig inside esds: ES_Descriptor (0x03) > DecoderConfigDescriptor (0x04) >
/// DecoderSpecificInfo (0x05).
fn decoder_specific_info(esds: &[u8], at: u64) -> Result<Option<Vec<u8>>, MediaError> {
    let mut c = Cursor::new(esds, at, *b"esds");
    c.version_flags()?;
    if c.u8()? != 0x03 {
        return Ok(None);
    }
    descriptor_len(&mut c)?;
    c.u16()?; // ES_ID
    let flags = c.u8()?;
    if flags & 0x80 != 0 {
        c.u16()?;
    }
    if flags & 0x40 != 0 {
        let url_len = usize::from(c.u8()?);
        c.take(url_len)?;
    }
    if flags & 0x20 != 0 {
        c.u16()?;
    }
    if c.u8()? != 0x04 {
        return Ok(None);
    }
    descriptor_len(&mut c)?;
    c.take(13)?;
    if c.u8()? != 0x05 {
        return Ok(None);
    }
    let len = descriptor_len(&mut c)?;
    Ok(Some(c.take(len)?.to_vec()))
}
