//! A regular (progressive, non-fragmented) MP4 of consecutive stored fragments, for GetClip
//! (docs/spec/kvs.md#getclip): `ftyp`, a `moov` holding every sample table, then one `mdat`.
//!
//! The `moov` is planned from the fragments' indexes alone (sizes, times, key flags), so the
//! server can send it first and then stream the `mdat` one fragment at a time without holding
//! the clip in memory. Inside the `mdat` each fragment contributes one chunk per track, tracks in
//! number order, samples in decode order.

use super::bmff::{u32_be, u64_be, write_box, write_full_box};
use super::codec::PackagedTrack;
use super::init_segment::{MOVIE_TIMESCALE, TrackDurations, write_ftyp, write_mvhd, write_trak};
use super::timing::track_samples;
use crate::error::MediaError;
use crate::record::FragmentRecord;

/// The `moov` and `mdat` layout of a clip.
#[derive(Debug)]
pub struct ClipPlan {
    header: Vec<u8>,
    tracks: Vec<PackagedTrack>,
    fragment_count: usize,
    payload_bytes: u64,
}

impl ClipPlan {
    /// `ftyp`, `moov` and the `mdat` box header: the first bytes of the file.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// How many of the planned fragments the clip holds. A clip stops before the first fragment
    /// whose tracks differ from the first fragment's (a codec change needs a new file).
    pub fn fragment_count(&self) -> usize {
        self.fragment_count
    }

    /// The whole file's size in bytes.
    pub fn total_bytes(&self) -> u64 {
        self.header.len() as u64 + self.payload_bytes
    }

    /// The `mdat` bytes one fragment contributes, in the order the `moov` points at them.
    pub fn fragment_payload(&self, record: &FragmentRecord, cluster_body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(cluster_body.len());
        for track in &self.tracks {
            for frame in record.frames.iter().filter(|f| f.track == track.number) {
                out.extend_from_slice(cluster_body.get(frame.data.clone()).unwrap_or_default());
            }
        }
        out
    }
}

/// One sample of a clip track, on the track's timescale.
#[derive(Debug, Clone, Copy)]
struct ClipSample {
    decode_time: i64,
    composition_offset: i32,
    duration: u32,
    size_bytes: u32,
    keyframe: bool,
}

/// A track's samples and the chunks (one per fragment that has samples of it).
#[derive(Debug, Default)]
struct TrackTable {
    samples: Vec<ClipSample>,
    /// (offset in the mdat payload, samples in the chunk).
    chunks: Vec<(u64, u32)>,
}

/// Plans a clip of `records` (consecutive fragments, oldest first) with the tracks of the first.
pub fn plan_clip(records: &[FragmentRecord]) -> Result<ClipPlan, MediaError> {
    let Some(first) = records.first() else {
        return Err(MediaError::Malformed { offset: 0, path: "clip".into(), reason: "a clip needs a fragment" });
    };
    let tracks = super::packaged_tracks(first)?;
    let mut tables: Vec<TrackTable> = tracks.iter().map(|_| TrackTable::default()).collect();
    let mut payload_bytes = 0u64;
    let mut fragment_count = 0;
    for record in records {
        if fragment_count > 0 && super::packaged_tracks(record).ok().as_ref() != Some(&tracks) {
            break;
        }
        fragment_count += 1;
        for (track, table) in tracks.iter().zip(&mut tables) {
            let samples = track_samples(record, track.number, track.timescale());
            if samples.is_empty() {
                continue;
            }
            table.chunks.push((payload_bytes, samples.len() as u32));
            for sample in samples {
                let size_bytes = sample.data.len() as u32;
                payload_bytes += u64::from(size_bytes);
                table.samples.push(ClipSample {
                    decode_time: sample.decode_time,
                    composition_offset: sample.composition_offset,
                    duration: sample.duration,
                    size_bytes,
                    keyframe: sample.keyframe,
                });
            }
        }
    }
    for table in &mut tables {
        join_durations(&mut table.samples);
    }
    // The chunk offsets depend on the header's length (which ends with the mdat header);
    // offsets are fixed-width, so one trial write measures it.
    let trial = write_header(&tracks, &tables, 0, payload_bytes);
    let header = write_header(&tracks, &tables, trial.len() as u64, payload_bytes);
    Ok(ClipPlan { header, tracks, fragment_count, payload_bytes })
}

