//! Background work (consumers, hooks, the retention trimmer, whatever comes next) runs under one
//! task tracker with one cancellation token, so shutdown can stop all of it and wait for it before
//! the engine closes.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, Clone, Default)]
pub struct Background {
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Background {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `task` until it ends or shutdown begins, whichever is first. `name` says in the log
    /// which task stopped for shutdown.
    pub fn spawn<F>(&self, name: String, task: F) -> tokio::task::JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let shutdown = self.shutdown.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => tracing::info!(task = %name, "stopped: the server is shutting down"),
                () = task => {}
            }
        })
    }

    /// Runs blocking work (an engine write) that shutdown must wait for rather than abandon.
    pub fn spawn_blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> tokio::task::JoinHandle<T> {
        // The request's span (its id, operation, resource) goes with the work to its thread.
        let span = tracing::Span::current();
        self.tracker.spawn_blocking(move || span.in_scope(work))
    }

    /// Cancels every task and waits up to `grace` for all of them (and their blocking writes) to
    /// finish. False when some were still running at the deadline.
    pub async fn stop(&self, grace: Duration) -> bool {
        self.shutdown.cancel();
        self.tracker.close();
        tokio::time::timeout(grace, self.tracker.wait()).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stop_cancels_waiting_tasks_and_waits_for_blocking_writes() {
        let background = Background::new();
        background.spawn("sleeper".into(), std::future::pending());
        let written = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = written.clone();
        background.spawn_blocking(move || {
            std::thread::sleep(Duration::from_millis(200));
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        assert!(background.stop(Duration::from_secs(5)).await, "every task finished within the grace period");
        assert!(written.load(std::sync::atomic::Ordering::SeqCst), "the blocking write completed before stop returned");
    }
}
