//! Splits a streamed fragmented MP4 upload (init segment, then `moof`+`mdat` pairs) into the same
//! events as the Matroska splitter, with Cluster bodies written as Matroska SimpleBlocks, so the
//! stored form and every read path are the same for both inputs. Sample bytes are copied once,
//! unchanged (AVC/HEVC samples are length-prefixed in both formats).
//!
//! Fragments are cut at video key frames, not at `moof` boundaries: muxers such as GStreamer's
//! mp4mux write one `moof` per track per period, with the audio of a period arriving before its
//! video. Samples wait in a small pool until the next key frame's time is known; everything
//! earlier (any track) becomes one fragment. Audio-only uploads are cut at every `mdat`.

use std::collections::VecDeque;

use super::boxes::{self, Cursor, children, malformed};
use super::init::{Mp4Track, parse_moov};
use crate::ebml;
use crate::error::MediaError;
use crate::fragmenter::{Event, Limits, MAX_FRAMES_PER_FRAGMENT};
use crate::ids;
use crate::mkv::{Cluster, Frame, SegmentInfo, Track};
use crate::unread::Unread;

/// One sample of a fragment, positioned relative to the start of its `moof`.
#[derive(Debug, Clone, Copy)]
struct Sample {
    track_number: u64,
    dts_ms: i64,
    pts_ms: i64,
    keyframe: bool,
    moof_offset: u64,
    size: u32,
}

/// A sample whose bytes have been taken out of its `mdat`, waiting for its fragment to close.
#[derive(Debug, Clone)]
struct PooledSample {
    track_number: u64,
    dts_ms: i64,
    pts_ms: i64,
    keyframe: bool,
    data: Vec<u8>,
}

/// The streaming fMP4 splitter.
#[derive(Debug)]
pub struct Mp4Fragmenter {
    buf: Unread,
    offset: u64,
    limits: Limits,
    tracks: Vec<Mp4Track>,
    /// The parsed `moof` waiting for its `mdat`: (moof offset, samples).
    pending: Option<(u64, Vec<Sample>)>,
    /// Samples read but not yet in an emitted fragment, and their total size.
    pool: Vec<PooledSample>,
    pool_bytes: u64,
    /// Offset of the first `moof` that contributed to the pool (the fragment's offset).
    pool_offset: u64,
    /// The timecode announced (ClusterStarted) for the fragment being pooled, once its first
    /// sample is in: the fragment's Cluster carries the same timecode, so acks match.
    announced_timecode: Option<u64>,
    queued: VecDeque<Event>,
}

