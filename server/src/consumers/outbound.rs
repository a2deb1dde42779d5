//! One HTTP call to a destination on a user's behalf: the URL's host resolved and checked once by
//! the destination policy, a connection to a checked address only (no connection pool and no
//! resolver of its own that could reach another one), and an answer read up to 64 KiB, so that a
//! destination that answers an endless body costs the server 64 KiB and no more.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Bytes;
use base64::Engine as _;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::header::{self, HeaderValue};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::policy::{DestinationPolicy, Pinned, Unreachable};
use super::webhook_url::{Target, WebhookUrl};

/// The most of an answer's body that is read; the rest is never received.
pub const MAX_ANSWER_BYTES: usize = 64 << 10;
/// Lambda's synchronous response payload limit.
pub const MAX_LAMBDA_ANSWER_BYTES: usize = 6 << 20;
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What a call's body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// A consumer's JSON batch.
    Json,
    /// An SNS HTTP notification: SNS posts these as text/plain with a message-type header that
    /// subscribers dispatch on.
    SnsNotification,
    /// A Firehose transformation event to a function standing in for Lambda: its answer carries
    /// every record transformed, so it may be as large as a Lambda response (6 MB).
    LambdaEvent,
}

impl BodyKind {
    /// The most of an answer's body that is read for this kind of call.
    fn answer_limit_bytes(self) -> usize {
        match self {
            BodyKind::Json | BodyKind::SnsNotification => MAX_ANSWER_BYTES,
            BodyKind::LambdaEvent => MAX_LAMBDA_ANSWER_BYTES,
        }
    }
}

/// Why a call did not succeed. Neither carries the URL: the caller logs it redacted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The destination policy refuses the destination: another attempt cannot help.
    #[error("{0}")]
    Refused(String),
    /// Anything else (a status, a refused connection, a timeout): worth another attempt.
    #[error("{0}")]
    Failed(String),
}

impl From<Unreachable> for CallError {
    fn from(error: Unreachable) -> Self {
        match error {
            Unreachable::Refused(_) => CallError::Refused(error.to_string()),
            Unreachable::Lookup(reason) => CallError::Failed(reason),
        }
    }
}

/// POSTs `body` to `url`; a 2xx answer's body (empty when it was over 64 KiB), or why not.
pub async fn call(
    policy: &DestinationPolicy,
    url: &WebhookUrl,
    kind: BodyKind,
    body: Bytes,
) -> Result<Bytes, CallError> {
    let (status, answer) = post(policy, url, kind, &[], body).await?;
    if !status.is_success() {
        return Err(CallError::Failed(format!("HTTP {status}")));
    }
    Ok(answer.unwrap_or_else(|| {
        tracing::warn!(%url, limit = MAX_ANSWER_BYTES, "a destination's answer was over the limit: its body is ignored");
        Bytes::new()
    }))
}

