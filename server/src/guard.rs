//! Checks in front of everything, before authentication: the Host header must name this server
//! (DNS rebinding: a page on another site resolving its name to 127.0.0.1), browsers on other
//! origins may not call the APIs unless allowed, and rest-json APIs take JSON only (a browser
//! may POST text/plain anywhere without asking first).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ErrorType};

/// The `[http]` settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpSettings {
    /// Host names (optionally `name:port`) clients may use; empty: loopback names when the server
    /// runs without credentials, anything otherwise (signatures cover the Host header).
    pub allowed_hosts: Vec<String>,
    /// Origins (`https://app.example.com`) whose pages may call the APIs from a browser.
    pub allowed_origins: Vec<String>,
}

/// What the guard enforces.
#[derive(Debug, Clone)]
pub struct Guard {
    pub settings: HttpSettings,
    /// Without a credentials file the server is only for this machine: loopback Host names only.
    pub loopback_hosts_only: bool,
    /// The host of `public_url`, which is always allowed.
    pub public_host: Option<String>,
}

pub async fn guard(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let host = request_host(&request);
    if !guard.host_allowed(host.as_deref()) {
        return (StatusCode::MISDIRECTED_REQUEST, "This server does not answer for that Host.\n").into_response();
    }
    let public = crate::auth::is_public(request.method(), request.uri().path(), true);
    if public {
        return next.run(request).await;
    }
    let origin = request.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_string);
    let cross_origin = origin.as_deref().filter(|o| !same_origin(o, host.as_deref()));
    if let Some(origin) = cross_origin {
        if !guard.settings.allowed_origins.iter().any(|allowed| allowed == origin) {
            let refused = ApiError::new(ErrorType::AccessDenied, "Cross-origin requests to this API are not allowed.");
            return crate::rest_json::error_response(&refused);
        }
        if request.method() == Method::OPTIONS {
            return with_cors(StatusCode::NO_CONTENT.into_response(), origin);
        }
    }
    if let Err(error) = check_content_type(request.method(), request.uri().path(), request.headers()) {
        return crate::rest_json::error_response(&error);
    }
    let response = next.run(request).await;
    match cross_origin {
        Some(origin) => with_cors(response, origin),
        None => response,
    }
}

impl Guard {
    fn host_allowed(&self, host: Option<&str>) -> bool {
        // Browsers always send a Host; only a hand-made HTTP/1.0 request lacks one, and no
        // rebinding page can make it.
        let Some(host) = host else { return true };
        let name = host_name(host);
        if self.settings.allowed_hosts.iter().any(|allowed| allowed == host || allowed == name) {
            return true;
        }
        if self.public_host.as_deref() == Some(name) {
            return true;
        }
        if !self.settings.allowed_hosts.is_empty() {
            return false;
        }
        !self.loopback_hosts_only || is_loopback_name(name)
    }
}

/// The Host header, or the authority of an HTTP/2 request.
fn request_host(request: &Request) -> Option<String> {
    let header = request.headers().get(header::HOST).and_then(|v| v.to_str().ok());
    header.map(str::to_string).or_else(|| request.uri().authority().map(|a| a.as_str().to_string()))
}

/// `name:port` → `name`; `[::1]:port` → `::1`.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

fn is_loopback_name(name: &str) -> bool {
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A page served by this server (the console) calls the APIs with its own origin.
fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let authority = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    host.is_some_and(|host| host.eq_ignore_ascii_case(authority))
}

/// rest-json calls with a body must say it is JSON; PutMedia streams MKV, KDS checks its own
/// content types in KDS's order, and CloudWatch's RPC v2 bodies are CBOR.
fn check_content_type(method: &Method, path: &str, headers: &HeaderMap) -> Result<(), ApiError> {
    if method != Method::POST
        || path == "/"
        || path == "/putMedia"
        || crate::cloudwatch::Wire::of(path, headers).is_some()
    {
        return Ok(());
    }
    let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let has_body = length.map_or(headers.contains_key(header::TRANSFER_ENCODING), |n| n > 0);
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let json = ["application/json", "application/x-amz-json-"].iter().any(|t| content_type.starts_with(t));
    if has_body && !json {
        return Err(ApiError::new(
            ErrorType::UnsupportedMediaType,
            format!("Content-Type must be application/json, not '{content_type}'."),
        ));
    }
    Ok(())
}

fn with_cors(mut response: Response, origin: &str) -> Response {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    headers.insert(header::VARY, HeaderValue::from_static("origin"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, OPTIONS"));
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(
            "authorization, content-type, x-amz-date, x-amz-target, x-amz-security-token, x-amz-content-sha256, \
             x-amz-user-agent, amz-sdk-invocation-id, amz-sdk-request",
        ),
    );
    headers
        .insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("x-amzn-requestid, x-amzn-errortype"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(loopback_hosts_only: bool, allowed_hosts: &[&str]) -> Guard {
        Guard {
            settings: HttpSettings {
                allowed_hosts: allowed_hosts.iter().map(|h| h.to_string()).collect(),
                allowed_origins: Vec::new(),
            },
            loopback_hosts_only,
            public_host: Some("video.example.com".into()),
        }
    }

    #[test]
    fn an_open_server_answers_loopback_names_only() {
        let open = guard(true, &[]);
        for host in ["127.0.0.1:4566", "localhost:4566", "[::1]:4566", "LOCALHOST", "video.example.com:443"] {
            assert!(open.host_allowed(Some(host)), "{host}");
        }
        for host in ["evil.example:4566", "10.0.0.5:4566", "127.0.0.1.evil.example"] {
            assert!(!open.host_allowed(Some(host)), "{host}");
        }
        assert!(open.host_allowed(None), "no browser omits the Host");
        assert!(guard(false, &[]).host_allowed(Some("camera-gateway.lan:4566")));
        let listed = guard(false, &["framelog.lan"]);
        assert!(listed.host_allowed(Some("framelog.lan:4566")));
        assert!(!listed.host_allowed(Some("other.lan:4566")));
    }

    #[test]
    fn rest_json_bodies_must_be_json() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("2"));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        let refused = check_content_type(&Method::POST, "/deleteStream", &headers).expect_err("text/plain");
        assert_eq!(refused.kind, ErrorType::UnsupportedMediaType);
        assert!(check_content_type(&Method::POST, "/putMedia", &headers).is_ok(), "PutMedia streams MKV");
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
        assert!(check_content_type(&Method::POST, "/deleteStream", &headers).is_ok());
        let mut empty = HeaderMap::new();
        empty.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        assert!(check_content_type(&Method::POST, "/listStreams", &empty).is_ok(), "no body, no type needed");
    }

    #[test]
    fn the_console_is_same_origin() {
        assert!(same_origin("http://127.0.0.1:4566", Some("127.0.0.1:4566")));
        assert!(!same_origin("http://evil.example", Some("127.0.0.1:4566")));
    }
}
