//! One stored fragment as an MPEG-2 transport stream segment (ISO/IEC 13818-1) for HLS with
//! ContainerFormat MPEG_TS: every track multiplexed into one segment, as TS players expect.
//!
//! Each segment opens with a PAT and a PMT, so it decodes on its own. Video access units become
//! Annex B byte streams (an access unit delimiter first; the parameter sets from the avcC/hvcC
//! record before every key frame); AAC frames get ADTS headers built from the
//! AudioSpecificConfig. Times are the producer clock on the 90 kHz timeline (33 bits, wrapping
//! as TS does); the video PID carries the PCR.

use super::annex_b::AnnexB;
use super::codec::{Codec, PackagedTrack};
use super::timing::track_samples;
use crate::record::FragmentRecord;

const PACKET_BYTES: usize = 188;
const PAYLOAD_BYTES: usize = 184;
const PMT_PID: u16 = 0x1000;
const FIRST_ES_PID: u16 = 0x100;
const TIMESCALE_90K: u32 = 90_000;
const PTS_MASK: u64 = (1 << 33) - 1;

/// Writes `record` (all of `tracks`) as a transport stream.
pub fn write_ts_segment(record: &FragmentRecord, cluster_body: &[u8], tracks: &[PackagedTrack]) -> Vec<u8> {
    let mut out = Vec::with_capacity(cluster_body.len() + cluster_body.len() / 10 + 1024);
    let streams: Vec<Stream> = tracks.iter().enumerate().map(|(index, track)| Stream::new(track, index)).collect();
    let pcr_pid = streams.iter().find(|s| s.track.is_video()).or(streams.first()).map_or(FIRST_ES_PID, |s| s.pid);
    let mut counters = vec![0u8; streams.len()];
    write_section_packet(&mut out, 0, &pat());
    write_section_packet(&mut out, PMT_PID, &pmt(&streams, pcr_pid));

    // Every sample of every track, interleaved by decode time.
    let mut samples: Vec<(i64, usize, super::timing::TimedSample)> = Vec::new();
    for (index, stream) in streams.iter().enumerate() {
        for sample in track_samples(record, stream.track.number, TIMESCALE_90K) {
            samples.push((sample.decode_time, index, sample));
        }
    }
    samples.sort_by_key(|(decode_time, index, _)| (*decode_time, *index));
    for (decode_time, index, sample) in samples {
        let stream = &streams[index];
        let data = cluster_body.get(sample.data.clone()).unwrap_or_default();
        let presentation_time = decode_time + i64::from(sample.composition_offset);
        let elementary = stream.elementary_unit(data, sample.keyframe);
        let pes = pes_packet(stream, &elementary, presentation_time as u64, decode_time as u64);
        let pcr = (stream.pid == pcr_pid).then_some(decode_time as u64);
        write_pes_packets(
            &mut out,
            stream.pid,
            &mut counters[index],
            &pes,
            pcr,
            sample.keyframe && stream.track.is_video(),
        );
    }
    out
}

/// A track's place in the transport stream.
struct Stream<'a> {
    track: &'a PackagedTrack,
    pid: u16,
    /// Video samples as Annex B (None for audio).
    annex_b: Option<AnnexB>,
}

