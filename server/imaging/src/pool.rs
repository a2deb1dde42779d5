//! A fixed set of worker threads with a bounded queue. Decoding and encoding pictures is CPU
//! work measured in milliseconds per frame; running it on the async runtime's threads would
//! stall every other connection, and an unbounded queue would let a burst of requests hold
//! unbounded memory. A full queue is refused at once (the caller answers ClientLimitExceeded).
//!
//! Each thread decodes either itself or through a worker process of its own (`Isolation`); the
//! server uses processes, so that a decoder crash fails one job instead of the server.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use crate::error::ImagingError;
use crate::isolated::{WorkerCommand, WorkerProcess};
use crate::job::{PictureJob, Pictures};

/// Where the pool's threads decode.
#[derive(Debug, Clone)]
pub enum Isolation {
    /// On the pool's own threads: for tests and tools, where a crash costs nothing shared.
    InProcess,
    /// In one worker process per thread, started on first use and replaced after a failure.
    Process(WorkerCommand),
}

type Job = Box<dyn FnOnce(&mut Executor) + Send + 'static>;

/// Handle to the worker pool; clones share the same workers.
#[derive(Debug, Clone)]
pub struct DecodePool {
    jobs: SyncSender<Job>,
    workers: usize,
    /// Jobs queued and not yet taken by a worker (for `/metrics`).
    queued: Arc<std::sync::atomic::AtomicUsize>,
}

