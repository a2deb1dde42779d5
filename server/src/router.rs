//! Every route of the one HTTP server, and which handler answers it (docs/architecture.md has
//! the same table for readers).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use tower_http::cors::{Any, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use crate::auth::MAX_BODY_BYTES;
use crate::state::AppState;
use crate::{
    access_log, analytics, auth, cloudwatch, console, consumers, firehose, guard, kds, kvs, metrics, rest_json,
};

/// Every rest-json operation `POST /{op}` answers (KVS control plane, consumers): the API fuzzer
/// walks them all.
pub fn rest_json_operations() -> Vec<&'static str> {
    let kvs_names = kvs::OPERATIONS.iter().map(|(name, _)| *name);
    kvs_names.chain(consumers::OPERATIONS.iter().map(|(name, _)| *name)).collect()
}

pub fn router(state: AppState) -> Router {
    Router::new()
        // GET / is the web console; KDS and Firehose clients POST to / with an X-Amz-Target.
        .route("/", get(console::index).fallback(aws_json))
        .route("/console/{file}", get(console::file))
        .route("/favicon.ico", get(console::favicon))
        .route("/metrics", get(metrics::handle))
        .route("/service/GraniteServiceVersion20100801/operation/{op}", post(cloudwatch::handle_rpc_v2))
        .route("/putMedia", post(kvs::put_media::handle))
        .route("/getMediaForFragmentList", post(kvs::archive::get_media_for_fragment_list))
        .route("/hls/v1/{file}", get(kvs::playback::handle).layer(playback_cors()))
        .route("/dash/v1/{file}", get(kvs::playback::handle).layer(playback_cors()))
        .route("/whep/v1/{name}", post(kvs::webrtc::offer).delete(kvs::webrtc::close).layer(whep_cors()))
        .route("/getImages", post(kvs::playback::images::handle))
        .route("/getClip", post(kvs::playback::clip::handle))
        .route("/getMedia", post(kvs::get_media::handle))
        .route("/{op}", post(rest_json::handle))
        // Any other path or method: what AWS answers a request for no operation.
        .fallback(|| async { kds::xml_error(StatusCode::NOT_FOUND, "UnknownOperationException", "") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Every route that is not public is authenticated, authorized and audited here.
        .layer(axum::middleware::from_fn_with_state(state.auth.clone(), auth::authorize))
        // Host, origin and content type first: cheap refusals before any signature work.
        .layer(axum::middleware::from_fn_with_state(state.guard.clone(), guard::guard))
        // A span per request with its id, operation and resource; an access-log line per answer.
        .layer(axum::middleware::from_fn_with_state(state.access_log.clone(), access_log::record))
        // Every answer carries a fresh request id (a v4 UUID), as AWS services send one.
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
        .with_state(state)
}

/// `POST /` carries three awsJson1_1 services (KDS, Firehose, Kinesis Data Analytics) and
/// CloudWatch's awsJson1_0, told apart by their `X-Amz-Target`; anything that names none is
/// KDS's to refuse, as before the others were here.
async fn aws_json(State(state): State<AppState>, method: Method, headers: HeaderMap, body: Bytes) -> Response {
    let background = state.background;
    if cloudwatch::is_cloudwatch(&headers) {
        cloudwatch::handle(state.metrics, background, "/", headers, body).await
    } else if analytics::is_analytics(&headers) {
        analytics::handle(state.analytics, background, method, headers, body).await
    } else if firehose::is_firehose(&headers) {
        firehose::handle(state.firehose, background, method, headers, body).await
    } else {
        kds::handle(State(state.kds), State(background), method, headers, body).await
    }
}

static REQUEST_ID: HeaderName = HeaderName::from_static("x-amzn-requestid");

/// WHEP players on other origins post offers and delete sessions by URL alone: the session token
/// in the URL is the authority. The answer's Location names the session's resource.
fn whep_cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::POST, Method::DELETE, Method::OPTIONS])
        .allow_headers([header::CONTENT_TYPE])
        .expose_headers([header::LOCATION])
}

/// Players on other origins (hls.js, dash.js) fetch playlists and segments by URL alone: the
/// session token in the URL is the authority, so any origin may read, with byte ranges.
fn playback_cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::HEAD, Method::OPTIONS])
        .allow_headers([header::RANGE, header::CONTENT_TYPE])
        .expose_headers([header::CONTENT_LENGTH, header::CONTENT_RANGE, header::ACCEPT_RANGES])
}