/// Each sample lasts until the next one's decode time, across fragment boundaries too, so a gap
/// between fragments stays a gap and audio keeps in step with video. The last sample keeps its
/// own duration, as do samples whose successor does not start later (overlapping fragments).
fn join_durations(samples: &mut [ClipSample]) {
    for index in 1..samples.len() {
        let step = samples[index].decode_time - samples[index - 1].decode_time;
        if let Ok(step) = u32::try_from(step)
            && step > 0
        {
            samples[index - 1].duration = step;
        }
    }
}

fn write_header(tracks: &[PackagedTrack], tables: &[TrackTable], payload_base: u64, payload_bytes: u64) -> Vec<u8> {
    let mut out = Vec::new();
    write_ftyp(&mut out, b"isom", &[b"isom", b"iso2", b"mp41", b"avc1"]);
    let clip_start_ms = tracks
        .iter()
        .zip(tables)
        .filter_map(|(track, table)| first_presentation(table).map(|units| to_ms(units, track.timescale())))
        .min()
        .unwrap_or(0);
    let use_co64 = payload_base + payload_bytes > u64::from(u32::MAX);
    let mut movie_ms = 0u32;
    let mut traks = Vec::new();
    for (track, table) in tracks.iter().zip(tables) {
        let Some(first_pts) = first_presentation(table) else { continue };
        let timescale = track.timescale();
        let first_dts = table.samples[0].decode_time;
        let media_units: u64 = table.samples.iter().map(|s| u64::from(s.duration)).sum();
        // The edit starts at the first presented sample; a track that starts later than the clip
        // is delayed by an empty edit so that tracks stay in sync.
        let media_start_units = (first_pts - first_dts).max(0) as u64;
        // Shown from the first presented sample to the end of the last one: with reordered
        // (B-frame) video the last sample in decode order is not the last on screen.
        let last_end = table
            .samples
            .iter()
            .map(|s| s.decode_time + i64::from(s.composition_offset) + i64::from(s.duration))
            .max()
            .unwrap_or(first_pts);
        let shown_ms = to_ms(last_end - first_pts, timescale).max(0) as u64;
        let delay_ms = (to_ms(first_pts, timescale) - clip_start_ms).max(0) as u64;
        let track_ms = clamp_u32(delay_ms + shown_ms);
        movie_ms = movie_ms.max(track_ms);
        let durations = TrackDurations { movie_ms: track_ms, media_units: clamp_u32(media_units) };
        let edts = |trak: &mut Vec<u8>| {
            write_box(trak, b"edts", |edts| {
                let entries = if delay_ms > 0 { 2 } else { 1 };
                write_full_box(edts, b"elst", 0, 0, |b| {
                    u32_be(b, entries);
                    if delay_ms > 0 {
                        u32_be(b, clamp_u32(delay_ms));
                        u32_be(b, u32::MAX); // media time -1: an empty edit
                        u32_be(b, 0x0001_0000);
                    }
                    u32_be(b, clamp_u32(shown_ms));
                    u32_be(b, clamp_u32(media_start_units));
                    u32_be(b, 0x0001_0000); // rate 1.0
                });
            });
        };
        let sample_tables =
            |stbl: &mut Vec<u8>| write_sample_tables(stbl, table, track.is_video(), payload_base, use_co64);
        write_trak(&mut traks, track, durations, edts, sample_tables);
    }
    let next_track_id = tracks.iter().map(|t| t.number as u32).max().unwrap_or(0) + 1;
    write_box(&mut out, b"moov", |moov| {
        write_mvhd(moov, movie_ms, next_track_id);
        moov.extend_from_slice(&traks);
    });
    // mdat header with its size (a 64-bit largesize when the payload does not fit 32 bits).
    if payload_bytes + 8 > u64::from(u32::MAX) {
        u32_be(&mut out, 1);
        out.extend_from_slice(b"mdat");
        u64_be(&mut out, payload_bytes + 16);
    } else {
        u32_be(&mut out, (payload_bytes + 8) as u32);
        out.extend_from_slice(b"mdat");
    }
    out
}

