//! Each measured call's `{Operation}.Latency`, `.Success` and (video) `.Requests`, recorded
//! where every request is answered (access_log.rs) or, for playback reached through a session
//! URL, where it is served.

use super::catalogue::request_metrics;
use super::recorder::Recorder;

/// Records one answered call of `action` (`kinesis:PutRecord`) on the stream `resource` names;
/// calls on no stream, and calls CloudWatch does not measure, record nothing.
pub fn record(recorder: &Recorder, action: &str, resource: &str, succeeded: bool, latency_ms: f64) {
    if let Some(stream) = stream_of(resource) {
        record_on(recorder, action, stream, succeeded, latency_ms);
    }
}

/// Records one answered call of `action` on `stream`. Calls naming a stream that does not exist
/// record nothing: any name a client sends would otherwise become a series kept for good.
pub fn record_on(recorder: &Recorder, action: &str, stream: &str, succeeded: bool, latency_ms: f64) {
    let Some(metrics) = request_metrics(action) else { return };
    if !recorder.stream_exists(metrics.latency.namespace, stream) {
        return;
    }
    let dimensions = [("StreamName", stream)];
    recorder.record(&metrics.latency, &dimensions, latency_ms);
    recorder.record(&metrics.success, &dimensions, if succeeded { 1.0 } else { 0.0 });
    if let Some(requests) = &metrics.requests {
        recorder.record(requests, &dimensions, 1.0);
    }
}

/// The stream a data or video stream ARN names (`...:stream/NAME` and whatever follows a `/`).
fn stream_of(arn: &str) -> Option<&str> {
    let (_, after) = arn.split_once(":stream/")?;
    after.split('/').next().filter(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_read_from_data_video_and_consumer_arns() {
        assert_eq!(stream_of("arn:aws:kinesis:us-east-1:000000000000:stream/orders"), Some("orders"));
        assert_eq!(stream_of("arn:aws:kinesisvideo:us-east-1:000000000000:stream/cam/1700000000000"), Some("cam"));
        assert_eq!(stream_of("arn:aws:kinesis:us-east-1:0:stream/orders/consumer/c:1"), Some("orders"));
        assert_eq!(stream_of("*"), None);
    }
}
