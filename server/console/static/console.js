// The Framelog web console: sign-in, the stream list and a stream's viewer (its timeline, with
// zoom and key-frame thumbnails). It uses only the KVS APIs this server answers (ListStreams,
// ListFragments, GetHLSStreamingSessionURL, GetImages) and our documented extensions (WHEP
// sessions, LowLatency, VideoCodec, MetadataFilter), so what it shows is what any client gets.
// A server started with --credentials checks a SigV4 signature on each call: the console then
// asks for a key and signs them (below). player.js plays, grid.js and search.js add the live
// grid and the metadata search.
"use strict";

const state = { stream: null, fragments: [], range: null, view: null, events: [], thumbnails: new Map(), mode: null };
// Tests and curious users read player errors here; `pending` counts API calls in flight.
window.framelogConsole = { errors: [], state, pending: 0, playingAtMs: () => playingAtMs() };

const $ = (id) => document.getElementById(id);
const status = (text) => { $("status").textContent = text; };

// ------------------------------------------------------------------------------------------------
// SigV4 with WebCrypto (AWS Signature Version 4, as docs/security.md describes the server's check).
// Only what the console sends: POST, no query string, a JSON body, and the headers content-type,
// host and x-amz-date (plus x-amz-security-token with a session token).
// ------------------------------------------------------------------------------------------------

const sigv4 = (() => {
  // Every KVS API the console calls is scoped to `kinesisvideo`; the data streams view signs for
  // `kinesis` and `monitoring` (CloudWatch).
  const DEFAULT_SERVICE = "kinesisvideo";
  const utf8 = new TextEncoder();
  const hex = (buffer) => Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
  const sha256Hex = async (text) => hex(await crypto.subtle.digest("SHA-256", utf8.encode(text)));

  async function hmac(key, text) {
    const raw = typeof key === "string" ? utf8.encode(key) : key;
    const cryptoKey = await crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    return crypto.subtle.sign("HMAC", cryptoKey, utf8.encode(text));
  }

  // 2024-05-01T12:34:56.789Z -> 20240501T123456Z
  const amzDate = (date) => date.toISOString().replace(/\.\d{3}Z$/, "Z").replace(/[-:]/g, "");

  // AWS URI-encodes each path segment; the console's paths (/listStreams, ...) are made of
  // characters that encode to themselves. Anything else is refused rather than signed in a form
  // the server would compute differently.
  function canonicalPath(path) {
    if (!/^\/[A-Za-z0-9._~\/-]*$/.test(path)) throw new Error(`cannot sign the path ${path}`);
    return path;
  }

  async function signingKey(secret, day, region, service) {
    let key = await hmac(`AWS4${secret}`, day);
    for (const part of [region, service, "aws4_request"]) key = await hmac(key, part);
    return key;
  }

  // The headers that sign a POST of `body` (a string, sent as UTF-8) to `path` on this page's
  // host, for `service`; `target` (an X-Amz-Target) is signed too. Scripts cannot set Host, but
  // the browser sends location.host, so that is what is signed.
  async function sign(credentials, path, contentType, body, now = new Date(), service = DEFAULT_SERVICE, target = null) {
    const { accessKeyId, secretAccessKey, sessionToken, region } = credentials;
    const date = amzDate(now);
    const day = date.slice(0, 8);
    const signed = { "content-type": contentType, host: location.host, "x-amz-date": date };
    if (target) signed["x-amz-target"] = target;
    if (sessionToken) signed["x-amz-security-token"] = sessionToken;
    const names = Object.keys(signed).sort();
    const canonicalHeaders = names.map((name) => `${name}:${signed[name].trim()}\n`).join("");
    const canonicalRequest = ["POST", canonicalPath(path), "", canonicalHeaders, names.join(";"), await sha256Hex(body)];
    const scope = `${day}/${region}/${service}/aws4_request`;
    const stringToSign = ["AWS4-HMAC-SHA256", date, scope, await sha256Hex(canonicalRequest.join("\n"))].join("\n");
    const signature = hex(await hmac(await signingKey(secretAccessKey, day, region, service), stringToSign));
    const headers = {
      "X-Amz-Date": date,
      Authorization: `AWS4-HMAC-SHA256 Credential=${accessKeyId}/${scope}, SignedHeaders=${names.join(";")}, Signature=${signature}`,
    };
    if (sessionToken) headers["X-Amz-Security-Token"] = sessionToken;
    return headers;
  }

  // WebCrypto exists only in secure contexts (HTTPS, or http://localhost and 127.0.0.1).
  const available = () => Boolean(window.crypto && crypto.subtle);
  return { sign, available };
})();
window.framelogConsole.sigv4 = sigv4; // the tests compare its signatures with botocore's

