//! Posting a batch to a consumer's webhook: a 2xx commits it; anything else (a status, a refused
//! connection, no answer in 30 s) is retried with exponential backoff and jitter until the
//! consumer's attempts are used up. A destination the policy refuses fails at once: the same call
//! again cannot change the answer.

use std::time::Duration;

use axum::body::Bytes;
use framelog_wire::Backoff;

pub use super::outbound::BodyKind;
use super::outbound::{CallError, call};
use super::policy::DestinationPolicy;
use super::webhook_url::WebhookUrl;

const RETRY_BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));

/// What became of a batch.
#[derive(Debug)]
pub enum Delivery {
    /// The webhook answered 2xx with this body, after `retries` failed calls.
    Delivered { body: Bytes, retries: u32 },
    /// Every attempt failed (or the destination is refused); the last error.
    Failed { attempts: u32, error: String },
}

/// Posts `body` until a 2xx or `max_attempts` calls.
pub async fn deliver(
    policy: &DestinationPolicy,
    url: &WebhookUrl,
    kind: BodyKind,
    body: Bytes,
    max_attempts: u32,
) -> Delivery {
    let mut error = String::new();
    for attempt in 0..max_attempts.max(1) {
        if attempt > 0 {
            tokio::time::sleep(RETRY_BACKOFF.delay(attempt - 1)).await;
        }
        match call(policy, url, kind, body.clone()).await {
            Ok(answer) => return Delivery::Delivered { body: answer, retries: attempt },
            Err(CallError::Refused(reason)) => {
                // The consumer logs the dead letter this becomes; this line is for tracing a call.
                tracing::debug!(%url, %reason, "a destination was refused");
                return Delivery::Failed { attempts: attempt + 1, error: reason };
            }
            Err(CallError::Failed(reason)) => {
                tracing::debug!(%url, attempt = attempt + 1, %reason, "a webhook call failed");
                error = reason;
            }
        }
    }
    Delivery::Failed { attempts: max_attempts.max(1), error }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what a tracing subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn failed_delivery_logs(policy: &DestinationPolicy, url: &str) -> (Delivery, String) {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let url = WebhookUrl::new(url);
        let delivery = tracing::subscriber::with_default(subscriber, || {
            runtime.block_on(deliver(policy, &url, BodyKind::Json, Bytes::new(), 2))
        });
        let logs = String::from_utf8_lossy(&captured.0.lock().expect("logs")).into_owned();
        (delivery, logs)
    }

    /// A port nothing listens on (bound, then closed).
    fn closed_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a port")
    }

    #[test]
    fn failed_and_refused_deliveries_log_the_url_without_its_credentials() {
        let url = format!("http://alice:s3cret@127.0.0.1:{}/hook?token=t0ken", closed_port());
        let (delivery, logs) = failed_delivery_logs(&DestinationPolicy::default(), &url);
        assert!(
            matches!(&delivery, Delivery::Failed { attempts: 2, error } if error.contains("connecting to 127.0.0.1"))
        );
        assert!(logs.contains("a webhook call failed") && logs.contains("http://***@127.0.0.1:"), "{logs}");
        assert!(!logs.contains("s3cret") && !logs.contains("t0ken"), "{logs}");

        let strict =
            DestinationPolicy { allow_private: false, allowed_prefixes: Vec::new(), ..DestinationPolicy::default() };
        let (delivery, logs) = failed_delivery_logs(&strict, &url);
        // Refused once, not retried.
        assert!(
            matches!(&delivery, Delivery::Failed { attempts: 1, error } if error.contains("refused")),
            "{delivery:?}"
        );
        assert!(logs.contains("a destination was refused") && !logs.contains("s3cret"), "{logs}");
        assert!(!format!("{delivery:?}").contains("s3cret"));
    }
}
