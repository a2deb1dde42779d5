//! Serving a Low-Latency HLS session (docs/playback.md "Low-Latency HLS"): media playlists with
//! blocking reloads (`_HLS_msn`, `_HLS_part`) and delta updates (`_HLS_skip`), parts (held until
//! they exist, so a preload hint can be requested early), and the init segment of the fragment at
//! the live edge. A held request waits on the store's commit watch and the live edge's watch, so
//! it answers as soon as what it waits for exists, and after three target durations at most.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use framelog_media::package::{write_init_segment, write_part};

use super::ll_view::{self, LlSegment, LlView};
use super::session::Session;
use super::{ll_playlist, query_value, track_number};
use crate::error::{ApiError, ErrorType};
use crate::kvs::context::KvsCtx;
use crate::kvs::{VIDEO_SHARD, VideoStream};

const PART_FILE: &str = "getMP4Part.mp4";
const PLAYLIST_FILE: &str = "getHLSMediaPlaylist.m3u8";
const INIT_FILE: &str = "getMP4InitFragment.mp4";

/// The answer to a request this module serves, or `None` when the ordinary handler answers it
/// (a session without LowLatency, another file, an init segment named by fragment number).
pub(super) async fn answer(ctx: KvsCtx, file: &str, query: &str) -> Option<Result<(&'static str, Bytes), ApiError>> {
    let is_part = file == PART_FILE;
    let is_edge_init = file == INIT_FILE && query_value(query, "MSN").is_some();
    if !is_part && !is_edge_init && file != PLAYLIST_FILE {
        return None;
    }
    let opened = super::open_session(&ctx, query, false);
    let (token, session, handle) = match opened {
        Ok(opened) => opened,
        Err(error) => return Some(Err(error)),
    };
    if !session.low_latency {
        return is_part.then(|| Err(ApiError::invalid("Parts are only served to LowLatency sessions.")));
    }
    let served = async {
        let track = track_number(query)?;
        let request = Request { ctx, token, session, handle, track };
        if is_part {
            Ok((super::MP4_TYPE, part(request, msn_and_part(query)?).await?))
        } else if is_edge_init {
            Ok((super::MP4_TYPE, edge_init(request, number(query, "MSN")?.unwrap_or(0)).await?))
        } else {
            Ok((super::PLAYLIST_TYPE, playlist(request, Reload::read(query)?).await?))
        }
    };
    Some(served.await)
}

/// What one LL request works on.
#[derive(Clone)]
struct Request {
    ctx: KvsCtx,
    token: String,
    session: Session,
    handle: VideoStream,
    track: u64,
}

/// A query parameter that must be a whole number when present.
fn number(query: &str, name: &str) -> Result<Option<u64>, ApiError> {
    query_value(query, name)
        .map(|text| text.parse().map_err(|_| ApiError::invalid(format!("{name} must be a whole number, not {text}."))))
        .transpose()
}

/// A part request's segment and part.
fn msn_and_part(query: &str) -> Result<(u64, usize), ApiError> {
    let msn = number(query, "MSN")?.ok_or_else(|| ApiError::invalid("MSN is required."))?;
    let part = number(query, "Part")?.ok_or_else(|| ApiError::invalid("Part is required."))?;
    Ok((msn, usize::try_from(part).unwrap_or(usize::MAX)))
}

/// A playlist request's delivery directives (RFC 8216bis §6.2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reload {
    msn: Option<u64>,
    part: Option<u64>,
    skip: bool,
}

impl Reload {
    fn read(query: &str) -> Result<Reload, ApiError> {
        let msn = number(query, "_HLS_msn")?;
        let part = number(query, "_HLS_part")?;
        if part.is_some() && msn.is_none() {
            return Err(ApiError::invalid("_HLS_part requires _HLS_msn."));
        }
        let skip = match query_value(query, "_HLS_skip").as_deref() {
            None => false,
            // v2 would also skip date ranges; we skip segments only, which v2 clients accept.
            Some("YES" | "v2") => true,
            Some(other) => return Err(ApiError::invalid(format!("_HLS_skip must be YES or v2, not {other}."))),
        };
        Ok(Reload { msn, part, skip })
    }
}

/// Whether a playlist satisfies a blocking reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Readiness {
    Ready,
    NotYet,
    /// More than two segments past the end: answered at once with 400 (RFC 8216bis §6.2.5.2).
    TooFar,
}

