//! Timed HTTP GETs for the playback benchmarks: time to the response head (first byte) and to
//! the last byte.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use crate::api_bench::Http;

/// One GET's timings and body.
#[derive(Debug)]
pub struct Fetched {
    pub first_byte: Duration,
    pub total: Duration,
    pub body: Bytes,
}

pub async fn get(http: &Http, url: &str) -> anyhow::Result<Fetched> {
    let started = Instant::now();
    let response = http.request(hyper::Request::get(url).body(Full::new(Bytes::new()))?).await?;
    let first_byte = started.elapsed();
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    anyhow::ensure!(status.is_success(), "GET {url} answered {status}: {}", String::from_utf8_lossy(&body));
    Ok(Fetched { first_byte, total: started.elapsed(), body })
}

/// The URL a playlist line points at, relative to the playlist's own URL.
pub fn resolve(base_url: &str, line: &str) -> String {
    match base_url.rsplit_once('/') {
        Some((directory, _)) => format!("{directory}/{line}"),
        None => line.to_string(),
    }
}

/// A session's media playlist URL for `track` (from its master playlist URL).
pub fn media_playlist_url(master_url: &str, track: u32) -> String {
    format!("{}&TrackNumber={track}", master_url.replace("getHLSMasterPlaylist.m3u8", "getHLSMediaPlaylist.m3u8"))
}
