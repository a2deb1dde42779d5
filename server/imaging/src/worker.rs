//! The decode worker process (`framelog decode-worker`): reads jobs on stdin and writes answers on
//! stdout until stdin closes. Decoders are large C libraries fed with media from the network; in a
//! process of their own, with a memory ceiling, a decoder that crashes or runs away costs one
//! job's pictures instead of the server.

use std::io::Write;

use crate::error::ImagingError;
use crate::job::Pictures;
use crate::protocol::{decode_job, encode_answer, read_message, write_message};

/// Limits the worker applies to itself before it takes a job.
#[derive(Debug, Clone, Copy)]
pub struct WorkerLimits {
    /// Address space ceiling (RLIMIT_AS): an allocation beyond it fails and the worker dies,
    /// not the server.
    pub memory_limit_bytes: u64,
}

/// Runs the worker loop on this process's stdin and stdout. Returns when stdin closes (the server
/// stopped or replaced this worker).
pub fn serve_decode_worker(limits: WorkerLimits) -> Result<(), ImagingError> {
    // A worker never outlives its server, even if the server is killed mid-job.
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    confine(limits)?;
    let mut input = std::io::stdin().lock();
    let mut output = std::io::stdout().lock();
    let failed = |doing: &str, error: std::io::Error| ImagingError::WorkerFailed(format!("{doing}: {error}"));
    while let Some(message) = read_message(&mut input).map_err(|e| failed("reading a job", e))? {
        let answer = match decode_job(&message) {
            Ok(job) => job.run(),
            Err(error) => Pictures { failure: Some(error), ..Pictures::default() },
        };
        write_message(&mut output, &encode_answer(&answer)).map_err(|e| failed("writing an answer", e))?;
    }
    output.flush().map_err(|e| failed("writing an answer", e))
}

/// Lowest priority, no core dumps (a core would hold stored video), GStreamer initialised, then
/// the memory ceiling: set last, so that it bounds decoding and not start-up.
pub(crate) fn confine(limits: WorkerLimits) -> Result<(), ImagingError> {
    // Set on the main thread before GStreamer starts any, so every decoder thread inherits it.
    let _ = rustix::process::setpriority_process(None, 19);
    let no_core = rustix::process::Rlimit { current: Some(0), maximum: Some(0) };
    let _ = rustix::process::setrlimit(rustix::process::Resource::Core, no_core);
    gstreamer::init().map_err(|e| ImagingError::Unavailable(e.to_string()))?;
    let ceiling =
        rustix::process::Rlimit { current: Some(limits.memory_limit_bytes), maximum: Some(limits.memory_limit_bytes) };
    rustix::process::setrlimit(rustix::process::Resource::As, ceiling)
        .map_err(|e| ImagingError::Unavailable(format!("cannot set the decode worker's memory limit: {e}")))
}