fn readiness(view: &LlView, msn: u64, part: Option<u64>) -> Readiness {
    let last_msn = view.segments.last().map_or(0, |s| s.msn);
    if msn > last_msn + 2 {
        return Readiness::TooFar;
    }
    let ready = match part {
        None => view.segments.iter().any(|s| s.is_stored() && s.msn >= msn),
        Some(part) => view.segments.iter().any(|s| {
            (s.msn == msn && s.parts.len() as u64 > part) || (s.msn > msn && (!s.parts.is_empty() || s.is_stored()))
        }),
    };
    if ready { Readiness::Ready } else { Readiness::NotYet }
}

/// What one look at the view decided.
enum Step {
    Answer(Result<Bytes, ApiError>),
    /// Wait for a change, at most `hold_ms` from the request's start; then `decide` is asked once
    /// more with `expired` set, and must answer.
    Wait {
        hold_ms: u64,
    },
}

/// Looks at the view: `(request, view, expired)`.
type Decide = Arc<dyn Fn(&Request, &LlView, bool) -> Step + Send + Sync>;

/// Builds the view and asks `decide`, again after every change of the stream, until it answers
/// or its hold expires.
async fn held(request: Request, decide: Decide) -> Result<Bytes, ApiError> {
    let mut tip = request.handle.subscribe(VIDEO_SHARD).map_err(|e| ApiError::internal(&e))?;
    let mut edge = request.ctx.edges.slot(request.handle.id()).subscribe();
    let started = tokio::time::Instant::now();
    let mut expired = false;
    loop {
        tip.borrow_and_update();
        edge.borrow_and_update();
        let (looked, decide_now) = (request.clone(), decide.clone());
        let step = tokio::task::spawn_blocking(move || {
            let view = looked.ctx.ll_views.get(&looked.ctx, &looked.handle, &looked.session, looked.track)?;
            Ok::<Step, ApiError>(decide_now(&looked, &view, expired))
        })
        .await
        .map_err(|join| ApiError::internal(&join))??;
        let hold_ms = match step {
            Step::Answer(answer) => return answer,
            Step::Wait { hold_ms } => hold_ms,
        };
        if expired {
            let stuck = std::io::Error::other("a held request was not answered when its hold expired");
            return Err(ApiError::internal(&stuck));
        }
        let deadline = started + Duration::from_millis(hold_ms);
        tokio::select! {
            changed = tip.changed() => if changed.is_err() { tokio::time::sleep_until(deadline).await },
            changed = edge.changed() => if changed.is_err() { tokio::time::sleep_until(deadline).await },
            _ = tokio::time::sleep_until(deadline) => expired = true,
        }
    }
}

/// A media playlist, held until it satisfies `_HLS_msn` / `_HLS_part`. A hold that expires
/// answers the playlist as it is, which a player simply asks again for.
async fn playlist(request: Request, reload: Reload) -> Result<Bytes, ApiError> {
    let decide: Decide = Arc::new(move |request, view, expired| {
        let text = || Ok(Bytes::from(ll_playlist::media(&request.token, &request.session, view, reload.skip)));
        let Some(msn) = reload.msn else { return Step::Answer(text()) };
        match readiness(view, msn, reload.part) {
            Readiness::Ready => Step::Answer(text()),
            Readiness::TooFar => Step::Answer(Err(ApiError::invalid(format!(
                "_HLS_msn {msn} is more than two segments past the end of the playlist."
            )))),
            Readiness::NotYet if expired => Step::Answer(text()),
            Readiness::NotYet => Step::Wait { hold_ms: ll_playlist::hold_ms(view) },
        }
    });
    held(request, decide).await
}

