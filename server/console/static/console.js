// The Framelog web console. It uses only the public KVS APIs this server answers (ListStreams,
// ListFragments, GetHLSStreamingSessionURL, GetImages) and plays HLS through hls.js, so what it
// shows is what any AWS client would get.
"use strict";

const state = { stream: null, fragments: [], range: null, hls: null, mode: null };
// Tests and curious users read player errors here.
window.framelogConsole = { errors: [], state };

const $ = (id) => document.getElementById(id);
const status = (text) => { $("status").textContent = text; };

async function api(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  const json = text ? JSON.parse(text) : {};
  if (!response.ok) {
    const type = (response.headers.get("x-amzn-ErrorType") || "").split(":")[0];
    throw new Error(`${type || response.status}: ${json.Message || json.message || text}`);
  }
  return json;
}

const seconds = (ms) => ms / 1000;
const iso = (ms) => new Date(ms).toISOString().replace(".000Z", "Z");

async function loadStreams() {
  const names = [];
  let token;
  do {
    const page = await api("/listStreams", token ? { NextToken: token } : {});
    for (const info of page.StreamInfoList || []) names.push(info.StreamName);
    token = page.NextToken;
  } while (token);
  const list = $("streams");
  list.replaceChildren();
  for (const name of names.sort()) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "stream";
    button.dataset.stream = name;
    button.textContent = name;
    button.addEventListener("click", () => openStream(name));
    list.append(button);
  }
  status(names.length ? `${names.length} stream(s)` : "No streams yet: upload with PutMedia or the edge agent.");
}

async function openStream(name) {
  state.stream = name;
  for (const b of document.querySelectorAll("button.stream")) b.classList.toggle("selected", b.dataset.stream === name);
  $("viewer").hidden = false;
  $("stream-title").textContent = name;
  stopPlayer();
  await loadTimeline();
}

// Fragments that arrived within the look-back window, placed by producer time (back-dated
// uploads from an edge agent show where they belong).
async function loadTimeline() {
  const hours = Number($("lookback").value);
  const now = Date.now();
  const fragments = [];
  let token;
  status("Loading fragments…");
  do {
    const body = token
      ? { StreamName: state.stream, NextToken: token }
      : {
          StreamName: state.stream,
          MaxResults: 1000,
          FragmentSelector: {
            FragmentSelectorType: "SERVER_TIMESTAMP",
            TimestampRange: { StartTimestamp: seconds(now - hours * 3600e3), EndTimestamp: seconds(now + 60e3) },
          },
        };
    const page = await api("/listFragments", body);
    for (const f of page.Fragments || []) {
      const startMs = Math.round(f.ProducerTimestamp * 1000);
      fragments.push({ number: f.FragmentNumber, startMs, endMs: startMs + f.FragmentLengthInMilliseconds });
    }
    token = page.NextToken;
  } while (token && fragments.length < 20000);
  fragments.sort((a, b) => a.startMs - b.startMs);
  state.fragments = fragments;
  state.range = fragments.length ? { startMs: fragments[0].startMs, endMs: fragments[fragments.length - 1].endMs } : null;
  drawTimeline();
  status(fragments.length ? `${fragments.length} fragment(s)` : "No fragments in the look-back window.");
  if (fragments.length) await loadEvents();
}

function drawTimeline() {
  const timeline = $("timeline");
  timeline.replaceChildren();
  if (!state.range) return;
  const { startMs, endMs } = state.range;
  const span = Math.max(1, endMs - startMs);
  const place = (el, fromMs, toMs) => {
    el.style.left = `${((fromMs - startMs) / span) * 100}%`;
    el.style.width = `max(1px, ${((toMs - fromMs) / span) * 100}%)`;
  };
  let previous = null;
  for (const f of state.fragments) {
    // A gap is missing video longer than a second between consecutive fragments.
    if (previous && f.startMs - previous.endMs > 1000) {
      const gap = document.createElement("div");
      gap.className = "gap";
      gap.dataset.startMs = previous.endMs;
      gap.dataset.endMs = f.startMs;
      place(gap, previous.endMs, f.startMs);
      timeline.append(gap);
    }
    const el = document.createElement("div");
    el.className = "fragment";
    el.dataset.startMs = f.startMs;
    el.dataset.endMs = f.endMs;
    el.dataset.fragmentNumber = f.number;
    place(el, f.startMs, f.endMs);
    timeline.append(el);
    previous = f;
  }
  $("axis-start").textContent = iso(startMs);
  $("axis-end").textContent = iso(endMs);
}

// Metadata events come from the playlist's EXT-X-DATERANGE entries (one per MKV tag).
async function loadEvents() {
  const { startMs, endMs } = state.range;
  const list = $("events");
  list.replaceChildren();
  const events = [];
  // ON_DEMAND sessions span at most 24 h; the newest day is what the timeline mostly shows.
  const from = Math.max(startMs, endMs - 24 * 3600e3 + 1000);
  try {
    const master = await sessionUrl("ON_DEMAND", from, endMs);
    const masterText = await (await fetch(master)).text();
    const mediaLine = masterText.split("\n").find((l) => l.startsWith("getHLSMediaPlaylist"));
    if (!mediaLine) return;
    const mediaText = await (await fetch(new URL(mediaLine, master))).text();
    for (const line of mediaText.split("\n")) {
      if (!line.startsWith("#EXT-X-DATERANGE:")) continue;
      const attr = (key) => (line.match(new RegExp(`${key}="([^"]*)"`)) || [])[1];
      events.push({ atMs: Date.parse(attr("START-DATE")), name: attr("X-KVS-NAME"), value: attr("X-KVS-VALUE") });
    }
  } catch (error) {
    status(`Events unavailable: ${error.message}`);
  }
  const timeline = $("timeline");
  const span = Math.max(1, endMs - startMs);
  for (const event of events) {
    const marker = document.createElement("div");
    marker.className = "event";
    marker.dataset.name = event.name;
    marker.dataset.value = event.value;
    marker.title = `${event.name} = ${event.value}`;
    marker.style.left = `${((event.atMs - startMs) / span) * 100}%`;
    timeline.append(marker);
    const item = document.createElement("li");
    item.textContent = `${iso(event.atMs)}  ${event.name} = ${event.value}`;
    list.append(item);
  }
}