// ------------------------------------------------------------------------------------------------
// The key: in sessionStorage only, so it ends with the tab and never reaches disk-backed
// localStorage, cookies or URLs.
// ------------------------------------------------------------------------------------------------

const credentialStore = {
  KEY: "framelog.console.credentials",
  get() {
    try {
      return JSON.parse(sessionStorage.getItem(this.KEY));
    } catch {
      return null;
    }
  },
  set(credentials) { sessionStorage.setItem(this.KEY, JSON.stringify(credentials)); },
  clear() { sessionStorage.removeItem(this.KEY); },
};

// ------------------------------------------------------------------------------------------------
// API calls
// ------------------------------------------------------------------------------------------------

const JSON_TYPE = "application/json";
// Refusals that mean the key itself is wrong (unknown, bad secret, wrong region, expired).
const SIGN_IN_FAILURES = new Set([
  "UnrecognizedClientException",
  "InvalidSignatureException",
  "IncompleteSignatureException",
  "ExpiredTokenException",
]);

class ApiError extends Error {
  constructor(type, detail) {
    super(`${type}: ${detail}`);
    this.type = type;
    this.detail = detail;
  }
  get denied() { return this.type === "AccessDeniedException"; }
  // Handled by the sign-in panel: callers leave the status line to it.
  get signIn() { return this.type === "MissingAuthenticationTokenException" || SIGN_IN_FAILURES.has(this.type); }
}

async function api(path, body) {
  window.framelogConsole.pending++;
  try {
    return await call(path, JSON.stringify(body));
  } finally {
    window.framelogConsole.pending--;
  }
}

// An AWS JSON call (`POST /` with an X-Amz-Target): KDS (`kinesis`, awsJson1_1) or CloudWatch
// (`monitoring`, awsJson1_0).
async function awsJson(service, target, body) {
  const contentType = service === "monitoring" ? "application/x-amz-json-1.0" : "application/x-amz-json-1.1";
  window.framelogConsole.pending++;
  try {
    return await call("/", JSON.stringify(body), { contentType, service, target });
  } finally {
    window.framelogConsole.pending--;
  }
}

// KDS refuses a call without an Authorization header whatever the server's mode; on an open
// server (no key signed in) the X-Amz-Target calls are signed with this placeholder, which an open
// server accepts as it accepts any key.
const OPEN_MODE_KEY = { accessKeyId: "anonymous", secretAccessKey: "anonymous", region: "us-east-1" };

async function call(path, text, { contentType = JSON_TYPE, service, target = null } = {}) {
  const headers = { "Content-Type": contentType };
  if (target) headers["X-Amz-Target"] = target;
  const credentials = credentialStore.get() || (target ? OPEN_MODE_KEY : null);
  if (credentials) Object.assign(headers, await sigv4.sign(credentials, path, contentType, text, new Date(), service, target));
  const response = await fetch(path, { method: "POST", headers, body: text });
  const answer = await response.text();
  if (response.ok) return answer ? JSON.parse(answer) : {};
  let type = (response.headers.get("x-amzn-ErrorType") || "").split(":")[0];
  let message = answer;
  try {
    const json = JSON.parse(answer);
    message = json.Message || json.message || answer;
    // KDS and CloudWatch name the error in the body (`__type`, perhaps `namespace#Name`).
    if (!type && json.__type) type = json.__type.split("#").pop();
  } catch {} // not JSON (e.g. a proxy's page): show it as it came
  const error = new ApiError(type || String(response.status), message);
  if (error.signIn) signIn.refused(error, Boolean(credentialStore.get()));
  throw error;
}

