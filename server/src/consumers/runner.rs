//! One task per active video consumer: it follows its stream from its checkpoint (tailing new
//! fragments on the engine's commit watch), selects and renders frames, delivers them in batches
//! and commits the checkpoint after each batch. The supervisor (supervisor.rs) starts the tasks.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use base64::Engine as _;
use framelog_media::FragmentRecord;
use framelog_media::package::PackagedTrack;
use framelog_store::{Position, StreamHandle};
use serde_json::{Value, json};

use super::ConsumersCtx;
use super::deliver::{BodyKind, Delivery, deliver};
use super::prefetch::Prefetch;
use super::render::{Rendered, render};
use super::select::{Picked, select_video};
use super::spec::{ConsumerSpec, Format, LagPolicy, Sink, Start};
use super::state::{self, Checkpoint, DeadLetter};
use crate::background::Background;
use crate::kvs::VIDEO_SHARD;
use crate::kvs::VideoStream;

/// The first fragment a new consumer looks at.
pub fn start_seq(ctx: &ConsumersCtx, handle: &StreamHandle, start: &Start) -> Result<u64, crate::error::ApiError> {
    let engine = &ctx.video.engine;
    Ok(match start {
        Start::Now => engine.resolve(handle, VIDEO_SHARD, Position::Latest)?,
        Start::Earliest => engine.resolve(handle, VIDEO_SHARD, Position::TrimHorizon)?,
        Start::ProducerTimestamp(ms) => engine.resolve(handle, VIDEO_SHARD, Position::AtProducerMs(*ms))?,
        Start::ServerTimestamp(ms) => engine.resolve(handle, VIDEO_SHARD, Position::AtArrivalMs(*ms))?,
        Start::FragmentNumber(number) => {
            let seq = VideoStream::new(handle.clone()).fragment_seq(number)?;
            seq + 1
        }
    })
}

/// What one selected frame becomes for the consumer's sink.
enum Output {
    /// A frame of a webhook batch, or a whole notification.
    Json(Value),
    /// A picture file.
    File { path: std::path::PathBuf, bytes: Vec<u8> },
    /// Nothing to write (an image hook's frame that could not be decoded).
    Nothing,
}

/// A rendered frame waiting in the batch, with the checkpoint that holds once it is delivered.
struct Pending {
    output: Output,
    fragment_number: String,
    frame_ms: u64,
    after: Checkpoint,
}

pub(super) struct Runner {
    ctx: ConsumersCtx,
    handle: StreamHandle,
    stream_name: String,
    spec: ConsumerSpec,
    /// The next fragment's pictures, rendering while this one is delivered.
    lookahead: Option<Prefetch>,
    /// Checkpoint writes go through it, so shutdown waits for a commit already under way.
    background: Background,
}

/// The consumer loop's state between steps.
struct Progress {
    /// The last committed checkpoint.
    checkpoint: Checkpoint,
    /// Where the consumer is, ahead of the last committed checkpoint while frames wait.
    position: Checkpoint,
    /// Rendered frames waiting for delivery.
    batch: Vec<Pending>,
    /// When the first frame of the batch was added.
    batch_started: Instant,
    /// Fragments passed since the position was last committed.
    uncommitted_fragments: u32,
}

impl Progress {
    /// Moves the position past fragment `seq`, to the start of the next one.
    fn pass_fragment(&mut self, seq: u64) {
        self.position.seq = Some(seq + 1);
        self.position.frames_done = 0;
        self.uncommitted_fragments += 1;
    }
}

/// Through long runs of fragments without frames, the position is committed after this many.
const COMMIT_EVERY_FRAGMENTS: u32 = 50;

impl Runner {
    /// The consumer loop: waits while caught up with the stream, otherwise takes the next
    /// fragment's frames into the batch. Ends when the stream or its start position is gone.
    pub(super) fn new(ctx: ConsumersCtx, handle: StreamHandle, spec: ConsumerSpec, background: Background) -> Self {
        let stream_name = VideoStream::new(handle.clone()).public_name();
        Runner { ctx, handle, stream_name, spec, lookahead: None, background }
    }

