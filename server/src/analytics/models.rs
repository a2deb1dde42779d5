//! Scoring models (RANDOM_CUT_FOREST forests, HOTSPOTS windows) kept across a crash. At most
//! once a minute, each model that took in rows is written to the application's model stream
//! (`analytics/<name>/forests`, named when forests were its only models; kept an hour: a forest
//! is about 1 MiB) and the next checkpoint names the entry; a model that took in nothing is
//! written again every half hour, so an idle application's model outlives the hour. A
//! restarted runner reads it back and replays the input after the last row the model took in,
//! so the model goes on as if nothing happened. With no snapshot (the first minute, or a stop
//! longer than the hour) the model starts empty, as the service's did on every start.

use std::collections::BTreeMap;

use framelog_analytics::Application;
use framelog_store::{NewEntry, StreamHandle, StreamKind, new_stream_meta};
use serde::{Deserialize, Serialize};

use super::context::AnalyticsCtx;
use crate::background::Background;

/// How often a model that changed is written.
pub const SNAPSHOT_EVERY_MS: u64 = 60_000;
const RETENTION_HOURS: u32 = 1;
/// How often an unchanged model is written again: well within the stream's retention.
const REFRESH_EVERY_MS: u64 = 30 * 60_000;

/// The engine stream holding an application's models.
pub fn stream_name(application: &str) -> String {
    format!("{}/forests", AnalyticsCtx::engine_name(application))
}

/// Where a model's last copy is, and the ROWTIME of the last row it took in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelMark {
    pub seq: u64,
    pub absorbed_ms: i64,
    /// When the model was written (engine time).
    #[serde(default)]
    pub written_ms: u64,
}

pub struct ModelStore {
    ctx: AnalyticsCtx,
    background: Background,
    application: String,
    /// By scored stream: the model the checkpoint names.
    pub marks: BTreeMap<String, ModelMark>,
    last_saved_ms: u64,
}

impl ModelStore {
    pub fn new(ctx: AnalyticsCtx, background: Background, application: &str) -> ModelStore {
        ModelStore { ctx, background, application: application.to_string(), marks: BTreeMap::new(), last_saved_ms: 0 }
    }

    /// Puts back the models a checkpoint names; a model that cannot be read is left out (it
    /// starts empty).
    pub async fn restore(&mut self, app: &mut Application, marks: &BTreeMap<String, ModelMark>) {
        let Ok(handle) = self.ctx.engine.stream(&stream_name(&self.application)) else { return };
        for (stream, mark) in marks {
            let (engine, handle, seq) = (self.ctx.engine.clone(), handle.clone(), mark.seq);
            let entry = self.background.spawn_blocking(move || engine.entry(&handle, 0, seq)).await;
            let restored = match entry {
                Ok(Ok(Some(entry))) => app.restore_model(stream, &entry.payload).map_err(|e| e.to_string()),
                _ => Err("the model is no longer kept".to_string()),
            };
            match restored {
                Ok(()) => {
                    self.marks.insert(stream.clone(), *mark);
                }
                Err(reason) => {
                    tracing::warn!(application = %self.application, %stream, %reason, "a model starts empty")
                }
            }
        }
    }

    /// The earliest ROWTIME a restart must replay for the models to catch up.
    pub fn held_from_ms(&self) -> Option<i64> {
        self.marks.values().map(|m| m.absorbed_ms).min()
    }

    /// Writes the models that took in rows since they were last written, once a minute.
    pub async fn save_due(&mut self, app: &Application, now_ms: u64) {
        if now_ms < self.last_saved_ms + SNAPSHOT_EVERY_MS {
            return;
        }
        self.last_saved_ms = now_ms;
        for (stream, absorbed) in app.models() {
            let Some(absorbed_ms) = absorbed else { continue };
            if !needs_writing(self.marks.get(&stream), absorbed_ms, now_ms) {
                continue;
            }
            let written = match app.snapshot_model(&stream) {
                Ok(bytes) => self.append(&stream, bytes).await,
                Err(error) => Err(error.to_string()),
            };
            match written {
                Ok(seq) => {
                    self.marks.insert(stream, ModelMark { seq, absorbed_ms, written_ms: now_ms });
                }
                Err(reason) => {
                    tracing::warn!(application = %self.application, %stream, %reason, "a model was not written")
                }
            }
        }
    }

    /// Appends a model (synced) and answers its sequence number.
    async fn append(&self, stream: &str, model: Vec<u8>) -> Result<u64, String> {
        let handle = self.model_stream().await?;
        let entry = NewEntry { shard: 0, producer_ts_ms: None, attrs: stream.as_bytes().to_vec(), payload: model };
        let engine = self.ctx.engine.clone();
        let appended = self.background.spawn_blocking(move || engine.append_blocking(&handle, vec![entry])).await;
        match appended {
            Ok(Ok(done)) => done.first().map(|a| a.seq).ok_or_else(|| "nothing was appended".to_string()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(error) => Err(error.to_string()),
        }
    }

    async fn model_stream(&self) -> Result<StreamHandle, String> {
        let name = stream_name(&self.application);
        if let Ok(handle) = self.ctx.engine.stream(&name) {
            return Ok(handle);
        }
        let now_ms = self.ctx.engine.now_ms();
        let meta = new_stream_meta(
            &name,
            StreamKind::Application,
            &self.ctx.arn(&self.application),
            1,
            RETENTION_HOURS,
            now_ms,
        );
        let engine = self.ctx.engine.clone();
        let created = self.background.spawn_blocking(move || engine.create_stream(meta)).await;
        match created {
            Ok(Ok(handle)) => Ok(handle),
            // Another runner of the application (a lease handed over) created it first.
            _ => self.ctx.engine.stream(&name).map_err(|e| e.to_string()),
        }
    }
}

/// Whether a model is due: it took in rows since its last write, or that write is
/// half an hour old (the stream keeps it an hour).
fn needs_writing(last: Option<&ModelMark>, absorbed_ms: i64, now_ms: u64) -> bool {
    last.is_none_or(|m| m.absorbed_ms != absorbed_ms || now_ms >= m.written_ms + REFRESH_EVERY_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_is_written_when_it_changed_or_its_copy_grows_old() {
        let mark = ModelMark { seq: 3, absorbed_ms: 1_000, written_ms: 50_000 };
        assert!(needs_writing(None, 1_000, 50_000), "never written");
        assert!(needs_writing(Some(&mark), 2_000, 51_000), "took in rows");
        assert!(!needs_writing(Some(&mark), 1_000, 50_000 + REFRESH_EVERY_MS - 1), "unchanged and recent");
        assert!(needs_writing(Some(&mark), 1_000, 50_000 + REFRESH_EVERY_MS), "unchanged, but its copy ages out");
        assert!(REFRESH_EVERY_MS < u64::from(RETENTION_HOURS) * 3_600_000);
    }
}
