//! Picture dimensions declared by a video track's parameter sets (H.264 SPS in an avcC record,
//! H.265 SPS in an hvcC record), read without decoding anything: the server refuses oversized
//! streams before a decoder ever allocates for them. Widths and heights are the coded size
//! (macroblock or luma-sample units, before cropping), an upper bound of the displayed size.
//! Syntax: ITU-T H.264 §7.3.2.1.1 and H.265 §7.3.2.2, §7.3.3.

/// Reads bits most significant first from an RBSP (emulation-prevention bytes removed).
struct Bits {
    rbsp: Vec<u8>,
    at: usize,
}

impl Bits {
    fn new(nal_payload: &[u8]) -> Bits {
        // 0x000003 → 0x0000: the 03 only prevents a start code.
        let mut rbsp = Vec::with_capacity(nal_payload.len());
        let mut zeros = 0;
        for &byte in nal_payload {
            if zeros >= 2 && byte == 3 {
                zeros = 0;
                continue;
            }
            zeros = if byte == 0 { zeros + 1 } else { 0 };
            rbsp.push(byte);
        }
        Bits { rbsp, at: 0 }
    }

    fn bit(&mut self) -> Option<u32> {
        let byte = *self.rbsp.get(self.at / 8)?;
        let bit = (byte >> (7 - self.at % 8)) & 1;
        self.at += 1;
        Some(u32::from(bit))
    }

    fn bits(&mut self, count: u32) -> Option<u32> {
        (0..count).try_fold(0u32, |acc, _| Some((acc << 1) | self.bit()?))
    }

    fn skip(&mut self, count: usize) -> Option<()> {
        self.at = self.at.checked_add(count)?;
        (self.at <= self.rbsp.len() * 8).then_some(())
    }

    /// Unsigned Exp-Golomb; values above 2^31 are refused (no real SPS has them).
    fn ue(&mut self) -> Option<u32> {
        let mut leading = 0;
        while self.bit()? == 0 {
            leading += 1;
            if leading > 31 {
                return None;
            }
        }
        let rest = self.bits(leading)?;
        ((1u64 << leading) - 1 + u64::from(rest)).try_into().ok()
    }

    fn se(&mut self) -> Option<i64> {
        let code = i64::from(self.ue()?);
        Some(if code % 2 == 1 { (code + 1) / 2 } else { -(code / 2) })
    }
}

/// Every SPS of an `AVCDecoderConfigurationRecord`; `None` when the record is cut short.
pub fn avc_sps_list(avcc: &[u8]) -> Option<Vec<&[u8]>> {
    let count = usize::from(*avcc.get(5)? & 0x1f);
    let mut at = 6;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let len = usize::from(u16::from_be_bytes([*avcc.get(at)?, *avcc.get(at + 1)?]));
        out.push(avcc.get(at + 2..at + 2 + len)?);
        at += 2 + len;
    }
    Some(out)
}

/// The size each readable SPS of an avcC declares.
pub fn avc_all_dimensions(avcc: &[u8]) -> Vec<(u32, u32)> {
    avc_sps_list(avcc).unwrap_or_default().into_iter().filter_map(avc_sps_dimensions).collect()
}

fn first_avc_sps(avcc: &[u8]) -> Option<&[u8]> {
    avc_sps_list(avcc)?.into_iter().next()
}

/// (width, height) an H.264 stream declares, from the first SPS of its avcC record.
pub fn avc_dimensions(avcc: &[u8]) -> Option<(u32, u32)> {
    avc_sps_dimensions(first_avc_sps(avcc)?)
}

