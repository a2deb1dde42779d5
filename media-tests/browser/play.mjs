#!/usr/bin/env node
// Browser playback check for framelog: plays HLS in headless Chromium (Debian's /usr/bin/chromium) driven by
// playwright-core, and prints ONE JSON line on stdout describing what happened. Used by
// media-tests/python/test_browser_playback.py; see docs/playback.md ("Browsers") for the Chromium configuration.
//
//   node play.mjs hls <master playlist URL> <screenshot.png> [seconds]
//       A page of the server's origin (falls back to about:blank when the server does not serve
//       /console/hls.min.js) with a <video muted autoplay> and an hls.js instance loading the URL.
//   node play.mjs hls-latency <master playlist URL> <screenshot.png> [seconds]
//       hls mode with hls.js's low-latency mode on, sampling glass-to-browser latency: for every frame the video
//       presents (requestVideoFrameCallback), Date.now() minus the wall-clock time hls.js maps the frame to
//       (EXT-X-PROGRAM-DATE-TIME, the producer's time). Adds "latencyMs" {count, p50, p99, min, max}, sampled
//       after the first second of playback, and "partRequests", the getMP4Part.mp4 requests the page made.
//   node play.mjs whep <WHEP session URL> <screenshot.png> [seconds]
//       A WebRTC player of the server's origin: POSTs its offer to the WHEP URL, plays the answer's video, samples
//       latency from each presented frame's RTP timestamp (the producer clock), then DELETEs the session. Adds
//       "latencyMs" and "whep" {status, location, connectionStates, deleteStatus}.
//   node play.mjs console <server base URL> <stream name> <live|live-hls|ondemand> <screenshot.png> [seconds]
//       The server's web console: opens the stream, starts LIVE (#live: WebRTC, or with live-hls the console opened
//       with ?live=hls, LL-HLS) or ON_DEMAND (a click on the first .fragment of #timeline), then fetches a still
//       (#still). Adds "transport", what the console played over (webrtc, ll-hls, hls).
//   node play.mjs console-script <server base URL> <steps.json> <screenshot.png>
//       The console driven through a list of steps (sign in, open a stream, play, the live grid, zoom,
//       thumbnails, search, sign out, ...; see
//       SCRIPT_STEPS below), recording what the page shows after each one and every request it made.
//
// Both wait until video.currentTime has advanced by `seconds` (default 4) of continuous playback, or until the
// playback budget runs out, then save a screenshot of the page (and of the video element alone, next to it as
// <name>.video.png). The JSON line: {"ok", "start", "end", "played", "errors", "width", "height", ...};
// ok is true only when playback advanced far enough, no player error fired and the video has a size.
// The whole run (browser start to exit) is bounded by RUN_BUDGET_MS; the exit code is 0 when ok, 1 otherwise,
// 2 on a usage error.

import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import fs from 'node:fs';

const here = path.dirname(fileURLToPath(import.meta.url));
const consoleDir = path.resolve(here, '../../server/console');
const require = createRequire(path.join(consoleDir, 'package.json'));
const { chromium } = require('playwright-core');
const HLS_JS_FILE = require.resolve('hls.js/dist/hls.min.js');

const CHROMIUM = process.env.FRAMELOG_CHROMIUM || '/usr/bin/chromium';
const RUN_BUDGET_MS = 55_000; // the caller kills us at 60 s
const DEFAULT_SECONDS = 4;
const POLL_MS = 100;

// Chromium flags. Debian's chromium is built with the proprietary codecs (H.264, AAC) and decodes them in
// software through MSE; nothing has to be enabled for that. What headless playback needs:
//  - --autoplay-policy=no-user-gesture-required: play() without a click (the video is muted anyway);
//  - --no-sandbox when running as root (Chromium refuses to start its sandbox as root);
//  - --disable-background-media-suspend / --disable-renderer-backgrounding: a headless page is never "visible",
//    media must not be paused or throttled for that.
function chromiumArgs() {
  const args = [
    '--autoplay-policy=no-user-gesture-required',
    '--disable-background-media-suspend',
    '--disable-renderer-backgrounding',
    '--disable-background-timer-throttling',
    '--disable-backgrounding-occluded-windows',
  ];
  if (typeof process.getuid === 'function' && process.getuid() === 0) args.push('--no-sandbox');
  return args;
}

const started = Date.now();
const remaining = () => RUN_BUDGET_MS - (Date.now() - started);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

let browser = null;
let currentPage = null; // for a screenshot of whatever the page shows when a step fails
let screenshotFile = null;
let printed = false;
const result = { ok: false, mode: null, start: null, end: null, played: 0, errors: [], width: 0, height: 0 };

function emit(code) {
  if (!printed) {
    printed = true;
    result.elapsedMs = Date.now() - started;
    process.stdout.write(JSON.stringify(result) + '\n');
  }
  process.exitCode = code;
}

// The hard stop: whatever hangs (browser launch, navigation, a screenshot), print what we have and exit.
const watchdog = setTimeout(async () => {
  result.ok = false;
  result.reason = (result.reason ? result.reason + '; ' : '') + `watchdog: run exceeded ${RUN_BUDGET_MS} ms`;
  emit(1);
  try {
    const proc = browser && browser.process && browser.process();
    if (proc) proc.kill('SIGKILL');
  } catch {}
  process.exit(1);
}, RUN_BUDGET_MS + 2_000);

function usage(message) {
  process.stderr.write(
    `${message}\nusage: play.mjs hls <master URL> <screenshot.png> [seconds]\n` +
      `       play.mjs console <server URL> <stream> <live|ondemand> <screenshot.png> [seconds]\n` +
      `       play.mjs console-script <server URL> <steps.json> <screenshot.png>\n`,
  );
  process.exit(2);
}

function parseSeconds(text) {
  if (text === undefined) return DEFAULT_SECONDS;
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) usage(`bad seconds: ${text}`);
  return value;
}