    pub(super) async fn run(mut self) {
        let checkpoint = state::checkpoint(&self.handle.meta().settings, &self.spec.name);
        let Ok(mut tip) = self.handle.subscribe(VIDEO_SHARD) else { return };
        let mut progress = Progress {
            position: checkpoint.clone(),
            checkpoint,
            batch: Vec::new(),
            batch_started: Instant::now(),
            uncommitted_fragments: 0,
        };
        loop {
            let Some(seq) = self.current_seq(&mut progress.position) else { return };
            let Ok(newest) = self.handle.tip_seq(VIDEO_SHARD) else { return };
            if seq >= newest {
                self.caught_up(&mut progress, &mut tip).await;
            } else {
                self.advance(seq, newest, &mut progress).await;
            }
        }
    }

    /// The fragment the position points at, resolving the spec's start for a consumer that has
    /// none yet (and recording it in `position`); `None` when the start cannot be resolved.
    fn current_seq(&self, position: &mut Checkpoint) -> Option<u64> {
        let seq = match position.seq {
            Some(seq) => seq,
            None => start_seq(&self.ctx, &self.handle, &self.spec.start).ok()?,
        };
        position.seq = Some(seq);
        Some(seq)
    }

    /// Caught up: sends a batch whose wait is over, commits the position when no frames wait,
    /// and otherwise sleeps until the next fragment (or until the waiting batch is due).
    async fn caught_up(&self, progress: &mut Progress, tip: &mut tokio::sync::watch::Receiver<u64>) {
        let max_wait = Duration::from_millis(self.spec.max_wait_ms);
        if !progress.batch.is_empty() && progress.batch_started.elapsed() >= max_wait {
            self.flush_batch(progress).await;
            return;
        }
        if progress.batch.is_empty() && progress.uncommitted_fragments > 0 {
            self.commit_position(progress).await;
        }
        let wait = if progress.batch.is_empty() {
            Duration::from_secs(1)
        } else {
            max_wait.saturating_sub(progress.batch_started.elapsed())
        };
        let _ = tokio::time::timeout(wait, tip.changed()).await;
    }

    /// Takes fragment `seq` (or the one the lag policy or a trim moves to): its frames join the
    /// batch, and the position moves past it. A fragment that cannot be read is passed over.
    async fn advance(&mut self, seq: u64, newest: u64, progress: &mut Progress) {
        let next = self.next_fragment(seq, newest, &mut progress.position).await;
        // The lag policy or a trim may have moved the position past `seq`.
        let seq = progress.position.seq.unwrap_or(seq);
        let Some((number, record, payload)) = next else {
            progress.pass_fragment(seq);
            return;
        };
        self.enqueue(seq, &number, &record, &payload, progress).await;
        progress.pass_fragment(seq);
        // Keep the position committed now and then through long runs without frames.
        if progress.batch.is_empty() && progress.uncommitted_fragments >= COMMIT_EVERY_FRAGMENTS {
            self.commit_position(progress).await;
        }
    }

    /// Selects the fragment's frames, renders them and adds them to the batch, delivering the
    /// batch whenever it is full. Each frame carries the position that holds once it is delivered.
    async fn enqueue(
        &mut self,
        seq: u64,
        number: &str,
        record: &FragmentRecord,
        payload: &[u8],
        progress: &mut Progress,
    ) {
        let Some((video, picked)) = self.pick(record, &progress.position) else { return };
        let last = picked.last().map(|p| p.pts_ms).or(progress.position.last_frame_ms);
        let rendered = self.render(seq, record, payload, &video, &picked, last).await;
        for (ordinal, (frame, output)) in picked.iter().zip(rendered).enumerate() {
            let mut after = progress.position.clone();
            after.frames_done = progress.position.frames_done + ordinal + 1;
            after.last_frame_ms = Some(frame.pts_ms);
            if progress.batch.is_empty() {
                progress.batch_started = Instant::now();
            }
            progress.batch.push(Pending {
                output: self.output(number, record, &video, frame, output),
                fragment_number: number.to_string(),
                frame_ms: frame.pts_ms,
                after,
            });
            if progress.batch.len() >= self.spec.max_frames_per_batch {
                self.flush_batch(progress).await;
            }
        }
        if let Some(last) = picked.last() {
            progress.position.last_frame_ms = Some(last.pts_ms);
        }
    }

