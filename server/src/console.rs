//! The web console at `/`: static assets compiled into the binary (`server/console/static/`,
//! plus hls.js from the console's npm packages, see build.rs). The console talks to the same
//! public APIs as any client.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

const INDEX_HTML: &str = include_str!("../console/static/index.html");
const CONSOLE_JS: &str = include_str!("../console/static/console.js");
const PLAYER_JS: &str = include_str!("../console/static/player.js");
const GRID_JS: &str = include_str!("../console/static/grid.js");
const SEARCH_JS: &str = include_str!("../console/static/search.js");
const DATA_JS: &str = include_str!("../console/static/data.js");
const CONSOLE_CSS: &str = include_str!("../console/static/console.css");
const HLS_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hls.min.js"));

fn asset(content_type: &'static str, body: &'static [u8]) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Assets change with the binary; revalidating costs little on a local server.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /`.
pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML.as_bytes())
}

/// `GET /favicon.ico`: none, said plainly (browsers ask on every console load).
pub async fn favicon() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /console/{file}`.
pub async fn file(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "console.js" => asset("text/javascript; charset=utf-8", CONSOLE_JS.as_bytes()),
        "player.js" => asset("text/javascript; charset=utf-8", PLAYER_JS.as_bytes()),
        "grid.js" => asset("text/javascript; charset=utf-8", GRID_JS.as_bytes()),
        "search.js" => asset("text/javascript; charset=utf-8", SEARCH_JS.as_bytes()),
        "data.js" => asset("text/javascript; charset=utf-8", DATA_JS.as_bytes()),
        "console.css" => asset("text/css; charset=utf-8", CONSOLE_CSS.as_bytes()),
        "hls.min.js" if !HLS_JS.is_empty() => asset("text/javascript; charset=utf-8", HLS_JS),
        _ => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_every_asset_the_console_serves() {
        let assets = ["console.css", "hls.min.js", "player.js", "console.js", "grid.js", "search.js", "data.js"];
        for asset in assets.map(|name| format!("/console/{name}")) {
            assert!(INDEX_HTML.contains(asset.as_str()), "index.html links {asset}");
        }
    }
}