async function sessionUrl(mode, fromMs, toMs) {
  const body = { StreamName: state.stream, PlaybackMode: mode, DisplayFragmentTimestamp: "ALWAYS" };
  if (mode !== "LIVE") {
    // Producer-time sessions default to NEVER; a recording gap then reads as a time jump that
    // hls.js reports as buffer errors. ON_DISCONTINUITY marks gaps so players step over them.
    body.DiscontinuityMode = "ON_DISCONTINUITY";
    body.HLSFragmentSelector = {
      FragmentSelectorType: "PRODUCER_TIMESTAMP",
      TimestampRange: { StartTimestamp: seconds(fromMs), EndTimestamp: seconds(toMs) },
    };
    body.MaxMediaPlaylistFragmentResults = 5000;
  }
  return (await api("/getHLSStreamingSessionURL", body)).HLSStreamingSessionURL;
}

function stopPlayer() {
  if (state.hls) state.hls.destroy();
  state.hls = null;
  const video = $("player");
  video.removeAttribute("src");
  video.load();
}

function play(url, mode) {
  stopPlayer();
  state.mode = mode;
  const video = $("player");
  if (window.Hls && Hls.isSupported()) {
    const hls = new Hls({ liveSyncDurationCount: 2 });
    hls.on(Hls.Events.ERROR, (_event, data) => {
      window.framelogConsole.errors.push({ type: data.type, details: data.details, fatal: data.fatal });
      if (data.fatal) status(`Player error: ${data.details}`);
    });
    hls.loadSource(url);
    hls.attachMedia(video);
    state.hls = hls;
  } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = url; // Safari plays HLS natively.
  } else {
    status("This browser cannot play HLS (hls.js is missing and there is no native support).");
    return;
  }
  video.play().catch(() => {});
  status(`Playing ${mode === "LIVE" ? "live" : "from the archive"}`);
}

async function watchLive() {
  try {
    play(await sessionUrl("LIVE"), "LIVE");
  } catch (error) {
    status(error.message);
  }
}

async function playFrom(event) {
  if (!state.range) return;
  const box = $("timeline").getBoundingClientRect();
  const { startMs, endMs } = state.range;
  const atMs = startMs + ((event.clientX - box.left) / box.width) * (endMs - startMs);
  // Start at the fragment holding that moment (sessions list fragments that start in range).
  const holding = state.fragments.filter((f) => f.startMs <= atMs).pop() || state.fragments[0];
  const fromMs = holding.startMs;
  try {
    play(await sessionUrl("ON_DEMAND", fromMs, Math.min(endMs, fromMs + 24 * 3600e3 - 1000)), "ON_DEMAND");
  } catch (error) {
    status(error.message);
  }
}

// The producer time on screen: hls.js maps the playhead to PROGRAM-DATE-TIME.
function playingAtMs() {
  const date = state.hls && state.hls.playingDate;
  if (date && !Number.isNaN(date.getTime())) return date.getTime();
  return state.fragments.length ? state.fragments[state.fragments.length - 1].startMs : null;
}

async function grabStill() {
  const atMs = playingAtMs();
  if (atMs === null) return status("Nothing to grab yet.");
  try {
    const page = await api("/getImages", {
      StreamName: state.stream,
      ImageSelectorType: "PRODUCER_TIMESTAMP",
      StartTimestamp: seconds(Math.floor(atMs)),
      EndTimestamp: seconds(Math.floor(atMs)),
      Format: "JPEG",
      FormatConfig: { JPEGQuality: "85" },
      MaxResults: 1,
    });
    const image = (page.Images || [])[0];
    if (!image || !image.ImageContent) return status(`No still at ${iso(atMs)}: ${image ? image.Error : "no answer"}`);
    const src = `data:image/jpeg;base64,${image.ImageContent}`;
    $("still-image").src = src;
    $("still-link").href = src;
    $("still-time").textContent = iso(atMs);
    $("still-figure").hidden = false;
  } catch (error) {
    status(error.message);
  }
}

function showPlayhead() {
  const at = playingAtMs();
  $("playing-at").textContent = state.hls && state.hls.playingDate ? iso(at) : "";
  const timeline = $("timeline");
  let cursor = timeline.querySelector(".cursor");
  if (!state.range || !state.hls || !state.hls.playingDate) {
    if (cursor) cursor.remove();
    return;
  }
  if (!cursor) {
    cursor = document.createElement("div");
    cursor.className = "cursor";
    timeline.append(cursor);
  }
  const { startMs, endMs } = state.range;
  cursor.style.left = `${((at - startMs) / Math.max(1, endMs - startMs)) * 100}%`;
}

$("refresh").addEventListener("click", () => loadStreams().catch((e) => status(e.message)));
$("live").addEventListener("click", watchLive);
$("still").addEventListener("click", grabStill);
$("timeline").addEventListener("click", playFrom);
$("lookback").addEventListener("change", () => state.stream && loadTimeline().catch((e) => status(e.message)));
$("player").addEventListener("error", () => {
  const error = $("player").error;
  window.framelogConsole.errors.push({ type: "media", details: error ? error.message || String(error.code) : "unknown", fatal: true });
});
setInterval(showPlayhead, 500);
loadStreams().catch((e) => status(e.message));