// For the catch of a call whose result fills no particular place: the status line.
function report(error) {
  if (!(error instanceof ApiError && error.signIn)) status(error.message);
}

const notAllowed = (error) => `Not allowed: ${error.detail}`;

// In place of data a key's policy does not let it load: "Not allowed: <AWS's message>".
function showDenied(container, error) {
  const note = document.createElement("p");
  note.className = "denied";
  note.textContent = notAllowed(error);
  container.replaceChildren(note);
}

// A viewer call failed: a policy refusal is shown above the player, anything else on the status line.
function viewerProblem(error) {
  if (error instanceof ApiError && error.denied) {
    $("viewer-message").textContent = notAllowed(error);
    $("viewer-message").hidden = false;
    status(`${state.stream}: not allowed`);
  } else {
    report(error);
  }
}

// ------------------------------------------------------------------------------------------------
// Sign-in panel
// ------------------------------------------------------------------------------------------------

const signIn = {
  // A refusal that asks for a key: no key yet (Missing...), or the one given was not accepted.
  refused(error, hadKey) {
    if (hadKey) credentialStore.clear(); // a rejected key is not kept to be sent again
    this.show(hadKey || error.type !== "MissingAuthenticationTokenException" ? `Sign-in failed: ${error.detail}` : "");
  },

  show(message = "") {
    grid.hide();
    closeViewer();
    dataView.hide();
    $("streams").replaceChildren();
    $("data-streams").replaceChildren();
    $("signin-error").textContent = message;
    $("signin").hidden = false;
    document.querySelector("main").hidden = true;
    this.showAccount();
    status("Sign in to continue.");
    // After a refusal the key id stays filled in and only the secret is asked again.
    $($("access-key-id").value ? "secret-access-key" : "access-key-id").focus();
  },

  hide() {
    $("signin").hidden = true;
    $("signin-error").textContent = "";
    document.querySelector("main").hidden = false;
    this.showAccount();
  },

  showAccount() {
    const credentials = credentialStore.get();
    $("account").hidden = !credentials;
    $("signed-in-as").textContent = credentials ? `Signed in as ${credentials.accessKeyId}` : "";
  },

  submit(event) {
    event.preventDefault(); // the form is never sent anywhere: the key only signs API calls
    if (!sigv4.available()) {
      $("signin-error").textContent =
        "This page is not a secure context (HTTPS or localhost), so the browser offers no WebCrypto to sign with.";
      return;
    }
    const value = (id) => $(id).value.trim();
    credentialStore.set({
      accessKeyId: value("access-key-id"),
      secretAccessKey: value("secret-access-key"),
      sessionToken: value("session-token") || undefined,
      region: value("region") || "us-east-1",
    });
    $("secret-access-key").value = ""; // no copy left in the page once stored
    this.hide();
    status("Signing in…");
    loadAll(); // a refused key comes back through refused()
  },

  signOut() {
    credentialStore.clear();
    $("session-token").value = "";
    this.show();
  },
};

const seconds = (ms) => ms / 1000;
const iso = (ms) => new Date(ms).toISOString().replace(".000Z", "Z");

async function streamNames() {
  const names = [];
  let token;
  do {
    const page = await api("/listStreams", token ? { NextToken: token } : {});
    for (const info of page.StreamInfoList || []) names.push(info.StreamName);
    token = page.NextToken;
  } while (token);
  return names;
}

// The stream names, sorted, for a view of every camera; null when they could not be listed (a
// refusal is shown in `container`, anything else on the status line).
async function sortedStreamNames(container) {
  try {
    return (await streamNames()).sort();
  } catch (error) {
    if (error instanceof ApiError && error.denied) showDenied(container, error);
    else report(error);
    return null;
  }
}

