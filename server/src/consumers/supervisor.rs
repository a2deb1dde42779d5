//! Which consumers run here: one task per consumer whose lease this process holds
//! (docs/cluster.md section 6). On one machine every lease is held; in a cluster each consumer
//! runs on exactly one node, and moves to another within `LEASE_TTL_MS` + `RENEW_EVERY` of its
//! node's death, resuming from its stored checkpoint.
//!
//! Each round, the supervisor reads every stream's consumer definitions, renews or takes their
//! leases, starts what it newly holds, restarts what changed (another node may have changed it),
//! and stops what it lost or what was deleted. The API's change notices, and any change to a
//! stream's metadata the engine reports, trigger a round at once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use framelog_store::{StreamHandle, StreamKind};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::ConsumersCtx;
use super::record_spec::RecordConsumerSpec;
use super::runner::Runner;
use super::state;
use crate::background::Background;

/// How long a lease lasts without renewal.
const LEASE_TTL_MS: u64 = 10_000;
/// A consumer stops here once this long has passed since the start of its last successful
/// renewal: before the lease can lapse and another node take it over.
const STOP_UNRENEWED_AFTER: Duration = Duration::from_millis(LEASE_TTL_MS - 3_000);
/// How often leases are renewed and definitions rechecked: well within the lease.
const RENEW_EVERY: Duration = Duration::from_secs(2);

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
    let background = ctx.background.clone();
    let supervisor =
        Supervisor { ctx, background: background.clone(), tasks: HashMap::new(), held: Default::default() };
    background.spawn("consumer supervisor".into(), supervisor.run(changes));
}

/// A consumer: its stream's id and its name.
type ConsumerKey = (u64, String);

/// A consumer's definition as stored, to notice a change made anywhere.
struct Wanted {
    handle: StreamHandle,
    definition: String,
}

struct Running {
    task: JoinHandle<()>,
    definition: String,
}

struct Supervisor {
    ctx: ConsumersCtx,
    background: Background,
    tasks: HashMap<ConsumerKey, Running>,
    /// The leases this process holds, each with when its last successful renewal began.
    held: HashMap<ConsumerKey, Instant>,
}

fn lease_name((stream_id, name): &ConsumerKey) -> String {
    format!("consumer/{stream_id}/{name}")
}

