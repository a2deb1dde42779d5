//! PutMedia: a chunked MKV (or, with `Content-Type: video/mp4`, fragmented MP4) upload in, a
//! stream of acknowledgements out, on the same connection.
//!
//! The 200 and the ack stream start before the body ends. A task reads the body, feeds the
//! [`Fragmenter`], and for each Cluster sends BUFFERING (first bytes), RECEIVED (complete) and
//! PERSISTED (durable in the engine), or one ERROR that ends the upload; IDLE goes out while the
//! producer is silent, and 30 s of silence closes the request. Only the cluster in flight is held
//! in memory.
//!
//! Tags that arrive between clusters belong to the *next* fragment, as the producer SDK emits
//! queued metadata before the next Cluster (docs/spec/kvs.md#fragment-metadata);
//! `AWS_KINESISVIDEO_END_OF_FRAGMENT` only closes the open cluster and is not stored.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use framelog_media::{Cluster, Event, FragmentRecord, Limits, SegmentInfo, SimpleTag, Splitter};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use framelog_store::{AppendWait, NewEntry};

use super::VideoStream;
use super::stream_metrics::StreamMetrics;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use super::context::KvsCtx;
use super::fragment_number;
use crate::error::ApiError;
use crate::kvs::VIDEO_SHARD;
use framelog_wire::{Ack, AckError, headers};

const IDLE_ACK_EVERY: Duration = Duration::from_secs(3);
const CLOSE_AFTER_SILENCE: Duration = Duration::from_secs(30);
/// A producer must send at least this much per `RATE_WINDOW`: a trickle (one byte a second)
/// would otherwise hold a connection forever without ever being silent. The least real camera
/// (audio only, 16 kbit/s) sends 60 KB in that time.
const MIN_BYTES_PER_WINDOW: usize = 4 << 10;
const RATE_WINDOW: Duration = Duration::from_secs(30);
const MAX_FRAGMENT_DURATION_MS: i64 = 20_000;
const MAX_TRACKS: usize = 3;
const MAX_FRAGMENT_TAGS: usize = 10;
const MAX_TAG_NAME_BYTES: usize = 128;
const MAX_TAG_VALUE_BYTES: usize = 256;
/// Year 5138: far beyond any real timestamp, far below i64 milliseconds.
const MAX_TIMESTAMP_SECONDS: f64 = 1e11;
/// Most track numbers a SimpleBlock's one-byte track field can carry.
const MAX_TRACK_NUMBER: u64 = 126;
const END_OF_FRAGMENT: &str = "AWS_KINESISVIDEO_END_OF_FRAGMENT";
/// Tag names producers may use despite the reserved `AWS` prefix.
const RESERVED_TAGS: &[&str] =
    &["AWS_KINESISVIDEO_NOTIFICATION", "AWS_KINESISVIDEO_IMAGE_GENERATION", "AWS_KINESISVIDEO_IMAGE_PREFIX"];

/// How producer timestamps are derived from cluster timecodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimecodeBase {
    Absolute,
    /// Relative to the producer start timestamp, in ms.
    Relative(u64),
}

pub async fn handle(State(ctx): State<KvsCtx>, headers: HeaderMap, body: Body) -> Response {
    match start(&ctx, &headers) {
        Ok((stream, base)) => {
            let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
            let splitter = Splitter::for_content_type(content_type, Limits::default());
            let (acks, response) = super::streamed_response("application/json", 64);
            crate::access_log::spawn_in_request(ingest(ctx, stream, base, splitter, body, acks));
            response
        }
        Err(error) => {
            crate::access_log::spawn_in_request(drain_refused(body));
            super::error_response(&error)
        }
    }
}

/// How much of a refused upload's body is read and dropped, and for how long, so that the error
/// answer reaches the client before the connection closes.
const REFUSED_DRAIN_BYTES: usize = 8 << 20;
const REFUSED_DRAIN_TIME: Duration = Duration::from_secs(2);