async function loadStreams() {
  let names;
  try {
    names = await streamNames();
  } catch (error) {
    if (error instanceof ApiError && error.denied) showDenied($("streams"), error);
    throw error;
  }
  signIn.showAccount(); // the key (if any) was accepted
  streamButtons($("streams"), "stream", names, openStream);
  status(names.length ? `${names.length} stream(s)` : "No streams yet: upload with PutMedia or the edge agent.");
}

// `list` filled with a button per name, sorted, of class `className`, each opening its stream.
function streamButtons(list, className, names, open) {
  list.replaceChildren();
  for (const name of names.sort()) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = className;
    button.dataset.stream = name;
    button.textContent = name;
    button.addEventListener("click", () => open(name));
    list.append(button);
  }
}

// Video streams, then (once the key is accepted) data streams.
function loadAll() {
  loadStreams()
    .then(() => dataView.loadStreams())
    .catch(report);
}

async function openStream(name) {
  grid.hide();
  dataView.hide();
  state.stream = name;
  for (const b of document.querySelectorAll("button.stream")) b.classList.toggle("selected", b.dataset.stream === name);
  $("viewer").hidden = false;
  $("stream-title").textContent = name;
  $("viewer-message").hidden = true;
  $("still-figure").hidden = true;
  stopPlayer();
  try {
    await loadTimeline();
  } catch (error) {
    clearTimeline();
    viewerProblem(error);
  }
}

function clearTimeline() {
  state.fragments = [];
  state.range = null;
  state.view = null;
  state.events = [];
  drawTimeline();
  $("events").replaceChildren();
  $("axis-start").textContent = "";
  $("axis-end").textContent = "";
}

// Back to no stream selected (sign-out, or a key that must be entered again).
function closeViewer() {
  stopPlayer();
  state.stream = null;
  clearTimeline();
  $("viewer").hidden = true;
}

// Fragments that arrived within the look-back window, placed by producer time (back-dated
// uploads from an edge agent show where they belong).
async function loadTimeline() {
  const hours = Number($("lookback").value);
  status("Loading fragments…");
  const fragments = await arrivedFragments(state.stream, hours, {}, (found) => found.length < 20000);
  fragments.sort((a, b) => a.startMs - b.startMs);
  state.fragments = fragments;
  state.range = fragments.length ? { startMs: fragments[0].startMs, endMs: fragments[fragments.length - 1].endMs } : null;
  state.view = state.range && { ...state.range };
  state.events = [];
  state.thumbnails = new Map();
  drawTimeline();
  status(fragments.length ? `${fragments.length} fragment(s)` : "No fragments in the look-back window.");
  if (fragments.length) await loadEvents();
}

// The part of the look-back window the timeline shows (`state.view`), zoomed from the whole
// window down to MIN_VIEW_MS: fragments, gaps, metadata markers and key-frame thumbnails.
const MIN_VIEW_MS = 10_000;
// Thumbnails across the timeline at any zoom, at most one per THUMBNAIL_PX of its width: each is
// one GetImages call for a fragment's key frame.
const THUMBNAILS = 8;
const THUMBNAIL_PX = 170;

// The fragments of `stream` that arrived in the last `hours` (ListFragments by server time with
// `extra` members, such as our MetadataFilter), page after page while `more(found)` says so.
async function arrivedFragments(stream, hours, extra, more) {
  const now = Date.now();
  const found = [];
  let token;
  do {
    const body = {
      StreamName: stream,
      MaxResults: 1000,
      ...extra,
      ...(token
        ? { NextToken: token }
        : {
            FragmentSelector: {
              FragmentSelectorType: "SERVER_TIMESTAMP",
              TimestampRange: { StartTimestamp: seconds(now - hours * 3600e3), EndTimestamp: seconds(now + 60e3) },
            },
          }),
    };
    const page = await api("/listFragments", body);
    for (const f of page.Fragments || []) {
      const startMs = Math.round(f.ProducerTimestamp * 1000);
      found.push({ stream, number: f.FragmentNumber, startMs, endMs: startMs + f.FragmentLengthInMilliseconds });
    }
    token = page.NextToken;
  } while (token && more(found));
  return found;
}

