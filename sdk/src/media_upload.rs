//! One raw PutMedia connection for callers that keep their own fragment store (the edge agent):
//! they send the stream header and fragments when they like and read every acknowledgement, and
//! decide themselves what a lost connection means. [`Producer`](crate::Producer) is the managed
//! alternative that keeps fragments in memory and replays them.

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::Client;
use crate::control::DataApi;
use crate::error::{Error, Result};
use crate::mkv_producer::TimecodeType;
use crate::transport::Payload;
use framelog_wire::{Ack, AckLines, headers};

/// An open PutMedia request: a body the caller writes and the acknowledgements it reads.
#[derive(Debug)]
pub struct MediaUpload {
    body: Option<mpsc::UnboundedSender<Bytes>>,
    acks: Incoming,
    lines: AckLines,
    ready: std::collections::VecDeque<Ack>,
}

impl Client {
    /// Opens PutMedia on `stream_name` (through its GetDataEndpoint) and sends `header` (EBML
    /// header, Segment, Info, Tracks) first.
    pub async fn open_media_upload(
        &self,
        stream_name: &str,
        timecode_type: TimecodeType,
        header: Bytes,
    ) -> Result<MediaUpload> {
        let endpoint = self.get_data_endpoint(stream_name, DataApi::PutMedia).await?;
        let (sender, receiver) = mpsc::unbounded_channel::<Bytes>();
        let body = StreamBody::new(UnboundedReceiverStream::new(receiver).map(|b| Ok(Frame::data(b))));
        let mut headers = vec![
            (headers::STREAM_NAME, stream_name.to_string()),
            (headers::FRAGMENT_ACKNOWLEDGMENT_REQUIRED, "1".to_string()),
            ("content-type", "video/webm".to_string()),
        ];
        match timecode_type {
            TimecodeType::Absolute => headers.push((headers::FRAGMENT_TIMECODE_TYPE, "ABSOLUTE".into())),
            TimecodeType::Relative { start_ms } => {
                headers.push((headers::FRAGMENT_TIMECODE_TYPE, "RELATIVE".into()));
                headers.push((headers::PRODUCER_START_TIMESTAMP, framelog_media::seconds_text(start_ms)));
            }
        }
        let request = self.transport.post(&endpoint, "/putMedia", &headers, Payload::Unsigned, body.boxed_unsync())?;
        // Queued before the answer: PutMedia is full duplex and the server answers once it reads.
        let _ = sender.send(header);
        let response = self.transport.send(request).await?;
        let acks = crate::transport::ok_body(response).await?;
        Ok(MediaUpload { body: Some(sender), acks, lines: AckLines::default(), ready: Default::default() })
    }
}

impl MediaUpload {
    /// Queues bytes (a fragment's Tags and Cluster) on the request body.
    pub fn send(&self, bytes: Bytes) -> Result<()> {
        let body = self.body.as_ref().ok_or_else(|| Error::InvalidInput("the upload body was ended".into()))?;
        body.send(bytes).map_err(|_| Error::Transport("the PutMedia connection is closed".into()))
    }

    /// Ends the request body; the server then ends the acknowledgements after the last fragment.
    pub fn end(&mut self) {
        self.body = None;
    }

    /// The next acknowledgement, or `None` when the server ended the stream of them.
    pub async fn next_ack(&mut self) -> Result<Option<Ack>> {
        loop {
            if let Some(ack) = self.ready.pop_front() {
                return Ok(Some(ack));
            }
            match self.acks.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.ready.extend(self.lines.push(&data).map_err(|e| Error::Protocol(e.to_string()))?);
                    }
                }
                Some(Err(error)) => return Err(Error::Transport(error.to_string())),
                None => return self.lines.finish().map_err(|e| Error::Protocol(e.to_string())),
            }
        }
    }
}
