//! One WebRTC peer (str0m, sans-IO): the answer to a browser's offer, then a task that moves
//! datagrams between its UDP socket and the `Rtc`, and H.264 frames from the stream's live edge
//! into RTP. The server is ICE-lite: it only answers the browser's connectivity checks on its
//! one host candidate, which is all a browser that can reach the server's address needs.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use framelog_media::package::{AnnexB, Codec as StoredCodec, PackagedTrack};
use str0m::change::SdpOffer;
use str0m::format::Codec;
use str0m::media::{Frequency, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio::sync::{Notify, broadcast};

use crate::error::ApiError;
use crate::kvs::live_edge::EdgeFrame;

/// A peer that has not connected within this long is given up (its slot is freed).
const CONNECT_WITHIN: Duration = Duration::from_secs(15);
/// The longest `Rtc` may sleep between two looks (it asks for "never" when idle).
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// Largest datagram read (an MTU-sized packet, with room).
const DATAGRAM_BYTES: usize = 2048;

/// A peer whose answer is made, not yet running.
pub struct Peer {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
}

fn bad_offer(error: impl std::fmt::Display) -> ApiError {
    ApiError::invalid(format!("The SDP offer cannot be answered: {error}"))
}

/// Answers `offer` (SDP text) from a new UDP socket on `ip`: the answer's SDP and the peer.
pub async fn answer(offer: &str, ip: IpAddr) -> Result<(String, Peer), ApiError> {
    let socket = UdpSocket::bind((ip, 0)).await.map_err(|e| ApiError::internal(&e))?;
    let local = socket.local_addr().map_err(|e| ApiError::internal(&e))?;
    // H.264 only (every profile str0m knows, packetization modes 0 and 1): we forward what the
    // camera encoded and transcode nothing; an audio m-line is declined.
    let mut rtc = RtcConfig::new().clear_codecs().enable_h264(true).set_ice_lite(true).build(Instant::now());
    let candidate = Candidate::host(local, "udp").map_err(bad_offer)?;
    rtc.add_local_candidate(candidate);
    let offer = SdpOffer::from_sdp_string(offer).map_err(bad_offer)?;
    let answer = rtc.sdp_api().accept_offer(offer).map_err(bad_offer)?;
    Ok((answer.to_sdp_string(), Peer { rtc, socket, local }))
}

/// How a peer's run ended (logged).
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    Deleted,
    Expired,
    Disconnected,
    NeverConnected,
    StreamGone,
    Failed(String),
}

/// What woke the peer's loop.
enum Wake {
    Datagram(std::io::Result<(usize, SocketAddr)>),
    Timer,
    Frame(Result<Arc<EdgeFrame>, broadcast::error::RecvError>),
}

/// Where the peer's video goes: the negotiated m-line, payload type, and the stream's video
/// track as Annex B.
struct VideoOut {
    mid: Mid,
    pt: Pt,
}

/// The stream's H.264 track as the frames carry it, parsed once per codec configuration.
struct Source {
    tracks_body: Arc<Vec<u8>>,
    track: Option<(u64, AnnexB)>,
}

impl Source {
    fn for_frame(current: Option<Source>, frame: &EdgeFrame) -> Source {
        match current {
            Some(source) if Arc::ptr_eq(&source.tracks_body, &frame.tracks_body) => source,
            _ => {
                let tracks = framelog_media::parse_tracks(&frame.tracks_body, 0).unwrap_or_default();
                let track = tracks
                    .iter()
                    .filter_map(|t| PackagedTrack::from_track(t).ok())
                    .find(|t| t.codec == StoredCodec::Avc)
                    .and_then(|t| Some((t.number, AnnexB::for_track(&t)?)));
                Source { tracks_body: frame.tracks_body.clone(), track }
            }
        }
    }
}

