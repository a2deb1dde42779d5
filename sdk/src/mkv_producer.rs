//! The ready-MKV producer: uploads a Matroska stream someone else muxed (a file, or a GStreamer
//! `matroskamux` pipe), one Cluster per fragment, with the same acknowledgement tracking, retries
//! and replay as the frame producer.

use bytes::Bytes;
use framelog_media::{Event, Fragmenter, Limits, SimpleTag, ebml, ids};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::Client;
use crate::control::DataApi;
use crate::error::{Error, Result};
use crate::producer::{Producer, ProducerConfig};
use crate::uploader::{Command, Fragment, ProducerReport};

/// How the MKV's Cluster timecodes map to producer time (`x-amzn-fragment-timecode-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimecodeType {
    /// Cluster timecodes are times since the epoch.
    Absolute,
    /// Cluster timecodes count from this producer start time (ms since the epoch).
    Relative { start_ms: u64 },
}

/// Uploads a Matroska byte stream fed in pieces of any size.
#[derive(Debug)]
pub struct MkvProducer {
    client: Client,
    config: ProducerConfig,
    timecode_type: TimecodeType,
    endpoint: String,
    fragmenter: Fragmenter,
    tags: Vec<SimpleTag>,
    upload: Option<(mpsc::Sender<Command>, JoinHandle<Result<ProducerReport>>)>,
}

impl MkvProducer {
    /// Feeds the next bytes of the MKV stream.
    pub async fn push(&mut self, bytes: &[u8]) -> Result<()> {
        self.fragmenter.push(bytes);
        while let Some(event) = self.fragmenter.next_event()? {
            self.on_event(event).await?;
        }
        Ok(())
    }

    async fn on_event(&mut self, event: Event) -> Result<()> {
        match event {
            Event::Tracks { info, tracks_body, .. } => {
                if self.upload.is_some() {
                    return Err(Error::InvalidInput("a second Segment needs a new producer".into()));
                }
                let mut header = Vec::new();
                framelog_media::write_stream_header_raw(
                    &mut header,
                    info.timecode_scale_ns,
                    "framelog-sdk",
                    &tracks_body,
                );
                let mut timecode_headers = Vec::new();
                match self.timecode_type {
                    TimecodeType::Absolute => {
                        timecode_headers.push((framelog_wire::headers::FRAGMENT_TIMECODE_TYPE, "ABSOLUTE".into()))
                    }
                    TimecodeType::Relative { start_ms } => {
                        timecode_headers.push((framelog_wire::headers::FRAGMENT_TIMECODE_TYPE, "RELATIVE".into()));
                        timecode_headers.push((
                            framelog_wire::headers::PRODUCER_START_TIMESTAMP,
                            framelog_media::seconds_text(start_ms),
                        ));
                    }
                }
                let endpoint = self.endpoint.clone();
                self.upload = Some(Producer::start(&self.client, endpoint, &self.config, header, timecode_headers));
            }
            Event::Tags(tags) => self.tags.extend(tags),
            Event::ClusterStarted { .. } => {}
            Event::Cluster(cluster) => {
                let Some((commands, _)) = &self.upload else {
                    return Err(Error::InvalidInput("a Cluster before the Segment's Tracks".into()));
                };
                let pairs: Vec<(String, String)> =
                    std::mem::take(&mut self.tags).into_iter().map(|t| (t.name, t.value)).collect();
                let mut bytes = if pairs.is_empty() { Vec::new() } else { crate::mkv::tags(&pairs) };
                ebml::write_bytes(&mut bytes, ids::CLUSTER, &cluster.body);
                let fragment = Fragment { timecode: cluster.timecode, bytes: Bytes::from(bytes) };
                if commands.send(Command::Fragment(fragment)).await.is_err() {
                    return Err(Error::ProducerStopped("the upload ended; call finish() for its error".into()));
                }
            }
        }
        Ok(())
    }

    /// Ends the input, waits for every fragment's acknowledgement, and reports.
    pub async fn finish(mut self) -> Result<ProducerReport> {
        while let Some(event) = self.fragmenter.finish()? {
            self.on_event(event).await?;
        }
        let Some((commands, task)) = self.upload.take() else { return Ok(ProducerReport::default()) };
        let _ = commands.send(Command::Finish).await;
        drop(commands);
        task.await.map_err(|e| Error::ProducerStopped(e.to_string()))?
    }
}

impl Client {
    /// Starts an upload of ready-made MKV to an existing stream. `config.tracks` is ignored:
    /// the tracks come from the MKV.
    pub async fn mkv_producer(&self, config: ProducerConfig, timecode_type: TimecodeType) -> Result<MkvProducer> {
        let endpoint = self.get_data_endpoint(&config.stream_name, DataApi::PutMedia).await?;
        Ok(MkvProducer {
            client: self.clone(),
            config,
            timecode_type,
            endpoint,
            fragmenter: Fragmenter::new(Limits::default()),
            tags: Vec::new(),
            upload: None,
        })
    }
}
