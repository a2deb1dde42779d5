//! Which delivery streams deliver here: one task per delivery stream whose lease this process
//! holds (crate::leased). UpdateDestination changes the stored definition, which restarts
//! delivery from the checkpoint under the new version.

use std::collections::HashMap;

use framelog_store::StreamHandle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::context::FirehoseCtx;
use super::spec::{DeliveryStreamSpec, SPEC_KEY};
use crate::background::Background;
use crate::leased::{Workload, supervise};

/// Starts the supervisor; `changes` are the API's notices (create, update, delete).
pub fn start(ctx: FirehoseCtx, background: Background, changes: mpsc::UnboundedReceiver<()>) {
    let engine = ctx.engine.clone();
    supervise(Deliveries { ctx, background: background.clone() }, engine, &background, "delivery supervisor", changes);
}

struct Deliveries {
    ctx: FirehoseCtx,
    background: Background,
}

impl Workload for Deliveries {
    /// The delivery stream, its name and definition.
    type Item = (StreamHandle, String, DeliveryStreamSpec);

    fn wanted(&self) -> HashMap<String, (String, Self::Item)> {
        self.ctx
            .delivery_streams()
            .into_iter()
            .map(|(name, handle, spec)| {
                let definition = handle.meta().settings.get(SPEC_KEY).cloned().unwrap_or_default();
                (format!("firehose/{}", handle.id()), (definition, (handle, name, spec)))
            })
            .collect()
    }

    fn start(&self, _lease: &str, (handle, name, spec): Self::Item) -> Option<JoinHandle<()>> {
        let label = format!("delivery of {name}");
        tracing::info!(delivery_stream = %name, "delivery started here");
        Some(self.background.spawn(label, super::runner::run(self.ctx.clone(), handle, name, spec)))
    }
}
