//! The transcode worker process (`framelog transcode-worker`): one transcode per process, as long
//! as the server keeps its input open. A thread reads input frames from stdin into the pipeline;
//! the main thread writes H.264 frames to stdout as x264 makes them. Like the decode worker it
//! runs at the lowest priority under a memory ceiling, so a decoder crash or runaway costs one
//! viewer's video, not the server.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use crate::error::ImagingError;
use crate::protocol::{read_message, write_message};
use crate::transcode::{Pulled, Transcoder};
use crate::transcode_protocol::{FromWorker, ToWorker, decode_to_worker, encode_from_worker};
use crate::worker::{WorkerLimits, confine};

/// How long one look at the encoder's output waits before checking for errors again.
const PULL_WAIT: Duration = Duration::from_millis(100);

/// Runs one transcode on this process's stdin and stdout. Returns when everything is out after
/// stdin closed, or after reporting a failure.
pub fn serve_transcode_worker(limits: WorkerLimits) -> Result<(), ImagingError> {
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    confine(limits)?;
    let mut output = std::io::stdout().lock();
    let outcome = transcode_stdin(&mut output);
    let last = match outcome {
        Ok(()) => FromWorker::Finished,
        Err(error) => FromWorker::Failed(error),
    };
    write_message(&mut output, &encode_from_worker(&last))
        .and_then(|()| output.flush())
        .map_err(|e| ImagingError::WorkerFailed(format!("writing an answer: {e}")))
}

fn transcode_stdin(output: &mut impl Write) -> Result<(), ImagingError> {
    let mut input = std::io::stdin().lock();
    let failed = |doing: &str, error: std::io::Error| ImagingError::WorkerFailed(format!("{doing}: {error}"));
    let first = read_message(&mut input).map_err(|e| failed("reading the start", e))?;
    let Some(ToWorker::Start(start)) = first.as_deref().map(decode_to_worker).transpose()? else {
        return Err(ImagingError::WorkerFailed("a transcode starts with its codec".into()));
    };
    let transcoder = Arc::new(Transcoder::start(&start)?);
    drop(input);
    let feeder = transcoder.clone();
    // Input ends (and the pipeline drains) when the server closes the pipe or sends nonsense.
    std::thread::spawn(move || {
        let mut input = std::io::stdin().lock();
        while let Ok(Some(message)) = read_message(&mut input) {
            let pushed = match decode_to_worker(&message) {
                Ok(ToWorker::Frame(frame)) => feeder.push(frame),
                _ => Err(ImagingError::Decode("a transcode's input is frames".into())),
            };
            if pushed.is_err() {
                break;
            }
        }
        let _ = feeder.finish();
    });
    loop {
        match transcoder.pull(PULL_WAIT)? {
            Pulled::Frame(frame) => write_message(output, &encode_from_worker(&FromWorker::Frame(frame)))
                .map_err(|e| failed("writing a frame", e))?,
            Pulled::Waiting => {}
            Pulled::Finished => return Ok(()),
        }
    }
}
