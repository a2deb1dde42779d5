//! Which consumers run here: one task per consumer whose lease this process holds (the leasing
//! itself is crate::leased). A consumer's definition is its stored spec; a change to it, made
//! on any node, restarts the consumer from its checkpoint.

use std::collections::HashMap;

use framelog_store::{StreamHandle, StreamKind};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::ConsumersCtx;
use super::record_spec::RecordConsumerSpec;
use super::runner::Runner;
use super::state;
use crate::leased::{Workload, supervise};

/// "(Re)consider this consumer": sent by the API after every change.
#[derive(Debug, Clone)]
pub struct Changed {
    pub stream_id: u64,
    pub stream_name: String,
    pub consumer: String,
}

/// Starts the supervisor under the context's `Background`, so shutdown stops every consumer
/// between steps.
pub fn start(ctx: ConsumersCtx, changes: mpsc::UnboundedReceiver<Changed>) {
    let (engine, background) = (ctx.video.engine.clone(), ctx.background.clone());
    supervise(Consumers { ctx }, engine, &background, "consumer supervisor", changes);
}

struct Consumers {
    ctx: ConsumersCtx,
}

/// A consumer's lease: its stream's id and its name.
fn lease_name(stream_id: u64, name: &str) -> String {
    format!("consumer/{stream_id}/{name}")
}

impl Workload for Consumers {
    /// The consumer's stream and name.
    type Item = (StreamHandle, String);

    fn wanted(&self) -> HashMap<String, (String, Self::Item)> {
        let mut wanted = HashMap::new();
        for handle in self.ctx.video.engine.streams() {
            let settings = handle.meta().settings;
            for name in state::consumer_names(&settings) {
                let definition = settings.get(&state::spec_key(name)).cloned().unwrap_or_default();
                wanted.insert(lease_name(handle.id(), name), (definition, (handle.clone(), name.to_string())));
            }
        }
        wanted
    }

    /// Starts the consumer unless it is paused.
    fn start(&self, _lease: &str, (handle, name): Self::Item) -> Option<JoinHandle<()>> {
        let settings = handle.meta().settings;
        let (ctx, background) = (self.ctx.clone(), self.ctx.background.clone());
        let label = format!("consumer {name} of {}", handle.meta().name);
        let task = match handle.meta().kind {
            StreamKind::Video => {
                let spec = state::specs(&settings).into_iter().find(|s| s.name == name && !s.paused)?;
                self.ctx.background.spawn(label, Runner::new(ctx, handle, spec, background).run())
            }
            StreamKind::Data => {
                let spec = state::specs_of::<RecordConsumerSpec>(&settings)
                    .into_iter()
                    .find(|s| s.name == name && !s.paused)?;
                self.ctx.background.spawn(label, super::record_runner::run(ctx, handle, spec, background))
            }
            // Delivery and metrics streams have no consumers (nothing stores a consumer spec in them).
            StreamKind::Delivery | StreamKind::Metrics | StreamKind::Application => return None,
        };
        // The cluster tests find a consumer's node by this line.
        tracing::info!(consumer = %name, "consumer started here");
        Some(task)
    }
}
