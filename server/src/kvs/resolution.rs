//! The largest picture the server accepts: 4096x2304 (either orientation). A decoder sizes its
//! buffers from what a stream declares, so an oversized or lying declaration would make every
//! GetImages, clip or consumer frame cost gigabytes; streams are refused at PutMedia instead,
//! from the track header, from the parameter sets in the codec private data, and from parameter
//! sets carried in the frames themselves (which decoders take as well).

use framelog_media::Track;
use framelog_media::sps::{NalSyntax, avc_all_dimensions, hevc_dimensions, in_band_dimensions, nal_length_size};

const MAX_LONG_SIDE: u64 = 4096;
const MAX_SHORT_SIDE: u64 = 2304;

fn too_large(width: u64, height: u64) -> bool {
    width.max(height) > MAX_LONG_SIDE || width.min(height) > MAX_SHORT_SIDE
}

/// Every size a track declares: its header's pixel size and the coded size of each SPS that
/// parses. Producers send odd codec private data (empty, cut short) and decoders then take the
/// parameter sets in the frames (`InBandCheck`), so an unreadable record declares nothing rather
/// than refusing the stream.
fn declared_sizes(track: &Track) -> Vec<(u64, u64)> {
    let mut sizes = Vec::new();
    if let (Some(width), Some(height)) = (track.pixel_width, track.pixel_height) {
        sizes.push((width, height));
    }
    let from_sps = match track.codec_id.as_str() {
        "V_MPEG4/ISO/AVC" => Some(avc_all_dimensions(&track.codec_private)),
        "V_MPEGH/ISO/HEVC" => hevc_dimensions(&track.codec_private).map(|size| vec![size]),
        _ => None,
    };
    sizes.extend(from_sps.unwrap_or_default().into_iter().map(|(width, height)| (u64::from(width), u64::from(height))));
    sizes
}

/// Whether any track declares a picture larger than the server decodes.
pub fn exceeds_limit(tracks: &[Track]) -> bool {
    tracks.iter().flat_map(declared_sizes).any(|(width, height)| too_large(width, height))
}

/// The video tracks whose frames may carry parameter sets, with the size of their NAL length
/// prefixes.
#[derive(Debug, Clone, Default)]
pub struct InBandCheck {
    tracks: Vec<(u64, NalSyntax, usize)>,
}

impl InBandCheck {
    pub fn new(tracks: &[Track]) -> InBandCheck {
        let tracks = tracks
            .iter()
            .filter_map(|track| {
                let syntax = match track.codec_id.as_str() {
                    "V_MPEG4/ISO/AVC" => NalSyntax::Avc,
                    "V_MPEGH/ISO/HEVC" => NalSyntax::Hevc,
                    _ => return None,
                };
                // Without a readable record, frames are read as the common 4-byte prefixes.
                let length_size = nal_length_size(syntax, &track.codec_private).unwrap_or(4);
                Some((track.number, syntax, length_size))
            })
            .collect();
        InBandCheck { tracks }
    }

    /// Whether `frame` of track `track` carries an SPS declaring a picture larger than accepted.
    pub fn frame_exceeds(&self, track: u64, frame: &[u8]) -> bool {
        self.tracks.iter().filter(|(number, ..)| *number == track).any(|&(_, syntax, length_size)| {
            in_band_dimensions(syntax, length_size, frame)
                .into_iter()
                .any(|(width, height)| too_large(u64::from(width), u64::from(height)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(width: u64, height: u64) -> Track {
        Track {
            pixel_width: Some(width),
            pixel_height: Some(height),
            ..framelog_media::video_track(1, "V_MPEG4/ISO/AVC")
        }
    }

    #[test]
    fn up_to_4k_uhd_in_either_orientation_passes() {
        assert!(!exceeds_limit(&[video(3840, 2160)]));
        assert!(!exceeds_limit(&[video(4096, 2304)]));
        assert!(!exceeds_limit(&[video(2304, 4096)]), "a portrait camera");
        assert!(exceeds_limit(&[video(4097, 2160)]));
        assert!(exceeds_limit(&[video(3000, 3000)]));
        assert!(exceeds_limit(&[video(1 << 20, 1 << 20)]));
    }

    #[test]
    fn the_sps_counts_even_when_the_header_is_modest() {
        // High profile SPS declaring 8192x4320 (512 x 270 macroblocks), behind a 640x360 header.
        let mut bits = String::new();
        bits.push_str("01100100"); // profile_idc 100
        bits.push_str("0000000000110011"); // constraints, level 51
        bits.push('1'); // sps id 0
        bits.push_str("010"); // chroma_format_idc 1
        bits.push_str("11"); // bit depths 0, 0
        bits.push_str("00"); // qpprime, no scaling matrix
        bits.push('1'); // log2_max_frame_num_minus4 0
        bits.push('1'); // pic_order_cnt_type 0
        bits.push('1'); // log2_max_poc_lsb_minus4 0
        bits.push_str("011"); // max_num_ref_frames 2
        bits.push('0'); // gaps
        bits.push_str(&exp_golomb(511)); // width in macroblocks - 1
        bits.push_str(&exp_golomb(269)); // height in map units - 1
        bits.push('1'); // frame_mbs_only
        bits.push_str("10000000");
        let mut sps = vec![0x67];
        sps.extend(bits.as_bytes().chunks(8).map(|c| {
            let text: String = c.iter().map(|&b| b as char).collect();
            u8::from_str_radix(&format!("{text:0<8}"), 2).expect("bits")
        }));
        let mut avcc = vec![1, 100, 0, 51, 0xff, 0xe1];
        avcc.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        avcc.extend_from_slice(&sps);
        assert_eq!(framelog_media::sps::avc_dimensions(&avcc), Some((8192, 4320)));
        let lying = Track { codec_private: avcc.clone(), ..video(640, 360) };
        assert!(exceeds_limit(&[lying]));
        // Two SPS, the first one unreadable: the second still counts.
        let two = [&avcc[..5], &[0xe2, 0, 2, 0x67, 0x42], &avcc[6..]].concat();
        assert!(exceeds_limit(&[Track { codec_private: two, ..video(640, 360) }]), "every SPS counts");
    }

    fn exp_golomb(value: u32) -> String {
        let code = format!("{:b}", value + 1);
        "0".repeat(code.len() - 1) + &code
    }
}