/// Reads and drops the body of an upload refused before its first byte was read. A connection
/// closed with the client's bytes unread is reset, and a reset can destroy the answer before the
/// client reads it; through a TCP proxy (HAProxy in cluster mode) it regularly does. Bounded in
/// bytes and time, so a refused client cannot hold the connection.
async fn drain_refused(body: Body) {
    let mut stream = body.into_data_stream();
    let mut drained = 0usize;
    let _ = tokio::time::timeout(REFUSED_DRAIN_TIME, async {
        while let Some(Ok(chunk)) = stream.next().await {
            drained += chunk.len();
            if drained >= REFUSED_DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}

/// Checks made before the 200: which stream, and how timecodes are to be read.
fn start(ctx: &KvsCtx, headers: &HeaderMap) -> Result<(VideoStream, TimecodeBase), ApiError> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let mut document = serde_json::Map::new();
    if let Some(name) = text(headers::STREAM_NAME) {
        document.insert("StreamName".into(), name.into());
    }
    if let Some(arn) = text(headers::STREAM_ARN) {
        document.insert("StreamARN".into(), arn.into());
    }
    let stream = ctx.stream(&crate::document::Document(document), "StreamARN")?;
    let base = match text(headers::FRAGMENT_TIMECODE_TYPE).as_deref() {
        None | Some("ABSOLUTE") => TimecodeBase::Absolute,
        Some("RELATIVE") => {
            let start = text(headers::PRODUCER_START_TIMESTAMP).unwrap_or_default();
            let invalid = || {
                ApiError::invalid(format!("x-amzn-producer-start-timestamp {start:?} is not a timestamp in seconds."))
            };
            let seconds: f64 = start.parse().map_err(|_| invalid())?;
            // Finite, not negative, and well inside i64 milliseconds, so timecode sums cannot overflow.
            if !seconds.is_finite() || !(0.0..=MAX_TIMESTAMP_SECONDS).contains(&seconds) {
                return Err(invalid());
            }
            TimecodeBase::Relative((seconds * 1000.0).round() as u64)
        }
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "x-amzn-fragment-timecode-type must be ABSOLUTE or RELATIVE, not {other}."
            )));
        }
    };
    Ok((stream, base))
}

/// What the ingest task hands to the ack writer, in order. A fragment's PERSISTED waits for its
/// append while the ingest task already reads the next fragment, so appends overlap with receiving
/// (and share group commits) while acks still leave in exactly the order they were produced.
enum Outgoing {
    Ack(Ack),
    Persist {
        timecode: u64,
        wait: AppendWait,
        fragment_number_base: Option<u64>,
        /// When the fragment was received whole, for PutMedia.FragmentPersistLatency.
        received_at: std::time::Instant,
    },
    /// A replay of a fragment stored before (same producer time and FRAGMENT_ID_TAG): its
    /// PERSISTED names the stored fragment and nothing is appended.
    AlreadyStored {
        timecode: u64,
        seq: u64,
        fragment_number_base: Option<u64>,
    },
}

/// How many acks and pending appends may queue before ingest waits (bounds memory per upload).
const OUTGOING_QUEUE: usize = 8;

/// Writes acks in order; stops (and flags the upload as failed) on the first failed append. A
/// fragment leaves the live edge once its append landed.
async fn write_acks(
    mut outgoing: mpsc::Receiver<Outgoing>,
    acks: super::ChunkSender,
    failed: Arc<AtomicBool>,
    edge: EdgeClaim,
    metrics: StreamMetrics,
) {
    let _release = EdgeRelease { claim: edge.clone(), completed_too: true };
    while let Some(item) = outgoing.recv().await {
        let ack = match item {
            Outgoing::Ack(ack) => Some(ack),
            Outgoing::AlreadyStored { timecode, seq, fragment_number_base } => fragment_number_base.map(|created_ms| {
                Ack::Persisted { timecode, fragment_number: fragment_number::encode(created_ms, seq) }
            }),
            Outgoing::Persist { timecode, wait, fragment_number_base, received_at } => match wait.wait().await {
                // With retention 0 nothing is kept for archive reads, and KVS sends no PERSISTED.
                Ok(landed) => {
                    metrics.fragment_persisted(received_at.elapsed().as_secs_f64() * 1000.0);
                    edge.slot.remove(edge.owner, timecode);
                    match (fragment_number_base, landed.first()) {
                        (Some(created_ms), Some(appended)) => Some(Ack::Persisted {
                            timecode,
                            fragment_number: fragment_number::encode(created_ms, appended.seq),
                        }),
                        _ => None,
                    }
                }
                Err(error) => {
                    failed.store(true, Ordering::Release);
                    edge.slot.release(edge.owner, true);
                    let error = match error {
                        framelog_store::StoreError::StreamDeleted(_) => AckError::StreamDeleted,
                        other => {
                            tracing::error!(error = %other, "storing a fragment failed");
                            AckError::Internal
                        }
                    };
                    metrics.error_ack();
                    super::send_chunk(&acks, Bytes::from(Ack::error(Some(timecode), error).line())).await;
                    return;
                }
            },
        };
        if let Some(ack) = ack
            && !super::send_chunk(&acks, Bytes::from(ack.line())).await
        {
            failed.store(true, Ordering::Release);
            return;
        }
    }
}

