//! Background work that runs on exactly one node: consumers (crate::consumers) and delivery
//! streams (crate::firehose). Each piece holds a lease in the engine (docs/cluster.md section
//! 6); on one machine every lease is held; in a cluster each piece runs on one node and moves to
//! another within `LEASE_TTL_MS` + `RENEW_EVERY` of its node's death, resuming from its stored
//! checkpoint.
//!
//! Each round, the supervisor asks its workload what should run, renews or takes the leases,
//! starts what it newly holds, restarts what changed (another node may have changed it), and
//! stops what it lost or what was deleted. Change notices, and any change to a stream's metadata
//! the engine reports, trigger a round at once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use framelog_store::Engine;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::background::Background;

/// How long a lease lasts without renewal.
const LEASE_TTL_MS: u64 = 10_000;
/// Work stops here once this long has passed since the start of its last successful renewal:
/// before the lease can lapse and another node take it over.
const STOP_UNRENEWED_AFTER: Duration = Duration::from_millis(LEASE_TTL_MS - 3_000);
/// How often leases are renewed and definitions rechecked: well within the lease.
const RENEW_EVERY: Duration = Duration::from_secs(2);

/// A kind of leased work.
pub trait Workload: Send + Sync + 'static {
    /// What `start` needs besides the lease name.
    type Item: Send;

    /// Every piece that should run somewhere, by lease name, with its stored definition (a
    /// change to it restarts the piece) and what starting it needs.
    fn wanted(&self) -> HashMap<String, (String, Self::Item)>;

    /// Starts a piece here; `None` when it should not run (a paused consumer).
    fn start(&self, lease: &str, item: Self::Item) -> Option<JoinHandle<()>>;
}

struct Running {
    task: JoinHandle<()>,
    definition: String,
}

/// Starts supervising `workload` under `background`, so shutdown stops every piece between steps.
/// `changes` are notices that a definition changed (its content is not read); the supervisor
/// ends when every sender is gone.
pub fn supervise<W: Workload, T: Send + 'static>(
    workload: W,
    engine: Engine,
    background: &Background,
    label: &str,
    changes: mpsc::UnboundedReceiver<T>,
) {
    let supervisor = Supervisor { workload, engine, tasks: HashMap::new(), held: HashMap::new() };
    background.spawn(label.to_string(), supervisor.run(changes));
}

struct Supervisor<W> {
    workload: W,
    engine: Engine,
    tasks: HashMap<String, Running>,
    /// The leases this process holds, each with when its last successful renewal began.
    held: HashMap<String, Instant>,
}

impl<W: Workload> Supervisor<W> {
    async fn run<T>(mut self, mut changes: mpsc::UnboundedReceiver<T>) {
        let mut rounds = tokio::time::interval(RENEW_EVERY);
        let mut definitions = self.engine.meta_changes();
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
                // The round restarts the piece if its stored definition changed; stopping it
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

    /// One look at the definitions; `renew` renews every lease, otherwise only pieces this
    /// process does not hold yet are tried.
    async fn round(&mut self, renew: bool) {
        let mut wanted = self.workload.wanted();
        let gone: Vec<String> = self.tasks.keys().filter(|key| !wanted.contains_key(*key)).cloned().collect();
        for key in &gone {
            self.stop(key, "it was deleted");
        }
        let changed: Vec<String> = self
            .tasks
            .iter()
            .filter(|(key, running)| wanted.get(*key).is_some_and(|(definition, _)| *definition != running.definition))
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
        for (key, (definition, item)) in wanted.drain() {
            let holds = self.held.contains_key(&key);
            let running = self.tasks.get(&key).is_some_and(|r| !r.task.is_finished());
            if holds && !running {
                // The workload logs the start in its own words (the cluster tests read it).
                if let Some(task) = self.workload.start(&key, item) {
                    self.tasks.insert(key, Running { task, definition });
                }
            } else if !holds && running {
                self.stop(&key, "another node holds its lease");
            }
        }
    }

    /// Renews or takes the leases of `wanted`, releases those of `gone`; off the async threads,
    /// since in a cluster each is a round trip. A failure counts as not held: a node that cannot
    /// reach the cluster must not keep working as if it owned the piece.
    async fn hold_leases(&self, wanted: Vec<String>, gone: Vec<String>) -> HashMap<String, Option<Instant>> {
        // Most rounds follow a checkpoint and have no lease to touch: no trip to a blocking thread.
        if wanted.is_empty() && gone.is_empty() {
            return HashMap::new();
        }
        let engine = self.engine.clone();
        let work = move || {
            for key in &gone {
                let _ = engine.release_lease(key);
            }
            wanted
                .into_iter()
                .map(|key| {
                    let started = Instant::now();
                    let held = engine.hold_lease(&key, LEASE_TTL_MS).unwrap_or_else(|error| {
                        tracing::warn!(%error, work = %key, "a lease could not be renewed");
                        false
                    });
                    (key, held.then_some(started))
                })
                .collect()
        };
        tokio::task::spawn_blocking(work).await.unwrap_or_default()
    }

    fn stop(&mut self, key: &str, why: &str) {
        if let Some(running) = self.tasks.remove(key) {
            tracing::info!(work = %key, why, "stopped");
            running.task.abort();
        }
    }
}