impl DecodePool {
    /// Starts `workers` threads taking jobs from a queue of `queued_jobs`. Initialises GStreamer
    /// when decoding in process.
    pub fn new(workers: usize, queued_jobs: usize, isolation: Isolation) -> Result<DecodePool, ImagingError> {
        if matches!(isolation, Isolation::InProcess) {
            gstreamer::init().map_err(|e| ImagingError::Unavailable(e.to_string()))?;
        }
        let workers = workers.max(1);
        let (jobs, receiver) = sync_channel::<Job>(queued_jobs);
        let receiver = Arc::new(Mutex::new(receiver));
        let queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for index in 0..workers {
            let (receiver, queued) = (receiver.clone(), queued.clone());
            let executor = Executor { isolation: isolation.clone(), process: None };
            std::thread::Builder::new()
                .name(format!("framelog-decode-{index}"))
                .spawn(move || work(&receiver, &queued, executor))
                .map_err(|e| ImagingError::Unavailable(format!("cannot start a decode worker: {e}")))?;
        }
        Ok(DecodePool { jobs, workers, queued })
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Jobs waiting for a worker.
    pub fn queued(&self) -> usize {
        self.queued.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Queues `job`; `reply` gets its pictures on a pool thread. Answers Busy when the queue is
    /// full.
    pub fn try_submit(
        &self,
        job: PictureJob,
        reply: impl FnOnce(Pictures) + Send + 'static,
    ) -> Result<(), ImagingError> {
        self.try_queue(Box::new(move |executor: &mut Executor| reply(executor.run(job))))
    }

    fn try_queue(&self, job: Job) -> Result<(), ImagingError> {
        // Counted before it is sent: a worker may take it (and count it off) at once.
        self.queued.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let sent = self.jobs.try_send(job);
        if sent.is_err() {
            self.queued.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
        match sent {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(ImagingError::Busy),
            Err(TrySendError::Disconnected(_)) => Err(ImagingError::Unavailable("the decode pool has stopped".into())),
        }
    }
}

/// One pool thread's way of running jobs, and its worker process when it has one.
#[derive(Debug)]
struct Executor {
    isolation: Isolation,
    process: Option<WorkerProcess>,
}

impl Executor {
    fn run(&mut self, job: PictureJob) -> Pictures {
        let Isolation::Process(command) = self.isolation.clone() else { return job.run() };
        // A worker that died while idle (killed, say) is replaced before it is handed a job.
        let reused = self.process.take().and_then(|mut process| process.alive().then_some(process));
        let fresh = reused.is_none();
        let answer = self.run_on(reused, &command, &job);
        // A reused worker can die between that check and the job (a kill still in flight): one
        // more try on a new worker. A new worker that dies is the job's doing; it is not retried.
        match answer {
            Err(_) if !fresh => self.run_on(None, &command, &job),
            answer => answer,
        }
        .unwrap_or_else(|error| Pictures { failure: Some(error), ..Pictures::default() })
    }

    /// Runs `job` on `process`, or on a new worker; keeps the worker when it answered.
    fn run_on(
        &mut self,
        process: Option<WorkerProcess>,
        command: &WorkerCommand,
        job: &PictureJob,
    ) -> Result<Pictures, ImagingError> {
        let mut process = match process {
            Some(process) => process,
            None => WorkerProcess::spawn(command)?,
        };
        // On an error the process is dropped (killed and reaped); the next job starts a new one.
        let answer = process.run(job)?;
        self.process = Some(process);
        Ok(answer)
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

fn work(receiver: &Mutex<Receiver<Job>>, queued: &std::sync::atomic::AtomicUsize, mut executor: Executor) {
    lower_priority();
    loop {
        // The lock is held only while waiting for the next job, never while running one.
        let job = match receiver.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        queued.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        // A job that panics loses its own answer (its reply channel drops) but not the worker.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut executor)));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use framelog_media::package::Codec;

    use super::*;
    use crate::decode::{EncodedFrame, FrameRequest};
    use crate::encode::ImageFormat;

    impl DecodePool {
        fn try_run(&self, job: impl FnOnce() + Send + 'static) -> Result<(), ImagingError> {
            self.try_queue(Box::new(move |_: &mut Executor| job()))
        }
    }

    #[test]
    fn a_full_queue_is_refused_and_queued_jobs_run() {
        let pool = DecodePool::new(1, 1, Isolation::InProcess).expect("pool");
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
        let pool = DecodePool::new(1, 4, Isolation::InProcess).expect("pool");
        pool.try_run(|| panic!("job failure")).expect("queued");
        let (tx, rx) = std::sync::mpsc::channel();
        pool.try_run(move || {
            let _ = tx.send(7);
        })
        .expect("queued");
        assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(5)), Ok(7));
    }

    fn job() -> PictureJob {
        let frames = vec![EncodedFrame { pts_ms: 0, keyframe: true, data: vec![0, 0, 0, 1, 0x65] }];
        let request = FrameRequest {
            codec: Codec::Avc,
            config: vec![1],
            frames,
            wanted_pts_ms: vec![0],
            scale_to: None,
            jpeg_quality: None,
        };
        PictureJob { request, format: ImageFormat::Png, width: None, height: None }
    }

    /// A pool of one thread whose worker process is the shell script `script`.
    fn pool_with_worker(script: &str, job_deadline: Duration) -> DecodePool {
        let command = WorkerCommand { program: "/bin/sh".into(), args: vec!["-c".into(), script.into()], job_deadline };
        DecodePool::new(1, 4, Isolation::Process(command)).expect("pool")
    }

    fn submit(pool: &DecodePool) -> Pictures {
        let (tx, rx) = std::sync::mpsc::channel();
        pool.try_submit(job(), move |answer| drop(tx.send(answer))).expect("queued");
        rx.recv_timeout(Duration::from_secs(10)).expect("every job is answered")
    }

    fn worker_failure(answer: &Pictures) -> String {
        assert!(answer.pictures.is_empty());
        match &answer.failure {
            Some(ImagingError::WorkerFailed(why)) => why.clone(),
            other => panic!("expected a worker failure, got {other:?}"),
        }
    }

    #[test]
    fn a_worker_that_crashes_mid_job_fails_that_job_and_is_replaced() {
        // Reads the job's length, then dies as a decoder with a bad pointer would.
        let pool = pool_with_worker("head -c 4 >/dev/null; kill -SEGV $$", Duration::from_secs(5));
        for _ in 0..2 {
            let why = worker_failure(&submit(&pool));
            assert_eq!(why, "killed by signal 11");
        }
    }

    #[test]
    fn a_worker_that_never_answers_is_killed_at_its_deadline() {
        let pool = pool_with_worker("cat >/dev/null", Duration::from_millis(300));
        let why = worker_failure(&submit(&pool));
        assert!(why.contains("deadline"), "{why}");
    }

    #[test]
    fn a_garbled_answer_is_an_error_not_a_picture() {
        // A length of 5 and five bytes that are no answer.
        let pool = pool_with_worker(
            "head -c 4 >/dev/null; printf '\\005\\000\\000\\000hello'; sleep 5",
            Duration::from_secs(5),
        );
        let why = worker_failure(&submit(&pool));
        assert!(why.contains("malformed"), "{why}");
    }

    #[test]
    fn a_missing_worker_program_is_unavailable() {
        let command = WorkerCommand {
            program: "/nonexistent/framelog".into(),
            args: Vec::new(),
            job_deadline: Duration::from_secs(1),
        };
        let pool = DecodePool::new(1, 1, Isolation::Process(command)).expect("pool");
        assert!(matches!(submit(&pool).failure, Some(ImagingError::Unavailable(_))));
    }
}
