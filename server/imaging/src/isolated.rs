//! The server's side of a decode worker process: spawn it, hand it one job at a time with a
//! deadline, and turn its death or a garbled answer into an error for that job alone.

use std::ffi::OsString;
use std::io::BufReader;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::time::Duration;

use crate::error::ImagingError;
use crate::job::{PictureJob, Pictures};
use crate::protocol::{decode_answer, encode_job, read_message, write_message};

/// How to start a worker process, and how long one job may take before the worker is killed.
#[derive(Debug, Clone)]
pub struct WorkerCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub job_deadline: Duration,
}

/// Starts `command` (a `what` worker) with its stdin and stdout piped to us.
pub(crate) fn spawn_worker(
    command: &WorkerCommand,
    what: &str,
) -> Result<(Child, ChildStdin, ChildStdout), ImagingError> {
    let mut child = Command::new(&command.program)
        .args(&command.args)
        // glibc reserves an arena of address space per thread; two keep a decoder's many
        // threads from spending the memory ceiling on reservations.
        .env("MALLOC_ARENA_MAX", "2")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            ImagingError::Unavailable(format!("cannot start the {what} worker {}: {e}", command.program.display()))
        })?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(ImagingError::Unavailable(format!("the {what} worker has no pipes")));
    };
    Ok((child, stdin, stdout))
}

/// A running worker and its pipes.
#[derive(Debug)]
pub(crate) struct WorkerProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    job_deadline: Duration,
}

impl WorkerProcess {
    pub(crate) fn spawn(command: &WorkerCommand) -> Result<WorkerProcess, ImagingError> {
        let (child, stdin, stdout) = spawn_worker(command, "decode")?;
        Ok(WorkerProcess { child, stdin, stdout: BufReader::new(stdout), job_deadline: command.job_deadline })
    }

    /// False once the process has exited (it is then reaped).
    pub(crate) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Runs `job`. On an error the process is no longer usable: drop it.
    pub(crate) fn run(&mut self, job: &PictureJob) -> Result<Pictures, ImagingError> {
        let message = encode_job(job);
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32);
        let (done, cancelled) = channel::<()>();
        let deadline = self.job_deadline;
        let answer = std::thread::scope(|scope| {
            // Killing the worker is what unblocks a pipe read or write it no longer serves. The
            // process is reaped only after this thread is joined, so its pid cannot be reused
            // under the watchdog.
            let watchdog = scope.spawn(move || match cancelled.recv_timeout(deadline) {
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(pid) = pid {
                        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                    }
                    true
                }
                _ => false,
            });
            let answer = write_message(&mut self.stdin, &message).and_then(|()| read_message(&mut self.stdout));
            let _ = done.send(());
            let overran = watchdog.join().unwrap_or(false);
            (answer, overran)
        });
        match answer {
            (_, true) => Err(ImagingError::WorkerFailed(format!("overran its {} s deadline", deadline.as_secs_f64()))),
            (Ok(Some(message)), false) => decode_answer(&message),
            (Ok(None) | Err(_), false) => Err(ImagingError::WorkerFailed(self.exit_description())),
        }
    }

    /// Why the process stopped answering: its exit status or the signal that killed it.
    fn exit_description(&mut self) -> String {
        // A crashed worker closes its pipes a moment before it can be reaped: give it that
        // moment, so the answer names its own cause (a signal) rather than our kill.
        for _ in 0..50 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return describe(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        match self.child.wait() {
            Ok(status) => describe(status),
            Err(error) => format!("could not be waited for: {error}"),
        }
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "stopped".into(),
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
