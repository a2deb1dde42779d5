//! One flow, on a thread of its own: find and read its files, cut and convert records, send
//! them in batches until every record of a batch is acknowledged (through outages, with
//! backoff; after a refusal, from the refused record on, those after it included), then move its
//! files' checkpoints past them. Batches go one at a time, so each file's records arrive in the
//! file's order.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use framelog_sdk::{Client, DataRecord};

use super::FlowMetrics;
use super::agent_config::{Destination, FlowConfig, InitialPosition, PartitionKeyOption};
use super::batch::{Batch, Entry};
use super::checkpoints::Checkpoints;
use super::files::FileSet;
use super::lines::Cutting;
use super::processing::Processor;

/// How often files are looked for when there is nothing to read.
const SCAN_EVERY: Duration = Duration::from_millis(100);
/// Checkpoints are written at most this often (and at a stop): a crash sends at most this much again.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// At a stop, how long a batch in flight keeps trying before it is left to the next start.
const STOP_GRACE: Duration = Duration::from_secs(5);

pub struct Flow {
    pub config: FlowConfig,
    /// The flow's name in the checkpoint file and the status.
    pub key: String,
    pub client: Client,
    pub checkpoints: Arc<Checkpoints>,
    pub metrics: Arc<FlowMetrics>,
    pub stop: Arc<AtomicBool>,
}

