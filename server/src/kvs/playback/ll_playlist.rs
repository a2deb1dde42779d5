//! Low-Latency HLS media playlist text (RFC 8216bis, "HLS 2nd edition", §4.4.3.7-4.4.5.2 and
//! §6.2.5): server control, part information, parts of the newest segments, the preload hint for
//! the next part, and delta updates that skip old segments.

use std::fmt::Write as _;

use super::ll_view::{LlSegment, LlView};
use super::playlist::{config_sequence, discontinuity_before, write_metadata};
use super::session::{Discontinuity, Session};

/// CAN-SKIP-UNTIL, in target durations (the RFC's minimum is six).
const SKIP_UNTIL_TARGETS: u64 = 6;
/// PART-HOLD-BACK, in part targets (the RFC's minimum is two; three is its recommendation).
const PART_HOLD_BACK_PARTS: u64 = 3;

/// EXT-X-TARGETDURATION in whole seconds: the longest segment, rounded up.
pub fn target_duration_s(view: &LlView) -> u64 {
    view.segments.iter().map(|s| s.record.duration_ms.div_ceil(1000)).max().unwrap_or(1).max(1)
}

/// How far behind the newest part a player starts: three part targets (RFC 8216bis §4.4.3.8).
/// Without live parts the next ones arrive a fragment at a time, so the player keeps one and a half
/// target durations in hand, or it would stall between fragments.
fn part_hold_back_ms(view: &LlView, target_s: u64) -> u64 {
    let parts_ms = view.part_target_ms() * PART_HOLD_BACK_PARTS;
    if view.live_parts { parts_ms } else { parts_ms.max(target_s * 1500) }
}

/// How long a blocking request may be held: three target durations (RFC 8216bis §6.2.5.2).
/// Without live parts the next part comes a whole fragment later, but a player gives a held
/// playlist request only 0.8 target durations (hls.js): it is answered as it stands before that,
/// and the player asks again.
pub fn hold_ms(view: &LlView) -> u64 {
    if view.live_parts { target_duration_s(view) * 3000 } else { target_duration_s(view) * 1000 * 7 / 10 }
}

/// The media playlist of the view's track; with `skip`, a delta update (`_HLS_skip=YES`).
pub fn media(token: &str, session: &Session, view: &LlView, skip: bool) -> String {
    let target_s = target_duration_s(view);
    let part_target_ms = view.part_target_ms();
    let skip_until_s = target_s * SKIP_UNTIL_TARGETS;
    let first_msn = view.segments.first().map_or(0, |s| s.msn);
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:9\n");
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target_s}");
    let _ = writeln!(
        out,
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={skip_until_s}.0,PART-HOLD-BACK={:.3}",
        part_hold_back_ms(view, target_s) as f64 / 1000.0
    );
    let _ = writeln!(out, "#EXT-X-PART-INF:PART-TARGET={:.3}", part_target_ms as f64 / 1000.0);
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{first_msn}");
    if session.discontinuity == Discontinuity::Always {
        let _ = writeln!(out, "#EXT-X-DISCONTINUITY-SEQUENCE:{first_msn}");
    }
    out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    let skipped = if skip { skippable(view, skip_until_s) } else { 0 };
    if skipped > 0 {
        let _ = writeln!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
    }
    let uris = Uris { token, track: view.track.number };
    for (index, segment) in view.segments.iter().enumerate().skip(skipped) {
        let previous = index.checked_sub(1).map(|i| &view.segments[i].record);
        let config_changed = previous.is_none_or(|p| config_sequence(p) != config_sequence(&segment.record));
        let discontinuity = discontinuity_before(session.discontinuity, previous, &segment.record, config_changed);
        if discontinuity {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        // After skipped segments the client still holds their map; repeating it is harmless.
        if config_changed || discontinuity || index == skipped {
            let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", uris.init(segment));
        }
        write_segment(&mut out, &uris, session, view, segment);
    }
    // The next part: of the fragment still arriving, or the first of the next one. Without live
    // parts it is a fragment away, longer than a player waits for a hinted part.
    let (hint_msn, hint_part) = match view.segments.last() {
        Some(last) if !last.is_stored() && !last.complete => (last.msn, last.parts.len()),
        _ => (view.next_msn(), 0),
    };
    if view.live_parts {
        let _ = writeln!(out, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"", uris.part(hint_msn, hint_part));
    }
    out
}

/// How many of the oldest segments a delta update leaves out: those that start at least
/// CAN-SKIP-UNTIL before the end of the playlist.
fn skippable(view: &LlView, skip_until_s: u64) -> usize {
    let total_ms: u64 = view.segments.iter().map(|s| s.record.duration_ms).sum();
    let mut start_ms = 0;
    let mut count = 0;
    for segment in view.segments.iter().filter(|s| s.is_stored()) {
        if total_ms - start_ms < skip_until_s * 1000 {
            break;
        }
        start_ms += segment.record.duration_ms;
        count += 1;
    }
    count
}

/// One segment: its date, its parts (for the newest segments) and, once stored, its own URI.
fn write_segment(out: &mut String, uris: &Uris, session: &Session, view: &LlView, segment: &LlSegment) {
    match &segment.number {
        Some(number) => write_metadata(out, session, number, &segment.record),
        // Metadata events are listed once the fragment is stored, under its fragment number.
        None => {
            let _ =
                writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", super::playlist::iso8601(segment.record.producer_ts_ms));
        }
    }
    for (index, part) in segment.parts.iter().enumerate() {
        let _ = write!(
            out,
            "#EXT-X-PART:DURATION={:.3},URI=\"{}\"",
            view.seconds(part.duration),
            uris.part(segment.msn, index)
        );
        out.push_str(if part.independent { ",INDEPENDENT=YES\n" } else { "\n" });
    }
    if let Some(number) = &segment.number {
        let duration: u64 = segment.samples.iter().map(|s| u64::from(s.duration)).sum();
        let _ = writeln!(out, "#EXTINF:{:.3},", view.seconds(duration));
        let _ = writeln!(out, "{}", uris.segment(number));
    }
}

/// The URIs a playlist hands out, relative to the playlist's own.
struct Uris<'a> {
    token: &'a str,
    track: u64,
}

impl Uris<'_> {
    fn part(&self, msn: u64, part: usize) -> String {
        format!("getMP4Part.mp4?SessionToken={}&TrackNumber={}&MSN={msn}&Part={part}", self.token, self.track)
    }

    fn segment(&self, number: &str) -> String {
        format!(
            "getMP4MediaFragment.mp4?FragmentNumber={number}&SessionToken={}&TrackNumber={}",
            self.token, self.track
        )
    }

    /// A stored segment's init segment is found by its fragment number, the edge's by its MSN.
    fn init(&self, segment: &LlSegment) -> String {
        let at = match &segment.number {
            Some(number) => format!("FragmentNumber={number}"),
            None => format!("MSN={}", segment.msn),
        };
        format!(
            "getMP4InitFragment.mp4?SessionToken={}&TrackNumber={}&SequenceNumber={}&{at}",
            self.token,
            self.track,
            config_sequence(&segment.record)
        )
    }
}