    /// The fragment's video track and the frames of it to deliver; `None` without a video track.
    fn pick(&self, record: &FragmentRecord, position: &Checkpoint) -> Option<(PackagedTrack, Vec<Picked>)> {
        let (video, mut picked) = select_video(record, &self.spec.selection, position.last_frame_ms)?;
        // Resuming inside a fragment: what was delivered is up to the last delivered frame's time
        // (rate and interval selections already start after it; key-frame selections do not
        // look at it).
        if position.frames_done > 0
            && let Some(last) = position.last_frame_ms
        {
            picked.retain(|p| p.pts_ms > last);
        }
        if self.spec.sink == Sink::Notification {
            // One notification per fragment.
            picked.truncate(1);
        }
        Some((video, picked))
    }

    /// Delivers the batch and makes the checkpoint after it the committed one.
    async fn flush_batch(&self, progress: &mut Progress) {
        progress.checkpoint = self.flush(&mut progress.batch, &progress.checkpoint).await;
    }

    /// Commits the position itself (no frames wait), with the committed checkpoint's counters.
    async fn commit_position(&self, progress: &mut Progress) {
        progress.position.counters_from(&progress.checkpoint);
        progress.checkpoint = self.commit(progress.position.clone(), None).await;
        progress.uncommitted_fragments = 0;
    }

    /// The pictures (or raw access units) of `picked`; for pictures, the next fragment (as it
    /// would be selected after `last_frame_ms`) starts rendering before this one is awaited, so
    /// two decode workers are busy at once.
    async fn render(
        &mut self,
        seq: u64,
        record: &FragmentRecord,
        payload: &[u8],
        video: &PackagedTrack,
        picked: &[Picked],
        last_frame_ms: Option<u64>,
    ) -> Vec<Option<Rendered>> {
        match (&self.spec.sink, self.spec.format) {
            // A notification carries no picture.
            (Sink::Notification, _) => return vec![None; picked.len()],
            // Raw access units are copies: nothing to render ahead.
            (_, Format::Raw) => return render(&self.ctx, &self.spec, record, payload, video, picked).await,
            _ => {}
        }
        let guess = self.lookahead.take();
        if self.handle.tip_seq(VIDEO_SHARD).is_ok_and(|tip| seq + 1 < tip) {
            self.lookahead = Some(Prefetch::start(&self.ctx, &self.handle, &self.spec, seq + 1, last_frame_ms));
        }
        let ready = match guess {
            Some(guess) => guess.take(seq, picked).await,
            None => None,
        };
        match ready {
            Some(rendered) => rendered,
            None => render(&self.ctx, &self.spec, record, payload, video, picked).await,
        }
    }

    /// Reads fragment `seq`, after applying the lag policy (which may move `position` forward).
    async fn next_fragment(
        &self,
        seq: u64,
        newest: u64,
        position: &mut Checkpoint,
    ) -> Option<(String, FragmentRecord, Vec<u8>)> {
        let (engine, handle) = (self.ctx.video.engine.clone(), self.handle.clone());
        let lag = self.spec.lag.clone();
        let read = tokio::task::spawn_blocking(move || {
            let first = engine.resolve(&handle, VIDEO_SHARD, Position::TrimHorizon).ok()?;
            let mut seq = seq.max(first);
            let mut skipped = 0;
            if let LagPolicy::Latest { max_lag_ms } = lag
                && let Ok(Some(header)) = engine.header(&handle, VIDEO_SHARD, seq)
                && engine.now_ms().saturating_sub(header.arrival_ms) > max_lag_ms
                && newest > seq + 1
            {
                skipped = newest - 1 - seq;
                seq = newest - 1;
            }
            let video = VideoStream::new(handle);
            let stored = video.fragment(&engine, seq).ok()??;
            Some((seq, skipped, video.fragment_number(seq), stored.record, stored.payload))
        })
        .await
        .ok()??;
        let (seq, skipped, number, record, payload) = read;
        if skipped > 0 {
            position.skipped_fragments += skipped;
            // Skipped frames are counted as the key frames the fragments would have had at least.
            position.skipped_frames += skipped;
            position.frames_done = 0;
            tracing::info!(consumer = %self.spec.name, skipped, "lagging consumer skipped to the newest fragment");
        }
        position.seq = Some(seq);
        Some((number, record, payload))
    }