/// An upload's hold on its stream's live edge. Dropped with the upload, it takes the fragment in
/// flight off the edge: that one will never be stored.
#[derive(Clone)]
struct EdgeClaim {
    slot: Arc<super::live_edge::EdgeSlot>,
    owner: u64,
}

/// The producer time of the stream's newest stored fragment (0 for none): the live edge shows
/// only later fragments.
fn newest_stored_ms(ctx: &KvsCtx, stream: &VideoStream) -> u64 {
    let tip = stream.tip_seq(VIDEO_SHARD).unwrap_or(0);
    let newest = tip.checked_sub(1).and_then(|seq| stream.record(&ctx.engine, seq).ok().flatten());
    newest.map_or(0, |record| record.producer_ts_ms)
}

/// Releases the edge when a task ends, however it ends. The ingest task leaves completed
/// fragments for the ack writer (their appends are queued); the ack writer, ending, takes every
/// fragment of the upload off the edge, as no `remove` will come for those still queued.
struct EdgeRelease {
    claim: EdgeClaim,
    completed_too: bool,
}

impl Drop for EdgeRelease {
    fn drop(&mut self) {
        self.claim.slot.release(self.claim.owner, self.completed_too);
    }
}

/// Per-connection ingest state.
struct Upload {
    ctx: KvsCtx,
    stream: VideoStream,
    base: TimecodeBase,
    info: SegmentInfo,
    tracks: Option<(Vec<u64>, Vec<u8>)>,
    /// Parameter sets inside frames are held to the same picture limit as the tracks'.
    in_band: super::resolution::InBandCheck,
    pending_tags: Vec<SimpleTag>,
    /// Server timestamp of the cluster in flight (its first bytes).
    cluster_server_ms: u64,
    /// Per track number, the producer time (ms) of the latest frame of the previous fragment on
    /// this connection that had frames of that track.
    last_frame_ms: HashMap<u64, i64>,
    outgoing: mpsc::Sender<Outgoing>,
    failed: Arc<AtomicBool>,
    edge: EdgeRelease,
    /// The Cluster in flight whose frames `publish_edge` checked, and how many passed (`None`
    /// for all of them once one failed: the Cluster is not shown).
    edge_checked: Option<(u64, Option<usize>)>,
    metrics: StreamMetrics,
}

/// Why an event ends the upload: the timecode of the cluster concerned (when there is one) and
/// the error its ERROR ack carries.
type Rejection = (Option<u64>, AckError);

/// The upload task: reads the body, splits it into events and acknowledges them until the body
/// ends, the producer goes silent or away, or an event is rejected.
async fn ingest(
    ctx: KvsCtx,
    stream: VideoStream,
    base: TimecodeBase,
    mut fragmenter: Splitter,
    body: Body,
    acks: super::ChunkSender,
) {
    let (outgoing_sender, outgoing) = mpsc::channel(OUTGOING_QUEUE);
    let failed = Arc::new(AtomicBool::new(false));
    let slot = ctx.edges.slot(stream.id());
    let edge = EdgeClaim { owner: slot.begin_upload(newest_stored_ms(&ctx, &stream)), slot };
    let metrics = StreamMetrics::new(&ctx.metrics, stream.public_name());
    let _connected = metrics.connected();
    crate::access_log::spawn_in_request(write_acks(outgoing, acks, failed.clone(), edge.clone(), metrics.clone()));
    let mut upload = Upload::new(ctx, stream, base, outgoing_sender, failed, edge, metrics);
    let mut body = BodyReader {
        data: body.into_data_stream(),
        silent: Duration::ZERO,
        window_started: tokio::time::Instant::now(),
        window_bytes: 0,
    };
    loop {
        if upload.failed.load(Ordering::Acquire) {
            return;
        }
        let finished = match body.next(&upload, &mut fragmenter).await {
            Received::Bytes => false,
            Received::End => true,
            Received::Silence => continue,
            Received::Stop => return,
        };
        if !upload.drain(&mut fragmenter, finished).await || finished {
            return;
        }
        upload.publish_edge(&fragmenter);
    }
}