/// POSTs `body` to `url` with `headers` besides the usual ones: the answer's status and its body
/// (`None` when it was over 64 KiB), whatever the status.
pub async fn post(
    policy: &DestinationPolicy,
    url: &WebhookUrl,
    kind: BodyKind,
    headers: &[(&'static str, HeaderValue)],
    body: Bytes,
) -> Result<(hyper::StatusCode, Option<Bytes>), CallError> {
    let target =
        Target::parse(url.expose()).map_err(|reason| CallError::Refused(format!("the URL is refused: {reason}")))?;
    let answer_limit_bytes = kind.answer_limit_bytes();
    let mut request = request(&target, kind, body)?;
    for (name, value) in headers {
        request.headers_mut().insert(*name, value.clone());
    }
    let connection = tokio::time::timeout(CALL_TIMEOUT, async {
        let pinned = policy.resolve(&target).await?;
        connect(&pinned).await.map_err(CallError::Failed)
    })
    .await
    .map_err(|_| CallError::Failed("no answer in 30 s".into()))??;
    if target.tls {
        let stream = tokio::time::timeout(CALL_TIMEOUT, tls_handshake(policy, &target, connection))
            .await
            .map_err(|_| CallError::Failed("no TLS handshake in 30 s".into()))??;
        exchange(stream, request, answer_limit_bytes).await
    } else {
        exchange(connection, request, answer_limit_bytes).await
    }
    .map_err(CallError::Failed)
}

/// TLS on the pinned connection, the certificate checked against the URL's host (a name, or an
/// address for a URL that names one).
async fn tls_handshake(
    policy: &DestinationPolicy,
    target: &Target,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, CallError> {
    let name = rustls_pki_types::ServerName::try_from(target.host.clone())
        .map_err(|_| CallError::Refused("the URL's host cannot be checked against a certificate".into()))?;
    policy.trust.connector().connect(name, tcp).await.map_err(|e| CallError::Failed(format!("TLS: {e}")))
}

/// The first of the checked addresses that accepts a connection.
async fn connect(pinned: &Pinned) -> Result<TcpStream, String> {
    let mut last_error = String::from("no address to connect to");
    for address in pinned.addresses() {
        match TcpStream::connect(address).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(error) => last_error = connect_error(address, &error),
        }
    }
    Err(last_error)
}

fn connect_error(address: &SocketAddr, error: &std::io::Error) -> String {
    format!("connecting to {address}: {error}")
}

/// The POST in origin form, with the Host header and, from the URL's userinfo, HTTP Basic
/// authentication (what SNS does with credentials in a subscription URL).
fn request(target: &Target, kind: BodyKind, body: Bytes) -> Result<hyper::Request<Full<Bytes>>, CallError> {
    let content_type = match kind {
        BodyKind::Json | BodyKind::LambdaEvent => "application/json",
        BodyKind::SnsNotification => "text/plain; charset=UTF-8",
    };
    let mut builder = hyper::Request::post(target.path_and_query.as_str())
        .header(header::HOST, target.host_header())
        .header(header::CONTENT_TYPE, content_type)
        .header(header::USER_AGENT, "framelog-consumer");
    if kind == BodyKind::SnsNotification {
        builder = builder.header("x-amz-sns-message-type", "Notification");
    }
    if let Some(userinfo) = &target.userinfo {
        let credentials = base64::engine::general_purpose::STANDARD.encode(userinfo);
        let mut value = HeaderValue::from_str(&format!("Basic {credentials}"))
            .map_err(|_| CallError::Refused("the URL's userinfo cannot be sent".into()))?;
        value.set_sensitive(true);
        builder = builder.header(header::AUTHORIZATION, value);
    }
    builder.body(Full::new(body)).map_err(|e| CallError::Refused(format!("the URL cannot be requested: {e}")))
}

/// Sends `request` on `stream` and reads the answer: its status, and its body unless that was
/// over `answer_limit_bytes` (then `None`, and the connection is dropped unread).
async fn exchange<IO>(
    stream: IO,
    request: hyper::Request<Full<Bytes>>,
    answer_limit_bytes: usize,
) -> Result<(hyper::StatusCode, Option<Bytes>), String>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    let mut connection = std::pin::pin!(connection);
    let mut work = std::pin::pin!(async move {
        let response = tokio::time::timeout(CALL_TIMEOUT, sender.send_request(request))
            .await
            .map_err(|_| "no answer in 30 s".to_string())?
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = tokio::time::timeout(CALL_TIMEOUT, Limited::new(response.into_body(), answer_limit_bytes).collect())
            .await
            .map_err(|_| "the answer did not finish in 30 s".to_string())?;
        match body {
            Ok(collected) => Ok((status, Some(collected.to_bytes()))),
            Err(error) if error.is::<LengthLimitError>() => Ok((status, None)),
            Err(error) => Err(error.to_string()),
        }
    });
    // The connection future does the I/O; `work` waits on it. When the connection ends first,
    // `work` still has the answer (or the error) to report.
    let finished = tokio::select! {
        biased;
        result = &mut work => Some(result),
        _ = &mut connection => None,
    };
    match finished {
        Some(result) => result,
        None => work.await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Instant;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    use super::*;
    use crate::consumers::OutboundTrust;

    /// A server that answers every connection with `head` and then `chunk` forever (until the
    /// client goes), counting what it managed to send. Gives the URL and the count.
    async fn endless(head: &'static str, chunk: usize) -> (String, Arc<AtomicU64>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("address"));
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = socket.read(&mut request).await;
                    if socket.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let block = vec![b'x'; chunk];
                    while socket.write_all(&block).await.is_ok() {
                        counter.fetch_add(block.len() as u64, Ordering::Relaxed);
                    }
                });
            }
        });
        (url, sent)
    }

    /// A server that records the first request's head and answers `{}`.
    async fn recorder() -> (String, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let task = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut request = vec![0u8; 65536];
            let read = socket.read(&mut request).await.unwrap_or(0);
            let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").await;
            String::from_utf8_lossy(&request[..read]).into_owned()
        });
        (format!("http://alice:p%40ss@127.0.0.1:{port}/hook?x=1"), task)
    }

    #[tokio::test]
    async fn an_endless_answer_is_cut_at_64_kib_and_the_call_returns_at_once() {
        let open = DestinationPolicy::default();
        let (url, sent) = endless("HTTP/1.1 200 OK\r\ncontent-length: 100000000000\r\n\r\n", 16 << 10).await;
        let started = Instant::now();
        let answer = call(&open, &WebhookUrl::new(url), BodyKind::Json, Bytes::from_static(b"{}")).await;
        assert_eq!(answer, Ok(Bytes::new()), "a 2xx answer commits the batch, its oversized body ignored");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        // What the destination could push is the limit plus the socket buffers, not its body.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(sent.load(Ordering::Relaxed) < 32 << 20, "{} bytes", sent.load(Ordering::Relaxed));

        let (url, _) = endless("HTTP/1.1 500 Oops\r\ntransfer-encoding: identity\r\n\r\n", 1 << 10).await;
        let answer = call(&open, &WebhookUrl::new(url), BodyKind::Json, Bytes::new()).await;
        assert_eq!(answer, Err(CallError::Failed("HTTP 500 Internal Server Error".into())));
    }

    #[tokio::test]
    async fn the_request_has_origin_form_a_host_header_and_basic_auth_from_the_userinfo() {
        let (url, server) = recorder().await;
        let answer =
            call(&DestinationPolicy::default(), &WebhookUrl::new(url), BodyKind::SnsNotification, Bytes::new()).await;
        assert_eq!(answer, Ok(Bytes::from_static(b"{}")));
        let head = server.await.expect("request").to_ascii_lowercase();
        assert!(head.starts_with("post /hook?x=1 http/1.1\r\n"), "{head}");
        assert!(head.contains("\r\nhost: 127.0.0.1:"), "{head}");
        // base64("alice:p@ss")
        assert!(head.contains("\r\nauthorization: basic ywxpy2u6cebzcw==\r\n"), "{head}");
        assert!(head.contains("\r\nx-amz-sns-message-type: notification\r\n"), "{head}");
    }

    #[tokio::test]
    async fn a_refused_destination_is_never_connected_to() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = WebhookUrl::new(format!("http://{}/hook", listener.local_addr().expect("address")));
        let strict =
            DestinationPolicy { allow_private: false, allowed_prefixes: Vec::new(), ..DestinationPolicy::default() };
        let answer = call(&strict, &url, BodyKind::Json, Bytes::new()).await;
        assert!(matches!(&answer, Err(CallError::Refused(reason)) if reason.contains("loopback")), "{answer:?}");
        let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "the server connected to a refused address");
    }

    /// An HTTPS server on loopback with a certificate for 127.0.0.1 from a new CA; gives the URL
    /// and the CA certificate.
    async fn https_server() -> (String, rustls_pki_types::CertificateDer<'static>) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().expect("ca key");
        let ca_cert = ca_params.self_signed(&ca_key).expect("ca");
        let key = KeyPair::generate().expect("key");
        let params = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
        let cert = params.signed_by(&key, &Issuer::new(ca_params, ca_key)).expect("cert");
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let private = rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("der");
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], private)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("https://{}/hook", listener.local_addr().expect("address"));
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let mut request = [0u8; 4096];
                    let _ = tls.read(&mut request).await;
                    let answer = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}";
                    let _ = tls.write_all(answer.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        (url, ca_cert.der().clone())
    }

    #[tokio::test]
    async fn https_destinations_are_called_over_tls_checked_against_the_trusted_cas() {
        let (url, ca) = https_server().await;
        let url = WebhookUrl::new(url);
        let trusting = DestinationPolicy { trust: OutboundTrust::with_extra(vec![ca]), ..DestinationPolicy::default() };
        let answer =
            call(&trusting, &url, BodyKind::Json, Bytes::from_static(b"{}")).await.expect("a trusted certificate");
        assert_eq!(answer.as_ref(), b"{}");
        let error = call(&DestinationPolicy::default(), &url, BodyKind::Json, Bytes::from_static(b"{}")).await;
        assert!(matches!(error, Err(CallError::Failed(ref reason)) if reason.starts_with("TLS")), "{error:?}");
    }
}
