//! The producer's upload loop: one PutMedia connection at a time, every fragment kept until its
//! acknowledgement, and on a broken connection a reconnect with backoff that replays the stream
//! header and every fragment not yet acknowledged (the server accepts replayed timecodes on a new
//! connection, docs/spec/kvs.md#putmedia-replays).

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::error::{Error, Result};
use crate::transport::{Payload, Transport};
use framelog_wire::{Ack, AckErrorClass, AckLines, Backoff, classify, headers};

/// When a fragment counts as delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckLevel {
    /// Durable on the server (the default; streams with retention 0 never send it).
    Persisted,
    /// Received whole by the server.
    Received,
}

/// How reconnects back off.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// Consecutive failed connections before the producer gives up; `None` retries forever.
    pub max_attempts: Option<u32>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { first_delay: Duration::from_millis(100), max_delay: Duration::from_secs(5), max_attempts: Some(20) }
    }
}

impl RetryPolicy {
    /// The `attempt`th reconnect delay: doubling, capped, jittered.
    fn delay(&self, attempt: u32) -> Duration {
        Backoff::new(self.first_delay, self.max_delay).delay(attempt)
    }
}

/// A fragment ready to send: its Cluster timecode (what acks name) and its bytes (tags + cluster).
#[derive(Debug, Clone)]
pub(crate) struct Fragment {
    pub timecode: u64,
    pub bytes: Bytes,
}

pub(crate) enum Command {
    Fragment(Fragment),
    Finish,
}

/// A fragment the server acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveredFragment {
    pub timecode: u64,
    /// The fragment number (absent when delivery is counted at RECEIVED).
    pub fragment_number: Option<String>,
}

/// A fragment the server refused for its content; it is not retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedFragment {
    pub timecode: u64,
    pub error_id: u32,
    pub error_code: String,
}

/// What an upload achieved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerReport {
    pub delivered: Vec<DeliveredFragment>,
    pub rejected: Vec<RejectedFragment>,
    /// PutMedia connections opened (1 when nothing went wrong).
    pub connections: u32,
    /// Fragments sent again on a later connection.
    pub replayed_fragments: u32,
}

/// Where and how to upload.
#[derive(Debug, Clone)]
pub(crate) struct UploadTarget {
    pub endpoint: String,
    pub stream_name: String,
    /// Sent first on every connection: EBML header, Segment, Info, Tracks.
    pub header: Bytes,
    /// `x-amzn-fragment-timecode-type` and, for RELATIVE, the start timestamp.
    pub timecode_headers: Vec<(&'static str, String)>,
    pub ack_level: AckLevel,
    pub retry: RetryPolicy,
    pub max_pending_fragments: usize,
}

enum Failure {
    Retry(Error),
    Fatal(Error),
}

pub(crate) struct Uploader {
    transport: Transport,
    target: UploadTarget,
    commands: mpsc::Receiver<Command>,
    pending: VecDeque<Fragment>,
    finishing: bool,
    report: ProducerReport,
}

impl Uploader {
    pub fn new(transport: Transport, target: UploadTarget, commands: mpsc::Receiver<Command>) -> Self {
        Self {
            transport,
            target,
            commands,
            pending: VecDeque::new(),
            finishing: false,
            report: ProducerReport::default(),
        }
    }

    pub async fn run(mut self) -> Result<ProducerReport> {
        let mut failures = 0u32;
        loop {
            if self.finishing && self.pending.is_empty() {
                return Ok(self.report);
            }
            let delivered_before = self.report.delivered.len() + self.report.rejected.len();
            match self.connection().await {
                Ok(()) => failures = 0,
                Err(Failure::Fatal(error)) => return Err(error),
                Err(Failure::Retry(error)) => {
                    // A connection that delivered something resets the backoff.
                    if self.report.delivered.len() + self.report.rejected.len() > delivered_before {
                        failures = 0;
                    }
                    failures += 1;
                    if self.target.retry.max_attempts.is_some_and(|max| failures >= max) {
                        return Err(error);
                    }
                    tracing::warn!(%error, attempt = failures, "PutMedia connection failed; reconnecting");
                    // Frames keep coming while the server is away: they wait in `pending`.
                    self.with_intake(None, tokio::time::sleep(self.target.retry.delay(failures - 1))).await;
                }
            }
        }
    }

