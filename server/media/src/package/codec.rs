//! What a stored track needs to be packaged as MP4: its kind, codec configuration and the RFC 6381
//! CODECS string players select on (`avc1.PPCCLL`, `hvc1.…`, `mp4a.40.N`).

use crate::error::MediaError;
use crate::mkv::Track;

/// The codecs MP4 packaging carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// H.264 with its avcC record.
    Avc,
    /// H.265 with its hvcC record.
    Hevc,
    /// AAC with its AudioSpecificConfig.
    Aac,
}

/// A stored track ready for packaging.
#[derive(Debug, Clone, PartialEq)]
pub struct PackagedTrack {
    pub number: u64,
    pub codec: Codec,
    pub config: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub sample_rate_hz: u32,
    pub channels: u16,
}

impl PackagedTrack {
    pub fn from_track(track: &Track) -> Result<PackagedTrack, MediaError> {
        let codec = match track.codec_id.as_str() {
            "V_MPEG4/ISO/AVC" => Codec::Avc,
            "V_MPEGH/ISO/HEVC" => Codec::Hevc,
            "A_AAC" | "A_AAC/MPEG4/LC" | "A_AAC/MPEG2/LC" => Codec::Aac,
            other => return Err(MediaError::UnsupportedCodec { track: track.number, codec_id: other.to_string() }),
        };
        let missing = |reason| MediaError::CodecPrivateData { track: track.number, reason };
        let config = track.codec_private.clone();
        match codec {
            Codec::Avc if config.len() < 7 || config[0] != 1 => return Err(missing("avcC record expected")),
            Codec::Hevc if config.len() < 23 || config[0] != 1 => return Err(missing("hvcC record expected")),
            Codec::Aac if config.len() < 2 => return Err(missing("AudioSpecificConfig expected")),
            _ => {}
        }
        let dimension = |value: Option<u64>| value.and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
        Ok(PackagedTrack {
            number: track.number,
            codec,
            config,
            width: dimension(track.pixel_width),
            height: dimension(track.pixel_height),
            sample_rate_hz: track.sampling_frequency_hz.map_or(48_000, |hz| hz.round() as u32),
            channels: track.channels.and_then(|c| u16::try_from(c).ok()).unwrap_or(2),
        })
    }

    pub fn is_video(&self) -> bool {
        matches!(self.codec, Codec::Avc | Codec::Hevc)
    }

    /// Units per second of this track's MP4 timeline: milliseconds for video (stored times are
    /// ms), the sample rate for audio.
    pub fn timescale(&self) -> u32 {
        if self.is_video() { 1000 } else { self.sample_rate_hz.max(1) }
    }

    /// The RFC 6381 codecs parameter.
    pub fn codecs_string(&self) -> String {
        match self.codec {
            Codec::Avc => format!("avc1.{:02x}{:02x}{:02x}", self.config[1], self.config[2], self.config[3]),
            Codec::Hevc => hevc_codecs_string(&self.config),
            Codec::Aac => format!("mp4a.40.{}", self.config[0] >> 3),
        }
    }
}

/// `hvc1.<space><profile>.<compatibility, bit-reversed hex>.<tier><level>[.<constraint bytes>]`
/// (ISO/IEC 14496-15 Annex E) from an hvcC record.
fn hevc_codecs_string(hvcc: &[u8]) -> String {
    let space = ["", "A", "B", "C"][usize::from(hvcc[1] >> 6)];
    let tier = if hvcc[1] & 0x20 != 0 { 'H' } else { 'L' };
    let profile = hvcc[1] & 0x1F;
    let compatibility = u32::from_be_bytes([hvcc[2], hvcc[3], hvcc[4], hvcc[5]]).reverse_bits();
    let level = hvcc[12];
    let mut constraints: Vec<u8> = hvcc[6..12].to_vec();
    while constraints.last() == Some(&0) {
        constraints.pop();
    }
    let mut out = format!("hvc1.{space}{profile}.{compatibility:X}.{tier}{level}");
    for byte in constraints {
        out.push_str(&format!(".{byte:X}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(codec_id: &str, codec_private: Vec<u8>) -> Track {
        Track { number: 1, codec_id: codec_id.into(), codec_private, ..Track::default() }
    }

    #[test]
    fn codecs_strings_come_from_the_codec_configuration() {
        let avc = PackagedTrack::from_track(&track("V_MPEG4/ISO/AVC", vec![1, 0x64, 0x00, 0x28, 0xFF, 0xE1, 0]))
            .expect("avc");
        assert_eq!(avc.codecs_string(), "avc1.640028");
        let aac = PackagedTrack::from_track(&track("A_AAC", vec![0x11, 0x90])).expect("aac");
        assert_eq!(aac.codecs_string(), "mp4a.40.2");
        // Main profile, compatibility 0x60000000 (bits 1 and 2), main tier, level 93 (3.1), 0x90 constraint byte.
        let mut hvcc = vec![1, 0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 93];
        hvcc.resize(23, 0);
        let hevc = PackagedTrack::from_track(&track("V_MPEGH/ISO/HEVC", hvcc)).expect("hevc");
        assert_eq!(hevc.codecs_string(), "hvc1.1.6.L93.90");
    }

    #[test]
    fn unsupported_codecs_and_missing_configuration_are_typed_errors() {
        assert!(matches!(PackagedTrack::from_track(&track("V_VP9", vec![])), Err(MediaError::UnsupportedCodec { .. })));
        assert!(matches!(
            PackagedTrack::from_track(&track("V_MPEG4/ISO/AVC", vec![])),
            Err(MediaError::CodecPrivateData { .. })
        ));
    }
}