impl Mp4Fragmenter {
    pub fn new(limits: Limits) -> Self {
        Self {
            buf: Unread::default(),
            offset: 0,
            limits,
            tracks: Vec::new(),
            pending: None,
            pool: Vec::new(),
            pool_bytes: 0,
            pool_offset: 0,
            announced_timecode: None,
            queued: VecDeque::new(),
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.push(data);
    }

    pub fn buffered_bytes(&self) -> usize {
        self.buf.len() + self.pool_bytes as usize
    }

    pub fn next_event(&mut self) -> Result<Option<Event>, MediaError> {
        loop {
            if let Some(event) = self.queued.pop_front() {
                return Ok(Some(event));
            }
            let Some((kind, header_len, size)) = boxes::header(&self.buf, self.offset)? else { return Ok(None) };
            let limit = if &kind == b"mdat" { self.limits.max_cluster_bytes } else { self.limits.max_element_bytes };
            if size > limit {
                let path = if &kind == b"mdat" { "mdat/Cluster" } else { "box" };
                return Err(MediaError::TooLarge {
                    offset: self.offset,
                    path: path.into(),
                    size_bytes: size,
                    limit_bytes: limit,
                });
            }
            let size = size as usize;
            if self.buf.len() < size {
                return Ok(None);
            }
            let box_offset = self.offset;
            let payload: Vec<u8> = self.buf[header_len..size].to_vec();
            self.buf.consume(size);
            self.offset += size as u64;
            let payload_at = box_offset + header_len as u64;
            match &kind {
                b"moov" => {
                    self.tracks = parse_moov(&payload, payload_at)?;
                    if self.tracks.is_empty() || self.tracks.len() > 126 {
                        return Err(malformed(box_offset, &kind, "moov must describe 1 to 126 tracks"));
                    }
                    let (tracks, tracks_body) = self.matroska_tracks();
                    self.queued.push_back(Event::Tracks { info: SegmentInfo::default(), tracks, tracks_body });
                }
                b"moof" => {
                    if self.pending.is_some() {
                        return Err(malformed(box_offset, &kind, "a second moof before the mdat of the first"));
                    }
                    if self.tracks.is_empty() {
                        return Err(malformed(box_offset, &kind, "moof before the init segment"));
                    }
                    let samples = self.parse_moof(&payload, payload_at, box_offset)?;
                    self.pending = Some((box_offset, samples));
                }
                b"mdat" => {
                    let Some((moof_offset, samples)) = self.pending.take() else {
                        return Err(malformed(box_offset, &kind, "mdat without a moof"));
                    };
                    let pooled = take_samples(moof_offset, &samples, &payload, payload_at)?;
                    self.add_to_pool(moof_offset, pooled)?;
                }
                // ftyp, styp, sidx, free, skip, mfra, prft, emsg, ...: nothing to store.
                _ => {}
            }
        }
    }

    pub fn finish(&mut self) -> Result<Option<Event>, MediaError> {
        if let Some(event) = self.next_event()? {
            return Ok(Some(event));
        }
        if self.pending.is_some() || !self.buf.is_empty() {
            return Err(MediaError::Malformed {
                offset: self.offset,
                path: "mp4".into(),
                reason: "input ended inside a fragment",
            });
        }
        if !self.pool.is_empty() {
            self.emit_before(i64::MAX)?;
            return Ok(self.queued.pop_front());
        }
        Ok(None)
    }

    fn has_video(&self) -> bool {
        self.tracks.iter().any(|t| t.is_video)
    }

    fn is_video_track(&self, track_number: u64) -> bool {
        self.tracks.get((track_number as usize).wrapping_sub(1)).is_some_and(|t| t.is_video)
    }

    /// Adds one `mdat`'s samples; each video key frame first closes the fragment before it.
    fn add_to_pool(&mut self, moof_offset: u64, samples: Vec<PooledSample>) -> Result<(), MediaError> {
        if self.pool.is_empty() {
            self.pool_offset = moof_offset;
        }
        let video = self.has_video();
        for sample in samples {
            let starts_fragment = sample.keyframe
                && self.is_video_track(sample.track_number)
                && self.pool.iter().any(|p| p.dts_ms < sample.dts_ms && self.is_video_track(p.track_number));
            if starts_fragment {
                self.emit_before(sample.dts_ms)?;
                self.pool_offset = moof_offset;
            }
            self.pool_bytes += sample.data.len() as u64;
            self.pool.push(sample);
            if self.announced_timecode.is_none() {
                // Announced as soon as the fragment's first samples are in, so BUFFERING and the
                // server timestamp describe this fragment, not the one before it.
                let timecode = self.pool.iter().map(|s| s.pts_ms.min(s.dts_ms)).min().unwrap_or(0).max(0) as u64;
                self.announced_timecode = Some(timecode);
                self.queued.push_back(Event::ClusterStarted { offset: self.pool_offset, timecode });
            }
        }
        if self.pool.len() > 2 * MAX_FRAMES_PER_FRAGMENT {
            return Err(malformed(self.pool_offset, b"moof", "more samples than a fragment may hold"));
        }
        if self.pool_bytes > self.limits.max_cluster_bytes {
            return Err(MediaError::TooLarge {
                offset: self.pool_offset,
                path: "moof/Cluster".into(),
                size_bytes: self.pool_bytes,
                limit_bytes: self.limits.max_cluster_bytes,
            });
        }
        if !video {
            self.emit_before(i64::MAX)?;
        }
        Ok(())
    }

    /// Emits every pooled sample decoded before `cut_ms` as one fragment.
    fn emit_before(&mut self, cut_ms: i64) -> Result<(), MediaError> {
        let (mut fragment, rest): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.pool).into_iter().partition(|s| s.dts_ms < cut_ms);
        self.pool = rest;
        self.pool_bytes = self.pool.iter().map(|s| s.data.len() as u64).sum();
        if fragment.is_empty() {
            return Ok(());
        }
        fragment.sort_by_key(|s| (s.dts_ms, s.track_number));
        let earliest = || fragment.iter().map(|s| s.pts_ms.min(s.dts_ms)).min().unwrap_or(0).max(0) as u64;
        let timecode = match self.announced_timecode.take() {
            Some(timecode) => timecode,
            None => {
                let timecode = earliest();
                self.queued.push_back(Event::ClusterStarted { offset: self.pool_offset, timecode });
                timecode
            }
        };
        let cluster = build_cluster(self.pool_offset, &fragment, timecode)?;
        self.queued.push_back(Event::Cluster(cluster));
        Ok(())
    }