/// Part `index` of segment `msn`, held while the edge may still produce it.
async fn part(request: Request, (msn, index): (u64, usize)) -> Result<Bytes, ApiError> {
    let decide: Decide = Arc::new(move |request, view, expired| {
        let missing = || {
            Err(ApiError::new(ErrorType::ResourceNotFound, format!("Part {index} of segment {msn} does not exist.")))
        };
        match view.segment(msn) {
            Some(segment) => {
                let mut segment = segment.clone();
                if !segment.parts_cut {
                    ll_view::cut(&mut segment, &view.track, true);
                }
                if index < segment.parts.len() {
                    Step::Answer(part_bytes(request, view, &segment, index))
                } else if segment.complete || expired {
                    Step::Answer(missing())
                } else {
                    Step::Wait { hold_ms: ll_playlist::hold_ms(view) }
                }
            }
            // The next segment has not begun: a preload hint may name its first part.
            None if msn == view.next_msn() && !expired => Step::Wait { hold_ms: ll_playlist::hold_ms(view) },
            None => Step::Answer(missing()),
        }
    });
    held(request, decide).await
}

/// The cache's rendition number for a part: the track number below bit 16, the part above.
fn part_rendition(track: u64, index: usize) -> u64 {
    (index as u64 + 1) << 16 | track
}

/// A part's bytes: from the edge while its fragment is there, else from the stored fragment
/// (cached for the other viewers). The cut is the same either way.
fn part_bytes(request: &Request, view: &LlView, segment: &LlSegment, index: usize) -> Result<Bytes, ApiError> {
    let part = &segment.parts[index];
    let track_id = u32::try_from(view.track.number).unwrap_or(u32::MAX);
    let sequence = u32::try_from(segment.msn + 1).unwrap_or(u32::MAX);
    let (ctx, handle) = (&request.ctx, &request.handle);
    if !segment.is_stored() {
        let from_edge = ctx.edges.slot(handle.id()).read(|fragments| {
            fragments
                .iter()
                .find(|f| {
                    f.record.timecode == segment.record.timecode
                        && f.record.producer_ts_ms == segment.record.producer_ts_ms
                })
                .map(|f| write_part(track_id, sequence, &segment.samples, part, &f.body))
        });
        if let Some(bytes) = from_edge {
            return Ok(Bytes::from(bytes));
        }
    }
    // Stored, or stored since the view was built: its number is its sequence number. The stored
    // fragment must be the one the view cut (the same producer time and timecode), or the part
    // does not exist; nothing else is cut or cached under its name.
    let number = segment.number.clone().unwrap_or_else(|| handle.fragment_number(segment.msn));
    let rendition = part_rendition(view.track.number, index);
    super::cached(ctx, handle, &request.session, &number, rendition, |stored, payload| {
        let same = stored.record.producer_ts_ms == segment.record.producer_ts_ms
            && stored.record.timecode == segment.record.timecode;
        if !same {
            return Err(ApiError::new(
                ErrorType::ResourceNotFound,
                format!("Part {index} of segment {} does not exist.", segment.msn),
            ));
        }
        Ok(write_part(track_id, sequence, &segment.samples, part, payload))
    })
}

/// The init segment of segment `msn` (the edge fragment's, before it has a fragment number).
async fn edge_init(request: Request, msn: u64) -> Result<Bytes, ApiError> {
    let decide: Decide = Arc::new(move |_, view, _| {
        Step::Answer(match view.segment(msn) {
            Some(segment) => super::window::packageable(&segment.record).and_then(|tracks| {
                let track = tracks.iter().find(|t| t.number == view.track.number).ok_or_else(|| {
                    ApiError::invalid(format!("TrackNumber {} is not a track of this stream.", view.track.number))
                })?;
                Ok(Bytes::from(write_init_segment(track)))
            }),
            None => Err(ApiError::new(ErrorType::ResourceNotFound, format!("Segment {msn} is not in the playlist."))),
        })
    });
    held(request, decide).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_directives_are_read_and_checked() {
        assert_eq!(Reload::read("").ok(), Some(Reload { msn: None, part: None, skip: false }));
        assert_eq!(
            Reload::read("_HLS_msn=12&_HLS_part=3&_HLS_skip=YES").ok(),
            Some(Reload { msn: Some(12), part: Some(3), skip: true })
        );
        assert!(Reload::read("_HLS_part=3").is_err());
        assert!(Reload::read("_HLS_msn=x").is_err());
        assert!(Reload::read("_HLS_skip=NO").is_err());
    }

    #[test]
    fn part_renditions_never_collide_with_tracks_or_ts() {
        assert_eq!(part_rendition(1, 0), 65_537);
        assert_ne!(part_rendition(2, 0), part_rendition(1, 1));
        assert!(part_rendition(1, 0) > 126);
    }
}