fn write_sample_tables(stbl: &mut Vec<u8>, table: &TrackTable, is_video: bool, payload_base: u64, use_co64: bool) {
    let samples = &table.samples;
    write_full_box(stbl, b"stts", 0, 0, |b| {
        let runs = run_lengths(samples.iter().map(|s| s.duration));
        u32_be(b, runs.len() as u32);
        for (count, duration) in runs {
            u32_be(b, count);
            u32_be(b, duration);
        }
    });
    if samples.iter().any(|s| s.composition_offset != 0) {
        let version = if samples.iter().any(|s| s.composition_offset < 0) { 1 } else { 0 };
        write_full_box(stbl, b"ctts", version, 0, |b| {
            let runs = run_lengths(samples.iter().map(|s| s.composition_offset));
            u32_be(b, runs.len() as u32);
            for (count, offset) in runs {
                u32_be(b, count);
                u32_be(b, offset as u32);
            }
        });
    }
    if is_video && samples.iter().any(|s| !s.keyframe) {
        write_full_box(stbl, b"stss", 0, 0, |b| {
            let keys: Vec<u32> =
                samples.iter().enumerate().filter(|(_, s)| s.keyframe).map(|(i, _)| i as u32 + 1).collect();
            u32_be(b, keys.len() as u32);
            for key in keys {
                u32_be(b, key);
            }
        });
    }
    write_full_box(stbl, b"stsc", 0, 0, |b| {
        let mut entries: Vec<(u32, u32)> = Vec::new();
        for (index, &(_, count)) in table.chunks.iter().enumerate() {
            if entries.last().is_none_or(|&(_, last)| last != count) {
                entries.push((index as u32 + 1, count));
            }
        }
        u32_be(b, entries.len() as u32);
        for (first_chunk, count) in entries {
            u32_be(b, first_chunk);
            u32_be(b, count);
            u32_be(b, 1); // sample description index
        }
    });
    write_full_box(stbl, b"stsz", 0, 0, |b| {
        u32_be(b, 0);
        u32_be(b, samples.len() as u32);
        for sample in samples {
            u32_be(b, sample.size_bytes);
        }
    });
    let kind = if use_co64 { b"co64" } else { b"stco" };
    write_full_box(stbl, kind, 0, 0, |b| {
        u32_be(b, table.chunks.len() as u32);
        for &(offset, _) in &table.chunks {
            if use_co64 {
                u64_be(b, payload_base + offset);
            } else {
                u32_be(b, (payload_base + offset) as u32);
            }
        }
    });
}

fn first_presentation(table: &TrackTable) -> Option<i64> {
    table.samples.iter().map(|s| s.decode_time + i64::from(s.composition_offset)).min()
}

fn to_ms(units: i64, timescale: u32) -> i64 {
    (i128::from(units) * i128::from(MOVIE_TIMESCALE) / i128::from(timescale.max(1))) as i64
}