    fn matroska_tracks(&self) -> (Vec<Track>, Vec<u8>) {
        let tracks: Vec<Track> = self
            .tracks
            .iter()
            .enumerate()
            .map(|(index, t)| Track {
                number: index as u64 + 1,
                uid: index as u64 + 1,
                track_type: if t.is_video { 1 } else { 2 },
                codec_id: t.codec_id(),
                codec_private: t.codec_private.clone(),
                pixel_width: t.is_video.then_some(u64::from(t.width)),
                pixel_height: t.is_video.then_some(u64::from(t.height)),
                sampling_frequency_hz: (!t.is_video).then_some(f64::from(t.sample_rate_hz)),
                channels: (!t.is_video).then_some(u64::from(t.channels)),
                ..Track::default()
            })
            .collect();
        let body = crate::writer::tracks_body(&tracks);
        (tracks, body)
    }

    /// Reads every traf of a moof into samples (ISO/IEC 14496-12 §8.8.7 tfhd, §8.8.12 tfdt, §8.8.8 trun).
    fn parse_moof(&self, moof: &[u8], at: u64, moof_offset: u64) -> Result<Vec<Sample>, MediaError> {
        let mut samples = Vec::new();
        // Where the previous traf's data ended: the implicit base of the next traf (§8.8.7.1).
        let mut previous_traf_end: Option<u64> = None;
        for (kind, traf, traf_at) in children(moof, at)? {
            if &kind != b"traf" {
                continue;
            }
            let parts = children(traf, traf_at)?;
            let Some((_, tfhd, tfhd_at)) = parts.iter().find(|(k, _, _)| k == b"tfhd") else {
                return Err(malformed(traf_at, b"traf", "traf without tfhd"));
            };
            let mut c = Cursor::new(tfhd, *tfhd_at, *b"tfhd");
            let (_, flags) = c.version_flags()?;
            let track_id = c.u32()?;
            let Some(index) = self.tracks.iter().position(|t| t.track_id == track_id) else {
                return Err(malformed(*tfhd_at, b"tfhd", "fragment for a track the init segment does not describe"));
            };
            let track = &self.tracks[index];
            // Without base-data-offset, offsets count from the moof for the first traf (and for
            // every traf with default-base-is-moof), else from where the previous traf's data ended.
            let base = if flags & 0x01 != 0 {
                c.u64()?.saturating_sub(moof_offset)
            } else if flags & 0x02_0000 != 0 {
                0
            } else {
                previous_traf_end.unwrap_or(0)
            };
            if flags & 0x02 != 0 {
                c.u32()?;
            }
            let default_duration = if flags & 0x08 != 0 { c.u32()? } else { track.default_duration };
            let default_size = if flags & 0x10 != 0 { c.u32()? } else { track.default_size };
            let default_flags = if flags & 0x20 != 0 { c.u32()? } else { track.default_flags };
            let mut dts = match parts.iter().find(|(k, _, _)| k == b"tfdt") {
                Some((_, tfdt, tfdt_at)) => {
                    let mut c = Cursor::new(tfdt, *tfdt_at, *b"tfdt");
                    let (version, _) = c.version_flags()?;
                    if version == 1 { c.u64()? } else { u64::from(c.u32()?) }
                }
                None => 0,
            };
            let mut next_offset = base;
            for (_, trun, trun_at) in parts.iter().filter(|(k, _, _)| k == b"trun") {
                let mut c = Cursor::new(trun, *trun_at, *b"trun");
                let (version, flags) = c.version_flags()?;
                let count = c.u32()?;
                if count as usize > trun.len() || samples.len() + count as usize > MAX_FRAMES_PER_FRAGMENT {
                    return Err(malformed(*trun_at, b"trun", "more samples than the box can describe"));
                }
                if flags & 0x01 != 0 {
                    next_offset = base.wrapping_add(c.u32()? as i32 as i64 as u64);
                }
                let first_flags = if flags & 0x04 != 0 { Some(c.u32()?) } else { None };
                for i in 0..count {
                    let duration = if flags & 0x100 != 0 { c.u32()? } else { default_duration };
                    let size = if flags & 0x200 != 0 { c.u32()? } else { default_size };
                    let sample_flags = match (i, first_flags) {
                        (0, Some(f)) => f,
                        _ if flags & 0x400 != 0 => c.u32()?,
                        _ => default_flags,
                    };
                    if i == 0 && first_flags.is_some() && flags & 0x400 != 0 {
                        c.u32()?;
                    }
                    let cto = if flags & 0x800 != 0 {
                        let raw = c.u32()?;
                        if version == 0 { i64::from(raw) } else { i64::from(raw as i32) }
                    } else {
                        0
                    };
                    let to_ms = |t: i64| (i128::from(t) * 1000 / i128::from(track.timescale)) as i64;
                    let dts_i = dts as i64;
                    samples.push(Sample {
                        track_number: index as u64 + 1,
                        dts_ms: to_ms(dts_i),
                        pts_ms: to_ms(dts_i.saturating_add(cto)),
                        // sample_is_non_sync_sample (§8.8.3.1); audio samples are all sync samples.
                        keyframe: !track.is_video || sample_flags & 0x0001_0000 == 0,
                        moof_offset: next_offset,
                        size,
                    });
                    dts = dts.wrapping_add(u64::from(duration));
                    next_offset = next_offset.wrapping_add(u64::from(size));
                }
            }
            previous_traf_end = Some(next_offset);
        }
        samples.sort_by_key(|s| (s.dts_ms, s.track_number));
        Ok(samples)
    }
}