function drawTimeline() {
  const timeline = $("timeline");
  timeline.replaceChildren();
  if (!state.view) return drawThumbnails([]);
  const { startMs, endMs } = state.view;
  const at = (ms) => `${((ms - startMs) / Math.max(1, endMs - startMs)) * 100}%`;
  const shown = state.fragments.filter((f) => f.endMs >= startMs && f.startMs <= endMs);
  let previous = null;
  for (const f of shown) {
    // A gap is missing video longer than a second between consecutive fragments.
    if (previous && f.startMs - previous.endMs > 1000) timeline.append(span("gap", previous.endMs, f.startMs, at));
    const el = span("fragment", f.startMs, f.endMs, at);
    el.dataset.fragmentNumber = f.number;
    timeline.append(el);
    previous = f;
  }
  for (const event of state.events.filter((e) => e.atMs >= startMs && e.atMs <= endMs)) {
    const marker = document.createElement("div");
    marker.className = "event";
    marker.dataset.name = event.name;
    marker.dataset.value = event.value;
    marker.title = `${event.name} = ${event.value}`;
    marker.style.left = at(event.atMs);
    timeline.append(marker);
  }
  $("axis-start").textContent = iso(startMs);
  $("axis-end").textContent = iso(endMs);
  $("zoom-level").textContent = spanText(endMs - startMs);
  // The view's own thumbnails come once the zooming settles; the old ones would sit in wrong places.
  drawThumbnails([]);
  scheduleThumbnails();
}

// A block of the timeline from `fromMs` to `toMs`.
function span(className, fromMs, toMs, at) {
  const el = document.createElement("div");
  el.className = className;
  el.dataset.startMs = fromMs;
  el.dataset.endMs = toMs;
  el.style.left = at(fromMs);
  el.style.width = `max(1px, calc(${at(toMs)} - ${at(fromMs)}))`;
  return el;
}

const spanText = (ms) =>
  ms >= 2 * 86400e3 ? `${Math.round(ms / 86400e3)} days` : ms >= 2 * 3600e3 ? `${Math.round(ms / 3600e3)} h`
    : ms >= 120e3 ? `${Math.round(ms / 60e3)} min` : `${Math.round(ms / 1000)} s`;

// Zooms the view by `factor` (below 1 zooms in) around `centerMs`, inside the look-back window.
function zoom(factor, centerMs) {
  if (!state.range || !state.view) return;
  const whole = Math.max(MIN_VIEW_MS, state.range.endMs - state.range.startMs);
  const current = Math.max(MIN_VIEW_MS, state.view.endMs - state.view.startMs);
  const width = Math.min(whole, Math.max(MIN_VIEW_MS, current * factor));
  const center = centerMs ?? (state.view.startMs + state.view.endMs) / 2;
  const startMs = Math.min(Math.max(state.range.startMs, center - width / 2), state.range.startMs + whole - width);
  state.view = { startMs, endMs: startMs + width };
  drawTimeline();
}

// The producer time under a pointer on the timeline.
function timelineMs(clientX) {
  const box = $("timeline").getBoundingClientRect();
  const { startMs, endMs } = state.view;
  return startMs + ((clientX - box.left) / box.width) * (endMs - startMs);
}

let thumbnailTimer = null;
// Thumbnails wait for the zooming to settle.
function scheduleThumbnails() {
  clearTimeout(thumbnailTimer);
  thumbnailTimer = setTimeout(() => loadThumbnails().catch(report), 250);
}

// Key frames spread across the view: the first frame of THUMBNAILS fragments, evenly spaced.
async function loadThumbnails() {
  if (!state.view) return;
  const { startMs, endMs } = state.view;
  const inView = state.fragments.filter((f) => f.startMs >= startMs && f.startMs <= endMs);
  const count = Math.max(2, Math.min(THUMBNAILS, Math.floor($("thumbs").clientWidth / THUMBNAIL_PX)));
  const picked = [...new Set(Array.from({ length: count }, (_, i) => inView[Math.floor((i * inView.length) / count)]))]
    .filter(Boolean);
  const view = state.view;
  // One thumbnail refused (the image pool busy while zooming) leaves a hole, not an empty strip.
  const thumbs = await Promise.allSettled(picked.map((f) => thumbnail(state.stream, f)));
  if (view === state.view) drawThumbnails(thumbs.map((t) => t.status === "fulfilled" && t.value).filter(Boolean));
}