impl<'a> Stream<'a> {
    fn new(track: &'a PackagedTrack, index: usize) -> Stream<'a> {
        Stream { track, pid: FIRST_ES_PID + index as u16, annex_b: AnnexB::for_track(track) }
    }

    fn stream_type(&self) -> u8 {
        match self.track.codec {
            Codec::Avc => 0x1B,
            Codec::Hevc => 0x24,
            Codec::Aac => 0x0F,
        }
    }

    fn stream_id(&self) -> u8 {
        if self.track.is_video() { 0xE0 } else { 0xC0 }
    }

    /// The sample as the elementary stream carries it.
    fn elementary_unit(&self, data: &[u8], keyframe: bool) -> Vec<u8> {
        match &self.annex_b {
            Some(annex_b) => annex_b.access_unit(data, keyframe, true),
            None => {
                let mut out = adts_header(&self.track.config, data.len());
                out.extend_from_slice(data);
                out
            }
        }
    }
}

/// A 7-byte ADTS header (no CRC) for one AAC frame of `payload_len` bytes (ISO/IEC 13818-7 §6.2).
fn adts_header(audio_specific_config: &[u8], payload_len: usize) -> Vec<u8> {
    let object_type = audio_specific_config.first().map_or(2, |b| b >> 3).clamp(1, 4);
    let frequency_index = match audio_specific_config {
        [a, b, ..] => (a & 0x07) << 1 | b >> 7,
        _ => 3,
    };
    let channels = audio_specific_config.get(1).map_or(2, |b| (b >> 3) & 0x0F);
    let frame_len = payload_len + 7;
    vec![
        0xFF,
        0xF1, // MPEG-4, layer 0, no CRC
        (object_type - 1) << 6 | (frequency_index & 0x0F) << 2 | (channels >> 2) & 0x01,
        (channels & 0x03) << 6 | ((frame_len >> 11) & 0x03) as u8,
        (frame_len >> 3) as u8,
        ((frame_len & 0x07) << 5) as u8 | 0x1F,
        0xFC,
    ]
}

fn pes_packet(stream: &Stream, payload: &[u8], pts_90k: u64, dts_90k: u64) -> Vec<u8> {
    let with_dts = stream.track.is_video() && pts_90k != dts_90k;
    let header_data_len = if with_dts { 10 } else { 5 };
    let mut out = Vec::with_capacity(payload.len() + 19);
    out.extend_from_slice(&[0, 0, 1, stream.stream_id()]);
    // A video PES may leave its length unbounded (0); audio PES are always short enough.
    let length = payload.len() + 3 + header_data_len;
    let declared = if stream.track.is_video() || length > usize::from(u16::MAX) { 0 } else { length as u16 };
    out.extend_from_slice(&declared.to_be_bytes());
    out.push(0x80); // marker bits '10', no scrambling, no priority
    out.push(if with_dts { 0xC0 } else { 0x80 });
    out.push(header_data_len as u8);
    write_timestamp(&mut out, if with_dts { 0x3 } else { 0x2 }, pts_90k);
    if with_dts {
        write_timestamp(&mut out, 0x1, dts_90k);
    }
    out.extend_from_slice(payload);
    out
}

/// A 33-bit PTS/DTS in the 5-byte PES form, with its 4-bit prefix.
fn write_timestamp(out: &mut Vec<u8>, prefix: u8, time_90k: u64) {
    let t = time_90k & PTS_MASK;
    out.push(prefix << 4 | ((t >> 29) as u8 & 0x0E) | 1);
    out.push((t >> 22) as u8);
    out.push(((t >> 14) as u8 & 0xFE) | 1);
    out.push((t >> 7) as u8);
    out.push(((t << 1) as u8 & 0xFE) | 1);
}

/// Splits a PES packet into TS packets; the first carries the PCR (and the random access flag
/// on key frames) in its adaptation field, the last is padded with adaptation-field stuffing.
fn write_pes_packets(
    out: &mut Vec<u8>,
    pid: u16,
    counter: &mut u8,
    pes: &[u8],
    pcr_90k: Option<u64>,
    random_access: bool,
) {
    let mut rest = pes;
    let mut first = true;
    while !rest.is_empty() || first {
        let mut adaptation = Vec::new();
        if first && (pcr_90k.is_some() || random_access) {
            let mut flags = 0u8;
            if random_access {
                flags |= 0x40;
            }
            let mut fields = Vec::new();
            if let Some(pcr) = pcr_90k {
                flags |= 0x10;
                let base = pcr & PTS_MASK;
                fields.extend_from_slice(&[
                    (base >> 25) as u8,
                    (base >> 17) as u8,
                    (base >> 9) as u8,
                    (base >> 1) as u8,
                    ((base & 1) as u8) << 7 | 0x7E,
                    0,
                ]);
            }
            adaptation.push(flags);
            adaptation.extend(fields);
        }
        let room = PAYLOAD_BYTES - if adaptation.is_empty() { 0 } else { 1 + adaptation.len() };
        let take = rest.len().min(room);
        if take < room {
            // Stuffing: grow (or create) the adaptation field so the packet is exactly full.
            let missing = room - take;
            if adaptation.is_empty() {
                // One byte of length alone when a single byte is missing; else length + flags + 0xFF…
                if missing >= 2 {
                    adaptation.push(0);
                    adaptation.extend(std::iter::repeat_n(0xFF, missing - 2));
                }
                write_packet_header(out, pid, first, counter, true);
                out.push(adaptation.len() as u8);
                out.extend_from_slice(&adaptation);
            } else {
                adaptation.extend(std::iter::repeat_n(0xFF, missing));
                write_packet_header(out, pid, first, counter, true);
                out.push(adaptation.len() as u8);
                out.extend_from_slice(&adaptation);
            }
        } else {
            write_packet_header(out, pid, first, counter, !adaptation.is_empty());
            if !adaptation.is_empty() {
                out.push(adaptation.len() as u8);
                out.extend_from_slice(&adaptation);
            }
        }
        out.extend_from_slice(&rest[..take]);
        rest = &rest[take..];
        first = false;
    }
}

fn write_packet_header(out: &mut Vec<u8>, pid: u16, unit_start: bool, counter: &mut u8, adaptation: bool) {
    out.push(0x47);
    out.push(u8::from(unit_start) << 6 | (pid >> 8) as u8 & 0x1F);
    out.push(pid as u8);
    out.push(if adaptation { 0x30 } else { 0x10 } | (*counter & 0x0F));
    *counter = counter.wrapping_add(1) & 0x0F;
}

/// A PSI section in one packet (pointer field 0, then 0xFF padding).
fn write_section_packet(out: &mut Vec<u8>, pid: u16, section: &[u8]) {
    let mut counter = 0;
    write_packet_header(out, pid, true, &mut counter, false);
    out.push(0);
    out.extend_from_slice(section);
    out.extend(std::iter::repeat_n(0xFF, PACKET_BYTES - 5 - section.len()));
}

fn pat() -> Vec<u8> {
    let mut body = vec![0x00, 0x01, 0xC1, 0x00, 0x00]; // transport stream id 1, version 0, current
    body.extend_from_slice(&[0x00, 0x01]); // program 1
    body.extend_from_slice(&(0xE000 | PMT_PID).to_be_bytes());
    section(0x00, &body)
}

fn pmt(streams: &[Stream], pcr_pid: u16) -> Vec<u8> {
    let mut body = vec![0x00, 0x01, 0xC1, 0x00, 0x00]; // program 1, version 0, current
    body.extend_from_slice(&(0xE000 | pcr_pid).to_be_bytes());
    body.extend_from_slice(&[0xF0, 0x00]); // no program descriptors
    for stream in streams {
        body.push(stream.stream_type());
        body.extend_from_slice(&(0xE000 | stream.pid).to_be_bytes());
        body.extend_from_slice(&[0xF0, 0x00]);
    }
    section(0x02, &body)
}

/// table id, section syntax + length, body, CRC-32/MPEG-2.
fn section(table_id: u8, body: &[u8]) -> Vec<u8> {
    let length = body.len() + 4;
    let mut out = vec![table_id, 0xB0 | (length >> 8) as u8 & 0x0F, length as u8];
    out.extend_from_slice(body);
    let crc = crc32_mpeg2(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 { crc << 1 ^ 0x04C1_1DB7 } else { crc << 1 };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pat_has_the_known_crc() {
        // The PAT every single-program muxer writes for program 1 on PID 0x1000 (ffmpeg's too).
        let pat = pat();
        assert_eq!(
            &pat[..],
            &[0x00, 0xB0, 0x0D, 0x00, 0x01, 0xC1, 0x00, 0x00, 0x00, 0x01, 0xF0, 0x00, 0x2A, 0xB1, 0x04, 0xB2]
        );
    }

    #[test]
    fn timestamps_round_trip_through_the_pes_form() {
        for t in [0u64, 1, 90_000, (1 << 32) + 12_345, PTS_MASK] {
            let mut out = Vec::new();
            write_timestamp(&mut out, 2, t);
            let back = (u64::from(out[0] >> 1 & 0x07) << 30)
                | (u64::from(out[1]) << 22)
                | (u64::from(out[2] >> 1) << 15)
                | (u64::from(out[3]) << 7)
                | u64::from(out[4] >> 1);
            assert_eq!(back, t);
            assert_eq!(out[0] >> 4, 2);
        }
    }

    #[test]
    fn pes_packets_fill_whole_ts_packets_with_counters() {
        for len in [0usize, 1, 2, 170, 183, 184, 185, 1000] {
            let mut out = Vec::new();
            let mut counter = 14;
            let pes = vec![0xAB; len + 14];
            write_pes_packets(&mut out, 0x100, &mut counter, &pes, Some(900_000), true);
            assert_eq!(out.len() % PACKET_BYTES, 0, "pes of {len}");
            let packets: Vec<&[u8]> = out.chunks(PACKET_BYTES).collect();
            let mut payload = Vec::new();
            for (index, packet) in packets.iter().enumerate() {
                assert_eq!(packet[0], 0x47);
                assert_eq!(packet[1] & 0x40 != 0, index == 0);
                assert_eq!(packet[3] & 0x0F, ((14 + index) % 16) as u8);
                let start = if packet[3] & 0x20 != 0 { 5 + usize::from(packet[4]) } else { 4 };
                payload.extend_from_slice(&packet[start..]);
            }
            assert_eq!(payload, pes, "the PES survives packetisation");
        }
    }

    #[test]
    fn adts_headers_carry_profile_rate_channels_and_length() {
        // AAC-LC, 48 kHz (index 3), stereo: AudioSpecificConfig 0x11 0x90.
        let header = adts_header(&[0x11, 0x90], 100);
        assert_eq!(header[..2], [0xFF, 0xF1]);
        assert_eq!(header[2] >> 6, 1, "profile LC");
        assert_eq!(header[2] >> 2 & 0x0F, 3, "48 kHz");
        let channels = (header[2] & 1) << 2 | header[3] >> 6;
        assert_eq!(channels, 2);
        let frame_len = usize::from(header[3] & 3) << 11 | usize::from(header[4]) << 3 | usize::from(header[5] >> 5);
        assert_eq!(frame_len, 107);
    }
}

#[cfg(test)]
mod properties {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;
    use crate::mkv::Frame;
    use crate::{Track, tracks_body};

    /// Per PID: the PES packets (payload after the PES header) and their PTS, read back the way
    /// a demuxer reads them, checking sync bytes and continuity counters on the way.
    fn demux(ts: &[u8]) -> HashMap<u16, Vec<(u64, Vec<u8>)>> {
        assert_eq!(ts.len() % PACKET_BYTES, 0);
        let mut counters: HashMap<u16, u8> = HashMap::new();
        let mut out: HashMap<u16, Vec<(u64, Vec<u8>)>> = HashMap::new();
        for packet in ts.chunks(PACKET_BYTES) {
            assert_eq!(packet[0], 0x47);
            let pid = u16::from(packet[1] & 0x1F) << 8 | u16::from(packet[2]);
            let counter = packet[3] & 0x0F;
            if let Some(previous) = counters.insert(pid, counter) {
                assert_eq!(counter, (previous + 1) & 0x0F, "continuity on PID {pid}");
            }
            if pid == 0 || pid == PMT_PID {
                continue;
            }
            let start = if packet[3] & 0x20 != 0 { 5 + usize::from(packet[4]) } else { 4 };
            let payload = &packet[start..];
            let pes = out.entry(pid).or_default();
            if packet[1] & 0x40 != 0 {
                assert_eq!(&payload[..3], &[0, 0, 1]);
                let header_len = usize::from(payload[8]);
                let p = &payload[9..14];
                let pts = (u64::from(p[0] >> 1 & 0x07) << 30)
                    | (u64::from(p[1]) << 22)
                    | (u64::from(p[2] >> 1) << 15)
                    | (u64::from(p[3]) << 7)
                    | u64::from(p[4] >> 1);
                pes.push((pts, payload[9 + header_len..].to_vec()));
            } else {
                pes.last_mut().expect("a continuation follows a start").1.extend_from_slice(payload);
            }
        }
        out
    }

    proptest! {
        #[test]
        fn every_frame_comes_back_in_its_own_pes_with_its_time(
            sizes in proptest::collection::vec(1usize..3_000, 1..40),
            producer_ms in 1_600_000_000_000u64..1_900_000_000_000,
        ) {
            let track = Track {
                number: 1,
                uid: 1,
                track_type: 1,
                codec_id: "V_MPEG4/ISO/AVC".into(),
                codec_private: vec![1, 0x64, 0, 0x1F, 0xFF, 0xE1, 0, 3, 0x67, 1, 2, 1, 0, 2, 0x68, 9],
                ..Track::default()
            };
            let mut body = Vec::new();
            let mut frames = Vec::new();
            for (index, &size) in sizes.iter().enumerate() {
                let start = body.len();
                // One NAL unit of `size` bytes behind a 4-byte length.
                body.extend_from_slice(&(size as u32).to_be_bytes());
                body.extend(std::iter::repeat_n(0x41, size));
                frames.push(Frame { track: 1, relative_timecode: (index * 40) as i16, keyframe: index == 0, lacing: 0, data: start..body.len() });
            }
            let record = FragmentRecord {
                timecode: 0,
                timecode_scale_ns: 1_000_000,
                producer_ts_ms: producer_ms,
                server_ts_ms: producer_ms,
                duration_ms: sizes.len() as u64 * 40,
                tracks_body: tracks_body(&[track]),
                tags: Vec::new(),
                frames,
            };
            let tracks = crate::package::packaged_tracks(&record).expect("packageable");
            let ts = write_ts_segment(&record, &body, &tracks);
            let pes = demux(&ts).remove(&FIRST_ES_PID).expect("video PES");
            prop_assert_eq!(pes.len(), sizes.len());
            for (index, ((pts, payload), &size)) in pes.iter().zip(&sizes).enumerate() {
                prop_assert_eq!(*pts, ((producer_ms + index as u64 * 40) * 90) & PTS_MASK);
                let parameter_sets = if index == 0 { 13 } else { 0 };
                // AUD (6 bytes), parameter sets before the key frame, start code + NAL unit.
                prop_assert_eq!(payload.len(), 6 + parameter_sets + 4 + size);
                prop_assert_eq!(&payload[..6], &[0, 0, 0, 1, 0x09, 0xF0]);
                prop_assert!(payload[6 + parameter_sets + 4..].iter().all(|&b| b == 0x41));
            }
        }
    }
}