    fn output(
        &self,
        number: &str,
        record: &FragmentRecord,
        video: &PackagedTrack,
        frame: &Picked,
        rendered: Option<Rendered>,
    ) -> Output {
        match &self.spec.sink {
            Sink::Frames => Output::Json(self.item(number, record, video, frame, rendered)),
            Sink::Notification => Output::Json(super::sink::notification(
                &self.handle.meta().arn,
                self.spec.webhook_url.expose(),
                number,
                record,
                self.ctx.video.engine.now_ms(),
            )),
            Sink::Directory { root, timestamp } => match rendered {
                Some(picture) => {
                    let extension = if self.spec.format == Format::Png { "png" } else { "jpg" };
                    let path =
                        super::sink::image_path(root, &self.stream_name, record, frame.pts_ms, *timestamp, extension);
                    Output::File { path, bytes: picture.bytes }
                }
                None => {
                    tracing::warn!(consumer = %self.spec.name, fragment = number, "a frame could not be decoded for image generation");
                    Output::Nothing
                }
            },
        }
    }

    fn item(
        &self,
        number: &str,
        record: &FragmentRecord,
        video: &PackagedTrack,
        frame: &Picked,
        output: Option<Rendered>,
    ) -> Value {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let keyframe = record.frames.get(frame.index).is_some_and(|f| f.keyframe);
        let tags = crate::kvs::tags_object(record);
        let mut item = json!({
            "StreamName": self.stream_name,
            "FragmentNumber": number,
            "ProducerTimestamp": record.producer_ts_ms as f64 / 1000.0,
            "ServerTimestamp": record.server_ts_ms as f64 / 1000.0,
            "FrameTimestamp": frame.pts_ms as f64 / 1000.0,
            "KeyFrame": keyframe,
            "Tags": tags,
        });
        match output {
            None => item["Error"] = json!("MEDIA_ERROR"),
            Some(rendered) => {
                item["Format"] = json!(match self.spec.format {
                    Format::Jpeg { .. } => "JPEG",
                    Format::Png => "PNG",
                    Format::Raw => "RAW",
                });
                item["Data"] = json!(b64(&rendered.bytes));
                item["WidthPixels"] = json!(rendered.width);
                item["HeightPixels"] = json!(rendered.height);
                if self.spec.format == Format::Raw {
                    item["CodecId"] = json!(video.codecs_string());
                    item["CodecPrivateData"] = json!(b64(&video.config));
                }
            }
        }
        item
    }

