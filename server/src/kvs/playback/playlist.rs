//! HLS playlist text (RFC 8216): the master playlist (video variant with CODECS and RESOLUTION,
//! an audio rendition for an audio track) and fMP4 media playlists, with fragment metadata as
//! EXT-X-DATERANGE entries.

use std::fmt::Write as _;

use framelog_media::FragmentRecord;
use framelog_media::package::PackagedTrack;

use super::session::{Discontinuity, Mode, Session};
use super::window::WindowFragment;
pub use crate::civil_date::iso8601;

/// A stable number for a fragment's codec configuration: init segment URLs change when it does.
pub fn config_sequence(record: &FragmentRecord) -> u32 {
    // FNV-1a: tiny, stable across builds and platforms.
    record.tracks_body.iter().fold(0x811C_9DC5u32, |hash, &b| (hash ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

fn quoted(text: &str) -> String {
    text.replace(['"', '\n', '\r'], "'")
}

pub fn master(token: &str, mpeg_ts: bool, tracks: &[PackagedTrack], fragments: &[WindowFragment]) -> String {
    let bandwidth = super::window::bandwidth_bps(fragments);
    let video = tracks.iter().find(|t| t.is_video());
    let audio = tracks.iter().find(|t| !t.is_video());
    let media_uri =
        |track: &PackagedTrack| format!("getHLSMediaPlaylist.m3u8?SessionToken={token}&TrackNumber={}", track.number);
    if mpeg_ts {
        // TS segments multiplex every track: one variant, no separate audio rendition.
        let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n");
        let codecs: Vec<String> = tracks.iter().map(PackagedTrack::codecs_string).collect();
        let _ = write!(out, "#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},CODECS=\"{}\"", codecs.join(","));
        if let Some(video) = video.filter(|v| v.width > 0 && v.height > 0) {
            let _ = write!(out, ",RESOLUTION={}x{}", video.width, video.height);
        }
        if let Some(first) = video.or(audio) {
            let _ = writeln!(out, "\n{}", media_uri(first));
        }
        return out;
    }
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    match (video, audio) {
        (Some(video), audio) => {
            let mut codecs = video.codecs_string();
            if let Some(audio) = audio {
                codecs.push(',');
                codecs.push_str(&audio.codecs_string());
                let _ = writeln!(
                    out,
                    "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio\",AUTOSELECT=YES,DEFAULT=YES,URI=\"{}\"",
                    media_uri(audio)
                );
            }
            let _ = write!(out, "#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},CODECS=\"{codecs}\"");
            if video.width > 0 && video.height > 0 {
                let _ = write!(out, ",RESOLUTION={}x{}", video.width, video.height);
            }
            if audio.is_some() {
                out.push_str(",AUDIO=\"audio\"");
            }
            let _ = writeln!(out, "\n{}", media_uri(video));
        }
        (None, Some(audio)) => {
            let _ = writeln!(out, "#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},CODECS=\"{}\"", audio.codecs_string());
            let _ = writeln!(out, "{}", media_uri(audio));
        }
        (None, None) => {}
    }
    out
}

/// How long this track of the fragment plays (the fragment's own length counts every track).
fn track_duration_s(fragment: &WindowFragment, track_number: u64) -> f64 {
    let samples = framelog_media::package::track_samples(&fragment.record, track_number, 1000);
    match (samples.first(), samples.iter().map(|s| s.decode_time + i64::from(s.duration)).max()) {
        (Some(first), Some(end)) => (end - first.decode_time).max(0) as f64 / 1000.0,
        _ => fragment.record.duration_ms as f64 / 1000.0,
    }
}

pub fn media(
    token: &str,
    track_number: u64,
    session: &Session,
    fragments: &[WindowFragment],
    complete: bool,
) -> String {
    let mut out = media_header(session, fragments);
    let mut previous: Option<&WindowFragment> = None;
    // The fragment whose codec configuration is in force: its init segment URL stays the same
    // (and cacheable) until the configuration changes.
    let mut config_origin: Option<&WindowFragment> = None;
    for fragment in fragments {
        let config_changed = previous.is_none_or(|p| config_sequence(&p.record) != config_sequence(&fragment.record));
        if config_changed {
            config_origin = Some(fragment);
        }
        let origin = config_origin.unwrap_or(fragment);
        let discontinuity =
            discontinuity_before(session.discontinuity, previous.map(|p| &p.record), &fragment.record, config_changed);
        if discontinuity {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if !session.mpeg_ts && (config_changed || discontinuity) {
            let _ = writeln!(
                out,
                "#EXT-X-MAP:URI=\"getMP4InitFragment.mp4?SessionToken={token}&TrackNumber={track_number}&SequenceNumber={}&FragmentNumber={}\"",
                config_sequence(&origin.record),
                origin.number
            );
        }
        write_metadata(&mut out, session, &fragment.number, &fragment.record);
        write_segment(&mut out, token, track_number, session, fragment);
        previous = Some(fragment);
    }
    if complete {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

/// The media playlist's tags before its first segment.
fn media_header(session: &Session, fragments: &[WindowFragment]) -> String {
    let target_s = fragments.iter().map(|f| f.record.duration_ms.div_ceil(1000)).max().unwrap_or(1).max(1);
    let first_seq = if session.mode == Mode::Live { fragments.first().map_or(0, |f| f.seq) } else { 0 };
    let version = if session.mpeg_ts { 3 } else { 7 };
    let mut out = format!("#EXTM3U\n#EXT-X-VERSION:{version}\n");
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target_s}");
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{first_seq}");
    if session.discontinuity == Discontinuity::Always {
        // Every segment opens with a discontinuity, so the count before the window is its start.
        let _ = writeln!(out, "#EXT-X-DISCONTINUITY-SEQUENCE:{first_seq}");
    }
    if session.mode == Mode::OnDemand {
        out.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n");
    }
    out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    out
}

/// Whether an EXT-X-DISCONTINUITY goes before `fragment`: always, never, or (ON_DISCONTINUITY)
/// after a gap of more than 100 ms in producer time or a change of codec configuration.
pub(super) fn discontinuity_before(
    mode: Discontinuity,
    previous: Option<&FragmentRecord>,
    fragment: &FragmentRecord,
    config_changed: bool,
) -> bool {
    // An open GOP's leading pictures present before the fragment's key frame, where the previous
    // fragment's frames stop: the fragment starts at its earliest picture.
    let first_shown_ms = framelog_media::package::frame_times_ms(fragment).into_iter().min().map(|ms| ms.max(0) as u64);
    let start_ms = first_shown_ms.unwrap_or(fragment.producer_ts_ms).min(fragment.producer_ts_ms);
    let gap = previous.is_some_and(|p| p.producer_ts_ms.saturating_add(p.duration_ms) + 100 < start_ms);
    match mode {
        Discontinuity::Always => true,
        Discontinuity::Never => false,
        Discontinuity::OnGap => previous.is_some() && (gap || config_changed),
    }
}

/// The fragment's metadata tags as EXT-X-DATERANGE entries, after the EXT-X-PROGRAM-DATE-TIME
/// they need (which is also there whenever the session displays timestamps).
pub(super) fn write_metadata(out: &mut String, session: &Session, number: &str, record: &FragmentRecord) {
    let start_ms = record.producer_ts_ms;
    // RFC 8216 §4.3.2.7: a playlist with EXT-X-DATERANGE must have a PROGRAM-DATE-TIME.
    let events: Vec<&framelog_media::SimpleTag> = record.event_tags().collect();
    if session.display_timestamps || session.low_latency || !events.is_empty() {
        let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", iso8601(start_ms));
    }
    for (index, tag) in events.into_iter().enumerate() {
        let _ = writeln!(
            out,
            "#EXT-X-DATERANGE:ID=\"{}-{index}\",CLASS=\"kvs-metadata\",START-DATE=\"{}\",X-KVS-NAME=\"{}\",X-KVS-VALUE=\"{}\"",
            number,
            iso8601(start_ms),
            quoted(&tag.name),
            quoted(&tag.value)
        );
    }
}

/// The segment itself: its EXTINF and URL (an MPEG-TS fragment of every track, or this track's
/// fMP4 fragment).
fn write_segment(out: &mut String, token: &str, track_number: u64, session: &Session, fragment: &WindowFragment) {
    if session.mpeg_ts {
        let _ = writeln!(out, "#EXTINF:{:.3},", fragment.record.duration_ms as f64 / 1000.0);
        let _ = writeln!(out, "getTSFragment.ts?FragmentNumber={}&SessionToken={token}", fragment.number);
    } else {
        let _ = writeln!(out, "#EXTINF:{:.3},", track_duration_s(fragment, track_number));
        let _ = writeln!(
            out,
            "getMP4MediaFragment.mp4?FragmentNumber={}&SessionToken={token}&TrackNumber={track_number}",
            fragment.number
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fragment of 30 fps frames from `start_ms`, its first frame `lead_ms` before it.
    fn fragment(start_ms: u64, duration_ms: u64, lead_ms: i16) -> FragmentRecord {
        let frame = |relative_timecode: i16| framelog_media::Frame {
            track: 1,
            relative_timecode,
            keyframe: relative_timecode == 0,
            lacing: 0,
            data: 0..0,
        };
        FragmentRecord {
            timecode: start_ms,
            timecode_scale_ns: 1_000_000,
            producer_ts_ms: start_ms,
            server_ts_ms: start_ms,
            duration_ms,
            tracks_body: Vec::new(),
            tags: Vec::new(),
            frames: vec![frame(0), frame(-lead_ms), frame(33)],
        }
    }

    #[test]
    fn a_gap_is_measured_to_the_first_picture_shown() {
        let on_gap = |previous: &FragmentRecord, next: &FragmentRecord| {
            discontinuity_before(Discontinuity::OnGap, Some(previous), next, false)
        };
        // An open GOP: the previous fragment's last 4 pictures are the next one's leading pictures.
        let previous = fragment(10_000, 1_866, 0);
        assert!(!on_gap(&previous, &fragment(12_000, 2_000, 133)));
        // Without them, 134 ms are missing: a gap.
        assert!(on_gap(&previous, &fragment(12_000, 2_000, 0)));
        assert!(!on_gap(&fragment(10_000, 2_000, 0), &fragment(12_000, 2_000, 0)));
    }

    #[test]
    fn program_date_times_are_utc_iso8601() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_684_331_315_994), "2023-05-17T13:48:35.994Z");
        assert_eq!(iso8601(1_795_651_512_000), "2026-11-26T00:05:12.000Z");
    }
}
