//! The `application/vnd.amazon.eventstream` messages SubscribeToShard answers with, framed by
//! AWS's own encoder (aws-smithy-eventstream): events carry a JSON or CBOR document, exceptions
//! an error type and message.

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use axum::body::Bytes;
use serde_json::Value;

pub const CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";

/// An event (`initial-response`, `SubscribeToShardEvent`) with `document` as its payload.
pub fn event(event_type: &'static str, document: &Value, cbor: bool) -> Bytes {
    let (payload, content_type) = payload(document, cbor);
    let message = Message::new(payload)
        .add_header(string_header(":message-type", "event"))
        .add_header(string_header(":event-type", event_type))
        .add_header(string_header(":content-type", content_type));
    frame(&message)
}

/// An error that ends the stream (`ResourceNotFoundException`, `InternalFailureException`, ...).
pub fn exception(exception_type: &'static str, message_text: &str, cbor: bool) -> Bytes {
    let (payload, content_type) = payload(&serde_json::json!({"message": message_text}), cbor);
    let message = Message::new(payload)
        .add_header(string_header(":message-type", "exception"))
        .add_header(string_header(":exception-type", exception_type))
        .add_header(string_header(":content-type", content_type));
    frame(&message)
}

fn payload(document: &Value, cbor: bool) -> (Vec<u8>, &'static str) {
    if cbor {
        (super::cbor::encode_response(document), "application/x-amz-cbor-1.1")
    } else {
        (serde_json::to_vec(document).unwrap_or_default(), "application/json")
    }
}

fn string_header(name: &'static str, value: &'static str) -> Header {
    Header::new(name, HeaderValue::String(value.into()))
}

fn frame(message: &Message) -> Bytes {
    let mut out = Vec::new();
    // Only payloads over the format's 16 MiB limit fail to encode; events are kept far smaller
    // (subscribe.rs caps them), so an empty frame here would be a bug, logged rather than sent.
    if let Err(error) = write_message_to(message, &mut out) {
        tracing::error!(%error, "an event stream message could not be framed");
        out.clear();
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use aws_smithy_eventstream::frame::read_message_from;

    use super::*;

    #[test]
    fn events_decode_with_their_type_headers_and_document() {
        let bytes = event("SubscribeToShardEvent", &serde_json::json!({"Records": []}), false);
        let message = read_message_from(bytes).expect("decodes");
        let header = |name: &str| {
            message
                .headers()
                .iter()
                .find(|h| h.name().as_str() == name)
                .and_then(|h| h.value().as_string().ok().cloned())
        };
        assert_eq!(header(":message-type").as_ref().map(|s| s.as_str()), Some("event"));
        assert_eq!(header(":event-type").as_ref().map(|s| s.as_str()), Some("SubscribeToShardEvent"));
        assert_eq!(message.payload().as_ref(), br#"{"Records":[]}"#);
        let error = read_message_from(exception("ResourceInUseException", "busy", false)).expect("decodes");
        assert_eq!(error.payload().as_ref(), br#"{"message":"busy"}"#);
    }
}
