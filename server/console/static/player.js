// One <video> element and what feeds it: a WebRTC (WHEP) peer for live, or hls.js for LL-HLS and
// the archive. The console's main viewer has one; each tile of the live grid has its own.
"use strict";

// How long a WebRTC (WHEP) start may take before live falls back to LL-HLS: the next key frame
// (one fragment, 2 s for most cameras) plus the connection (and, for an H.265 camera, its
// transcode's start).
const WHEP_START_MS = 6000;
// `?live=hls` skips WebRTC (troubleshooting, or a network that blocks UDP).
const LIVE_OVER_HLS = new URLSearchParams(window.location.search).get("live") === "hls";

// Chromium cannot decode H.265: its sessions ask for H.264 (our extension), which the server
// makes from an H.265 camera's video and leaves an H.264 camera's alone.
function needsH264() {
  const hevc = 'video/mp4; codecs="hvc1.1.6.L93.B0"';
  return !(window.MediaSource && MediaSource.isTypeSupported(hevc));
}

class Player {
  // `onError({type, details, fatal})` hears every player error.
  constructor(video, onError) {
    this.video = video;
    this.onError = onError;
    this.hls = null;
    this.pc = null;
    this.whepResource = null;
    // "webrtc", "ll-hls" or "hls" while playing.
    this.transport = null;
    // Whatever was starting is superseded when this changes (a WebRTC start checks it after
    // each wait).
    this.attempt = 0;
    video.addEventListener("error", () => {
      const error = video.error;
      this.onError({ type: "media", details: error ? error.message || String(error.code) : "unknown", fatal: true });
    });
  }

  stop() {
    this.attempt += 1;
    if (this.hls) this.hls.destroy();
    this.hls = null;
    if (this.pc) this.pc.close();
    this.pc = null;
    // WHEP: the session's resource is deleted, so the server stops sending at once.
    if (this.whepResource) fetch(this.whepResource, { method: "DELETE" }).catch(() => {});
    this.whepResource = null;
    this.transport = null;
    this.video.srcObject = null;
    this.video.removeAttribute("src");
    this.video.load();
  }

  // Live over WebRTC from `whepUrl`, for start `attempt`: "playing" once the video plays;
  // "fallback" when the server declines the offer or no picture comes within WHEP_START_MS;
  // "cancelled" when something else started meanwhile.
  async whep(whepUrl, attempt) {
    const current = () => attempt === this.attempt;
    const pc = new RTCPeerConnection();
    this.pc = pc;
    pc.addTransceiver("video", { direction: "recvonly" });
    let stream = null;
    pc.ontrack = (event) => {
      stream = event.streams[0] || new MediaStream([event.track]);
      this.video.srcObject = stream;
      this.video.play().catch(() => {});
    };
    const playing = new Promise((resolve) => {
      const onPlaying = () => {
        if (stream === null || this.video.srcObject !== stream) return; // another player's
        clearTimeout(timer);
        this.video.removeEventListener("playing", onPlaying);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.video.removeEventListener("playing", onPlaying);
        resolve(false);
      }, WHEP_START_MS);
      this.video.addEventListener("playing", onPlaying);
    });
    await pc.setLocalDescription(await pc.createOffer());
    const answer = await fetch(whepUrl, {
      method: "POST",
      headers: { "Content-Type": "application/sdp" },
      body: pc.localDescription.sdp,
    });
    const resource = answer.status === 201 ? new URL(answer.headers.get("Location"), whepUrl).href : null;
    if (!current()) {
      // Superseded while the offer was answered: the session it made is ended at once.
      if (resource) fetch(resource, { method: "DELETE" }).catch(() => {});
      pc.close();
      return "cancelled";
    }
    if (!resource) return "fallback";
    this.whepResource = resource;
    await pc.setRemoteDescription({ type: "answer", sdp: await answer.text() });
    const shown = await playing;
    if (!current()) return "cancelled";
    if (!shown) return "fallback";
    this.transport = "webrtc";
    return "playing";
  }

  // An HLS session's master playlist URL: live (Low-Latency) or from the archive.
  hlsPlay(url, live) {
    this.stop();
    const video = this.video;
    if (window.Hls && Hls.isSupported()) {
      const hls = new Hls({ lowLatencyMode: live, liveSyncDurationCount: 2 });
      hls.on(Hls.Events.ERROR, (_event, data) => this.onError({ type: data.type, details: data.details, fatal: data.fatal }));
      hls.loadSource(url);
      hls.attachMedia(video);
      this.hls = hls;
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = url; // Safari plays HLS natively.
    } else {
      return false;
    }
    video.play().catch(() => {});
    this.transport = live ? "ll-hls" : "hls";
    return true;
  }

  // Live: WebRTC where the browser has it, else (or when WebRTC gives no picture or is refused)
  // LL-HLS. `whepUrl()` and `hlsUrl()` mint the sessions. Answers the transport, or null when
  // something else started meanwhile or nothing can play.
  async live(whepUrl, hlsUrl) {
    this.stop();
    const attempt = this.attempt;
    const current = () => attempt === this.attempt;
    if (window.RTCPeerConnection && !LIVE_OVER_HLS) {
      let outcome;
      try {
        const url = await whepUrl();
        outcome = current() ? await this.whep(url, attempt) : "cancelled";
      } catch {
        // Refused (a key allowed HLS only) or failed: LL-HLS, unless something else started.
        outcome = current() ? "fallback" : "cancelled";
      }
      if (outcome === "playing") return this.transport;
      if (outcome === "cancelled") return null;
      this.stop();
    }
    const fallback = this.attempt;
    const url = await hlsUrl();
    if (fallback !== this.attempt) return null;
    return this.hlsPlay(url, true) ? this.transport : null;
  }
}
