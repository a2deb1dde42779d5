//! Runs the cluster backend's async work on its own runtime for the engine's synchronous API.
//!
//! The engine's callers are blocking threads (spawn_blocking) or the server's async tasks, so a
//! call cannot `block_on` the caller's runtime: it spawns the work on the backend's private
//! runtime and waits for the join handle with a plain executor, which is allowed anywhere. No
//! engine call is ever made from the private runtime's own threads, so this cannot deadlock.

use std::future::Future;
use std::time::Duration;

use tokio::runtime::Runtime;

use crate::error::{Result, StoreError};

#[derive(Debug)]
pub(crate) struct Bridge {
    /// Always `Some` until dropped; taken in `drop` to shut down without blocking.
    runtime: Option<Runtime>,
    timeout: Duration,
}

impl Bridge {
    pub(crate) fn new(timeout: Duration) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("framelog-cluster")
            .enable_all()
            .build()
            .map_err(|source| StoreError::Io { what: "starting the cluster runtime", source })?;
        Ok(Self { runtime: Some(runtime), timeout })
    }

    /// Runs `work` to completion within the request timeout.
    pub(crate) fn run<T: Send + 'static>(&self, work: impl Future<Output = Result<T>> + Send + 'static) -> Result<T> {
        self.run_within(self.timeout, work)
    }

    /// Runs `work` to completion within `timeout`.
    pub(crate) fn run_within<T: Send + 'static>(
        &self,
        timeout: Duration,
        work: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let joined = futures::executor::block_on(self.handle().spawn(async move {
            tokio::time::timeout(timeout, work).await.unwrap_or_else(|_| {
                Err(StoreError::Backend { what: "the cluster did not answer in time", detail: format!("{timeout:?}") })
            })
        }));
        joined.map_err(|e| StoreError::Backend { what: "a cluster task failed", detail: e.to_string() })?
    }

    /// Starts `work` in the background (watchers, appends answered through a channel); the
    /// handle stops it early.
    pub(crate) fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) -> tokio::task::AbortHandle {
        self.handle().spawn(work).abort_handle()
    }

    fn handle(&self) -> tokio::runtime::Handle {
        match &self.runtime {
            Some(runtime) => runtime.handle().clone(),
            // Only `drop` takes the runtime, and nothing runs after it.
            None => unreachable!("the cluster runtime is used after drop"),
        }
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl Drop for Bridge {
    /// Shuts the runtime down without waiting: a plain drop would block, which panics when the
    /// last engine handle goes away inside an async task.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
