//! The middleware in front of every non-public route: buffer the body (except PutMedia's),
//! authenticate, evaluate the key's policy, audit, and pass the request on with its `Caller`.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest as _, Sha256};

use super::audit::{AuditEntry, now_ms};
use super::keys::Key;
use super::policy::Decision;
use super::signature::{Expected, Identified, claimed_key_id, identify, verify_identified};
use super::target::{Target, Unresolvable, classify, is_public, resource};
use super::{Auth, Caller, Mode};
use crate::error::{ApiError, ErrorType, Protocol};
use crate::listener::PeerAddr;

/// Large enough for a 10 MiB PutRecords request in base64 JSON (the router's body limit).
pub const MAX_BODY_BYTES: usize = 16 << 20;
/// Request bodies the server holds at once, all requests together (16 full-size PutRecords).
pub const MAX_IN_FLIGHT_BYTES: usize = 256 << 20;
/// How long a request waits for room in that budget before it is told to retry.
const BUDGET_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// A whole body must arrive within this: 16 MiB at 300 kB/s, far slower than any real client.
const BODY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

pub async fn authorize(State(auth): State<Arc<Auth>>, request: Request, next: Next) -> Response {
    let public_metrics = auth.public_metrics || matches!(auth.mode, Mode::Open);
    if is_public(request.method(), request.uri().path(), public_metrics) {
        return next.run(request).await;
    }
    let mut target = classify(request.method(), request.uri().path(), request.headers());
    let (parts, body) = request.into_parts();
    // Routing decodes a percent-encoded path (`/%64eleteStream` runs deleteStream) but the
    // action is named from the path as sent: no operation name needs encoding, so none may have it.
    if parts.uri.path().contains('%') {
        let unknown = ApiError::new(ErrorType::UnknownOperation, "Operation names are never percent-encoded.");
        return refusal(&target, &parts, &unknown);
    }
    match &auth.mode {
        Mode::Open => {
            let caller =
                Caller { access_key_id: claimed_key_id(&parts).unwrap_or_else(|| "anonymous".into()), user_name: None };
            serve_checked(&auth, &mut target, parts, body, None, caller, next).await
        }
        Mode::Keys(keys) => {
            let table = keys.current();
            let expected = expected(&auth, &target, None);
            // Headers first: an unknown or unsigned caller never gets a body buffered or hashed.
            let identified = match identify(&table, &parts, &expected) {
                Ok(identified) => identified,
                Err(error) => return refuse(&auth, &target, "-", &parts, &error),
            };
            let caller = Caller {
                access_key_id: identified.access_key_id().to_string(),
                user_name: Some(identified.key.user_name.clone()),
            };
            serve_checked(&auth, &mut target, parts, body, Some(&identified), caller, next).await
        }
    }
}

/// Buffers the body, resolves the resource, verifies the signature (keys mode), evaluates the
/// policy, audits, and runs the request.
async fn serve_checked(
    auth: &Auth,
    target: &mut Target,
    mut parts: Parts,
    body: Body,
    identified: Option<&Identified<'_>>,
    caller: Caller,
    next: Next,
) -> Response {
    let (body, buffered, _held) = if target.streaming {
        (body, None, None)
    } else {
        match buffer(auth, &parts, body).await {
            Ok((bytes, held)) => (Body::from(bytes.clone()), Some(bytes), Some(held)),
            Err(refused) => return refused.answer(target, &parts),
        }
    };
    let resolved = match resource(target, &parts.headers, buffered.as_deref(), auth.resources.as_ref()) {
        Ok(resolved) => resolved,
        Err(Unresolvable(message)) => {
            let error = ApiError::new(ErrorType::Serialization, message);
            return refuse(auth, target, &caller.access_key_id, &parts, &error);
        }
    };
    if let Some(action) = resolved.action {
        target.action = action;
    }
    crate::access_log::name_request(&target.action, &resolved.resource);
    if let Some(identified) = identified {
        let body_sha256 = buffered.as_ref().map(|bytes| hex::encode(Sha256::digest(bytes)));
        let expected = expected(auth, target, body_sha256.as_deref());
        let checked = verify_identified(&parts, identified, &expected)
            .and_then(|()| decide(auth, identified.key, target, &resolved.resource));
        if let Err(error) = checked {
            return refuse_on(auth, target, &caller.access_key_id, &resolved.resource, &parts, &error);
        }
    }
    if target.is_mutating() {
        audit(auth, target, &caller.access_key_id, &resolved.resource, &parts, "allowed");
    }
    parts.extensions.insert(caller);
    let mut response = next.run(Request::from_parts(parts, body)).await;
    let named = crate::access_log::Named { action: target.action.clone(), resource: resolved.resource };
    response.extensions_mut().insert(named);
    response
}

fn expected<'a>(auth: &'a Auth, target: &Target, body_sha256: Option<&'a str>) -> Expected<'a> {
    Expected { service: target.service, region: &auth.region, now_secs: (now_ms() / 1000) as i64, body_sha256 }
}