// Diagnostics every run records: uncaught page errors (counted as errors), console errors and HTTP answers
// >= 400 (reported separately, e.g. a favicon 404 is not a player error).
let inflight = 0;
let lastNetworkChange = Date.now();

function watchPage(page) {
  const settle = (delta) => () => {
    inflight += delta;
    lastNetworkChange = Date.now();
  };
  page.on('request', settle(1));
  // Which fragments the player fetched (HLS media segment URLs carry FragmentNumber), in order, once each.
  result.fragmentNumbers = [];
  page.on('request', (request) => {
    try {
      const number = new URL(request.url()).searchParams.get('FragmentNumber');
      if (number && !result.fragmentNumbers.includes(number)) result.fragmentNumbers.push(number);
    } catch {}
  });
  // LL-HLS parts are named by media sequence number (the fragment's sequence number in its stream).
  result.partRequests = 0;
  result.partSegments = [];
  page.on('request', (request) => {
    if (!request.url().includes('/getMP4Part.mp4?')) return;
    result.partRequests += 1;
    const msn = Number(new URL(request.url()).searchParams.get('MSN'));
    if (!result.partSegments.includes(msn)) result.partSegments.push(msn);
  });
  page.on('requestfinished', settle(-1));
  page.on('requestfailed', settle(-1));
  result.consoleErrors = [];
  result.httpErrors = [];
  page.on('pageerror', (err) => result.errors.push({ source: 'page', message: String(err && err.message) }));
  page.on('console', (msg) => {
    if (msg.type() === 'error') result.consoleErrors.push(msg.text().slice(0, 500));
  });
  page.on('response', (response) => {
    if (response.status() >= 400) result.httpErrors.push({ status: response.status(), url: response.url() });
  });
  page.on('requestfailed', (request) => {
    const failure = request.failure();
    const text = failure ? failure.errorText : 'failed';
    // Aborted requests are normal for a player (hls.js cancels loads on seeks and teardown).
    if (text !== 'net::ERR_ABORTED') result.httpErrors.push({ status: 0, url: request.url(), error: text });
  });
}

// Waits until no request has been in flight for quietMs (the console loads its timeline in several steps:
// ListFragments, then the playlists whose EXT-X-DATERANGE tags become .event markers).
async function networkQuiet(quietMs, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (inflight <= 0 && Date.now() - lastNetworkChange >= quietMs) return true;
    await sleep(50);
  }
  return false;
}

// What the page's Chromium says about the codecs we play (diagnostics for codec trouble).
async function codecSupport(page) {
  return page.evaluate(() => {
    const types = {
      h264: 'video/mp4; codecs="avc1.64001e"',
      aac: 'audio/mp4; codecs="mp4a.40.2"',
      h264_aac: 'video/mp4; codecs="avc1.64001e,mp4a.40.2"',
      h264_444: 'video/mp4; codecs="avc1.f4001e"',
      hevc: 'video/mp4; codecs="hvc1.1.6.L93.B0"',
    };
    const MS = window.ManagedMediaSource || window.MediaSource;
    const out = {};
    for (const [name, type] of Object.entries(types)) out[name] = MS ? MS.isTypeSupported(type) : null;
    return out;
  });
}

// Installs a sampler on `video` (a page-side element handle): continuous playback is the sum of forward
// currentTime steps of less than 1 s between samples, so a seek (hls.js jumping to the live edge or over a gap)
// never counts as played time. `start` is currentTime at the first 'playing' event.
async function installSampler(videoHandle) {
  await videoHandle.evaluate((video, pollMs) => {
    const state = {
      start: null,
      last: null,
      played: 0,
      playing: false,
      ended: false,
      waiting: 0,
      seeks: 0,
      stalls: 0,
      videoErrors: [],
    };
    video.__framelogState = state;
    video.addEventListener('playing', () => {
      state.playing = true;
      if (state.start === null) state.start = video.currentTime;
    });
    video.addEventListener('waiting', () => state.waiting++);
    video.addEventListener('stalled', () => state.stalls++);
    video.addEventListener('seeking', () => state.seeks++);
    video.addEventListener('ended', () => (state.ended = true));
    video.addEventListener('error', () => {
      const err = video.error;
      state.videoErrors.push({ source: 'video', code: err ? err.code : null, message: err ? err.message : '' });
    });
    setInterval(() => {
      const now = video.currentTime;
      if (state.start !== null && state.last !== null) {
        const step = now - state.last;
        if (step > 0 && step < 1) state.played += step;
      }
      if (state.start !== null) state.last = now;
    }, pollMs);
  }, POLL_MS);
}

async function readSampler(videoHandle) {
  return videoHandle.evaluate((video) => {
    const s = video.__framelogState;
    return {
      start: s.start,
      now: video.currentTime,
      played: s.played,
      ended: s.ended,
      paused: video.paused,
      readyState: video.readyState,
      waiting: s.waiting,
      stalls: s.stalls,
      seeks: s.seeks,
      videoErrors: s.videoErrors,
      width: video.videoWidth,
      height: video.videoHeight,
      buffered: Array.from({ length: video.buffered.length }, (_, i) => [video.buffered.start(i), video.buffered.end(i)]),
    };
  });
}

// Polls until `seconds` of playback, the end of the media, a fatal error or the deadline.
async function waitForPlayback(page, videoHandle, seconds, playerErrors, deadlineMs) {
  let snapshot = await readSampler(videoHandle);
  while (Date.now() < deadlineMs) {
    snapshot = await readSampler(videoHandle);
    if (snapshot.played >= seconds) break;
    if (snapshot.ended) break;
    const errors = await playerErrors();
    if (errors.some((e) => e.fatal) || snapshot.videoErrors.length) break;
    await sleep(POLL_MS);
  }
  return snapshot;
}

