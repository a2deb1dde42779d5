//! The local status endpoint (`GET /status` JSON, `GET /metrics` Prometheus text) and
//! `framelog-edge status`, which prints it and, while a backlog uploads, a progress bar with
//! bytes, rate and time left.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::buffer::StreamBuffer;
use crate::file_flows::{FlowStatus, Flows};
use crate::metrics::{StreamStatus, prometheus};

/// The streams whose status is served.
pub type Streams = Arc<Vec<(String, Arc<StreamBuffer>)>>;

/// What the status endpoint reports on: cameras and file flows.
#[derive(Clone)]
struct Watched {
    streams: Streams,
    flows: Flows,
}

fn snapshot(streams: &Streams) -> Vec<StreamStatus> {
    streams.iter().map(|(name, buffer)| buffer.metrics.snapshot(name)).collect()
}

fn flow_snapshot(flows: &Flows) -> Vec<FlowStatus> {
    flows.iter().map(|(name, metrics)| metrics.snapshot(name)).collect()
}

pub async fn serve(listen: SocketAddr, streams: Streams, flows: Flows) -> anyhow::Result<()> {
    let router = Router::new()
        .route(
            "/status",
            get(|State(w): State<Watched>| async move {
                let body = serde_json::to_vec(&snapshot(&w.streams)).unwrap_or_default();
                ([(header::CONTENT_TYPE, "application/json")], body).into_response()
            }),
        )
        .route(
            "/flows",
            get(|State(w): State<Watched>| async move {
                let body = serde_json::to_vec(&flow_snapshot(&w.flows)).unwrap_or_default();
                ([(header::CONTENT_TYPE, "application/json")], body).into_response()
            }),
        )
        .route(
            "/metrics",
            get(|State(w): State<Watched>| async move {
                (
                    [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                    prometheus(&snapshot(&w.streams), &flow_snapshot(&w.flows)),
                )
                    .into_response()
            }),
        )
        .with_state(Watched { streams, flows });
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(%listen, "status endpoint ready");
    axum::serve(listener, router).await?;
    Ok(())
}

async fn fetch(url: &str) -> anyhow::Result<Vec<StreamStatus>> {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let response = client.get(url.parse()?).await?;
    anyhow::ensure!(response.status().is_success(), "{url} answered {}", response.status());
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok(serde_json::from_slice(&bytes)?)
}

/// `framelog-edge status`: one table, or with `watch` a refreshing view with a progress bar.
pub async fn print(status_url: &str, watch: bool) -> anyhow::Result<()> {
    let url = format!("{}/status", status_url.trim_end_matches('/'));
    let mut backlog_start: Option<u64> = None;
    loop {
        let streams = fetch(&url).await?;
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "{:<20} {:<10} {:>12} {:>10} {:>12} {:>9} {:>10}  last error",
            "stream", "state", "buffered", "frags", "uploaded", "MB/s", "oldest"
        )?;
        for s in &streams {
            let state = match (s.recording, s.uploading) {
                (true, true) => "rec+up",
                (true, false) => "recording",
                (false, true) => "uploading",
                (false, false) => "idle",
            };
            let oldest = s
                .oldest_unuploaded_ms
                .map_or("-".to_string(), |ms| format!("{}s ago", now_ms().saturating_sub(ms) / 1000));
            writeln!(
                out,
                "{:<20} {:<10} {:>12} {:>10} {:>12} {:>9.2} {:>10}  {}",
                s.name,
                state,
                human_bytes(s.buffered_bytes),
                s.buffered_fragments,
                human_bytes(s.uploaded_bytes),
                s.upload_bytes_per_sec as f64 / 1e6,
                oldest,
                match (&s.last_error, s.last_error_ms) {
                    (Some(text), Some(ms)) => format!("{}s ago: {text}", now_ms().saturating_sub(ms) / 1000),
                    _ => "-".to_string(),
                }
            )?;
        }
        let remaining: u64 = streams.iter().map(|s| s.buffered_bytes).sum();
        let rate: u64 = streams.iter().map(|s| s.upload_bytes_per_sec).sum();
        if !watch {
            return Ok(());
        }
        let start = *backlog_start.get_or_insert(remaining.max(1));
        writeln!(out, "{}", progress_bar(start, remaining, rate))?;
        drop(out);
        if remaining == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `[#####-----]  45%  1.2 GB left  85.0 MB/s  ETA 0:00:14`
pub fn progress_bar(start_bytes: u64, remaining_bytes: u64, rate_bytes_per_sec: u64) -> String {
    let done = start_bytes.saturating_sub(remaining_bytes);
    let fraction = done as f64 / start_bytes.max(1) as f64;
    let filled = (fraction * 30.0).round() as usize;
    let eta = remaining_bytes
        .checked_div(rate_bytes_per_sec)
        .map_or("-".to_string(), |secs| format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60));
    format!(
        "[{}{}] {:>3.0}%  {} left  {:.1} MB/s  ETA {eta}",
        "#".repeat(filled.min(30)),
        "-".repeat(30 - filled.min(30)),
        fraction * 100.0,
        human_bytes(remaining_bytes),
        rate_bytes_per_sec as f64 / 1e6
    )
}

fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_bar_shows_share_rate_and_time_left() {
        let bar = progress_bar(1000 << 20, 250 << 20, 50_000_000);
        assert!(bar.starts_with("[#######################-------]  75%"), "{bar}");
        assert!(bar.contains("250.0 MB left"), "{bar}");
        assert!(bar.contains("50.0 MB/s"), "{bar}");
        assert!(bar.ends_with("ETA 0:00:05"), "{bar}");
        assert!(progress_bar(10, 10, 0).ends_with("ETA -"));
    }
}
