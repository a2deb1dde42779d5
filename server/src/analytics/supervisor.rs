//! Which applications run here: one task per RUNNING application whose lease this process holds
//! (crate::leased). A changed definition (new code, outputs, a stop) restarts or ends the task;
//! a restarted task resumes from its checkpoint.

use std::collections::HashMap;

use framelog_store::StreamHandle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::context::AnalyticsCtx;
use super::spec::{ApplicationSpec, SPEC_KEY, Status};
use crate::background::Background;
use crate::leased::{Workload, supervise};

/// Starts the supervisor; `changes` are the API's notices.
pub fn start(ctx: AnalyticsCtx, background: Background, changes: mpsc::UnboundedReceiver<()>) {
    let engine = ctx.engine.clone();
    supervise(
        Applications { ctx, background: background.clone() },
        engine,
        &background,
        "analytics supervisor",
        changes,
    );
}

struct Applications {
    ctx: AnalyticsCtx,
    background: Background,
}

impl Workload for Applications {
    type Item = (StreamHandle, ApplicationSpec);

    fn wanted(&self) -> HashMap<String, (String, Self::Item)> {
        self.ctx
            .applications()
            .into_iter()
            .filter(|(_, spec)| spec.status == Status::Running)
            .map(|(handle, spec)| {
                let definition = handle.meta().settings.get(SPEC_KEY).cloned().unwrap_or_default();
                (format!("analytics/{}", handle.id()), (definition, (handle, spec)))
            })
            .collect()
    }

    fn start(&self, _lease: &str, (handle, spec): Self::Item) -> Option<JoinHandle<()>> {
        let label = format!("analytics application {}", spec.name);
        tracing::info!(application = %spec.name, "application started here");
        let run = super::runner::run(self.ctx.clone(), self.background.clone(), handle, spec);
        Some(self.background.spawn(label, run))
    }
}
