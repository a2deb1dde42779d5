//! An fMP4 media segment: one `moof` (mfhd, traf with tfhd, tfdt and a version-1 trun with signed
//! composition offsets) and its `mdat`, for one track of one stored fragment.

use super::bmff::{u32_be, u64_be, write_box, write_full_box};
use super::timing::TimedSample;

/// sample_depends_on = 2 (an I-frame); non-sync samples depend on others and are not sync samples.
const KEY_FRAME_FLAGS: u32 = 0x0200_0000;
const DELTA_FRAME_FLAGS: u32 = 0x0101_0000;

/// Writes `moof` + `mdat` for `samples`, whose bytes are taken from `cluster_body`.
pub fn write_media_segment(track_id: u32, sequence: u32, samples: &[TimedSample], cluster_body: &[u8]) -> Vec<u8> {
    let payload_bytes: usize = samples.iter().map(|s| s.data.len()).sum();
    let mut out = Vec::with_capacity(payload_bytes + 64 + samples.len() * 16);
    let base_decode_time = samples.first().map_or(0, |s| s.decode_time.max(0) as u64);
    let mut data_offset_at = 0;
    write_box(&mut out, b"moof", |moof| {
        write_full_box(moof, b"mfhd", 0, 0, |b| u32_be(b, sequence));
        write_box(moof, b"traf", |traf| {
            // default-base-is-moof: data offsets count from the start of this moof.
            write_full_box(traf, b"tfhd", 0, 0x02_0000, |b| u32_be(b, track_id));
            write_full_box(traf, b"tfdt", 1, 0, |b| u64_be(b, base_decode_time));
            // data-offset, sample duration, size, flags and composition offset present.
            write_full_box(traf, b"trun", 1, 0x0000_0F01, |b| {
                u32_be(b, samples.len() as u32);
                data_offset_at = b.len();
                u32_be(b, 0);
                for sample in samples {
                    u32_be(b, sample.duration);
                    u32_be(b, sample.data.len() as u32);
                    u32_be(b, if sample.keyframe { KEY_FRAME_FLAGS } else { DELTA_FRAME_FLAGS });
                    u32_be(b, sample.composition_offset as u32);
                }
            });
        });
    });
    // The payload starts after the moof and the mdat header.
    let data_offset = (out.len() + 8) as u32;
    out[data_offset_at..data_offset_at + 4].copy_from_slice(&data_offset.to_be_bytes());
    write_box(&mut out, b"mdat", |mdat| {
        for sample in samples {
            mdat.extend_from_slice(cluster_body.get(sample.data.clone()).unwrap_or_default());
        }
    });
    out
}