/// What one wait on the request body brought.
enum Received {
    /// Bytes, now pushed into the splitter.
    Bytes,
    /// The end of the body: the splitter is to finish.
    End,
    /// `IDLE_ACK_EVERY` without bytes, acknowledged with IDLE.
    Silence,
    /// The upload is over: silent too long, the producer gone, or the ack writer gone.
    Stop,
}

/// The request body, with how long the producer has been silent.
struct BodyReader {
    data: axum::body::BodyDataStream,
    silent: Duration,
    window_started: tokio::time::Instant,
    window_bytes: usize,
}

impl BodyReader {
    /// Counts `received` bytes; true when a whole window passed with less than the minimum.
    fn too_slow(&mut self, received: usize) -> bool {
        self.window_bytes += received;
        if self.window_started.elapsed() < RATE_WINDOW {
            return false;
        }
        let slow = self.window_bytes < MIN_BYTES_PER_WINDOW;
        self.window_started = tokio::time::Instant::now();
        self.window_bytes = 0;
        slow
    }

    /// Waits up to `IDLE_ACK_EVERY` for the next bytes and pushes them into `fragmenter`; a wait
    /// without bytes sends IDLE, and `CLOSE_AFTER_SILENCE` of them ends the upload.
    async fn next(&mut self, upload: &Upload, fragmenter: &mut Splitter) -> Received {
        match tokio::time::timeout(IDLE_ACK_EVERY, self.data.next()).await {
            Err(_) => {
                self.silent += IDLE_ACK_EVERY;
                if self.silent >= CLOSE_AFTER_SILENCE || !upload.send_ack(Ack::Idle).await {
                    return Received::Stop;
                }
                Received::Silence
            }
            // The producer went away (or broke the chunked encoding): the fragment in flight is
            // dropped, everything acknowledged before stays.
            Ok(Some(Err(_))) => {
                upload.metrics.connection_error();
                Received::Stop
            }
            Ok(Some(Ok(bytes))) => {
                self.silent = Duration::ZERO;
                if self.too_slow(bytes.len()) {
                    tracing::info!(stream = %upload.stream.public_name(), "PutMedia closed: below the minimum data rate");
                    return Received::Stop;
                }
                fragmenter.push(&bytes);
                Received::Bytes
            }
            Ok(None) => Received::End,
        }
    }
}

impl Upload {
    fn new(
        ctx: KvsCtx,
        stream: VideoStream,
        base: TimecodeBase,
        outgoing: mpsc::Sender<Outgoing>,
        failed: Arc<AtomicBool>,
        edge: EdgeClaim,
        metrics: StreamMetrics,
    ) -> Self {
        Upload {
            metrics,
            ctx,
            stream,
            base,
            info: SegmentInfo::default(),
            tracks: None,
            in_band: Default::default(),
            pending_tags: Vec::new(),
            cluster_server_ms: 0,
            last_frame_ms: HashMap::new(),
            outgoing,
            failed,
            edge: EdgeRelease { claim: edge, completed_too: false },
            edge_checked: None,
        }
    }