impl Flow {
    /// Runs until `stop`; blocking (file reads), with its own runtime for the calls.
    pub fn run(self) -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(self.run_async())
    }

    async fn run_async(self) -> anyhow::Result<()> {
        let cutting = Cutting {
            skip_header_lines: self.config.skip_header_lines,
            start_pattern: self.config.multi_line_start_pattern.as_deref().map(regex::Regex::new).transpose()?,
            max_record_bytes: self.record_limit(),
            terminator: self.config.truncated_record_terminator.as_bytes().to_vec(),
        };
        let start_at_end = self.config.initial_position == InitialPosition::EndOfFile && !self.checkpoints.existed();
        let mut files = FileSet::new(&self.config.file_pattern, cutting, start_at_end, self.checkpoints.of(&self.key))?;
        let processors: Vec<Processor> =
            self.config.data_processing_options.iter().map(Processor::new).collect::<anyhow::Result<_>>()?;
        let max_age = Duration::from_millis(self.config.max_buffer_age_millis);
        let mut batch = Batch::new(self.config.max_buffer_size_records, self.config.buffer_bytes(), max_age);
        // Records read that did not fit the batch by size: the next batch starts with them.
        let mut carried: VecDeque<(Entry, usize)> = VecDeque::new();
        let (mut last_scan, mut last_checkpoint) = (Instant::now() - SCAN_EVERY, Instant::now());
        let mut raw = Vec::new();
        loop {
            let stopping = self.stop.load(Ordering::Relaxed);
            while let Some((_, bytes)) = carried.front() {
                if batch.room() == 0 || batch.would_overflow(*bytes) {
                    break;
                }
                if let Some((entry, bytes)) = carried.pop_front() {
                    batch.push(entry, bytes);
                }
            }
            if last_scan.elapsed() >= SCAN_EVERY {
                if let Err(error) = files.scan() {
                    tracing::warn!(flow = %self.key, %error, "cannot list the flow's directory; trying again");
                }
                last_scan = Instant::now();
            }
            if !stopping && carried.is_empty() {
                files.read(batch.room(), &mut raw)?;
            }
            let read_any = !raw.is_empty();
            for (origin, record) in raw.drain(..) {
                let (entry, bytes) = self.entry(&processors, origin, record);
                // A read cuts every line of its chunk: what the batch has no room for waits.
                if !carried.is_empty() || batch.room() == 0 || batch.would_overflow(bytes) {
                    carried.push_back((entry, bytes));
                } else {
                    batch.push(entry, bytes);
                }
            }
            let sending = !batch.is_empty() && (batch.is_ready() || !carried.is_empty() || stopping);
            if sending {
                let entries = batch.take();
                if self.deliver(&entries).await {
                    for entry in &entries {
                        files.acknowledge(entry.origin, entry.end_offset);
                    }
                } else {
                    // Stopped before the server took them: the checkpoint stays before them.
                    break;
                }
            }
            self.metrics.bytes_behind.store(files.bytes_behind(), Ordering::Relaxed);
            self.metrics.files.store(files.file_count() as u64, Ordering::Relaxed);
            if stopping && batch.is_empty() && carried.is_empty() {
                break;
            }
            if last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
                self.save(&files);
                last_checkpoint = Instant::now();
            }
            // Wait only when there is nothing to do: nothing read, sent, or waiting to go.
            if !read_any && !sending && carried.is_empty() && !stopping {
                let wait = if batch.is_empty() { SCAN_EVERY } else { batch.time_left().min(SCAN_EVERY) };
                tokio::time::sleep(wait).await;
            }
        }
        self.save(&files);
        Ok(())
    }

    /// The longest record sent: the service's limit less what the partition key takes of it.
    fn record_limit(&self) -> usize {
        self.config.max_record_bytes() - PARTITION_KEY_BYTES
    }

    /// A record read, converted; its size as the call counts it. A conversion that made it
    /// longer than the service takes is cut and terminated as a long line is.
    fn entry(
        &self,
        processors: &[Processor],
        origin: super::files::Origin,
        record: super::lines::RawRecord,
    ) -> (Entry, usize) {
        self.metrics.records_parsed.fetch_add(1, Ordering::Relaxed);
        let limit = self.record_limit();
        let terminator = self.config.truncated_record_terminator.as_bytes();
        let converted =
            processors.iter().try_fold(record.data, |data, processor| processor.apply(&data)).map(|mut data| {
                if data.len() > limit {
                    data.truncate(limit.saturating_sub(terminator.len()));
                    data.extend_from_slice(terminator);
                }
                data
            });
        if converted.is_none() {
            self.metrics.records_unconverted.fetch_add(1, Ordering::Relaxed);
        }
        let bytes = converted.as_ref().map_or(0, |data| data.len() + PARTITION_KEY_BYTES);
        (Entry { origin, end_offset: record.end_offset, data: converted }, bytes)
    }

    fn save(&self, files: &FileSet) {
        if let Err(error) = self.checkpoints.save(&self.key, files.checkpoints()) {
            tracing::error!(flow = %self.key, error = %format!("{error:#}"), "the checkpoint could not be written");
        }
    }

    /// Sends every record of `entries` until each is acknowledged; false if stopped first.
    async fn deliver(&self, entries: &[Entry]) -> bool {
        let mut waiting: Vec<&[u8]> = entries.iter().filter_map(|e| e.data.as_deref()).collect();
        let mut backoff = FIRST_BACKOFF;
        let mut stop_deadline = None;
        while !waiting.is_empty() {
            match self.send(&waiting).await {
                Ok(outcome) => {
                    // Sent again from the first refused record on, those stored after it too:
                    // a file's lines stay in order, at the cost of those duplicates.
                    let first_refused = outcome.iter().position(Result::is_err).unwrap_or(waiting.len());
                    let refused = outcome.iter().filter(|fate| fate.is_err()).count() as u64;
                    self.metrics.records_sent.fetch_add(first_refused as u64, Ordering::Relaxed);
                    self.metrics.records_refused.fetch_add(refused, Ordering::Relaxed);
                    if let Some(Err(refusal)) = outcome.get(first_refused) {
                        self.metrics.set_error(format!("{}: {}", refusal.error_code, refusal.message));
                    }
                    waiting.drain(..first_refused);
                    if waiting.is_empty() {
                        return true;
                    }
                }
                Err(error) => {
                    tracing::warn!(flow = %self.key, %error, records = waiting.len(), "sending failed; retrying");
                    self.metrics.set_error(error.to_string());
                }
            }
            if self.stop.load(Ordering::Relaxed)
                && *stop_deadline.get_or_insert_with(|| Instant::now() + STOP_GRACE) < Instant::now()
            {
                return false;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        true
    }

    async fn send(&self, records: &[&[u8]]) -> framelog_sdk::Result<framelog_sdk::BatchOutcome> {
        match self.config.destination() {
            Destination::Stream(stream) => {
                let records: Vec<DataRecord> = records
                    .iter()
                    .map(|data| DataRecord { partition_key: self.partition_key(data), data: data.to_vec() })
                    .collect();
                self.client.put_records(&stream, &records).await
            }
            Destination::DeliveryStream(stream) => {
                let records: Vec<Vec<u8>> = records.iter().map(|data| data.to_vec()).collect();
                self.client.put_record_batch(&stream, &records).await
            }
        }
    }

    fn partition_key(&self, data: &[u8]) -> String {
        match self.config.partition_key_option {
            PartitionKeyOption::Random => format!("{:016x}", rand::random::<u64>()),
            PartitionKeyOption::Deterministic => format!("{:08x}", crc32fast::hash(data)),
        }
    }
}

/// What a partition key adds to a record's size, at most.
const PARTITION_KEY_BYTES: usize = 16;