// One fragment's key frame as a small JPEG (data URL), kept for the stream.
async function thumbnail(stream, fragment) {
  const kept = state.thumbnails.get(fragment.number);
  if (kept) return kept;
  const page = await api("/getImages", {
    StreamName: stream,
    ImageSelectorType: "PRODUCER_TIMESTAMP",
    StartTimestamp: seconds(fragment.startMs),
    EndTimestamp: seconds(fragment.startMs),
    Format: "JPEG",
    WidthPixels: 160,
    MaxResults: 1,
  });
  const image = (page.Images || [])[0];
  if (!image || !image.ImageContent) return null;
  const thumb = { atMs: fragment.startMs, src: `data:image/jpeg;base64,${image.ImageContent}` };
  if (stream === state.stream) state.thumbnails.set(fragment.number, thumb);
  return thumb;
}

function drawThumbnails(thumbs) {
  const strip = $("thumbs");
  strip.replaceChildren();
  if (!state.view) return;
  const { startMs, endMs } = state.view;
  for (const thumb of thumbs) {
    const img = document.createElement("img");
    img.className = "thumb";
    img.src = thumb.src;
    img.alt = `Key frame at ${iso(thumb.atMs)}`;
    img.title = iso(thumb.atMs);
    img.dataset.atMs = thumb.atMs;
    img.style.left = `${((thumb.atMs - startMs) / Math.max(1, endMs - startMs)) * 100}%`;
    img.addEventListener("click", () => playFromMs(thumb.atMs));
    strip.append(img);
  }
}

// Metadata events come from the playlist's EXT-X-DATERANGE entries (one per MKV tag).
async function loadEvents() {
  const { startMs, endMs } = state.range;
  const list = $("events");
  list.replaceChildren();
  const events = [];
  // ON_DEMAND sessions span at most 24 h; the newest day is what the timeline mostly shows.
  const from = Math.max(startMs, endMs - 24 * 3600e3 + 1000);
  const stream = state.stream;
  try {
    // Only the playlist is read: no video, so no H.264 asked for (it would transcode H.265).
    const master = await sessionUrl("ON_DEMAND", from, endMs, stream, false);
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
    if (error instanceof ApiError && error.signIn) return;
    status(`Events unavailable: ${error instanceof ApiError && error.denied ? notAllowed(error) : error.message}`);
  }
  if (stream !== state.stream) return; // another stream opened meanwhile
  state.events = events;
  drawTimeline();
  for (const event of events) {
    const item = document.createElement("li");
    item.textContent = `${iso(event.atMs)}  ${event.name} = ${event.value}`;
    list.append(item);
  }
}