    /// Shows the frames of the Cluster in flight on the live edge. Each new frame is checked once
    /// as `check_cluster` will check it (a track of the Segment, a time that fits, within the
    /// longest fragment of the Cluster's start); a Cluster with a frame that fails is not shown,
    /// and a Cluster failing a later check ends the upload, which takes it off the edge.
    fn publish_edge(&mut self, fragmenter: &Splitter) {
        let (Some(open), Some((numbers, tracks_body))) = (fragmenter.open_cluster(), &self.tracks) else { return };
        let Some(producer_ms) = self.to_ms(i128::from(open.timecode)).filter(|ms| *ms >= 0) else { return };
        let checked = match self.edge_checked {
            Some((timecode, checked)) if timecode == open.timecode => checked,
            _ => Some(0),
        };
        let Some(checked) = checked else { return };
        let fits = |frame: &framelog_media::Frame| {
            let at = self.to_ms(i128::from(open.timecode) + i128::from(frame.relative_timecode));
            numbers.contains(&frame.track) && at.is_some_and(|ms| (ms - producer_ms).abs() <= MAX_FRAGMENT_DURATION_MS)
        };
        let all_fit = open.frames.get(checked..).unwrap_or_default().iter().all(fits);
        self.edge_checked = Some((open.timecode, all_fit.then_some(open.frames.len())));
        if !all_fit {
            return;
        }
        let head = || FragmentRecord {
            timecode: open.timecode,
            timecode_scale_ns: self.info.timecode_scale_ns,
            producer_ts_ms: producer_ms as u64,
            server_ts_ms: self.cluster_server_ms,
            duration_ms: 0,
            tracks_body: tracks_body.clone(),
            tags: Vec::new(),
            frames: Vec::new(),
        };
        let edge = &self.edge.claim;
        edge.slot.publish(edge.owner, open.timecode, head, open.frames, open.body);
    }

    /// Queues an ack for the writer; false when the writer is gone.
    async fn send_ack(&self, ack: Ack) -> bool {
        self.outgoing.send(Outgoing::Ack(ack)).await.is_ok()
    }

    /// Handles every event the splitter can make of the bytes so far (with `finished`, of the
    /// whole input). False when the upload is over: an event was rejected or the writer is gone.
    async fn drain(&mut self, fragmenter: &mut Splitter, finished: bool) -> bool {
        loop {
            let event = if finished { fragmenter.finish() } else { fragmenter.next_event() };
            let outcome = match event {
                Ok(Some(event)) => self.on_event(event).await,
                Ok(None) => return true,
                Err(error) => {
                    tracing::info!(stream = %self.stream.meta().name, %error, "rejected PutMedia input");
                    Err((None, super::ack::for_media_error(&error)))
                }
            };
            if !self.acknowledge(outcome).await {
                return false;
            }
        }
    }

    /// Sends an event's acks, or the ERROR that rejects it. False when the upload is over.
    async fn acknowledge(&self, outcome: Result<Vec<Ack>, Rejection>) -> bool {
        match outcome {
            Ok(acks) => {
                for ack in acks {
                    if !self.send_ack(ack).await {
                        return false;
                    }
                }
                true
            }
            Err((timecode, error)) => {
                self.metrics.error_ack();
                self.send_ack(Ack::error(timecode, error)).await;
                false
            }
        }
    }

    async fn on_event(&mut self, event: Event) -> Result<Vec<Ack>, Rejection> {
        match event {
            Event::Tracks { info, tracks, tracks_body } => {
                // One connection carries one Segment (docs/spec/kvs.md#putmedia-body): a second one is invalid input.
                if self.tracks.is_some() {
                    return Err((None, AckError::InvalidMkv));
                }
                if tracks.len() > MAX_TRACKS {
                    return Err((None, AckError::TooManyTracks));
                }
                if tracks.iter().any(|t| t.number > MAX_TRACK_NUMBER) {
                    return Err((None, AckError::InvalidMkv));
                }
                if super::resolution::exceeds_limit(&tracks) {
                    tracing::info!(stream = %self.stream.public_name(), "PutMedia refused: picture larger than 4096x2304");
                    return Err((None, AckError::InvalidMkv));
                }
                self.info = info;
                self.in_band = super::resolution::InBandCheck::new(&tracks);
                self.tracks = Some((tracks.iter().map(|t| t.number).collect(), tracks_body));
                Ok(Vec::new())
            }
            Event::ClusterStarted { timecode, .. } => {
                self.cluster_server_ms = self.ctx.engine.now_ms();
                Ok(vec![Ack::Buffering { timecode }])
            }
            Event::Tags(tags) => {
                for tag in tags.into_iter().filter(|t| t.name != END_OF_FRAGMENT) {
                    let reserved = tag.name.starts_with("AWS") && !RESERVED_TAGS.contains(&tag.name.as_str());
                    if reserved || tag.name.len() > MAX_TAG_NAME_BYTES || tag.value.len() > MAX_TAG_VALUE_BYTES {
                        return Err((None, AckError::MetadataLimit));
                    }
                    // A name given again overrides the earlier value, as producers intend.
                    self.pending_tags.retain(|t| t.name != tag.name);
                    self.pending_tags.push(tag);
                    // Checked per tag: a hostile Tags element may hold millions of them.
                    if self.pending_tags.len() > MAX_FRAGMENT_TAGS {
                        return Err((None, AckError::MetadataLimit));
                    }
                }
                Ok(Vec::new())
            }
            Event::Cluster(cluster) => self.store(cluster).await,
        }
    }

