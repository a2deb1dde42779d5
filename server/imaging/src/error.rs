//! Why an image could not be made.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImagingError {
    /// GStreamer could not be initialised or the decode pipeline could not be built (a missing
    /// plugin, for example): a deployment problem, not the media's fault.
    #[error("decoder unavailable: {0}")]
    Unavailable(String),
    /// The decoder rejected the media or produced no picture for it.
    #[error("media could not be decoded: {0}")]
    Decode(String),
    #[error("image could not be encoded: {0}")]
    Encode(String),
    /// Every worker is busy and the queue is full.
    #[error("the image decode pool is busy")]
    Busy,
    /// The decode worker process died (a decoder crash or its memory limit), overran its
    /// deadline, or answered something unreadable. The job's pictures are lost; the next job
    /// gets a new worker.
    #[error("the decode worker failed: {0}")]
    WorkerFailed(String),
}
