//! H.264 and H.265 samples as Annex B byte streams (ISO/IEC 14496-10 Annex B): what MPEG-TS and
//! RTP carry. Stored samples hold length-prefixed NAL units (the avcC/hvcC record gives the
//! length size); each becomes a start code and the NAL unit, with the record's parameter sets
//! before every key frame so a receiver can start decoding there.

use super::codec::{Codec, PackagedTrack};

/// A video track's conversion to Annex B.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnexB {
    codec: Codec,
    /// Bytes before each NAL unit in a stored sample.
    nal_length_size: usize,
    /// The parameter sets (SPS/PPS, plus VPS for H.265), each after a start code.
    parameter_sets: Vec<u8>,
}

impl AnnexB {
    /// The conversion for a video track; `None` for audio.
    pub fn for_track(track: &PackagedTrack) -> Option<AnnexB> {
        let (nal_length_size, parameter_sets) = match track.codec {
            Codec::Avc => avc_parameter_sets(&track.config),
            Codec::Hevc => hevc_parameter_sets(&track.config),
            Codec::Aac => return None,
        };
        Some(AnnexB { codec: track.codec, nal_length_size, parameter_sets })
    }

    /// One stored sample as an Annex B access unit: with `delimiter`, an access unit delimiter
    /// first (MPEG-TS wants one; RTP does not); the parameter sets before a key frame. A NAL unit
    /// whose length runs past the sample ends it.
    pub fn access_unit(&self, data: &[u8], keyframe: bool, delimiter: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + self.parameter_sets.len() + 16);
        if delimiter {
            // H.264 NAL type 9, H.265 NAL type 35 (any picture type).
            let unit: &[u8] = if self.codec == Codec::Avc { &[0x09, 0xF0] } else { &[0x46, 0x01, 0x50] };
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(unit);
        }
        if keyframe {
            out.extend_from_slice(&self.parameter_sets);
        }
        let mut at = 0;
        while at + self.nal_length_size <= data.len() {
            let length = data[at..at + self.nal_length_size].iter().fold(0usize, |n, &b| n << 8 | usize::from(b));
            at += self.nal_length_size;
            let Some(nal) = data.get(at..at + length) else { break };
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(nal);
            at += length;
        }
        out
    }
}

/// (NAL length size, Annex B SPS+PPS) from an avcC record (ISO/IEC 14496-15 §5.3.3).
fn avc_parameter_sets(avcc: &[u8]) -> (usize, Vec<u8>) {
    let length_size = avcc.get(4).map_or(4, |b| usize::from(b & 0x03) + 1);
    let mut out = Vec::new();
    let mut at = 5;
    for count_mask in [0x1Fu8, 0xFF] {
        let Some(&count) = avcc.get(at) else { break };
        at += 1;
        for _ in 0..(count & count_mask) {
            let Some(len) = avcc.get(at..at + 2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]]))) else {
                return (length_size, out);
            };
            let Some(nal) = avcc.get(at + 2..at + 2 + len) else { return (length_size, out) };
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(nal);
            at += 2 + len;
        }
    }
    (length_size, out)
}

/// (NAL length size, Annex B VPS+SPS+PPS…) from an hvcC record (ISO/IEC 14496-15 §8.3.3).
fn hevc_parameter_sets(hvcc: &[u8]) -> (usize, Vec<u8>) {
    let length_size = hvcc.get(21).map_or(4, |b| usize::from(b & 0x03) + 1);
    let mut out = Vec::new();
    let Some(&arrays) = hvcc.get(22) else { return (length_size, out) };
    let mut at = 23;
    for _ in 0..arrays {
        let Some(count) = hvcc.get(at + 1..at + 3).map(|b| u16::from_be_bytes([b[0], b[1]])) else { break };
        at += 3;
        for _ in 0..count {
            let Some(len) = hvcc.get(at..at + 2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]]))) else {
                return (length_size, out);
            };
            let Some(nal) = hvcc.get(at + 2..at + 2 + len) else { return (length_size, out) };
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(nal);
            at += 2 + len;
        }
    }
    (length_size, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avcc_parameter_sets_become_annex_b() {
        let avcc = [1, 0x64, 0, 0x1F, 0xFF, 0xE1, 0, 3, 0x67, 1, 2, 1, 0, 2, 0x68, 9];
        let (length_size, sets) = avc_parameter_sets(&avcc);
        assert_eq!(length_size, 4);
        assert_eq!(sets, [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x68, 9]);
    }

    #[test]
    fn a_key_frame_carries_the_parameter_sets_and_each_nal_unit_a_start_code() {
        let avcc = vec![1, 0x64, 0, 0x1F, 0xFF, 0xE1, 0, 3, 0x67, 1, 2, 1, 0, 2, 0x68, 9];
        let track = PackagedTrack {
            number: 1,
            codec: Codec::Avc,
            config: avcc,
            width: 0,
            height: 0,
            sample_rate_hz: 0,
            channels: 0,
        };
        let annex_b = AnnexB::for_track(&track).expect("video");
        let sample = [0, 0, 0, 2, 0x65, 7, 0, 0, 0, 1, 0x06, 0, 0, 0, 9];
        let key = annex_b.access_unit(&sample, true, false);
        assert_eq!(key, [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x68, 9, 0, 0, 0, 1, 0x65, 7, 0, 0, 0, 1, 0x06]);
        let delta = annex_b.access_unit(&sample[..10], false, true);
        assert_eq!(delta, [0, 0, 0, 1, 0x09, 0xF0, 0, 0, 0, 1, 0x65, 7]);
    }
}
