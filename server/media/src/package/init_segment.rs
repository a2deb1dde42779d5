//! The fMP4 init segment of one track (`ftyp` + `moov` with an empty sample table and `mvex`),
//! built from the stored codec configuration (ISO/IEC 14496-12 §8.2-8.8, 14496-15 for avcC/hvcC,
//! 14496-1 §7.2.6 for the esds descriptors).

use super::bmff::{u16_be, u32_be, unity_matrix, write_box, write_full_box};
use super::codec::{Codec, PackagedTrack};

/// MP4 track ids are the Matroska track numbers, so segment URLs and playlists agree.
pub fn write_init_segment(track: &PackagedTrack) -> Vec<u8> {
    let mut out = Vec::with_capacity(700 + track.config.len());
    write_ftyp(&mut out, b"iso6", &[b"iso6", b"iso5", b"mp41", b"avc1"]);
    let track_id = track.number as u32;
    write_box(&mut out, b"moov", |moov| {
        // Durations are unknown (0) in a fragmented file.
        write_mvhd(moov, 0, track_id + 1);
        let empty_tables = |stbl: &mut Vec<u8>| {
            for kind in [b"stts", b"stsc", b"stco"] {
                write_full_box(stbl, kind, 0, 0, |b| u32_be(b, 0));
            }
            write_full_box(stbl, b"stsz", 0, 0, |b| {
                u32_be(b, 0);
                u32_be(b, 0);
            });
        };
        write_trak(moov, track, TrackDurations::default(), |_| {}, empty_tables);
        write_box(moov, b"mvex", |mvex| {
            write_full_box(mvex, b"trex", 0, 0, |b| {
                u32_be(b, track_id);
                u32_be(b, 1); // sample description index
                u32_be(b, 0);
                u32_be(b, 0);
                u32_be(b, 0);
            });
        });
    });
    out
}

pub(super) fn write_ftyp(out: &mut Vec<u8>, major: &[u8; 4], compatible: &[&[u8; 4]]) {
    write_box(out, b"ftyp", |b| {
        b.extend_from_slice(major);
        u32_be(b, 0);
        for brand in compatible {
            b.extend_from_slice(*brand);
        }
    });
}

/// The movie header on a millisecond timescale.
pub(super) fn write_mvhd(moov: &mut Vec<u8>, duration_ms: u32, next_track_id: u32) {
    write_full_box(moov, b"mvhd", 0, 0, |b| {
        u32_be(b, 0); // creation time
        u32_be(b, 0); // modification time
        u32_be(b, MOVIE_TIMESCALE);
        u32_be(b, duration_ms);
        u32_be(b, 0x0001_0000); // rate 1.0
        u16_be(b, 0x0100); // volume 1.0
        b.extend_from_slice(&[0; 10]);
        unity_matrix(b);
        b.extend_from_slice(&[0; 24]);
        u32_be(b, next_track_id);
    });
}

/// Units per second of mvhd, tkhd and edit-list durations.
pub(super) const MOVIE_TIMESCALE: u32 = 1000;

/// A track's length on the movie timescale (tkhd) and on its own timescale (mdhd).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct TrackDurations {
    pub movie_ms: u32,
    pub media_units: u32,
}

