//! A loopback webhook for the consumer benchmarks: answers every POST with `200 {}` and notes,
//! per fragment number, when its first frame arrived and how many frames came in all.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;

#[derive(Debug, Default)]
pub struct Received {
    pub frames: u64,
    pub first_frame_at: HashMap<String, Instant>,
}

/// The running sink: its URL and what it has received.
pub struct WebhookSink {
    pub url: String,
    pub received: Arc<Mutex<Received>>,
}

impl WebhookSink {
    pub async fn start() -> anyhow::Result<WebhookSink> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address: SocketAddr = listener.local_addr()?;
        let received: Arc<Mutex<Received>> = Arc::default();
        let shared = received.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = tcp.set_nodelay(true);
                let received = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                        let received = received.clone();
                        async move {
                            let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let at = Instant::now();
                            if let Ok(batch) = serde_json::from_slice::<Value>(&body) {
                                let frames = batch["Frames"].as_array().cloned().unwrap_or_default();
                                let mut received = received.lock().expect("lock");
                                received.frames += frames.len() as u64;
                                for frame in frames {
                                    if let Some(number) = frame["FragmentNumber"].as_str() {
                                        received.first_frame_at.entry(number.to_string()).or_insert(at);
                                    }
                                }
                            }
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                                b"{}",
                            ))))
                        }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
                });
            }
        });
        Ok(WebhookSink { url: format!("http://{address}/frames"), received })
    }

    pub fn frames(&self) -> u64 {
        self.received.lock().expect("lock").frames
    }
}