    /// One PutMedia connection: replays what is pending, then streams new fragments until
    /// everything is delivered after `finish`, or the connection fails.
    async fn connection(&mut self) -> Result<(), Failure> {
        self.report.connections += 1;
        let (body_sender, body_receiver) = mpsc::unbounded_channel::<Bytes>();
        let body = StreamBody::new(UnboundedReceiverStream::new(body_receiver).map(|b| Ok(Frame::data(b))));
        let mut headers = vec![
            (headers::STREAM_NAME, self.target.stream_name.clone()),
            (headers::FRAGMENT_ACKNOWLEDGMENT_REQUIRED, "1".to_string()),
            ("content-type", "video/webm".to_string()),
        ];
        headers.extend(self.target.timecode_headers.iter().cloned());
        let request = self
            .transport
            .post(&self.target.endpoint, "/putMedia", &headers, Payload::Unsigned, body.boxed_unsync())
            .map_err(Failure::Fatal)?;
        // The body is queued before the answer: PutMedia is full duplex.
        let _ = body_sender.send(self.target.header.clone());
        for fragment in &self.pending {
            let _ = body_sender.send(fragment.bytes.clone());
        }
        if self.report.connections > 1 {
            self.report.replayed_fragments += self.pending.len() as u32;
        }
        let transport = self.transport.clone();
        let response = self.with_intake(Some(&body_sender), transport.send(request)).await.map_err(Failure::Retry)?;
        let mut body = crate::transport::ok_body(response).await.map_err(|error| match &error {
            Error::Service { status, error_type, .. } if *status >= 500 || error_type.contains("LimitExceeded") => {
                Failure::Retry(error)
            }
            _ => Failure::Fatal(error),
        })?;
        let mut sender = Some(body_sender);
        let mut lines = AckLines::default();
        loop {
            if self.finishing && self.pending.is_empty() && sender.take().is_some() {
                // Everything delivered: end the request body; the server then ends the acks.
                continue;
            }
            tokio::select! {
                command = self.commands.recv(), if self.has_room() => self.on_command(command, sender.as_ref()),
                frame = body.frame() => {
                    let acks = match frame {
                        Some(Ok(frame)) => match frame.into_data() {
                            Ok(data) => lines.push(&data),
                            Err(_) => continue,
                        },
                        Some(Err(error)) => return Err(Failure::Retry(Error::Transport(error.to_string()))),
                        None => {
                            let last = lines.finish().map_err(|e| Failure::Retry(Error::Protocol(e.to_string())))?;
                            if let Some(ack) = last {
                                self.on_ack(ack)?;
                            }
                            if self.finishing && self.pending.is_empty() {
                                return Ok(());
                            }
                            return Err(Failure::Retry(Error::Transport("the server ended the acknowledgements".into())));
                        }
                    };
                    for ack in acks.map_err(|e| Failure::Retry(Error::Protocol(e.to_string())))? {
                        self.on_ack(ack)?;
                    }
                }
            }
        }
    }

    fn has_room(&self) -> bool {
        !self.finishing && self.pending.len() < self.target.max_pending_fragments
    }

    /// Queues a new fragment (and sends it when a connection is open).
    fn on_command(&mut self, command: Option<Command>, sender: Option<&mpsc::UnboundedSender<Bytes>>) {
        match command {
            Some(Command::Fragment(fragment)) => {
                if let Some(sender) = sender {
                    let _ = sender.send(fragment.bytes.clone());
                }
                self.pending.push_back(fragment);
            }
            Some(Command::Finish) | None => self.finishing = true,
        }
    }

    /// Awaits `future` while still taking new fragments from the producer, so that pushing
    /// frames never stalls on a slow connect or a backoff.
    async fn with_intake<T>(
        &mut self,
        sender: Option<&mpsc::UnboundedSender<Bytes>>,
        future: impl std::future::Future<Output = T>,
    ) -> T {
        tokio::pin!(future);
        loop {
            tokio::select! {
                out = &mut future => return out,
                command = self.commands.recv(), if self.has_room() => self.on_command(command, sender),
            }
        }
    }

    fn take_pending(&mut self, timecode: u64) -> Option<Fragment> {
        let index = self.pending.iter().position(|f| f.timecode == timecode)?;
        self.pending.remove(index)
    }

    fn on_ack(&mut self, ack: Ack) -> Result<(), Failure> {
        match ack {
            Ack::Persisted { timecode, fragment_number }
                if self.target.ack_level == AckLevel::Persisted && self.take_pending(timecode).is_some() =>
            {
                self.report.delivered.push(DeliveredFragment { timecode, fragment_number: Some(fragment_number) });
            }
            Ack::Received { timecode }
                if self.target.ack_level == AckLevel::Received && self.take_pending(timecode).is_some() =>
            {
                self.report.delivered.push(DeliveredFragment { timecode, fragment_number: None });
            }
            Ack::Error { timecode, error_id, error_code } => {
                let error = Error::Protocol(format!("PutMedia error {error_id} {error_code} at {timecode:?}"));
                let class = classify(error_id);
                if class == AckErrorClass::Retry {
                    return Err(Failure::Retry(error));
                }
                let Some(timecode) = timecode.filter(|_| class == AckErrorClass::RejectFragment) else {
                    return Err(Failure::Fatal(error));
                };
                // The server refused this fragment's content: resending it cannot help. The
                // connection is over; the rest is replayed on the next one.
                if self.take_pending(timecode).is_some() {
                    self.report.rejected.push(RejectedFragment { timecode, error_id, error_code });
                }
                return Err(Failure::Retry(error));
            }
            _ => {}
        }
        Ok(())
    }
}