    /// Delivers the batch (or dead-letters it) and commits the checkpoint after it.
    async fn flush(&self, batch: &mut Vec<Pending>, checkpoint: &Checkpoint) -> Checkpoint {
        let Some(last) = batch.last() else { return checkpoint.clone() };
        let mut next = last.after.clone();
        next.counters_from(checkpoint);
        let dead = match self.send(batch).await {
            Delivery::Delivered { body, retries } => {
                if self.spec.sink == Sink::Frames {
                    let mut numbers: Vec<String> = batch.iter().map(|p| p.fragment_number.clone()).collect();
                    numbers.dedup();
                    super::write_back::apply(&self.ctx, &self.handle, &numbers, &body).await;
                }
                next.delivered_frames += batch.len() as u64;
                next.delivered_batches += 1;
                next.retried_calls += u64::from(retries);
                None
            }
            Delivery::Failed { attempts, error } => {
                let destination = self.destination();
                tracing::warn!(consumer = %self.spec.name, %destination, attempts, %error, "a batch went to the dead-letter log");
                next.retried_calls += u64::from(attempts.saturating_sub(1));
                next.dead_lettered_batches += 1;
                Some(DeadLetter {
                    at_ms: self.ctx.video.engine.now_ms(),
                    attempts,
                    error,
                    fragment_numbers: batch.iter().map(|p| p.fragment_number.clone()).collect(),
                    frame_timestamps_ms: batch.iter().map(|p| p.frame_ms).collect(),
                    shard_id: None,
                    sequence_numbers: Vec::new(),
                })
            }
        };
        batch.clear();
        self.commit(next, dead).await
    }

    /// Where the batch was going, for the log: the directory, or the URL redacted (it may carry
    /// credentials).
    fn destination(&self) -> String {
        match &self.spec.sink {
            Sink::Directory { root, .. } => root.display().to_string(),
            Sink::Frames | Sink::Notification => self.spec.webhook_url.redacted(),
        }
    }

    /// Hands the batch to the sink: one webhook call for frames, one call per notification, or
    /// the picture files.
    async fn send(&self, batch: &[Pending]) -> Delivery {
        let (policy, url) = (&self.ctx.destinations, &self.spec.webhook_url);
        let attempts = self.spec.max_attempts;
        match &self.spec.sink {
            Sink::Frames => {
                let frames: Vec<&Value> = batch
                    .iter()
                    .filter_map(|p| if let Output::Json(item) = &p.output { Some(item) } else { None })
                    .collect();
                let body = json!({"StreamName": self.stream_name, "ConsumerName": self.spec.name, "Frames": frames});
                deliver(policy, url, BodyKind::Json, Bytes::from(body.to_string()), attempts).await
            }
            Sink::Notification => {
                let mut retries = 0;
                for pending in batch {
                    let Output::Json(message) = &pending.output else { continue };
                    match deliver(policy, url, BodyKind::SnsNotification, Bytes::from(message.to_string()), attempts)
                        .await
                    {
                        Delivery::Delivered { retries: more, .. } => retries += more,
                        failed => return failed,
                    }
                }
                Delivery::Delivered { body: Bytes::new(), retries }
            }
            Sink::Directory { .. } => {
                let files: Vec<(std::path::PathBuf, Vec<u8>)> = batch
                    .iter()
                    .filter_map(|p| match &p.output {
                        Output::File { path, bytes } => Some((path.clone(), bytes.clone())),
                        _ => None,
                    })
                    .collect();
                let images = self.ctx.image_files.clone();
                let written = self
                    .background
                    .spawn_blocking(move || files.iter().try_for_each(|(path, bytes)| images.write(path, bytes)))
                    .await;
                match written {
                    Ok(Ok(())) => Delivery::Delivered { body: Bytes::new(), retries: 0 },
                    Ok(Err(error)) => Delivery::Failed { attempts: 1, error: error.to_string() },
                    Err(error) => Delivery::Failed { attempts: 1, error: error.to_string() },
                }
            }
        }
    }

    /// Stores the checkpoint (and a dead letter) in the stream's metadata, through the WAL without
    /// an fsync of its own: a killed process loses none, a power loss may redeliver (never skip).
    async fn commit(&self, checkpoint: Checkpoint, dead: Option<DeadLetter>) -> Checkpoint {
        let (engine, handle, name) = (self.ctx.video.engine.clone(), self.handle.clone(), self.spec.name.clone());
        let (stored, key) = (checkpoint.clone(), state::checkpoint_key(&name));
        state::commit_unsynced(&self.background, engine, handle, name, dead, move |settings| {
            settings.insert(key.clone(), serde_json::to_string(&stored).unwrap_or_default());
        })
        .await;
        checkpoint
    }
}