// A session of `stream` (`video`: it will be played, so Chromium asks for H.264).
async function sessionUrl(mode, fromMs, toMs, stream = state.stream, video = true) {
  const body = { StreamName: stream, PlaybackMode: mode, DisplayFragmentTimestamp: "ALWAYS" };
  if (video && needsH264()) body.VideoCodec = "H264";
  // Live is Low-Latency HLS (our extension): parts of the fragment still arriving, about a
  // second behind the camera instead of ten.
  if (mode === "LIVE") body.LowLatency = true;
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

// The main viewer's player; the live grid's tiles have their own (grid.js).
const player = new Player($("player"), (error) => {
  window.framelogConsole.errors.push(error);
  if (error.fatal) status(`Player error: ${error.details}`);
});
Object.defineProperty(state, "transport", { get: () => player.transport, enumerable: true });

function stopPlayer() {
  player.stop();
}

// A WHEP session URL for `stream` (our extension). WebRTC here carries H.264 only: an H.265
// camera's video is transcoded for it.
async function whepUrl(stream) {
  const request = { StreamName: stream, Expires: 43200, VideoCodec: "H264" };
  return (await api("/getWHEPSessionURL", request)).WHEPSessionURL;
}

// An archive (ON_DEMAND) session's URL, played by the main viewer.
function play(url, mode) {
  state.mode = mode;
  if (!player.hlsPlay(url, mode === "LIVE")) {
    status("This browser cannot play HLS (hls.js is missing and there is no native support).");
    return;
  }
  status(`Playing ${mode === "LIVE" ? "live" : "from the archive"}`);
}

// Live plays over WebRTC where the browser has it, else over Low-Latency HLS: also when WebRTC
// gives no picture or is refused (a key whose policy allows HLS only).
async function watchLive() {
  const stream = state.stream;
  try {
    const transport = await player.live(() => whepUrl(stream), () => sessionUrl("LIVE", undefined, undefined, stream));
    if (!transport) return;
    state.mode = "LIVE";
    status(transport === "webrtc" ? "Playing live (WebRTC)" : "Playing live");
  } catch (error) {
    viewerProblem(error);
  }
}

function playFrom(event) {
  if (state.view) playFromMs(timelineMs(event.clientX));
}

// Plays the archive from the fragment holding `atMs` (sessions list fragments that start in
// their range); `fragmentStart` says `atMs` is where a fragment starts.
async function playFromMs(atMs, fragmentStart = false) {
  if (!state.range && !fragmentStart) return;
  const holding = fragmentStart ? null : state.fragments.filter((f) => f.startMs <= atMs).pop() || state.fragments[0];
  const fromMs = holding ? holding.startMs : atMs;
  try {
    play(await sessionUrl("ON_DEMAND", fromMs, fromMs + 24 * 3600e3 - 1000), "ON_DEMAND");
  } catch (error) {
    viewerProblem(error);
  }
}

// The producer time on screen: hls.js maps the playhead to PROGRAM-DATE-TIME.
function playingAtMs() {
  const date = player.hls && player.hls.playingDate;
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
    viewerProblem(error);
  }
}

function showPlayhead() {
  const at = playingAtMs();
  $("playing-at").textContent = player.hls && player.hls.playingDate ? iso(at) : "";
  const timeline = $("timeline");
  let cursor = timeline.querySelector(".cursor");
  if (!state.view || !player.hls || !player.hls.playingDate) {
    if (cursor) cursor.remove();
    return;
  }
  if (!cursor) {
    cursor = document.createElement("div");
    cursor.className = "cursor";
    timeline.append(cursor);
  }
  const { startMs, endMs } = state.view;
  cursor.style.left = `${((at - startMs) / Math.max(1, endMs - startMs)) * 100}%`;
}

$("refresh").addEventListener("click", loadAll);
$("signin-form").addEventListener("submit", (event) => signIn.submit(event));
$("sign-out").addEventListener("click", () => signIn.signOut());
$("live").addEventListener("click", watchLive);
$("still").addEventListener("click", grabStill);
$("timeline").addEventListener("click", playFrom);
$("timeline").addEventListener("wheel", (event) => {
  if (!state.view) return;
  event.preventDefault();
  zoom(event.deltaY < 0 ? 0.5 : 2, timelineMs(event.clientX));
}, { passive: false });
$("zoom-in").addEventListener("click", () => zoom(0.25));
$("zoom-out").addEventListener("click", () => zoom(4));
$("zoom-all").addEventListener("click", () => zoom(Infinity));
$("lookback").addEventListener("change", () => state.stream && loadTimeline().catch(viewerProblem));
setInterval(showPlayhead, 500);
// Open mode answers unsigned calls; a server with --credentials answers MissingAuthenticationToken
// and the sign-in panel takes over. A key stored earlier in this tab signs from the first call.
// After every script has run (grid.js and search.js come after this one).
document.addEventListener("DOMContentLoaded", () => {
  signIn.showAccount();
  loadAll();
});