fn audit(auth: &Auth, target: &Target, key_id: &str, resource: &str, parts: &Parts, result: &str) {
    auth.audit.record(&AuditEntry {
        time_ms: now_ms(),
        key_id,
        action: &target.action,
        resource,
        source_ip: &source_ip(parts),
        result,
    });
}

/// A refusal before the resource is known: audited against the path.
fn refuse(auth: &Auth, target: &Target, key_id: &str, parts: &Parts, error: &ApiError) -> Response {
    let key_id = if key_id == "-" { claimed_key_id(parts).unwrap_or_else(|| "-".into()) } else { key_id.to_string() };
    refuse_on(auth, target, &key_id, parts.uri.path(), parts, error)
}

fn refuse_on(auth: &Auth, target: &Target, key_id: &str, resource: &str, parts: &Parts, error: &ApiError) -> Response {
    audit(auth, target, key_id, resource, parts, error.kind.name());
    refusal(target, parts, error)
}

/// Why a body was not buffered.
enum BufferRefusal {
    TooLarge,
    /// The server already holds `MAX_IN_FLIGHT_BYTES` of request bodies.
    Busy,
    /// The body did not arrive within `BODY_DEADLINE` (a client trickling bytes).
    TooSlow,
}

impl BufferRefusal {
    fn answer(&self, target: &Target, parts: &Parts) -> Response {
        match self {
            BufferRefusal::TooLarge => too_large(target, parts),
            BufferRefusal::TooSlow => StatusCode::REQUEST_TIMEOUT.into_response(),
            BufferRefusal::Busy => {
                let kind = if target.protocol == Protocol::Kds {
                    ErrorType::LimitExceeded
                } else {
                    ErrorType::ClientLimitExceeded
                };
                let error = ApiError::new(kind, "Too many request bytes in flight; retry with backoff.");
                refusal(target, parts, &error)
            }
        }
    }
}

/// Reads the whole body within `BODY_DEADLINE`, holding its size in the in-flight budget for as
/// long as the request runs (the permit is returned with the response).
async fn buffer(
    auth: &Auth,
    parts: &Parts,
    body: Body,
) -> Result<(Bytes, tokio::sync::OwnedSemaphorePermit), BufferRefusal> {
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES) {
        return Err(BufferRefusal::TooLarge);
    }
    // A chunked body may be as large as the limit: it holds that much until it is read.
    let reserve = declared.unwrap_or(MAX_BODY_BYTES).max(1) as u32;
    let held = tokio::time::timeout(BUDGET_WAIT, auth.in_flight.clone().acquire_many_owned(reserve))
        .await
        .map_err(|_| BufferRefusal::Busy)?
        .map_err(|_| BufferRefusal::Busy)?;
    let bytes = tokio::time::timeout(BODY_DEADLINE, axum::body::to_bytes(body, MAX_BODY_BYTES))
        .await
        .map_err(|_| BufferRefusal::TooSlow)?
        .map_err(|_| BufferRefusal::TooLarge)?;
    Ok((bytes, held))
}

/// The key's policy on this action and resource.
fn decide(auth: &Auth, key: &Key, target: &Target, resource: &str) -> Result<(), ApiError> {
    match key.policy.decide(&target.action, resource) {
        Decision::Allowed => Ok(()),
        decision => Err(denied(auth, key, target, resource, decision)),
    }
}

fn denied(auth: &Auth, key: &Key, target: &Target, resource: &str, decision: Decision) -> ApiError {
    let why = if decision == Decision::ExplicitlyDenied {
        "with an explicit deny in an identity-based policy".to_string()
    } else {
        format!("because no identity-based policy allows the {} action", target.action)
    };
    ApiError::new(
        ErrorType::AccessDenied,
        format!(
            "User: arn:aws:iam::{}:user/{} is not authorized to perform: {} on resource: {resource} {why}",
            auth.account_id, key.user_name, target.action
        ),
    )
}

fn source_ip(parts: &Parts) -> String {
    parts.extensions.get::<ConnectInfo<PeerAddr>>().map_or_else(|| "-".into(), |info| info.0.0.ip().to_string())
}

/// The refusal in the protocol the client speaks.
fn refusal(target: &Target, parts: &Parts, error: &ApiError) -> Response {
    match target.protocol {
        Protocol::Kds => {
            let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
            crate::kds::error_answer(error, content_type)
        }
        Protocol::Kvs => crate::rest_json::error_response(error),
        Protocol::CloudWatch => crate::cloudwatch::refusal(parts.uri.path(), &parts.headers, error),
    }
}

fn too_large(target: &Target, parts: &Parts) -> Response {
    match target.protocol {
        Protocol::Kds => StatusCode::PAYLOAD_TOO_LARGE.into_response(),
        Protocol::Kvs | Protocol::CloudWatch => refusal(
            target,
            parts,
            &ApiError::invalid(format!("The request body is larger than {MAX_BODY_BYTES} bytes.")),
        ),
    }
}
