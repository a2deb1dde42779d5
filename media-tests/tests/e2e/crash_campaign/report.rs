//! The campaign's report: a table on stdout (`--nocapture`), JSON at `FRAMELOG_CRASH_REPORT`
//! when set, and the assertions that make the run pass or fail.

use std::sync::atomic::Ordering;

use framelog_sdk::ProducerReport;
use serde_json::json;

use super::cameras::Camera;
use super::readers::Counts;
use super::records::{Ledger, Stored};

#[derive(Debug, Default)]
pub struct ConsumerOutcome {
    pub frame_gaps: u64,
    pub record_gaps: u64,
    pub frame_duplicates: u64,
    pub record_duplicates: u64,
    pub frames_delivered: u64,
    pub records_delivered: u64,
}

#[derive(Debug, Default)]
pub struct Report {
    fault: &'static str,
    seed: u64,
    pub restart_ms: Vec<u64>,
    /// Files a power cut took unsynced writes back from, over all cuts.
    pub files_cut: usize,
    pub records_lost_at_restart: Vec<String>,
    records_acked: u64,
    records_lost: Vec<String>,
    records_doubled: u64,
    records_stored: u64,
    failed_calls: u64,
    fragments_acked: u64,
    fragments_lost: Vec<String>,
    fragments_doubled: u64,
    fragments_replayed: u64,
    producer_connections: u64,
    consumers: ConsumerOutcome,
    tail_fragments: u64,
    tail_reconnects: u64,
    hls_segments: u64,
    hls_reconnects: u64,
}

impl Report {
    pub fn new(fault: &'static str, seed: u64) -> Report {
        Report { fault, seed, ..Report::default() }
    }

    pub fn records(&mut self, ledger: &Ledger, lost: Vec<String>, doubled: u64, stored: &Stored) {
        self.records_acked = ledger.acked.len() as u64;
        self.records_lost = lost;
        self.records_doubled = doubled;
        self.records_stored = stored.values().map(|s| s.len() as u64).sum();
        self.failed_calls = ledger.failed_calls;
    }

    pub fn fragments(&mut self, delivered: &[ProducerReport], streams: &[Camera]) {
        for (camera, report) in delivered.iter().enumerate() {
            let stream = &streams[camera];
            let numbers = report.delivered.iter().filter_map(|d| d.fragment_number.clone());
            for number in numbers {
                self.fragments_acked += 1;
                if !stream.verified.contains_key(&number) {
                    self.fragments_lost.push(format!("camera {camera}: {number}"));
                }
            }
            self.fragments_lost.extend(stream.lost.iter().map(|n| format!("camera {camera}: {n} (gone)")));
            self.fragments_lost.extend(stream.corrupt.iter().map(|n| format!("camera {camera}: {n} (corrupt)")));
            self.fragments_doubled += stream.doubled();
            self.fragments_replayed += u64::from(report.replayed_fragments);
            self.producer_connections += u64::from(report.connections);
        }
    }

    pub fn consumers(&mut self, outcome: ConsumerOutcome) {
        self.consumers = outcome;
    }

    pub fn readers(&mut self, tails: &Counts, hls: &Counts) {
        self.tail_fragments = tails.items.load(Ordering::Relaxed);
        self.tail_reconnects = tails.reconnects.load(Ordering::Relaxed);
        self.hls_segments = hls.items.load(Ordering::Relaxed);
        self.hls_reconnects = hls.reconnects.load(Ordering::Relaxed);
    }

    fn restart_percentile_ms(&self, percentile: usize) -> u64 {
        let mut sorted = self.restart_ms.clone();
        sorted.sort_unstable();
        sorted.get((sorted.len().saturating_sub(1)) * percentile / 100).copied().unwrap_or(0)
    }

    pub fn write(&self) {
        let c = &self.consumers;
        println!("| fault | injected | acknowledged | lost | doubled | consumer gaps | consumer duplicates |");
        println!("|---|---|---|---|---|---|---|");
        println!(
            "| {} | {} | {} records, {} fragments | {} | {} | {} | {} |",
            self.fault,
            self.restart_ms.len(),
            self.records_acked,
            self.fragments_acked,
            self.records_lost.len() + self.records_lost_at_restart.len() + self.fragments_lost.len(),
            self.records_doubled + self.fragments_doubled,
            c.frame_gaps + c.record_gaps,
            c.frame_duplicates + c.record_duplicates,
        );
        println!(
            "restart p50 {} ms, max {} ms; seed {}",
            self.restart_percentile_ms(50),
            self.restart_percentile_ms(100),
            self.seed
        );
        let document = json!({
            "fault": self.fault,
            "seed": self.seed,
            "faults": self.restart_ms.len(),
            "files_with_unsynced_writes_taken_back": self.files_cut,
            "restart_ms": {"p50": self.restart_percentile_ms(50), "max": self.restart_percentile_ms(100), "all": self.restart_ms},
            "records": {"acknowledged": self.records_acked, "stored": self.records_stored, "lost": self.records_lost.len(),
                        "lost_at_a_restart": self.records_lost_at_restart.len(), "doubled": self.records_doubled,
                        "failed_calls": self.failed_calls},
            "fragments": {"acknowledged": self.fragments_acked, "lost": self.fragments_lost.len(),
                          "doubled": self.fragments_doubled, "replayed": self.fragments_replayed,
                          "producer_connections": self.producer_connections},
            "consumers": {"frame_gaps": c.frame_gaps, "record_gaps": c.record_gaps,
                          "frame_duplicates": c.frame_duplicates, "record_duplicates": c.record_duplicates,
                          "frames_delivered": c.frames_delivered, "records_delivered": c.records_delivered},
            "readers": {"getmedia_fragments": self.tail_fragments, "getmedia_reconnects": self.tail_reconnects,
                        "hls_segments": self.hls_segments, "hls_reconnects": self.hls_reconnects},
        });
        println!("{document:#}");
        // One file per fault: `FRAMELOG_CRASH_REPORT` names the kill -9 one, the power cut's
        // gets `-power-cut` before its extension.
        if let Ok(path) = std::env::var("FRAMELOG_CRASH_REPORT") {
            let path = match self.fault {
                "power cut" => path.replace(".json", "-power-cut.json"),
                _ => path,
            };
            std::fs::write(&path, format!("{document:#}\n")).expect("write the report");
        }
    }

    pub fn assert_nothing_lost_or_doubled(&self) {
        assert!(!self.restart_ms.is_empty() && self.records_acked > 0 && self.fragments_acked > 0, "{self:?}");
        assert!(
            self.records_lost_at_restart.is_empty(),
            "records lost at a restart: {:?}",
            self.records_lost_at_restart
        );
        assert!(self.records_lost.is_empty(), "records lost: {:?}", self.records_lost);
        assert!(self.fragments_lost.is_empty(), "fragments lost: {:?}", self.fragments_lost);
        assert_eq!((self.records_doubled, self.fragments_doubled), (0, 0), "stored twice");
        assert_eq!(
            (self.consumers.frame_gaps, self.consumers.record_gaps),
            (0, 0),
            "consumer gaps: {:?}",
            self.consumers
        );
        assert!(self.tail_fragments > 0 && self.hls_segments > 0, "the readers read: {self:?}");
    }
}