    /// Producer time in ms of a timecode, or `None` when it does not fit (hostile scales or values).
    fn to_ms(&self, timecode: i128) -> Option<i64> {
        let ms = timecode.checked_mul(i128::from(self.info.timecode_scale_ns))? / 1_000_000;
        let ms = match self.base {
            TimecodeBase::Absolute => ms,
            TimecodeBase::Relative(start_ms) => ms.checked_add(i128::from(start_ms))?,
        };
        i64::try_from(ms).ok()
    }

    /// The sequence number of a stored fragment this one replays: the same producer timestamp and
    /// the same `FRAGMENT_ID_TAG` value. Untagged fragments are never deduplicated (two cameras
    /// may well produce fragments at the same millisecond).
    fn stored_before(&self, record: &FragmentRecord) -> Option<u64> {
        let id = record.tags.iter().find(|t| t.name == framelog_media::FRAGMENT_ID_TAG)?;
        let at = record.producer_ts_ms;
        let candidates = self.ctx.engine.producer_range(&self.stream, VIDEO_SHARD, at, at, None, 64).ok()?;
        candidates.into_iter().map(|(_, seq)| seq).find(|&seq| {
            let stored = self.stream.record(&self.ctx.engine, seq);
            matches!(stored, Ok(Some(stored)) if stored.tags.iter().any(|t| t == id))
        })
    }

    /// Checks a complete cluster and appends it as a fragment (or recognises a replay of one
    /// stored before). Its RECEIVED and PERSISTED go to the ack writer directly, after the acks
    /// already queued, so nothing is returned for the caller to send.
    async fn store(&mut self, cluster: Cluster) -> Result<Vec<Ack>, Rejection> {
        let timecode = cluster.timecode;
        let fail = |error| (Some(timecode), error);
        // After a failed append the upload is over: storing later fragments would make the
        // producer's replay of them duplicates.
        if self.failed.load(Ordering::Acquire) {
            return Err(fail(AckError::Internal));
        }
        let mut checked = self.check_cluster(&cluster).map_err(fail)?;
        self.last_frame_ms.extend(std::mem::take(&mut checked.latest));
        let received_at = std::time::Instant::now();
        let ingestion_ms = self.ctx.engine.now_ms().saturating_sub(self.cluster_server_ms);
        self.metrics.fragment_received(cluster.body.len() as u64, cluster.frames.len() as u64, ingestion_ms);
        let (record, payload) = self.fragment_record(cluster, checked);
        let meta = self.stream.meta();
        let fragment_number_base = (meta.retention_hours > 0).then_some(meta.created_ms);
        let persisted = match self.stored_before(&record) {
            Some(seq) => {
                tracing::debug!(seq, "a replayed fragment was already stored");
                let edge = &self.edge.claim;
                edge.slot.remove(edge.owner, timecode);
                Outgoing::AlreadyStored { timecode, seq, fragment_number_base }
            }
            None => {
                let edge = &self.edge.claim;
                edge.slot.complete(edge.owner, &record, &payload);
                let wait = self.append(&record, payload).map_err(|error| {
                    edge.slot.remove(edge.owner, timecode);
                    fail(error)
                })?;
                Outgoing::Persist { timecode, wait, fragment_number_base, received_at }
            }
        };
        for item in [Outgoing::Ack(Ack::Received { timecode }), persisted] {
            if self.outgoing.send(item).await.is_err() {
                return Err(fail(AckError::Internal));
            }
        }
        Ok(Vec::new())
    }

