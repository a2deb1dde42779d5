//! The DASH manifest (docs/spec/kvs.md#dash-manifest): one Period, an AdaptationSet per packageable track, and a
//! SegmentList whose SegmentTimeline carries `kvs:ts` (producer time, ms) and `kvs:fn` (fragment
//! number) when the session asks, pointing at the same MP4 fragment URLs as HLS.

use std::fmt::Write as _;

use framelog_media::package::{PackagedTrack, track_samples};

use super::playlist::{config_sequence, iso8601};
use super::session::{Mode, Session};
use super::window::WindowFragment;

fn seconds(ms: u64) -> String {
    format!("PT{}.{:03}S", ms / 1000, ms % 1000)
}

pub fn dash(
    token: &str,
    session: &Session,
    tracks: &[PackagedTrack],
    fragments: &[WindowFragment],
    now_ms: u64,
) -> String {
    let origin_ms = fragments.first().map_or(0, |f| f.record.producer_ts_ms);
    let manifest = Manifest { token, session, fragments, origin_ms };
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    manifest.write_mpd_open(&mut out, now_ms);
    out.push_str(">\n  <Period id=\"0\" start=\"PT0S\">\n");
    let bandwidth = super::window::bandwidth_bps(fragments);
    for track in tracks {
        manifest.write_adaptation_set(&mut out, track, bandwidth);
    }
    out.push_str("  </Period>\n</MPD>\n");
    out
}

/// What every part of one manifest is written from.
struct Manifest<'a> {
    token: &'a str,
    session: &'a Session,
    fragments: &'a [WindowFragment],
    /// Producer time of the window's first fragment: the presentation's time zero.
    origin_ms: u64,
}

impl Manifest<'_> {
    /// The MPD element's attributes (its tag left open): a dynamic manifest for live sessions, a
    /// static one with its whole duration for ON_DEMAND.
    fn write_mpd_open(&self, out: &mut String, now_ms: u64) {
        let origin_ms = self.origin_ms;
        let end_ms = self.fragments.last().map_or(origin_ms, |f| f.record.producer_ts_ms + f.record.duration_ms);
        let dynamic = self.session.mode != Mode::OnDemand;
        let _ = write!(
            out,
            "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" xmlns:kvs=\"https://kinesisvideo.amazonaws.com/dash\" \
             profiles=\"urn:mpeg:dash:profile:isoff-live:2011\" minBufferTime=\"PT2S\""
        );
        if dynamic {
            let _ = write!(
                out,
                " type=\"dynamic\" availabilityStartTime=\"{}\" publishTime=\"{}\" minimumUpdatePeriod=\"PT2S\" \
                 timeShiftBufferDepth=\"{}\" suggestedPresentationDelay=\"PT4S\"",
                iso8601(origin_ms),
                iso8601(now_ms),
                seconds(end_ms.saturating_sub(origin_ms).max(1000))
            );
        } else {
            let _ = write!(out, " type=\"static\" mediaPresentationDuration=\"{}\"", seconds(end_ms - origin_ms));
        }
    }

    /// One track's AdaptationSet, holding a single Representation.
    fn write_adaptation_set(&self, out: &mut String, track: &PackagedTrack, bandwidth: u64) {
        let (mime, extra) = if track.is_video() {
            ("video/mp4", format!(" width=\"{}\" height=\"{}\"", track.width, track.height))
        } else {
            ("audio/mp4", format!(" audioSamplingRate=\"{}\"", track.sample_rate_hz))
        };
        let _ = writeln!(out, "    <AdaptationSet mimeType=\"{mime}\" segmentAlignment=\"true\" startWithSAP=\"1\">");
        let _ = writeln!(
            out,
            "      <Representation id=\"{}\" codecs=\"{}\" bandwidth=\"{bandwidth}\"{extra}>",
            track.number,
            track.codecs_string()
        );
        self.write_segment_list(out, track);
        out.push_str("      </Representation>\n    </AdaptationSet>\n");
    }

    /// The track's SegmentList: its init segment, then the fragments that have samples of it.
    fn write_segment_list(&self, out: &mut String, track: &PackagedTrack) {
        let (token, timescale) = (self.token, track.timescale());
        let offset = i128::from(self.origin_ms) * i128::from(timescale) / 1000;
        let _ = writeln!(out, "        <SegmentList timescale=\"{timescale}\" presentationTimeOffset=\"{offset}\">");
        // Without FragmentNumber (the server then uses the window's newest configuration, as
        // the manifest's codecs do): ffmpeg's DASH reader truncates URLs much longer than the
        // manifest's own, and the 47-digit number pushed the init URL over its limit.
        if let Some(newest) = self.fragments.last() {
            let _ = writeln!(
                out,
                "          <Initialization sourceURL=\"getMP4InitFragment.mp4?SessionToken={token}&amp;TrackNumber={}&amp;SequenceNumber={}\"/>",
                track.number,
                config_sequence(&newest.record),
            );
        }
        let spans = segment_spans(self.fragments, track);
        self.write_segment_timeline(out, &spans);
        for &(fragment, _, _) in &spans {
            let _ = writeln!(
                out,
                "          <SegmentURL media=\"getMP4MediaFragment.mp4?FragmentNumber={}&amp;SessionToken={token}&amp;TrackNumber={}\"/>",
                fragment.number, track.number
            );
        }
        out.push_str("        </SegmentList>\n");
    }

    /// The SegmentTimeline: one S element per span, with `kvs:ts` and `kvs:fn` when the session
    /// asks for them.
    fn write_segment_timeline(&self, out: &mut String, spans: &[(&WindowFragment, i64, i64)]) {
        out.push_str("          <SegmentTimeline>\n");
        for &(fragment, start, end) in spans {
            let _ = write!(out, "            <S t=\"{start}\" d=\"{}\"", (end - start).max(1));
            if self.session.display_timestamps {
                let _ = write!(out, " kvs:ts=\"{}\"", fragment.record.producer_ts_ms);
            }
            if self.session.display_fragment_numbers {
                let _ = write!(out, " kvs:fn=\"{}\"", fragment.number);
            }
            out.push_str("/>\n");
        }
        out.push_str("          </SegmentTimeline>\n");
    }
}

/// (fragment, earliest presentation time, end), in the track's timescale, of every fragment with
/// samples of the track. S@t is the earliest presentation time (ISO/IEC 23009-1), not the tfdt:
/// with reordered video the two differ by the reorder delay.
fn segment_spans<'a>(fragments: &'a [WindowFragment], track: &PackagedTrack) -> Vec<(&'a WindowFragment, i64, i64)> {
    let timescale = track.timescale();
    fragments
        .iter()
        .filter_map(|fragment| {
            let samples = track_samples(&fragment.record, track.number, timescale);
            let presented = |s: &framelog_media::package::TimedSample| s.decode_time + i64::from(s.composition_offset);
            let start = samples.iter().map(presented).min()?;
            let end = samples.iter().map(|s| presented(s) + i64::from(s.duration)).max().unwrap_or(start);
            Some((fragment, start, end))
        })
        .collect()
}
