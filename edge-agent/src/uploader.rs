//! Uploading one stream's buffer over PutMedia, exactly once.
//!
//! Two lanes, each its own PutMedia connection: **live** sends fragments as they are recorded;
//! **backlog** sends everything older, oldest first. When the live lane (re)connects it starts at
//! the newest fragment and leaves all before it to the backlog lane, so live video reaches
//! viewers at once after an outage while the backlog drains beside it, never ahead of it. The
//! server archives back-filled fragments by producer time and keeps them out of LIVE windows.
//!
//! A fragment is deleted (or marked sent) only after its PERSISTED ack. A fragment sent on a
//! connection that then broke is sent again on the next one; its identity tag
//! (`FRAMELOG_FRAGMENT_ID = <agent>/<stream>/<seq>`) makes the server answer such a replay with the
//! fragment it already stored, so every fragment is stored exactly once (docs/edge-agent.md).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use framelog_sdk::{Ack, AckErrorClass, Client, NewStream, TimecodeType, classify_ack_error};

use crate::buffer::{Entry, StreamBuffer};
use crate::schedule::Window;

/// Fragments and bytes sent ahead of their acks on one connection.
const WINDOW_FRAGMENTS: usize = 32;
const WINDOW_BYTES: u64 = 64 << 20;
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    Live,
    Backlog,
}

/// One stream's uploader.
#[derive(Debug, Clone)]
pub struct Uploader {
    pub client: Client,
    pub stream: String,
    pub stream_retention_hours: u32,
    pub buffer: Arc<StreamBuffer>,
    pub delete_after_upload: bool,
    pub max_backoff: Duration,
    pub upload_window: Option<Window>,
    pub stop: Arc<AtomicBool>,
    /// Fragments from this sequence number on belong to the live lane.
    live_from: Arc<AtomicU64>,
}

/// How a connection ended.
enum Ended {
    /// The next fragment needs another stream header: reconnect at once.
    NewHeader,
    /// Stopping, or the upload window closed.
    Paused,
}

impl Uploader {
    pub fn new(
        client: Client,
        stream: &crate::config::StreamConfig,
        buffer: Arc<StreamBuffer>,
        delete_after_upload: bool,
        max_backoff: Duration,
        stop: Arc<AtomicBool>,
    ) -> anyhow::Result<Uploader> {
        let upload_window = stream.upload_schedule.as_ref().map(crate::schedule::parse).transpose()?;
        // What a previous run left in the buffer is backlog.
        let live_from = Arc::new(AtomicU64::new(buffer.next_seq()));
        Ok(Uploader {
            client,
            stream: stream.name.clone(),
            stream_retention_hours: stream.stream_retention_hours,
            buffer,
            delete_after_upload,
            max_backoff,
            upload_window,
            stop,
            live_from,
        })
    }

    pub async fn run(self) {
        self.ensure_stream().await;
        let backlog = tokio::spawn(self.clone().lane(Lane::Backlog));
        self.lane(Lane::Live).await;
        let _ = backlog.await;
    }