/// (width, height) one H.264 SPS NAL unit declares.
pub fn avc_sps_dimensions(sps: &[u8]) -> Option<(u32, u32)> {
    // Skip the NAL header byte.
    let mut bits = Bits::new(sps.get(1..)?);
    let profile = bits.bits(8)?;
    bits.skip(16)?; // constraint flags, level
    bits.ue()?; // seq_parameter_set_id
    if [100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135].contains(&profile) {
        let chroma_format = bits.ue()?;
        if chroma_format == 3 {
            bits.skip(1)?;
        }
        bits.ue()?; // bit_depth_luma_minus8
        bits.ue()?; // bit_depth_chroma_minus8
        bits.skip(1)?; // qpprime_y_zero_transform_bypass_flag
        if bits.bit()? == 1 {
            let lists = if chroma_format == 3 { 12 } else { 8 };
            for index in 0..lists {
                if bits.bit()? == 1 {
                    skip_scaling_list(&mut bits, if index < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    bits.ue()?; // log2_max_frame_num_minus4
    match bits.ue()? {
        0 => {
            bits.ue()?;
        }
        1 => {
            bits.skip(1)?;
            bits.se()?;
            bits.se()?;
            for _ in 0..bits.ue()?.min(256) {
                bits.se()?;
            }
        }
        _ => {}
    }
    bits.ue()?; // max_num_ref_frames
    bits.skip(1)?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = u64::from(bits.ue()?) + 1;
    let height_units = u64::from(bits.ue()?) + 1;
    let frame_mbs_only = u64::from(bits.bit()?);
    let width = width_mbs * 16;
    let height = (2 - frame_mbs_only) * height_units * 16;
    Some((width.try_into().ok()?, height.try_into().ok()?))
}

fn skip_scaling_list(bits: &mut Bits, size: usize) -> Option<()> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            next = (last + bits.se()? + 256) % 256;
        }
        last = if next == 0 { last } else { next };
    }
    Some(())
}

/// The first SPS (NAL type 33) of an `HEVCDecoderConfigurationRecord`.
fn first_hevc_sps(hvcc: &[u8]) -> Option<&[u8]> {
    let arrays = usize::from(*hvcc.get(22)?);
    let mut at = 23;
    for _ in 0..arrays {
        let nal_type = hvcc.get(at)? & 0x3f;
        let count = usize::from(u16::from_be_bytes([*hvcc.get(at + 1)?, *hvcc.get(at + 2)?]));
        at += 3;
        for _ in 0..count {
            let len = usize::from(u16::from_be_bytes([*hvcc.get(at)?, *hvcc.get(at + 1)?]));
            let nal = hvcc.get(at + 2..at + 2 + len)?;
            if nal_type == 33 {
                return Some(nal);
            }
            at += 2 + len;
        }
    }
    None
}

/// (width, height) an H.265 stream declares, from its hvcC record.
pub fn hevc_dimensions(hvcc: &[u8]) -> Option<(u32, u32)> {
    hevc_sps_dimensions(first_hevc_sps(hvcc)?)
}

/// (width, height) one H.265 SPS NAL unit declares.
pub fn hevc_sps_dimensions(sps: &[u8]) -> Option<(u32, u32)> {
    // Skip the two-byte NAL header.
    let mut bits = Bits::new(sps.get(2..)?);
    bits.skip(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = bits.bits(3)? as usize;
    bits.skip(1)?; // sps_temporal_id_nesting_flag
    skip_profile_tier_level(&mut bits, max_sub_layers_minus1)?;
    bits.ue()?; // sps_seq_parameter_set_id
    if bits.ue()? == 3 {
        bits.skip(1)?; // separate_colour_plane_flag
    }
    Some((bits.ue()?, bits.ue()?))
}

/// The NAL unit syntax of a track: which header layout and which SPS type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NalSyntax {
    Avc,
    Hevc,
}

/// The size of each NAL unit's length prefix in frames, from the track's avcC (byte 4) or hvcC
/// (byte 21) record; `None` when the record is too short to say.
pub fn nal_length_size(syntax: NalSyntax, record: &[u8]) -> Option<usize> {
    let at = match syntax {
        NalSyntax::Avc => 4,
        NalSyntax::Hevc => 21,
    };
    Some(usize::from(record.get(at)? & 3) + 1)
}

/// At most this many NAL units of one access unit are looked at: a frame has a handful, and a
/// hostile one must not turn the scan into a cost.
const MAX_NALS_SCANNED: usize = 64;

/// The sizes declared by SPS NAL units carried in a frame (length-prefixed NAL units, as stored
/// in Matroska and MP4) rather than in the codec record: decoders take these too.
pub fn in_band_dimensions(syntax: NalSyntax, length_size: usize, access_unit: &[u8]) -> Vec<(u32, u32)> {
    let mut sizes = Vec::new();
    let mut rest = access_unit;
    for _ in 0..MAX_NALS_SCANNED {
        let Some(prefix) = rest.get(..length_size) else { break };
        let length = prefix.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b));
        let Some(nal) = rest.get(length_size..length_size.saturating_add(length)) else { break };
        let size = match (syntax, nal.first()) {
            (NalSyntax::Avc, Some(header)) if header & 0x1f == 7 => avc_sps_dimensions(nal),
            (NalSyntax::Hevc, Some(header)) if (header >> 1) & 0x3f == 33 => hevc_sps_dimensions(nal),
            _ => None,
        };
        sizes.extend(size);
        rest = &rest[length_size + length..];
    }
    sizes
}