/// One `trak`: `edts` writes the optional edit list, `sample_tables` the `stbl` boxes after `stsd`.
pub(super) fn write_trak(
    moov: &mut Vec<u8>,
    track: &PackagedTrack,
    durations: TrackDurations,
    edts: impl FnOnce(&mut Vec<u8>),
    sample_tables: impl FnOnce(&mut Vec<u8>),
) {
    let track_id = track.number as u32;
    write_box(moov, b"trak", |trak| {
        // Flags: enabled, in movie, in preview.
        write_full_box(trak, b"tkhd", 0, 0x7, |b| {
            u32_be(b, 0);
            u32_be(b, 0);
            u32_be(b, track_id);
            u32_be(b, 0);
            u32_be(b, durations.movie_ms);
            b.extend_from_slice(&[0; 8]);
            u16_be(b, 0); // layer
            u16_be(b, if track.is_video() { 0 } else { 1 }); // alternate group
            u16_be(b, if track.is_video() { 0 } else { 0x0100 }); // volume
            u16_be(b, 0);
            unity_matrix(b);
            u32_be(b, track.width << 16);
            u32_be(b, track.height << 16);
        });
        edts(trak);
        write_box(trak, b"mdia", |mdia| {
            write_full_box(mdia, b"mdhd", 0, 0, |b| {
                u32_be(b, 0);
                u32_be(b, 0);
                u32_be(b, track.timescale());
                u32_be(b, durations.media_units);
                u16_be(b, 0x55C4); // language "und"
                u16_be(b, 0);
            });
            write_full_box(mdia, b"hdlr", 0, 0, |b| {
                u32_be(b, 0);
                b.extend_from_slice(if track.is_video() { b"vide" } else { b"soun" });
                b.extend_from_slice(&[0; 12]);
                b.extend_from_slice(if track.is_video() { b"VideoHandler\0" } else { b"SoundHandler\0" });
            });
            write_box(mdia, b"minf", |minf| {
                if track.is_video() {
                    write_full_box(minf, b"vmhd", 0, 1, |b| b.extend_from_slice(&[0; 8]));
                } else {
                    write_full_box(minf, b"smhd", 0, 0, |b| b.extend_from_slice(&[0; 4]));
                }
                write_box(minf, b"dinf", |dinf| {
                    write_full_box(dinf, b"dref", 0, 0, |b| {
                        u32_be(b, 1);
                        write_full_box(b, b"url ", 0, 1, |_| {});
                    });
                });
                write_box(minf, b"stbl", |stbl| {
                    write_full_box(stbl, b"stsd", 0, 0, |b| {
                        u32_be(b, 1);
                        write_sample_entry(b, track);
                    });
                    sample_tables(stbl);
                });
            });
        });
    });
}

fn write_sample_entry(out: &mut Vec<u8>, track: &PackagedTrack) {
    let (format, config_box): (&[u8; 4], &[u8; 4]) = match track.codec {
        Codec::Avc => (b"avc1", b"avcC"),
        Codec::Hevc => (b"hvc1", b"hvcC"),
        Codec::Aac => (b"mp4a", b"esds"),
    };
    write_box(out, format, |b| {
        b.extend_from_slice(&[0; 6]);
        u16_be(b, 1); // data reference index
        if track.is_video() {
            b.extend_from_slice(&[0; 16]);
            u16_be(b, track.width.min(u32::from(u16::MAX)) as u16);
            u16_be(b, track.height.min(u32::from(u16::MAX)) as u16);
            u32_be(b, 0x0048_0000); // 72 dpi
            u32_be(b, 0x0048_0000);
            u32_be(b, 0);
            u16_be(b, 1); // frame count
            b.extend_from_slice(&[0; 32]); // compressor name
            u16_be(b, 0x0018); // depth
            u16_be(b, 0xFFFF);
            write_box(b, config_box, |c| c.extend_from_slice(&track.config));
        } else {
            b.extend_from_slice(&[0; 8]);
            u16_be(b, track.channels);
            u16_be(b, 16); // sample size
            u32_be(b, 0);
            u32_be(b, track.sample_rate_hz.min(0xFFFF) << 16);
            write_full_box(b, b"esds", 0, 0, |e| write_es_descriptor(e, &track.config, track.number as u16));
        }
    });
}

/// ES_Descriptor → DecoderConfigDescriptor (AAC, audio stream) → DecoderSpecificInfo, plus the
/// SLConfigDescriptor MP4 files require.
fn write_es_descriptor(out: &mut Vec<u8>, audio_specific_config: &[u8], es_id: u16) {
    let mut specific = Vec::new();
    descriptor(&mut specific, 0x05, audio_specific_config);
    let mut decoder_config = vec![0x40, 0x15, 0, 0, 0];
    decoder_config.extend_from_slice(&[0; 8]); // max and average bitrate: unknown
    decoder_config.extend(specific);
    let mut es = Vec::new();
    es.extend_from_slice(&es_id.to_be_bytes());
    es.push(0);
    descriptor(&mut es, 0x04, &decoder_config);
    descriptor(&mut es, 0x06, &[0x02]);
    descriptor(out, 0x03, &es);
}

/// A descriptor with its length in the 4-byte expandable form players all read.
fn descriptor(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    let len = body.len() as u32;
    out.push(tag);
    out.extend_from_slice(&[
        0x80 | (len >> 21) as u8 & 0x7F,
        0x80 | (len >> 14) as u8 & 0x7F,
        0x80 | (len >> 7) as u8 & 0x7F,
        len as u8 & 0x7F,
    ]);
    out.extend_from_slice(body);
}
