//! The compact binary form of a session inside its token. Short tokens matter: every segment URL
//! carries one, and ffmpeg's DASH reader truncates segment URLs much longer than the manifest's.
//!
//! Layout (big-endian): `version u8 (1) | mode u8 | clock u8 | discontinuity u8 | flags u8
//! (bit 0 start, 1 end, 2 display timestamps, 3 display fragment numbers, 4 MPEG-TS segments,
//! 5 low latency, 6 WebRTC, 7 H.264 video) | start_ms u64 |
//! end_ms u64 | max_fragments u16 | expires_ms u64 | stream_created_ms u64 | name_len u8 | name`.

use super::session::{Clock, Discontinuity, Mode, Session};

const VERSION: u8 = 1;

pub fn encode(session: &Session) -> Vec<u8> {
    let name = session.stream_name.as_bytes();
    let mut out = Vec::with_capacity(48 + name.len());
    out.push(VERSION);
    out.push(match session.mode {
        Mode::Live => 0,
        Mode::LiveReplay => 1,
        Mode::OnDemand => 2,
    });
    out.push(match session.clock {
        Clock::Server => 0,
        Clock::Producer => 1,
    });
    out.push(match session.discontinuity {
        Discontinuity::Always => 0,
        Discontinuity::Never => 1,
        Discontinuity::OnGap => 2,
    });
    let flags = u8::from(session.start_ms.is_some())
        | u8::from(session.end_ms.is_some()) << 1
        | u8::from(session.display_timestamps) << 2
        | u8::from(session.display_fragment_numbers) << 3
        | u8::from(session.mpeg_ts) << 4
        | u8::from(session.low_latency) << 5
        | u8::from(session.webrtc) << 6
        | u8::from(session.h264) << 7;
    out.push(flags);
    out.extend_from_slice(&session.start_ms.unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&session.end_ms.unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&(session.max_fragments.min(usize::from(u16::MAX)) as u16).to_be_bytes());
    out.extend_from_slice(&session.expires_ms.to_be_bytes());
    out.extend_from_slice(&session.stream_created_ms.to_be_bytes());
    // Stream names are at most 256 bytes; a longer one cannot be a stream.
    let name = &name[..name.len().min(255)];
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out
}

pub fn decode(bytes: &[u8]) -> Option<Session> {
    let (&version, rest) = bytes.split_first()?;
    if version != VERSION || rest.len() < 4 + 8 + 8 + 2 + 8 + 8 + 1 {
        return None;
    }
    let u64_at = |at: usize| Some(u64::from_be_bytes(rest.get(at..at + 8)?.try_into().ok()?));
    let mode = [Mode::Live, Mode::LiveReplay, Mode::OnDemand].get(usize::from(rest[0])).copied()?;
    let clock = [Clock::Server, Clock::Producer].get(usize::from(rest[1])).copied()?;
    let discontinuity =
        [Discontinuity::Always, Discontinuity::Never, Discontinuity::OnGap].get(usize::from(rest[2])).copied()?;
    let flags = rest[3];
    let start_ms = u64_at(4)?;
    let end_ms = u64_at(12)?;
    let max_fragments = usize::from(u16::from_be_bytes([rest[20], rest[21]]));
    let expires_ms = u64_at(22)?;
    let stream_created_ms = u64_at(30)?;
    let name_len = usize::from(*rest.get(38)?);
    let name = rest.get(39..39 + name_len)?;
    if rest.len() != 39 + name_len {
        return None;
    }
    Some(Session {
        stream_name: String::from_utf8(name.to_vec()).ok()?,
        stream_created_ms,
        mode,
        clock,
        start_ms: (flags & 1 != 0).then_some(start_ms),
        end_ms: (flags & 2 != 0).then_some(end_ms),
        max_fragments,
        discontinuity,
        display_timestamps: flags & 4 != 0,
        display_fragment_numbers: flags & 8 != 0,
        mpeg_ts: flags & 16 != 0,
        low_latency: flags & 32 != 0,
        webrtc: flags & 64 != 0,
        h264: flags & 128 != 0,
        expires_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_round_trip_and_garbage_does_not_decode() {
        let session = Session {
            stream_name: "door-cam".into(),
            stream_created_ms: 1_795_651_512_000,
            mode: Mode::LiveReplay,
            clock: Clock::Producer,
            start_ms: Some(1_795_651_000_000),
            end_ms: None,
            max_fragments: 1000,
            discontinuity: Discontinuity::OnGap,
            display_timestamps: true,
            display_fragment_numbers: false,
            mpeg_ts: true,
            low_latency: true,
            webrtc: false,
            h264: true,
            expires_ms: 1_795_651_812_000,
        };
        let bytes = encode(&session);
        assert_eq!(bytes.len(), 48);
        assert_eq!(decode(&bytes), Some(session));
        assert_eq!(decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(decode(&[2; 60]), None);
        assert_eq!(decode(&[]), None);
    }
}