fn skip_profile_tier_level(bits: &mut Bits, max_sub_layers_minus1: usize) -> Option<()> {
    bits.skip(88)?; // general profile space, tier, idc, compatibility flags, constraint flags
    bits.skip(8)?; // general_level_idc
    let mut present = Vec::with_capacity(max_sub_layers_minus1);
    for _ in 0..max_sub_layers_minus1 {
        present.push((bits.bit()? == 1, bits.bit()? == 1));
    }
    if max_sub_layers_minus1 > 0 {
        bits.skip(2 * (8 - max_sub_layers_minus1))?;
    }
    for (profile, level) in present {
        if profile {
            bits.skip(88)?;
        }
        if level {
            bits.skip(8)?;
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An avcC record around one SPS.
    fn avcc(sps: &[u8]) -> Vec<u8> {
        let mut out = vec![1, sps[1], sps[2], sps[3], 0xff, 0xe1];
        out.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        out.extend_from_slice(sps);
        out.extend_from_slice(&[1, 0, 4, 0x68, 0xce, 0x3c, 0x80]);
        out
    }

    #[test]
    fn h264_sps_from_x264_give_their_sizes() {
        // x264 High profile 1280x720 (80 x 45 macroblocks, frame_mbs_only).
        let sps_720p = [
            0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x6a, 0x02, 0x02, 0x02, 0x80, 0x00, 0x00,
            0x03, 0x00, 0x80, 0x00, 0x00, 0x1e, 0x07, 0x8c, 0x18, 0xcb,
        ];
        assert_eq!(avc_dimensions(&avcc(&sps_720p)), Some((1280, 720)));
        // Baseline profile 320x240 (no high-profile fields).
        let sps_240p = [0x67, 0x42, 0xc0, 0x0d, 0xda, 0x05, 0x07, 0xec, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40];
        assert_eq!(avc_dimensions(&avcc(&sps_240p)), Some((320, 240)));
    }

    #[test]
    fn h265_sps_give_their_size() {
        // An x265 Main profile 1920x1080 SPS inside a minimal hvcC (only the SPS array).
        let sps = [
            0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x78,
            0xa0, 0x03, 0xc0, 0x80, 0x10, 0xe5, 0x96, 0x66, 0x69, 0x24, 0xca, 0xe0, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10,
            0x00, 0x00, 0x03, 0x01, 0xe0, 0x80,
        ];
        let mut hvcc = vec![0u8; 22];
        hvcc.push(1);
        hvcc.push(0x80 | 33);
        hvcc.extend_from_slice(&1u16.to_be_bytes());
        hvcc.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        hvcc.extend_from_slice(&sps);
        assert_eq!(hevc_dimensions(&hvcc), Some((1920, 1080)));
    }

    #[test]
    fn malformed_records_are_none_not_panics() {
        for bytes in [&[][..], &[1, 2, 3], &[1, 0x64, 0, 0x1f, 0xff, 0xe1, 0xff, 0xff, 0x67], &[0xff; 40]] {
            let _ = avc_dimensions(bytes);
            let _ = hevc_dimensions(bytes);
        }
        assert_eq!(avc_dimensions(&[1, 0x64, 0, 0x1f, 0xff, 0xe0]), None, "no SPS");
    }

    /// Length-prefixed NAL units (4-byte prefixes).
    fn access_unit(nals: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for nal in nals {
            out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            out.extend_from_slice(nal);
        }
        out
    }

    #[test]
    fn sps_carried_in_frames_are_found_among_other_nal_units() {
        let sps_240p = [0x67, 0x42, 0xc0, 0x0d, 0xda, 0x05, 0x07, 0xec, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40];
        let frame = access_unit(&[&[0x09, 0xf0], &sps_240p, &[0x68, 0xce, 0x3c, 0x80], &[0x65, 0x88, 0x84]]);
        assert_eq!(in_band_dimensions(NalSyntax::Avc, 4, &frame), [(320, 240)]);
        assert_eq!(in_band_dimensions(NalSyntax::Avc, 4, &access_unit(&[&[0x65, 0x88]])), []);
        // Read as H.265, the same bytes hold no SPS (type 33 is `0x42`/`0x43` in the first byte).
        assert_eq!(in_band_dimensions(NalSyntax::Hevc, 4, &frame), []);
        // A length running past the end stops the scan without a panic.
        assert_eq!(in_band_dimensions(NalSyntax::Avc, 4, &[0xff, 0xff, 0xff, 0xff, 0x67]), []);
        assert_eq!(nal_length_size(NalSyntax::Avc, &avcc(&sps_240p)), Some(4));
        assert_eq!(nal_length_size(NalSyntax::Hevc, &[0; 21]), None);
    }
}
