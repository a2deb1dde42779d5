//! A fixed set of worker threads with a bounded queue. Decoding and encoding pictures is CPU
//! work measured in milliseconds per frame; running it on the async runtime's threads would
//! stall every other connection, and an unbounded queue would let a burst of requests hold
//! unbounded memory. A full queue is refused at once (the caller answers ClientLimitExceeded).

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use crate::error::ImagingError;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Handle to the worker pool; clones share the same workers.
#[derive(Debug, Clone)]
pub struct DecodePool {
    jobs: SyncSender<Job>,
    workers: usize,
}

impl DecodePool {
    /// Starts `workers` threads taking jobs from a queue of `queued_jobs`. Initialises GStreamer.
    pub fn new(workers: usize, queued_jobs: usize) -> Result<DecodePool, ImagingError> {
        gstreamer::init().map_err(|e| ImagingError::Unavailable(e.to_string()))?;
        let workers = workers.max(1);
        let (jobs, receiver) = sync_channel::<Job>(queued_jobs);
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..workers {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("framelog-decode-{index}"))
                .spawn(move || work(&receiver))
                .map_err(|e| ImagingError::Unavailable(format!("cannot start a decode worker: {e}")))?;
        }
        Ok(DecodePool { jobs, workers })
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Queues `job`, or answers Busy when the queue is full.
    pub fn try_run(&self, job: impl FnOnce() + Send + 'static) -> Result<(), ImagingError> {
        match self.jobs.try_send(Box::new(job)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(ImagingError::Busy),
            Err(TrySendError::Disconnected(_)) => Err(ImagingError::Unavailable("the decode pool has stopped".into())),
        }
    }
}

/// The nice value of decode workers (and of the GStreamer and libav threads they start, which
/// inherit it): pictures are background work, and on a small machine a busy pool must not delay
/// ingest acknowledgements, which run at the default priority.
const WORKER_NICE: i32 = 19;

fn lower_priority() {
    // On Linux the nice value is per thread: naming our thread id lowers only this worker.
    let thread = rustix::thread::gettid();
    if let Err(error) = rustix::process::setpriority_process(Some(thread), WORKER_NICE) {
        // Not fatal: the worker runs at the default priority.
        eprintln!("framelog: could not lower a decode worker's priority: {error}");
    }
}

fn work(receiver: &Mutex<Receiver<Job>>) {
    lower_priority();
    loop {
        // The lock is held only while waiting for the next job, never while running one.
        let job = match receiver.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        // A job that panics loses its own answer (its reply channel drops) but not the worker.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_is_refused_and_queued_jobs_run() {
        let pool = DecodePool::new(1, 1).expect("pool");
        let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<u32>();
        let first_done = done_tx.clone();
        // The first job holds the only worker until the gate opens.
        pool.try_run(move || {
            let _ = gate_rx.recv();
            let _ = first_done.send(1);
        })
        .expect("first job runs");
        // Wait until the worker has taken it, so exactly one queue slot is free.
        let mut queued = false;
        for _ in 0..200 {
            let second = done_tx.clone();
            if pool
                .try_run(move || {
                    let _ = second.send(2);
                })
                .is_ok()
            {
                queued = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(queued, "one job fits in the queue");
        let third = done_tx.clone();
        assert_eq!(
            pool.try_run(move || {
                let _ = third.send(3);
            }),
            Err(ImagingError::Busy)
        );
        gate_tx.send(()).expect("gate");
        let mut done: Vec<u32> = (0..2).map(|_| done_rx.recv().expect("job result")).collect();
        done.sort_unstable();
        assert_eq!(done, [1, 2]);
    }

    #[test]
    fn a_panicking_job_does_not_kill_its_worker() {
        let pool = DecodePool::new(1, 4).expect("pool");
        pool.try_run(|| panic!("job failure")).expect("queued");
        let (tx, rx) = std::sync::mpsc::channel();
        pool.try_run(move || {
            let _ = tx.send(7);
        })
        .expect("queued");
        assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(5)), Ok(7));
    }
}