impl Supervisor {
    async fn run(mut self, mut changes: mpsc::UnboundedReceiver<Changed>) {
        let mut rounds = tokio::time::interval(RENEW_EVERY);
        let mut definitions = self.ctx.video.engine.meta_changes();
        loop {
            let renew = tokio::select! {
                _ = rounds.tick() => true,
                // A definition changed, perhaps through another node: look again now. Most such
                // changes are checkpoints, so this round renews no lease it already holds.
                changed = definitions.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    false
                }
                // The round restarts the consumer if its stored definition changed; stopping it
                // here as well would abort the runner the metadata change just started, perhaps
                // between a delivery and its checkpoint (a redelivery).
                change = changes.recv() => {
                    if change.is_none() {
                        return;
                    }
                    false
                }
            };
            self.round(renew).await;
        }
    }

    /// Every consumer defined in any stream, with its stored definition.
    fn wanted(&self) -> HashMap<ConsumerKey, Wanted> {
        let mut wanted = HashMap::new();
        for handle in self.ctx.video.engine.streams() {
            let settings = handle.meta().settings;
            for name in state::consumer_names(&settings) {
                let definition = settings.get(&state::spec_key(name)).cloned().unwrap_or_default();
                wanted.insert((handle.id(), name.to_string()), Wanted { handle: handle.clone(), definition });
            }
        }
        wanted
    }

    /// One look at the definitions; `renew` renews every lease, otherwise only consumers this
    /// process does not hold yet are tried.
    async fn round(&mut self, renew: bool) {
        let wanted = self.wanted();
        let gone: Vec<ConsumerKey> = self.tasks.keys().filter(|key| !wanted.contains_key(*key)).cloned().collect();
        for key in &gone {
            self.stop(key, "it was deleted");
        }
        let changed: Vec<ConsumerKey> = self
            .tasks
            .iter()
            .filter(|(key, running)| wanted.get(*key).is_some_and(|w| w.definition != running.definition))
            .map(|(key, _)| key.clone())
            .collect();
        for key in &changed {
            self.stop(key, "its definition changed");
        }
        let to_try = wanted.keys().filter(|key| renew || !self.held.contains_key(*key)).cloned().collect();
        for (key, renewed_at) in self.hold_leases(to_try, gone).await {
            match renewed_at {
                Some(at) => self.held.insert(key, at),
                None => self.held.remove(&key),
            };
        }
        // However the calls went, a lease not renewed for most of its life is given up here.
        self.held.retain(|key, at| wanted.contains_key(key) && at.elapsed() < STOP_UNRENEWED_AFTER);
        for (key, wanted) in wanted {
            let holds = self.held.contains_key(&key);
            let running = self.tasks.get(&key).is_some_and(|r| !r.task.is_finished());
            if holds && !running {
                self.start(key, wanted);
            } else if !holds && running {
                self.stop(&key, "another node holds its lease");
            }
        }
    }

    /// Renews or takes the leases of `wanted`, releases those of `gone`; off the async threads,
    /// since in a cluster each is a round trip. A failure counts as not held: a node that cannot
    /// reach the cluster must not keep working as if it owned the consumer.
    async fn hold_leases(
        &self,
        wanted: Vec<ConsumerKey>,
        gone: Vec<ConsumerKey>,
    ) -> HashMap<ConsumerKey, Option<Instant>> {
        // Most rounds follow a checkpoint and have no lease to touch: no trip to a blocking thread.
        if wanted.is_empty() && gone.is_empty() {
            return HashMap::new();
        }
        let engine = self.ctx.video.engine.clone();
        let work = move || {
            for key in &gone {
                let _ = engine.release_lease(&lease_name(key));
            }
            wanted
                .into_iter()
                .map(|key| {
                    let started = Instant::now();
                    let held = engine.hold_lease(&lease_name(&key), LEASE_TTL_MS).unwrap_or_else(|error| {
                        tracing::warn!(%error, consumer = %key.1, "a consumer lease could not be renewed");
                        false
                    });
                    (key, held.then_some(started))
                })
                .collect()
        };
        tokio::task::spawn_blocking(work).await.unwrap_or_default()
    }

    fn stop(&mut self, key: &ConsumerKey, why: &str) {
        if let Some(running) = self.tasks.remove(key) {
            tracing::info!(consumer = %key.1, why, "consumer stopped");
            running.task.abort();
        }
    }

    /// Starts the consumer unless it is paused.
    fn start(&mut self, key: ConsumerKey, wanted: Wanted) {
        let Wanted { handle, definition } = wanted;
        let settings = handle.meta().settings;
        let (ctx, background) = (self.ctx.clone(), self.background.clone());
        let label = format!("consumer {} of {}", key.1, handle.meta().name);
        let task = match handle.meta().kind {
            StreamKind::Video => {
                let Some(spec) = state::specs(&settings).into_iter().find(|s| s.name == key.1 && !s.paused) else {
                    return;
                };
                self.background.spawn(label, Runner::new(ctx, handle, spec, background).run())
            }
            StreamKind::Data => {
                let Some(spec) =
                    state::specs_of::<RecordConsumerSpec>(&settings).into_iter().find(|s| s.name == key.1 && !s.paused)
                else {
                    return;
                };
                self.background.spawn(label, super::record_runner::run(ctx, handle, spec, background))
            }
        };
        tracing::info!(consumer = %key.1, "consumer started here");
        self.tasks.insert(key, Running { task, definition });
    }
}
