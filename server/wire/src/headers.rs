//! PutMedia's request headers, by their lower-case wire names.

/// The stream to write to, by name (or `STREAM_ARN`; not both).
pub const STREAM_NAME: &str = "x-amzn-stream-name";
pub const STREAM_ARN: &str = "x-amzn-stream-arn";
/// `ABSOLUTE` (Cluster timecodes are epoch times) or `RELATIVE` (to `PRODUCER_START_TIMESTAMP`).
pub const FRAGMENT_TIMECODE_TYPE: &str = "x-amzn-fragment-timecode-type";
/// Seconds since the epoch, with a fraction, that RELATIVE timecodes count from.
pub const PRODUCER_START_TIMESTAMP: &str = "x-amzn-producer-start-timestamp";
/// Sent by AWS's producers; the server acknowledges every fragment whatever it says.
pub const FRAGMENT_ACKNOWLEDGMENT_REQUIRED: &str = "x-amzn-fragment-acknowledgment-required";