function finishResult(snapshot, seconds, errors) {
  result.start = snapshot.start;
  result.end = snapshot.now;
  result.played = Math.round(snapshot.played * 1000) / 1000;
  result.ended = snapshot.ended;
  result.paused = snapshot.paused;
  result.readyState = snapshot.readyState;
  result.waiting = snapshot.waiting;
  result.seeks = snapshot.seeks;
  result.buffered = snapshot.buffered;
  result.width = snapshot.width;
  result.height = snapshot.height;
  const reported = [...errors, ...snapshot.videoErrors];
  result.recovered = reported.filter((e) => e.fatal === false && RECOVERIES.includes(e.details));
  result.errors.push(...reported.filter((e) => !result.recovered.includes(e)));
  result.wanted = seconds;
  const reasons = [];
  if (snapshot.start === null) reasons.push('the video never fired "playing"');
  if (snapshot.played < seconds) reasons.push(`played ${snapshot.played.toFixed(3)} s < ${seconds} s`);
  if (result.errors.length) reasons.push(`${result.errors.length} player error(s)`);
  if (!snapshot.width || !snapshot.height) reasons.push('the video has no size');
  if (reasons.length) result.reason = reasons.join('; ');
  result.ok = reasons.length === 0;
}

async function screenshots(page, videoHandle, file) {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  await page.screenshot({ path: file, timeout: 10_000 });
  result.screenshot = path.resolve(file);
  const videoFile = file.replace(/(\.png)?$/i, '.video.png');
  await videoHandle.screenshot({ path: videoFile, timeout: 10_000 });
  result.videoScreenshot = path.resolve(videoFile);
}

// A new page of `viewport` size whose screenshot goes to `file`, watched for errors and requests.
async function openPage(file, viewport) {
  const page = await browser.newPage({ viewport });
  currentPage = page;
  screenshotFile = file;
  watchPage(page);
  return page;
}

// ------------------------------------------------------------------------------------------------
// hls mode
// ------------------------------------------------------------------------------------------------

async function runHls(url, file, seconds, sampleLatency = false) {
  result.mode = sampleLatency ? 'hls-latency' : 'hls';
  result.url = url;
  const origin = new URL(url).origin;
  const page = await openPage(file, { width: 640, height: 360 });
  // The page must be of the server's origin: Chromium's Private Network Access rules block an opaque-origin page
  // (about:blank, data:) from fetching a loopback server. The page itself is ours, answered by Playwright's router
  // at a path of the server origin; hls.js comes from the server (GET /console/hls.min.js) when it serves it,
  // otherwise from node_modules.
  let hlsFrom = null;
  try {
    const probe = await fetch(`${origin}/console/hls.min.js`, { method: 'HEAD', signal: AbortSignal.timeout(5_000) });
    if (probe.ok) hlsFrom = `${origin}/console/hls.min.js`;
    else result.hlsJsProbe = probe.status;
  } catch (err) {
    result.hlsJsProbe = String(err.message || err).slice(0, 300);
  }
  const pageUrl = `${origin}/console/__play-check.html`;
  const hlsUrl = hlsFrom || `${origin}/console/__play-check-hls.min.js`;
  await page.route(pageUrl, (route) =>
    route.fulfill({
      contentType: 'text/html; charset=utf-8',
      body:
        '<!doctype html><html><head><title>framelog hls.js check</title>' +
        '<style>html,body{margin:0;background:#000}video{display:block;width:640px;height:360px}</style>' +
        `<script src="${hlsUrl}"></script></head>` +
        '<body><video id="v" muted autoplay playsinline></video></body></html>',
    }),
  );
  if (!hlsFrom) {
    await page.route(hlsUrl, (route) => route.fulfill({ contentType: 'text/javascript', path: HLS_JS_FILE }));
  }
  await page.goto(pageUrl, { timeout: 10_000 });
  result.pageOrigin = await page.evaluate(() => window.location.origin);
  result.hlsJs = { from: hlsFrom || HLS_JS_FILE, version: await page.evaluate(() => window.Hls && window.Hls.version) };
  result.mse = await codecSupport(page);
  const video = await page.$('#v');
  await installSampler(video);
  const supported = await page.evaluate(() => window.Hls.isSupported());
  if (!supported) {
    result.errors.push({ source: 'setup', message: 'Hls.isSupported() is false' });
  } else {
    await page.evaluate(([src, sampleLatency]) => {
      const video = document.getElementById('v');
      const errors = (window.__hlsErrors = []);
      window.__levels = null;
      const hls = (window.__hls = new window.Hls(sampleLatency ? { lowLatencyMode: true } : {}));
      window.__latencies = [];
      if (sampleLatency) {
        // A frame's wall-clock time comes from the playlist's PROGRAM-DATE-TIME; the first second of playback
        // (the player settling on its target) is not sampled.
        let firstAt = null;
        const onFrame = (now, metadata) => {
          const date = hls.playingDate;
          if (date && !video.paused) {
            firstAt = firstAt ?? metadata.mediaTime;
            const frameDateMs = date.getTime() + (metadata.mediaTime - video.currentTime) * 1000;
            if (metadata.mediaTime - firstAt >= 1) window.__latencies.push(Date.now() - frameDateMs);
          }
          video.requestVideoFrameCallback(onFrame);
        };
        video.requestVideoFrameCallback(onFrame);
      }
      hls.on(window.Hls.Events.ERROR, (_event, data) => {
        errors.push({
          source: 'hls.js',
          type: data.type,
          details: data.details,
          fatal: data.fatal,
          reason: data.reason || (data.error && data.error.message) || null,
          url: (data.frag && data.frag.url) || data.url || (data.context && data.context.url) || null,
          status: (data.response && data.response.code) || null,
        });
      });
      hls.on(window.Hls.Events.MANIFEST_PARSED, (_event, data) => {
        window.__levels = data.levels.map((l) => ({
          codecs: [l.videoCodec, l.audioCodec].filter(Boolean).join(','),
          width: l.width,
          height: l.height,
        }));
        video.play().catch((err) => errors.push({ source: 'play()', fatal: true, message: String(err) }));
      });
      hls.loadSource(src);
      hls.attachMedia(video);
    }, [url, sampleLatency]);
  }
  const playerErrors = () => page.evaluate(() => window.__hlsErrors || []);
  const snapshot = await waitForPlayback(page, video, seconds, playerErrors, started + RUN_BUDGET_MS - 15_000);
  result.levels = await page.evaluate(() => window.__levels);
  result.live = await page.evaluate(() => {
    const details = window.__hls && window.__hls.latestLevelDetails;
    return details ? details.live : null;
  });
  finishResult(snapshot, seconds, await playerErrors());
  if (sampleLatency) result.latencyMs = await latencyFigures(page);
  await screenshots(page, video, file);
}