/// Copies each sample's bytes out of its `mdat`.
fn take_samples(
    moof_offset: u64,
    samples: &[Sample],
    mdat: &[u8],
    mdat_at: u64,
) -> Result<Vec<PooledSample>, MediaError> {
    samples
        .iter()
        .map(|sample| {
            let start =
                moof_offset.checked_add(sample.moof_offset).and_then(|p| p.checked_sub(mdat_at)).map(|s| s as usize);
            let range =
                start.and_then(|s| Some(s..s.checked_add(sample.size as usize)?)).filter(|r| r.end <= mdat.len());
            let Some(range) = range else {
                return Err(MediaError::Malformed {
                    offset: mdat_at,
                    path: "mdat".into(),
                    reason: "sample outside its mdat",
                });
            };
            Ok(PooledSample {
                track_number: sample.track_number,
                dts_ms: sample.dts_ms,
                pts_ms: sample.pts_ms,
                keyframe: sample.keyframe,
                data: mdat[range].to_vec(),
            })
        })
        .collect()
}

fn build_cluster(offset: u64, samples: &[PooledSample], timecode: u64) -> Result<Cluster, MediaError> {
    let mut body = Vec::with_capacity(samples.iter().map(|s| s.data.len() + 16).sum::<usize>() + 16);
    ebml::write_uint(&mut body, ids::TIMECODE, timecode);
    let mut frames = Vec::with_capacity(samples.len());
    for sample in samples {
        let relative =
            i16::try_from(sample.pts_ms.saturating_sub(timecode as i64)).map_err(|_| MediaError::Malformed {
                offset,
                path: "moof".into(),
                reason: "sample time more than 32 s from the fragment start",
            })?;
        crate::writer::write_simple_block(
            &mut body,
            sample.track_number as u8,
            relative,
            sample.keyframe,
            &sample.data,
        );
        let end = body.len();
        frames.push(Frame {
            track: sample.track_number,
            relative_timecode: relative,
            keyframe: sample.keyframe,
            lacing: 0,
            data: end - sample.data.len()..end,
        });
    }
    Ok(Cluster { offset, timecode, frames, body })
}