fn clamp_u32(value: u64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

/// (count, value) runs of equal consecutive values, as stts and ctts store them.
fn run_lengths<T: PartialEq + Copy>(values: impl Iterator<Item = T>) -> Vec<(u32, T)> {
    let mut runs: Vec<(u32, T)> = Vec::new();
    for value in values {
        match runs.last_mut() {
            Some((count, last)) if *last == value => *count += 1,
            _ => runs.push((1, value)),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mkv::Frame;
    use crate::package::tests::h264_track as video_track;
    use crate::tracks_body;

    /// A fragment of `frames` 100 ms apart at `producer_ms`, each frame `size` bytes of `fill`.
    fn fragment(producer_ms: u64, frames: usize, fill: u8) -> (FragmentRecord, Vec<u8>) {
        let mut body = Vec::new();
        let mut index = Vec::new();
        for i in 0..frames {
            let start = body.len();
            body.extend(std::iter::repeat_n(fill + i as u8, 5));
            index.push(Frame {
                track: 1,
                relative_timecode: (i * 100) as i16,
                keyframe: i == 0,
                lacing: 0,
                data: start..body.len(),
            });
        }
        let record = FragmentRecord {
            timecode: 0,
            timecode_scale_ns: 1_000_000,
            producer_ts_ms: producer_ms,
            server_ts_ms: producer_ms,
            duration_ms: frames as u64 * 100,
            tracks_body: tracks_body(&[video_track()]),
            tags: Vec::new(),
            frames: index,
        };
        (record, body)
    }

    fn find_box<'a>(data: &'a [u8], path: &[&[u8; 4]]) -> Option<&'a [u8]> {
        let mut data = data;
        for kind in path {
            let mut at = 0;
            loop {
                let size = u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?) as usize;
                if &data[at + 4..at + 8] == *kind {
                    data = &data[at + 8..at + size];
                    break;
                }
                at += size.max(8);
            }
        }
        Some(data)
    }

    #[test]
    fn chunk_offsets_point_at_each_fragments_payload() {
        let (a, a_body) = fragment(1_000, 3, 10);
        let (b, b_body) = fragment(1_300, 2, 50);
        let plan = plan_clip(&[a.clone(), b.clone()]).expect("plannable");
        assert_eq!(plan.fragment_count(), 2);
        let mut file = plan.header().to_vec();
        file.extend(plan.fragment_payload(&a, &a_body));
        file.extend(plan.fragment_payload(&b, &b_body));
        assert_eq!(file.len() as u64, plan.total_bytes());

        let stbl = find_box(&file, &[b"moov", b"trak", b"mdia", b"minf", b"stbl"]).expect("stbl");
        let stco = find_box(stbl, &[b"stco"]).expect("stco");
        let offsets: Vec<usize> =
            stco[8..].chunks(4).map(|c| u32::from_be_bytes(c.try_into().expect("4 bytes")) as usize).collect();
        assert_eq!(offsets.len(), 2);
        assert_eq!(&file[offsets[0]..offsets[0] + 5], &[10; 5]);
        assert_eq!(&file[offsets[1]..offsets[1] + 5], &[50; 5]);
        let stts = find_box(stbl, &[b"stts"]).expect("stts");
        // Five samples of 100 ms, in one run: the join between the fragments is continuous.
        assert_eq!(&stts[4..], &[0, 0, 0, 1, 0, 0, 0, 5, 0, 0, 0, 100]);
        let stss = find_box(stbl, &[b"stss"]).expect("stss");
        assert_eq!(&stss[4..], &[0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 4]);
    }

    #[test]
    fn a_gap_between_fragments_stays_a_gap() {
        let (a, _) = fragment(1_000, 2, 1);
        let (b, _) = fragment(5_000, 2, 1);
        let plan = plan_clip(&[a, b]).expect("plannable");
        let stts = find_box(plan.header(), &[b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stts"]).expect("stts");
        // 100, then 3,900 to the next fragment, then 100 twice.
        assert_eq!(
            &stts[4..],
            &[0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 100, 0, 0, 0, 1, 0, 0, 0x0f, 0x3c, 0, 0, 0, 2, 0, 0, 0, 100]
        );
    }

    #[test]
    fn the_edit_shows_every_reordered_frame() {
        // Decode order I P B with presentation times 0, 200, 100: the P frame is shown last.
        let (mut record, _) = fragment(1_000, 3, 1);
        for (frame, relative) in record.frames.iter_mut().zip([0i16, 200, 100]) {
            frame.relative_timecode = relative;
        }
        let plan = plan_clip(&[record]).expect("plannable");
        let elst = find_box(plan.header(), &[b"moov", b"trak", b"edts", b"elst"]).expect("elst");
        let segment_ms = u32::from_be_bytes(elst[8..12].try_into().expect("4 bytes"));
        // Three 100 ms frames are on screen from 0 to 300 ms.
        assert_eq!(segment_ms, 300);
    }

    #[test]
    fn a_codec_change_ends_the_clip() {
        let (a, _) = fragment(1_000, 2, 1);
        let (mut b, _) = fragment(1_200, 2, 1);
        let mut changed = video_track();
        changed.codec_private = vec![1, 0x64, 0, 0x28, 0xff, 0xe1, 0];
        b.tracks_body = tracks_body(&[changed]);
        let plan = plan_clip(&[a.clone(), b]).expect("plannable");
        assert_eq!(plan.fragment_count(), 1);
        assert_eq!(plan.total_bytes(), plan.header().len() as u64 + 10);
    }
}