// The latency samples the page collected in window.__latencies, as {count, p50, p99, min, max} (ms).
async function latencyFigures(page) {
  const samples = (await page.evaluate(() => window.__latencies || [])).sort((a, b) => a - b);
  const at = (q) => (samples.length ? Math.round(samples[Math.min(samples.length - 1, Math.floor(q * samples.length))]) : null);
  return { count: samples.length, p50: at(0.5), p99: at(0.99), min: at(0), max: at(1) };
}

// ------------------------------------------------------------------------------------------------
// whep mode
// ------------------------------------------------------------------------------------------------

// Plays a WHEP session: an RTCPeerConnection receiving video only, its offer POSTed to the WHEP URL, the answer
// applied; latency is sampled per presented frame from its RTP timestamp, which the server sets to the producer
// clock on 90 kHz. At the end the session's resource (the answer's Location) is DELETEd, as a WHEP player does.
async function runWhep(url, file, seconds) {
  result.mode = 'whep';
  result.url = url;
  const origin = new URL(url).origin;
  const page = await openPage(file, { width: 640, height: 360 });
  const pageUrl = `${origin}/console/__whep-check.html`;
  await page.route(pageUrl, (route) =>
    route.fulfill({
      contentType: 'text/html; charset=utf-8',
      body:
        '<!doctype html><html><head><title>framelog WHEP check</title>' +
        '<style>html,body{margin:0;background:#000}video{display:block;width:640px;height:360px}</style></head>' +
        '<body><video id="v" muted autoplay playsinline></video></body></html>',
    }),
  );
  await page.goto(pageUrl, { timeout: 10_000 });
  const video = await page.$('#v');
  await installSampler(video);
  await page.evaluate(async (whepUrl) => {
    const video = document.getElementById('v');
    const errors = (window.__whepErrors = []);
    window.__latencies = [];
    window.__connectionStates = [];
    const pc = (window.__pc = new RTCPeerConnection());
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.ontrack = (event) => {
      video.srcObject = event.streams[0] || new MediaStream([event.track]);
      video.play().catch((err) => errors.push({ source: 'play()', fatal: true, message: String(err) }));
    };
    pc.onconnectionstatechange = () => {
      window.__connectionStates.push(pc.connectionState);
      if (pc.connectionState === 'failed') errors.push({ source: 'webrtc', fatal: true, message: 'connection failed' });
    };
    await pc.setLocalDescription(await pc.createOffer());
    const answer = await fetch(whepUrl, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
    window.__whepStatus = answer.status;
    window.__whepLocation = answer.headers.get('Location');
    const sdp = await answer.text();
    if (answer.status !== 201) {
      errors.push({ source: 'whep', fatal: true, status: answer.status, message: sdp.slice(0, 300) });
      return;
    }
    await pc.setRemoteDescription({ type: 'answer', sdp });
    // The RTP clock wraps every 2^32 / 90 ms (13 h): the frame's producer time is the one at or before now.
    const wrapMs = 2 ** 32 / 90;
    let firstAt = null;
    const onFrame = (_now, metadata) => {
      if (metadata.rtpTimestamp !== undefined) {
        const nowMs = Date.now();
        let frameMs = Math.floor(nowMs / wrapMs) * wrapMs + metadata.rtpTimestamp / 90;
        if (frameMs > nowMs + wrapMs / 2) frameMs -= wrapMs;
        firstAt = firstAt ?? metadata.mediaTime;
        if (metadata.mediaTime - firstAt >= 1) window.__latencies.push(nowMs - frameMs);
      }
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  }, url);
  const playerErrors = () => page.evaluate(() => window.__whepErrors || []);
  const snapshot = await waitForPlayback(page, video, seconds, playerErrors, started + RUN_BUDGET_MS - 15_000);
  finishResult(snapshot, seconds, await playerErrors());
  result.latencyMs = await latencyFigures(page);
  result.whep = await page.evaluate(() => ({
    status: window.__whepStatus,
    location: window.__whepLocation,
    connectionStates: window.__connectionStates,
  }));
  await screenshots(page, video, file);
  result.whep.deleteStatus = await page.evaluate(async (whepUrl) => {
    if (!window.__whepLocation) return null;
    const answer = await fetch(new URL(window.__whepLocation, whepUrl), { method: 'DELETE' });
    return answer.status;
  }, url);
}

// ------------------------------------------------------------------------------------------------
// console mode
// ------------------------------------------------------------------------------------------------

// Clicks a point a quarter into the first (earliest) .fragment of #timeline, so the rest of the stream
// follows it; returns where: {fragmentStartMs, fragmentEndMs, atMs}.
async function clickFirstFragment(page) {
  const first = await page.evaluateHandle(() => {
    const all = Array.from(document.querySelectorAll('#timeline .fragment'));
    all.sort((a, b) => Number(a.getAttribute('data-start-ms')) - Number(b.getAttribute('data-start-ms')));
    return all[0];
  });
  const element = first.asElement();
  if (!element) throw new Error('the timeline has no .fragment to click');
  await element.scrollIntoViewIfNeeded({ timeout: 5_000 });
  const box = await element.boundingBox();
  if (!box || box.width < 1 || box.height < 1) throw new Error(`the first .fragment has no clickable box: ${JSON.stringify(box)}`);
  const x = Math.min(Math.max(box.width * 0.25, 0.5), box.width - 0.5);
  await element.click({ position: { x, y: box.height / 2 }, timeout: 10_000 });
  const start = Number(await element.getAttribute('data-start-ms'));
  const end = Number(await element.getAttribute('data-end-ms'));
  return { fragmentStartMs: start, fragmentEndMs: end, atMs: Math.round(start + (end - start) * (x / box.width)) };
}

// The console's player errors (window.framelogConsole.errors), as plain objects.
function consoleErrors(page) {
  return page.evaluate(() => {
    const errors = (window.framelogConsole && window.framelogConsole.errors) || [];
    return errors.map((e) => {
      if (e && typeof e === 'object') {
        try {
          return { source: 'console', ...JSON.parse(JSON.stringify(e)) };
        } catch {
          return { source: 'console', message: String(e) };
        }
      }
      return { source: 'console', message: String(e) };
    });
  });
}

async function runConsole(base, stream, mode, file, seconds) {
  result.mode = `console-${mode}`;
  result.stream = stream;
  base = base.replace(/\/+$/, '');
  const page = await openPage(file, { width: 1280, height: 900 });
  // live-hls: the console told to play live over LL-HLS rather than WebRTC.
  const response = await page.goto(mode === 'live-hls' ? `${base}/?live=hls` : `${base}/`, { timeout: 15_000 });
  result.consoleStatus = response ? response.status() : null;
  result.mse = await codecSupport(page);
  const item = page.locator(`#streams button.stream[data-stream="${stream.replace(/"/g, '\\"')}"]`);
  try {
    await item.waitFor({ state: 'visible', timeout: 15_000 });
  } catch (err) {
    const text = await page.evaluate(() => document.documentElement.outerHTML.slice(0, 600)).catch(() => '');
    throw new Error(`the console shows no stream button for ${stream} (HTTP ${result.consoleStatus}): ${text}`);
  }
  await item.click();
  const fragments = page.locator('#timeline .fragment');
  await fragments.first().waitFor({ state: 'attached', timeout: 15_000 });
  result.timelineSettled = await networkQuiet(700, 10_000);
  const timeline = await page.evaluate(() => ({
    fragments: Array.from(document.querySelectorAll('#timeline .fragment')).map((f) => ({
      start: Number(f.getAttribute('data-start-ms')),
      end: Number(f.getAttribute('data-end-ms')),
    })),
    gaps: Array.from(document.querySelectorAll('#timeline .gap')).map((g) => ({
      start: g.hasAttribute('data-start-ms') ? Number(g.getAttribute('data-start-ms')) : null,
      end: g.hasAttribute('data-end-ms') ? Number(g.getAttribute('data-end-ms')) : null,
    })),
    events: Array.from(document.querySelectorAll('#timeline .event')).map((e) => ({
      name: e.getAttribute('data-name'),
      value: e.getAttribute('data-value'),
    })),
  }));
  result.fragments = timeline.fragments.length;
  result.fragmentTimes = timeline.fragments;
  result.gaps = timeline.gaps.length;
  result.gapTimes = timeline.gaps;
  result.events = timeline.events;

  if (mode === 'live' || mode === 'live-hls') {
    await page.locator('#live').click({ timeout: 10_000 });
  } else {
    result.clicked = await clickFirstFragment(page);
  }
  const video = page.locator('video#player');
  await video.waitFor({ state: 'attached', timeout: 10_000 });
  const videoHandle = await video.elementHandle();
  await installSampler(videoHandle);
  // The console may have started playing before the sampler was installed: count from the current position.
  await videoHandle.evaluate((v) => {
    const s = v.__framelogState;
    if (!v.paused && v.readyState >= 2 && s.start === null) s.start = v.currentTime;
  });
  const playerErrors = () => consoleErrors(page);
  result.framelogConsole = await page.evaluate(() => typeof window.framelogConsole === 'object' && window.framelogConsole !== null);
  if (!result.framelogConsole) result.errors.push({ source: 'setup', message: 'window.framelogConsole is missing' });
  const snapshot = await waitForPlayback(page, videoHandle, seconds, playerErrors, started + RUN_BUDGET_MS - 15_000);
  finishResult(snapshot, seconds, await playerErrors());
  result.transport = await page.evaluate(() => window.framelogConsole.state.transport);
  await screenshots(page, videoHandle, file);

  // A still of the stream (GetImages) in img#still-image.
  try {
    await page.locator('#still').click({ timeout: 5_000 });
    await page.waitForFunction(
      () => {
        const img = document.querySelector('img#still-image');
        return img && img.complete && img.naturalWidth > 0;
      },
      null,
      { timeout: Math.max(1_000, Math.min(15_000, remaining() - 5_000)) },
    );
    result.still = await page.evaluate(() => {
      const img = document.querySelector('img#still-image');
      return { naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight, src: img.currentSrc.slice(0, 80) };
    });
    // The image itself: <name>.still.<jpg|png> (the console shows it as a data: URL).
    const src = await page.evaluate(() => document.querySelector('img#still-image').currentSrc);
    const match = /^data:image\/(jpeg|png);base64,(.*)$/s.exec(src);
    const bytes = match
      ? Buffer.from(match[2], 'base64')
      : Buffer.from(await (await page.request.get(src, { timeout: 10_000 })).body());
    const imageFile = file.replace(/(\.png)?$/i, match && match[1] === 'png' ? '.still-image.png' : '.still-image.jpg');
    fs.writeFileSync(imageFile, bytes);
    result.stillImage = path.resolve(imageFile);
    // The page again, with the still on it: <name>.still.png.
    const stillFile = file.replace(/(\.png)?$/i, '.still.png');
    await page.locator('img#still-image').scrollIntoViewIfNeeded({ timeout: 5_000 });
    await page.screenshot({ path: stillFile, timeout: 10_000 });
    result.stillScreenshot = path.resolve(stillFile);
  } catch (err) {
    const img = await page
      .evaluate(() => {
        const i = document.querySelector('img#still-image');
        return i ? { complete: i.complete, naturalWidth: i.naturalWidth, src: (i.currentSrc || i.src).slice(0, 200) } : null;
      })
      .catch(() => null);
    result.still = null;
    result.stillError = `${String(err.message || err).split('\n')[0]}; img#still-image: ${JSON.stringify(img)}`;
  }
  // Player errors that fired while the still was fetched count too.
  const later = (await playerErrors()).slice(result.errors.filter((e) => e.source === 'console').length);
  if (later.length) {
    result.errors.push(...later);
    result.ok = false;
    result.reason = (result.reason ? result.reason + '; ' : '') + `${later.length} player error(s) after playback`;
  }
}


// ------------------------------------------------------------------------------------------------
// console-script mode
// ------------------------------------------------------------------------------------------------

// The steps of a console-script run, each {"do": <name>, ...}; "shot": true adds a screenshot of the page after it
// (<screenshot>.<index>-<name>.png). After every step the result records `view`, what the page shows (see
// consoleView). The console's DOM contract for sign-in: section#signin with form#signin-form (#access-key-id,
// #secret-access-key, #session-token, #region), #signin-error, #account (#signed-in-as, #sign-out), and
// #viewer-message for a stream the key may not view.
const SCRIPT_STEPS = {
  // Opens the console (GET /).
  load: async (page, step, base) => {
    const response = await page.goto(`${base}/`, { timeout: 15_000 });
    return { status: response ? response.status() : null };
  },
  // Reloads the page (sessionStorage survives a reload of the same tab).
  reload: async (page) => {
    await page.reload({ timeout: 15_000 });
    return {};
  },
  // Fills the sign-in form with accessKeyId, secretAccessKey and the optional sessionToken and region, submits it.
  signIn: async (page, step) => {
    await page.locator('#signin-form').waitFor({ state: 'visible', timeout: 5_000 });
    await page.fill('#access-key-id', step.accessKeyId);
    await page.fill('#secret-access-key', step.secretAccessKey);
    await page.fill('#session-token', step.sessionToken || '');
    if (step.region) await page.fill('#region', step.region);
    await page.locator('#signin-form button[type="submit"]').click({ timeout: 5_000 });
    return {};
  },
  // Clicks the stream's button in #streams.
  open: async (page, step) => {
    const button = page.locator(`#streams button.stream[data-stream="${step.stream.replace(/"/g, '\\"')}"]`);
    await button.click({ timeout: 10_000 });
    return {};
  },
  // Clicks the first fragment of the timeline and samples the player for `seconds` (default 4).
  play: (page, step) => scriptPlay(page, step.seconds === undefined ? DEFAULT_SECONDS : step.seconds),
  // Clicks #grid-button and waits until every tile's video (or those of `streams`) has played `seconds` (default
  // 3), or the budget runs out: {tiles: [{stream, transport, played, width, height}]}. Its screenshot file also gets the grid alone
  // (<screenshot>.<index>-grid.tiles.png).
  grid: async (page, step, base, shot) => {
    await page.locator('#grid-button').click({ timeout: 5_000 });
    const seconds = step.seconds === undefined ? 3 : step.seconds;
    const deadline = Math.min(Date.now() + 30_000, started + RUN_BUDGET_MS - 10_000);
    await page.waitForFunction((n) => document.querySelectorAll('#grid-tiles .tile video').length >= n, step.tiles || 1, {
      timeout: 10_000,
    });
    const videos = await page.locator('#grid-tiles .tile video').elementHandles();
    for (const video of videos) await installSampler(video);
    let tiles = [];
    while (Date.now() < deadline) {
      tiles = await Promise.all(
        videos.map(async (video) => {
          const sampled = await readSampler(video);
          const tile = await video.evaluate((v) => ({ stream: v.closest('.tile').dataset.stream, transport: v.closest('.tile').dataset.transport || null }));
          return { ...tile, played: Math.round(sampled.played * 1000) / 1000, width: sampled.width, height: sampled.height };
        }),
      );
      const waited = step.streams ? tiles.filter((t) => step.streams.includes(t.stream)) : tiles;
      if (waited.length && waited.every((t) => t.played >= seconds)) break;
      await sleep(POLL_MS);
    }
    // Each tile's video alone (its caption would make any picture look non-uniform).
    const tileScreenshots = {};
    if (shot) {
      for (const [index, video] of videos.entries()) {
        const file = shot.replace(/\.png$/, `.tile-${index}.png`);
        await video.screenshot({ path: file, timeout: 10_000 });
        tileScreenshots[tiles[index].stream] = path.resolve(file);
      }
    }
    const errors = await consoleErrors(page);
    return { tiles, errors, tileScreenshots };
  },
  // Clicks #zoom-in `times` times (default 1) or, with "out": true, #zoom-all.
  zoom: async (page, step) => {
    const button = step.out ? '#zoom-all' : '#zoom-in';
    for (let i = 0; i < (step.times || 1); i++) await page.locator(button).click({ timeout: 5_000 });
    return {};
  },
  // Waits for #thumbs to show `count` (default 1) loaded key-frame thumbnails; writes the first to
  // <screenshot>.<index>-thumbnails.thumb.jpg: {thumbnails: [{atMs, naturalWidth, naturalHeight}], thumbnail}.
  thumbnails: async (page, step, base, shot) => {
    const count = step.count || 1;
    await page.waitForFunction(
      (n) => Array.from(document.querySelectorAll('#thumbs img.thumb')).filter((i) => i.complete && i.naturalWidth > 0).length >= n,
      count,
      { timeout: 20_000 },
    );
    const thumbnails = await page.evaluate(() =>
      Array.from(document.querySelectorAll('#thumbs img.thumb'), (i) => ({
        atMs: Number(i.dataset.atMs),
        naturalWidth: i.naturalWidth,
        naturalHeight: i.naturalHeight,
        src: i.src,
      })),
    );
    let thumbnail = null;
    if (shot && thumbnails.length) {
      thumbnail = path.resolve(shot.replace(/\.png$/, '.thumb.jpg'));
      fs.writeFileSync(thumbnail, Buffer.from(thumbnails[0].src.split(',')[1], 'base64'));
    }
    return { thumbnails: thumbnails.map(({ src, ...rest }) => rest), thumbnail };
  },
  // Fills the search form (name, value, hours) and submits it.
  search: async (page, step) => {
    await page.fill('#search-name', step.name);
    await page.fill('#search-value', step.value || '');
    if (step.hours) await page.selectOption('#search-hours', String(step.hours));
    await page.locator('#search-form button[type="submit"]').click({ timeout: 5_000 });
    return {};
  },
  // Clicks the first search result and samples the player for `seconds` (default 4).
  openResult: async (page, step) => {
    const before = (await consoleErrors(page)).length;
    const first = page.locator('#search-results button.match').first();
    const clicked = { stream: await first.getAttribute('data-stream'), startMs: Number(await first.getAttribute('data-start-ms')) };
    await first.click({ timeout: 5_000 });
    const sampled = await samplePlayer(page, step.seconds === undefined ? DEFAULT_SECONDS : step.seconds, before);
    // The producer time on screen (hls.js's PROGRAM-DATE-TIME of the playhead).
    const playingAtMs = await page.evaluate(() => window.framelogConsole.playingAtMs());
    return { clicked, playingAtMs, ...sampled };
  },
  // Clicks the data stream's button in #data-streams and waits for its shards.
  openData: async (page, step) => {
    const button = page.locator(`#data-streams button.data-stream[data-stream="${step.stream.replace(/"/g, '\\"')}"]`);
    await button.click({ timeout: 10_000 });
    await page.waitForFunction(() => document.querySelectorAll('#shards tr').length > 1, null, { timeout: 10_000 });
    return {};
  },
  // Sets the record viewer's shard, position and format (when given) and clicks Read, or with
  // "more": true Read on.
  readRecords: async (page, step) => {
    if (step.shard) await page.selectOption('#record-shard', step.shard);
    if (step.position) await page.selectOption('#record-position', step.position);
    if (step.format) await page.selectOption('#record-format', step.format);
    await page.locator(step.more ? '#record-more' : '#record-read').click({ timeout: 5_000 });
    return {};
  },
  // Clicks #still (GetImages).
  still: async (page) => {
    await page.locator('#still').click({ timeout: 5_000 });
    return {};
  },
  signOut: async (page) => {
    await page.locator('#sign-out').click({ timeout: 5_000 });
    return {};
  },
  // The console's own signer on {credentials, path, body, date}: {headers} (compared with botocore's).
  sign: async (page, step) => ({
    headers: await page.evaluate(
      ({ credentials, path, body, date }) =>
        window.framelogConsole.sigv4.sign(credentials, path, 'application/json', body, new Date(date)),
      step,
    ),
  }),
};

// What the console shows, and what the page keeps in its storages.
function consoleView(page) {
  return page.evaluate(() => {
    const el = (id) => document.getElementById(id);
    const shown = (id) => Boolean(el(id)) && !el(id).hidden && el(id).getClientRects().length > 0;
    const text = (id) => (el(id) ? el(id).textContent : null);
    const entries = (storage) =>
      Object.fromEntries(Array.from({ length: storage.length }, (_, i) => [storage.key(i), storage.getItem(storage.key(i))]));
    const denied = document.querySelector('#streams .denied');
    return {
      signIn: shown('signin'),
      signInError: text('signin-error'),
      main: !document.querySelector('main').hidden,
      account: shown('account') ? text('signed-in-as') : null,
      streams: Array.from(document.querySelectorAll('#streams button.stream'), (b) => b.dataset.stream),
      streamsDenied: denied ? denied.textContent : null,
      viewer: shown('viewer'),
      viewerMessage: shown('viewer-message') ? text('viewer-message') : null,
      fragments: document.querySelectorAll('#timeline .fragment').length,
      still: shown('still-figure'),
      grid: shown('grid'),
      tiles: Array.from(document.querySelectorAll('#grid-tiles .tile'), (t) => t.dataset.stream),
      zoomLevel: text('zoom-level'),
      axis: [text('axis-start'), text('axis-end')],
      thumbnails: document.querySelectorAll('#thumbs img.thumb').length,
      results: Array.from(document.querySelectorAll('#search-results button.match'), (b) => ({
        stream: b.dataset.stream,
        startMs: Number(b.dataset.startMs),
      })),
      dataStreams: Array.from(document.querySelectorAll('#data-streams button.data-stream'), (b) => b.dataset.stream),
      dataViewer: shown('data-viewer'),
      shards: Array.from(document.querySelectorAll('#shards tr'), (r) => Array.from(r.cells, (c) => c.textContent)).slice(1),
      records: Array.from(document.querySelectorAll('#records tr'), (r) => Array.from(r.cells, (c) => c.textContent)).slice(1),
      consumers: Array.from(document.querySelectorAll('#data-consumers li'), (li) => li.textContent),
      sparklines: Array.from(document.querySelectorAll('#sparklines .sparkline'), (f) => ({
        points: Number(f.dataset.points),
        caption: f.querySelector('figcaption').textContent,
      })),
      status: text('status'),
      sessionStorage: entries(window.sessionStorage),
      localStorage: entries(window.localStorage),
      cookie: document.cookie,
      url: window.location.href,
    };
  });
}

// Waits until the console has no API call in flight (window.framelogConsole.pending, counted from before a call
// is signed) and the network has been quiet a moment.
async function consoleSettled(page) {
  await sleep(100);
  await page
    .waitForFunction(() => window.framelogConsole && window.framelogConsole.pending === 0, null, { timeout: 15_000 })
    .catch(() => {});
  return networkQuiet(400, 5_000);
}

async function scriptPlay(page, seconds) {
  const before = (await consoleErrors(page)).length;
  const clicked = await clickFirstFragment(page);
  return { clicked, ...(await samplePlayer(page, seconds, before)) };
}

// hls.js's own recoveries: a seek over a hole in the buffer, or a nudge past a stall.
const RECOVERIES = ['bufferSeekOverHole', 'bufferNudgeOnStall'];

// Samples the console's main player for `seconds` of playback; errors counted from the `before`-th.
async function samplePlayer(page, seconds, before) {
  const video = await page.locator('video#player').elementHandle();
  await installSampler(video);
  const playerErrors = async () => (await consoleErrors(page)).slice(before);
  const deadline = Math.min(Date.now() + seconds * 1000 + 20_000, started + RUN_BUDGET_MS - 10_000);
  const snapshot = await waitForPlayback(page, video, seconds, playerErrors, deadline);
  const reported = [...(await playerErrors()), ...snapshot.videoErrors];
  // hls.js reports jumping a small gap at the start point as a non-fatal error it has already
  // recovered from; playback goes on, so it is kept apart rather than failing the run.
  const recovered = reported.filter((e) => e.fatal === false && RECOVERIES.includes(e.details));
  const errors = reported.filter((e) => !recovered.includes(e));
  const played = Math.round(snapshot.played * 1000) / 1000;
  const ok = snapshot.start !== null && played >= seconds && errors.length === 0 && snapshot.width > 0;
  return { start: snapshot.start, end: snapshot.now, played, width: snapshot.width, height: snapshot.height, errors, recovered, ok };
}

// Every request the page makes, with all its headers and (the start of) its body: the tests look for secrets in them.
function recordRequests(page) {
  const pending = [];
  page.on('request', (request) => {
    pending.push(
      request.allHeaders().then(
        (headers) => ({ method: request.method(), url: request.url(), headers, body: (request.postData() || '').slice(0, 4000) }),
        () => ({ method: request.method(), url: request.url(), headers: request.headers(), body: (request.postData() || '').slice(0, 4000) }),
      ),
    );
  });
  return () => Promise.all(pending);
}

async function runScript(base, stepsFile, file) {
  result.mode = 'console-script';
  base = base.replace(/\/+$/, '');
  const steps = JSON.parse(fs.readFileSync(stepsFile, 'utf8'));
  const page = await openPage(file, { width: 1280, height: 900 });
  const requests = recordRequests(page);
  result.steps = [];
  result.stepScreenshots = [];
  try {
    for (const [index, step] of steps.entries()) {
      const run = SCRIPT_STEPS[step.do];
      if (!run) throw new Error(`unknown step ${JSON.stringify(step.do)}`);
      const begun = Date.now();
      const shot = step.shot ? file.replace(/(\.png)?$/i, `.${index}-${step.do}.png`) : null;
      const record = { do: step.do, ...(await run(page, step, base, shot)) };
      record.settled = await consoleSettled(page);
      record.view = await consoleView(page);
      record.ms = Date.now() - begun;
      if (shot) {
        await page.screenshot({ path: shot, timeout: 10_000 });
        record.screenshot = path.resolve(shot);
        result.stepScreenshots.push(record.screenshot);
        for (const extra of [...Object.values(record.tileScreenshots || {}), record.thumbnail]) if (extra) result.stepScreenshots.push(extra);
      }
      result.steps.push(record);
    }
  } finally {
    result.requests = await requests();
  }
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  await page.screenshot({ path: file, timeout: 10_000 });
  result.screenshot = path.resolve(file);
  result.errors.push(...result.steps.flatMap((step) => step.errors || []));
  result.ok = result.errors.length === 0 && result.steps.every((step) => step.ok !== false);
}

// ------------------------------------------------------------------------------------------------

async function main() {
  const [mode, ...args] = process.argv.slice(2);
  let run;
  if (mode === 'hls') {
    if (args.length < 2 || args.length > 3) usage('hls takes a URL, a screenshot path and optional seconds');
    const [url, file, seconds] = args;
    run = () => runHls(url, file, parseSeconds(seconds));
  } else if (mode === 'hls-latency') {
    if (args.length < 2 || args.length > 3) usage('hls-latency takes a URL, a screenshot path and optional seconds');
    const [url, file, seconds] = args;
    run = () => runHls(url, file, parseSeconds(seconds), true);
  } else if (mode === 'whep') {
    if (args.length < 2 || args.length > 3) usage('whep takes a WHEP URL, a screenshot path and optional seconds');
    const [url, file, seconds] = args;
    run = () => runWhep(url, file, parseSeconds(seconds));
  } else if (mode === 'console') {
    if (args.length < 4 || args.length > 5) usage('console takes a server URL, a stream, live|ondemand, a screenshot path and optional seconds');
    const [base, stream, which, file, seconds] = args;
    if (!['live', 'live-hls', 'ondemand'].includes(which)) usage(`bad console mode: ${which}`);
    run = () => runConsole(base, stream, which, file, parseSeconds(seconds));
  } else if (mode === 'console-script') {
    if (args.length !== 3) usage('console-script takes a server URL, a steps file and a screenshot path');
    const [base, stepsFile, file] = args;
    run = () => runScript(base, stepsFile, file);
  } else {
    usage(`unknown mode: ${mode}`);
  }
  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: chromiumArgs(),
      timeout: 20_000,
    });
    result.browser = { executable: CHROMIUM, version: browser.version(), args: chromiumArgs() };
    await run();
  } catch (err) {
    result.ok = false;
    result.reason = (result.reason ? result.reason + '; ' : '') + String((err && err.message) || err).split('\n').slice(0, 3).join(' ');
    if (currentPage && screenshotFile && !result.screenshot) {
      try {
        fs.mkdirSync(path.dirname(path.resolve(screenshotFile)), { recursive: true });
        await currentPage.screenshot({ path: screenshotFile, timeout: 5_000 });
        result.screenshot = path.resolve(screenshotFile);
      } catch {}
    }
  } finally {
    emit(result.ok ? 0 : 1);
    clearTimeout(watchdog);
    if (browser) await Promise.race([browser.close().catch(() => {}), sleep(5_000)]);
  }
}

await main();
process.exit(process.exitCode);