impl Peer {
    /// Runs until the browser goes away, `stop` is notified (DELETE), `expires_at` passes or the
    /// frames end.
    pub async fn run(
        mut self,
        mut frames: broadcast::Receiver<Arc<EdgeFrame>>,
        stop: Arc<Notify>,
        expires_at: Instant,
    ) -> Ended {
        let started = Instant::now();
        let mut buffer = vec![0u8; DATAGRAM_BYTES];
        let mut video: Option<VideoOut> = None;
        let mut source: Option<Source> = None;
        let mut connected = false;
        // A browser can only start decoding at a key frame.
        let mut wait_for_key = true;
        loop {
            let deadline = match self.drain(&mut video, &mut connected).await {
                Ok(deadline) => deadline,
                Err(ended) => return ended,
            };
            if !self.rtc.is_alive() {
                return Ended::Disconnected;
            }
            if !connected && started.elapsed() > CONNECT_WITHIN {
                return Ended::NeverConnected;
            }
            let now = Instant::now();
            if now >= expires_at {
                return Ended::Expired;
            }
            let wake_at = deadline.min(now + MAX_SLEEP).min(expires_at);
            let woke = tokio::select! {
                _ = stop.notified() => return Ended::Deleted,
                received = self.socket.recv_from(&mut buffer) => Wake::Datagram(received),
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake_at)) => Wake::Timer,
                frame = frames.recv() => Wake::Frame(frame),
            };
            let input = match woke {
                Wake::Datagram(Ok((length, from))) => {
                    // Anything but STUN, DTLS or RTP is nothing of ours.
                    Receive::new(Protocol::Udp, from, self.local, &buffer[..length])
                        .ok()
                        .map(|datagram| Input::Receive(Instant::now(), datagram))
                }
                Wake::Datagram(Err(error)) => return Ended::Failed(error.to_string()),
                Wake::Timer => Some(Input::Timeout(Instant::now())),
                Wake::Frame(Ok(frame)) => {
                    source = Some(Source::for_frame(source.take(), &frame));
                    if let (true, Some(out), Some(source)) = (connected, &video, &source) {
                        self.send(out, source, &frame, &mut wait_for_key);
                    }
                    None
                }
                // Fell behind: skip to the next key frame.
                Wake::Frame(Err(broadcast::error::RecvError::Lagged(_))) => {
                    wait_for_key = true;
                    None
                }
                Wake::Frame(Err(broadcast::error::RecvError::Closed)) => return Ended::StreamGone,
            };
            // A datagram from anyone else (a port scan, a stale peer) is not this session's, and a
            // malformed one is dropped: neither ends the session.
            if let Some(input) = input.filter(|input| self.rtc.accepts(input))
                && let Err(error) = self.rtc.handle_input(input)
            {
                tracing::debug!(%error, "a datagram was dropped");
            }
        }
    }

    /// Sends every datagram `Rtc` has and takes its events, until it names when to look next.
    async fn drain(&mut self, video: &mut Option<VideoOut>, connected: &mut bool) -> Result<Instant, Ended> {
        loop {
            match self.rtc.poll_output().map_err(|e| Ended::Failed(e.to_string()))? {
                Output::Timeout(at) => return Ok(at),
                Output::Transmit(datagram) => {
                    // A lost datagram is what UDP does; RTP and ICE recover.
                    let _ = self.socket.send_to(&datagram.contents, datagram.destination).await;
                }
                Output::Event(event) => match event {
                    Event::MediaAdded(added) if added.kind == MediaKind::Video => {
                        *video = h264_payload_type(&self.rtc, added.mid).map(|pt| VideoOut { mid: added.mid, pt });
                    }
                    Event::Connected => *connected = true,
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        return Err(Ended::Disconnected);
                    }
                    _ => {}
                },
            }
        }
    }

    /// One frame of the stream's H.264 track into RTP (str0m packetizes Annex B access units).
    fn send(&mut self, out: &VideoOut, source: &Source, frame: &EdgeFrame, wait_for_key: &mut bool) {
        let Some((track, annex_b)) = &source.track else { return };
        if frame.track != *track || (*wait_for_key && !frame.keyframe) {
            return;
        }
        *wait_for_key = false;
        let access_unit = annex_b.access_unit(&frame.data, frame.keyframe, false);
        // The RTP clock is the producer clock on 90 kHz (players read it back as producer time).
        // RTP keeps the low 32 bits: a wrapping product keeps them right for any producer time.
        let rtp_time = MediaTime::new((frame.pts_ms.max(0) as u64).wrapping_mul(90), Frequency::NINETY_KHZ);
        if let Some(writer) = self.rtc.writer(out.mid)
            && let Err(error) = writer.write(out.pt, Instant::now(), rtp_time, access_unit)
        {
            tracing::debug!(%error, "a frame could not be sent");
        }
    }
}

/// The H.264 payload type the browser accepted for `mid`, packetization mode 1 first (it allows
/// fragmenting large frames).
fn h264_payload_type(rtc: &Rtc, mid: Mid) -> Option<Pt> {
    let media = rtc.media(mid)?;
    let accepted = |pt: &Pt| media.remote_pts().contains(pt);
    let h264: Vec<_> =
        rtc.codec_config().params().iter().filter(|p| accepted(&p.pt()) && p.spec().codec == Codec::H264).collect();
    h264.iter().find(|p| p.spec().format.packetization_mode == Some(1)).or(h264.first()).map(|p| p.pt())
}
