//! The consumers' webhook: a loopback HTTP server that answers 200 and counts what each POST
//! delivered (video frames by consumer and fragment number, records by event id).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// Deliveries so far, each with how many times it arrived.
#[derive(Debug, Default)]
pub struct Delivered {
    /// (consumer name, fragment number) -> calls that carried its key frame.
    pub frames: HashMap<(String, String), u32>,
    /// "shardId:sequenceNumber" -> calls that carried the record.
    pub records: HashMap<String, u32>,
}

pub struct Sink {
    pub address: SocketAddr,
    pub delivered: Arc<Mutex<Delivered>>,
}

impl Sink {
    pub async fn start() -> Sink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the webhook");
        let address = listener.local_addr().expect("address");
        let delivered = Arc::new(Mutex::new(Delivered::default()));
        let shared = delivered.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                        let shared = shared.clone();
                        async move {
                            let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            record(&shared, &body);
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                                b"{}",
                            ))))
                        }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(socket), service).await;
                });
            }
        });
        Sink { address, delivered }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.address)
    }
}

fn record(delivered: &Mutex<Delivered>, body: &[u8]) {
    let Ok(document) = serde_json::from_slice::<serde_json::Value>(body) else { return };
    let mut delivered = delivered.lock().expect("deliveries");
    let consumer = document["ConsumerName"].as_str().unwrap_or_default().to_string();
    for frame in document["Frames"].as_array().into_iter().flatten() {
        let number = frame["FragmentNumber"].as_str().unwrap_or_default().to_string();
        *delivered.frames.entry((consumer.clone(), number)).or_default() += 1;
    }
    for record in document["Records"].as_array().into_iter().flatten() {
        let id = record["eventID"].as_str().unwrap_or_default().to_string();
        *delivered.records.entry(id).or_default() += 1;
    }
}