    /// Checks a cluster against the Segment's tracks and the fragments before it on this
    /// connection, in this order: track numbers, timestamps that fit, every track present, frames
    /// after the previous fragment's, the fragment's length, a producer time not before 1970.
    fn check_cluster(&self, cluster: &Cluster) -> Result<CheckedCluster, AckError> {
        let Some((numbers, tracks_body)) = &self.tracks else { return Err(AckError::InvalidMkv) };
        if cluster.frames.iter().any(|f| !numbers.contains(&f.track)) {
            return Err(AckError::TrackNumberMismatch);
        }
        let Some((frame_ms, producer_ms)) = self.cluster_times(cluster) else {
            return Err(AckError::InvalidProducerTimestamp);
        };
        if let Some(missing) = numbers.iter().find(|n| !cluster.frames.iter().any(|f| f.track == **n)) {
            tracing::debug!(track = missing, "fragment without frames of a track");
            return Err(AckError::FramesMissingForTrack);
        }
        let frame_bytes = |frame: &framelog_media::Frame| cluster.body.get(frame.data.clone()).unwrap_or_default();
        if cluster.frames.iter().any(|frame| self.in_band.frame_exceeds(frame.track, frame_bytes(frame))) {
            tracing::info!(stream = %self.stream.public_name(), "PutMedia refused: a frame's SPS is larger than 4096x2304");
            return Err(AckError::InvalidMkv);
        }
        let latest = self.latest_frames(&cluster.frames, &frame_ms)?;
        let duration_ms = fragment_duration_ms(&cluster.frames, &frame_ms);
        if duration_ms > MAX_FRAGMENT_DURATION_MS {
            return Err(AckError::MaxFragmentDuration);
        }
        if producer_ms < 0 {
            return Err(AckError::InvalidProducerTimestamp);
        }
        Ok(CheckedCluster {
            producer_ms: producer_ms as u64,
            duration_ms: duration_ms as u64,
            latest,
            tracks_body: tracks_body.clone(),
        })
    }

    /// Producer times in ms of every frame of the cluster and of the cluster itself, or `None`
    /// when one does not fit.
    fn cluster_times(&self, cluster: &Cluster) -> Option<(Vec<i64>, i64)> {
        let base = i128::from(cluster.timecode);
        let frame_ms: Option<Vec<i64>> =
            cluster.frames.iter().map(|f| self.to_ms(base + i128::from(f.relative_timecode))).collect();
        let (Some(frame_ms), Some(producer_ms)) = (frame_ms, self.to_ms(base)) else { return None };
        Some((frame_ms, producer_ms))
    }

    /// Per track, the latest frame time of this cluster, once each track's first frame here is
    /// found strictly later than that track's last frame before (docs/spec/kvs.md#putmedia-body).
    /// Checked per track: with B-frames, blocks carry presentation times, and the next key frame
    /// presents after every frame of its own track before it, but not necessarily after the audio
    /// muxed next to those frames.
    fn latest_frames(&self, frames: &[framelog_media::Frame], frame_ms: &[i64]) -> Result<HashMap<u64, i64>, AckError> {
        let mut latest: HashMap<u64, i64> = HashMap::new();
        for (frame, &ms) in frames.iter().zip(frame_ms) {
            if !latest.contains_key(&frame.track)
                && let Some(&previous) = self.last_frame_ms.get(&frame.track)
                && ms <= previous
            {
                return Err(AckError::TimecodeLesserThanPrevious);
            }
            let slot = latest.entry(frame.track).or_insert(ms);
            *slot = (*slot).max(ms);
        }
        Ok(latest)
    }

    /// The stored form of an accepted cluster (taking the tags that arrived before it) and its
    /// bytes, the entry's payload.
    fn fragment_record(&mut self, cluster: Cluster, checked: CheckedCluster) -> (FragmentRecord, Vec<u8>) {
        let record = FragmentRecord {
            timecode: cluster.timecode,
            timecode_scale_ns: self.info.timecode_scale_ns,
            producer_ts_ms: checked.producer_ms,
            server_ts_ms: self.cluster_server_ms,
            duration_ms: checked.duration_ms,
            tracks_body: checked.tracks_body,
            tags: std::mem::take(&mut self.pending_tags),
            frames: cluster.frames,
        };
        (record, cluster.body)
    }