    async fn ensure_stream(&self) {
        let mut attempt = 0;
        let stream = NewStream {
            retention_hours: Some(u64::from(self.stream_retention_hours)),
            ..NewStream::named(&self.stream)
        };
        while !self.stop.load(Ordering::Relaxed) {
            match self.client.ensure_stream(&stream).await {
                Ok(_) => return,
                Err(error) => {
                    self.buffer.metrics.set_error(format!("creating the stream: {error}"));
                    tokio::time::sleep(self.backoff(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Exponential backoff with jitter (half to all of the step), capped at `max_backoff`, so
    /// a restored link is used within `max_backoff` and a fleet does not reconnect in lockstep.
    fn backoff(&self, attempt: u32) -> Duration {
        framelog_sdk::Backoff::new(FIRST_BACKOFF, self.max_backoff).delay(attempt)
    }

    fn lane_range(&self, lane: Lane) -> std::ops::Range<u64> {
        let live_from = self.live_from.load(Ordering::Relaxed);
        match lane {
            Lane::Live => live_from..u64::MAX,
            Lane::Backlog => 0..live_from,
        }
    }

    async fn lane(self, lane: Lane) {
        let mut recorded = self.buffer.recorded.subscribe();
        let mut failures = 0;
        while !self.stop.load(Ordering::Relaxed) {
            if !crate::schedule::is_open(self.upload_window.as_ref()) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            if lane == Lane::Live
                && let Some(newest) = self.buffer.newest_pending()
            {
                // Live starts at the newest fragment; everything before it is backlog now.
                self.live_from.fetch_max(newest.seq, Ordering::Relaxed);
            }
            let Some(first) = self.buffer.pending(self.lane_range(lane), 1).pop() else {
                // Nothing to send: wait for a recording (or re-check the schedule and lanes).
                let _ = tokio::time::timeout(Duration::from_secs(1), recorded.changed()).await;
                continue;
            };
            self.buffer.metrics.uploading.store(true, Ordering::Relaxed);
            match self.connection(lane, first, &mut recorded).await {
                Ok(Ended::NewHeader | Ended::Paused) => failures = 0,
                Err(error) => {
                    tracing::info!(stream = %self.stream, ?lane, error = %format!("{error:#}"), "upload connection ended");
                    self.buffer.metrics.set_error(format!("upload: {error:#}"));
                    tokio::time::sleep(self.backoff(failures)).await;
                    failures += 1;
                }
            }
            self.buffer.metrics.uploading.store(false, Ordering::Relaxed);
        }
    }

    /// One PutMedia connection: streams the lane's fragments that share `first`'s header, keeping
    /// a window in flight, and retires each at its PERSISTED ack.
    async fn connection(
        &self,
        lane: Lane,
        first: Entry,
        recorded: &mut tokio::sync::watch::Receiver<u64>,
    ) -> anyhow::Result<Ended> {
        let header = self.read_header(first.header_id).await?;
        let mut upload =
            self.client.open_media_upload(&self.stream, TimecodeType::Absolute, Bytes::from(header)).await?;
        let mut in_flight: VecDeque<Entry> = VecDeque::new();
        let mut in_flight_bytes = 0u64;
        let mut next_seq = first.seq;
        let mut other_header = false;
        loop {
            while !other_header && in_flight.len() < WINDOW_FRAGMENTS && in_flight_bytes < WINDOW_BYTES {
                let range = next_seq.max(self.lane_range(lane).start)..self.lane_range(lane).end;
                let Some(entry) = self.buffer.pending(range, 1).pop() else { break };
                if entry.header_id != first.header_id {
                    other_header = true;
                    break;
                }
                let bytes = self.read_fragment(&entry).await?;
                upload.send(Bytes::from(bytes))?;
                next_seq = entry.seq + 1;
                in_flight_bytes += entry.size_bytes;
                in_flight.push_back(entry);
            }
            if in_flight.is_empty() {
                if other_header {
                    upload.end();
                    return Ok(Ended::NewHeader);
                }
                if self.stop.load(Ordering::Relaxed) || !crate::schedule::is_open(self.upload_window.as_ref()) {
                    upload.end();
                    return Ok(Ended::Paused);
                }
                // A live lane that reconnects elsewhere handed its range over: stop here too.
                if lane == Lane::Backlog && self.buffer.pending(self.lane_range(lane), 1).is_empty() {
                    upload.end();
                    return Ok(Ended::Paused);
                }
                let _ = tokio::time::timeout(Duration::from_secs(1), recorded.changed()).await;
                continue;
            }
            let ack =
                upload.next_ack().await?.ok_or_else(|| anyhow::anyhow!("the server ended the acknowledgements"))?;
            match ack {
                Ack::Persisted { timecode, .. } => {
                    let Some(done) = in_flight.pop_front() else {
                        anyhow::bail!("PERSISTED {timecode} with nothing in flight")
                    };
                    anyhow::ensure!(
                        done.producer_ms == timecode,
                        "PERSISTED {timecode}, expected {}",
                        done.producer_ms
                    );
                    in_flight_bytes -= done.size_bytes;
                    self.retire(&done).await?;
                }
                Ack::Error { timecode, error_id, error_code } => {
                    if classify_ack_error(error_id) == AckErrorClass::RejectFragment
                        && let Some(bad) = in_flight.iter().find(|e| Some(e.producer_ms) == timecode)
                    {
                        tracing::error!(stream = %self.stream, seq = bad.seq, error_id, %error_code, "the server refused a fragment; it is kept in rejected/");
                        self.buffer.reject(bad.seq)?;
                    }
                    anyhow::bail!("server error {error_id} {error_code}");
                }
                Ack::Buffering { .. } | Ack::Received { .. } | Ack::Idle => {}
            }
        }
    }

    async fn retire(&self, entry: &Entry) -> anyhow::Result<()> {
        let (buffer, seq, delete) = (self.buffer.clone(), entry.seq, self.delete_after_upload);
        tokio::task::spawn_blocking(move || buffer.uploaded(seq, delete)).await??;
        let metrics = &self.buffer.metrics;
        metrics.uploaded_fragments.fetch_add(1, Ordering::Relaxed);
        metrics.uploaded_bytes.fetch_add(entry.size_bytes, Ordering::Relaxed);
        Ok(())
    }

    async fn read_fragment(&self, entry: &Entry) -> anyhow::Result<Vec<u8>> {
        let (buffer, entry) = (self.buffer.clone(), entry.clone());
        tokio::task::spawn_blocking(move || buffer.read(&entry)).await?
    }

    async fn read_header(&self, header_id: u64) -> anyhow::Result<Vec<u8>> {
        let buffer = self.buffer.clone();
        tokio::task::spawn_blocking(move || buffer.header(header_id)).await?
    }
}
