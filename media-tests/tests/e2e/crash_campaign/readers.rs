//! Readers that keep reading through the crashes: GetMedia tails through the SDK and an HLS
//! player's requests (session URL, playlists, the newest segment). They reconnect after every
//! failure; the campaign counts what they got and how often they had to start again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_kinesisvideoarchivedmedia::types::{HlsFragmentSelector, HlsFragmentSelectorType, HlsPlaybackMode};
use framelog_sdk::{Client, StartSelector};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;

const RETRY_PAUSE: Duration = Duration::from_millis(200);

#[derive(Debug, Default)]
pub struct Counts {
    pub items: AtomicU64,
    pub reconnects: AtomicU64,
}

/// Reads `stream` live with GetMedia until `stop`.
pub async fn tail(client: Client, stream: String, counts: Arc<Counts>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Acquire) {
        if let Ok(mut reader) = client.get_media(&stream, StartSelector::Now).await {
            while let Ok(Some(_)) =
                tokio::time::timeout(Duration::from_secs(5), reader.next_fragment()).await.unwrap_or(Ok(None))
            {
                counts.items.fetch_add(1, Ordering::Relaxed);
                if stop.load(Ordering::Acquire) {
                    return;
                }
            }
        }
        counts.reconnects.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// Plays `stream` over HLS (LIVE) until `stop`: a new session after each failure.
pub async fn play_hls(url: String, stream: String, counts: Arc<Counts>, stop: Arc<AtomicBool>) {
    let archived = crate::client::archived_media(&url);
    let http: HttpClient<_, Empty<Bytes>> = HttpClient::builder(TokioExecutor::new()).build_http();
    while !stop.load(Ordering::Acquire) {
        let session = archived
            .get_hls_streaming_session_url()
            .stream_name(&stream)
            .playback_mode(HlsPlaybackMode::Live)
            .hls_fragment_selector(
                HlsFragmentSelector::builder()
                    .fragment_selector_type(HlsFragmentSelectorType::ProducerTimestamp)
                    .build(),
            )
            .send()
            .await;
        if let Ok(Some(master)) = session.map(|s| s.hls_streaming_session_url) {
            while !stop.load(Ordering::Acquire) {
                match newest_segment(&http, &master).await {
                    Some(()) => counts.items.fetch_add(1, Ordering::Relaxed),
                    None => break,
                };
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        counts.reconnects.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// Master playlist -> media playlist -> its newest segment, as a player's reload does.
async fn newest_segment<C>(http: &HttpClient<C, Empty<Bytes>>, master: &str) -> Option<()>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let media = last_uri(&get(http, master).await?, master)?;
    let segment = last_uri(&get(http, &media).await?, &media)?;
    get(http, &segment).await.map(|_| ())
}

async fn get<C>(http: &HttpClient<C, Empty<Bytes>>, url: &str) -> Option<String>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let response = tokio::time::timeout(Duration::from_secs(5), http.get(url.parse().ok()?)).await.ok()?.ok()?;
    if !response.status().is_success() {
        return None;
    }
    let body = tokio::time::timeout(Duration::from_secs(5), response.into_body().collect()).await.ok()?.ok()?;
    Some(String::from_utf8_lossy(&body.to_bytes()).into_owned())
}

/// The last URI line of a playlist, resolved against the playlist's own URL.
fn last_uri(playlist: &str, base: &str) -> Option<String> {
    let line = playlist.lines().rev().find(|l| !l.is_empty() && !l.starts_with('#'))?;
    let directory = &base[..base.split('?').next()?.rfind('/')? + 1];
    Some(if line.starts_with("http") { line.to_string() } else { format!("{directory}{line}") })
}