    /// Queues the fragment's append; its PERSISTED waits for it in the ack writer.
    fn append(&self, record: &FragmentRecord, payload: Vec<u8>) -> Result<AppendWait, AckError> {
        let entry = NewEntry { shard: 0, producer_ts_ms: Some(record.producer_ts_ms), attrs: record.encode(), payload };
        match self.ctx.engine.append(&self.stream, vec![entry]) {
            Ok(wait) => Ok(wait),
            Err(framelog_store::StoreError::StreamDeleted(_)) => Err(AckError::StreamDeleted),
            Err(error) => {
                tracing::error!(%error, "queueing a fragment failed");
                Err(AckError::Internal)
            }
        }
    }
}

/// What checking a cluster established, for its record.
struct CheckedCluster {
    producer_ms: u64,
    duration_ms: u64,
    /// Per track, its latest frame time in this cluster: `Upload::last_frame_ms` once accepted.
    latest: HashMap<u64, i64>,
    tracks_body: Vec<u8>,
}

/// How long a fragment plays: from its earliest frame to the end of its latest one. Blocks carry
/// no duration, so each track's last frame is taken to last as long as that track's median frame
/// step (a 2 s, 30 fps fragment is 2000 ms, not 1967; the median, because millisecond rounding
/// makes 30 fps steps alternate between 33 and 34 ms).
fn fragment_duration_ms(frames: &[framelog_media::Frame], frame_ms: &[i64]) -> i64 {
    let Some(&start) = frame_ms.iter().min() else { return 0 };
    let mut per_track: HashMap<u64, Vec<i64>> = HashMap::new();
    for (frame, &ms) in frames.iter().zip(frame_ms) {
        per_track.entry(frame.track).or_default().push(ms);
    }
    let end = per_track
        .into_values()
        .map(|mut times| {
            times.sort_unstable();
            let last = times[times.len() - 1];
            let mut steps: Vec<i64> = times.windows(2).map(|w| w[1] - w[0]).filter(|&d| d > 0).collect();
            steps.sort_unstable();
            let step = steps.get(steps.len() / 2).copied().unwrap_or(0);
            last.saturating_add(step)
        })
        .max()
        .unwrap_or(start);
    end.saturating_sub(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(track: u64) -> framelog_media::Frame {
        framelog_media::Frame { track, relative_timecode: 0, keyframe: false, lacing: 0, data: 0..0 }
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_below_the_minimum_rate_is_too_slow_and_a_camera_is_not() {
        let mut reader = BodyReader {
            data: Body::empty().into_data_stream(),
            silent: Duration::ZERO,
            window_started: tokio::time::Instant::now(),
            window_bytes: 0,
        };
        // One byte a second: never silent, but a whole window brings 30 bytes.
        for _ in 1..RATE_WINDOW.as_secs() {
            tokio::time::advance(Duration::from_secs(1)).await;
            assert!(!reader.too_slow(1));
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(reader.too_slow(1));
        // A camera's fragment every two seconds is far above the minimum.
        for _ in 0..RATE_WINDOW.as_secs() {
            tokio::time::advance(Duration::from_secs(2)).await;
            assert!(!reader.too_slow(100_000));
        }
    }

    #[test]
    fn fragment_length_includes_the_last_frame() {
        // 30 fps video in rounded ms (0, 33, 67, 100, ..., 1967): 2000 ms, not 1967.
        let times: Vec<i64> = (0..60).map(|i| (i * 1000 + 15) / 30).collect();
        assert_eq!(times[59], 1967);
        let frames: Vec<_> = times.iter().map(|_| frame(1)).collect();
        assert_eq!(fragment_duration_ms(&frames, &times), 2000);
        // With audio ending later than the video, the audio's end counts.
        let mut frames = frames;
        let mut times = times;
        frames.extend([frame(2), frame(2)]);
        times.extend([1990, 2011]);
        assert_eq!(fragment_duration_ms(&frames, &times), 2032);
        assert_eq!(fragment_duration_ms(&[frame(1)], &[5]), 0);
        assert_eq!(fragment_duration_ms(&[], &[]), 0);
    }
}
