//! Authenticates one request: finds the SigV4 signature (the `Authorization` header, or a
//! presigned URL's `X-Amz-*` query), checks its date, scope and key, and verifies it with
//! framelog-sigv4. Each refusal is the error type and text AWS answers with.

use axum::http::request::Parts;
use framelog_sigv4::{Authorization, Request, SigV4Error, parse_authorization, verify};
use subtle::ConstantTimeEq as _;

use super::keys::{Key, KeyTable};
use crate::civil_date;
use crate::error::{ApiError, ErrorType};

/// How far a request's date may be from the server's clock.
const MAX_SKEW_SECS: i64 = 15 * 60;
/// The longest a presigned URL may live (AWS's limit: 7 days).
const MAX_PRESIGNED_SECS: i64 = 7 * 24 * 3600;
/// SHA-256 of nothing: what a streaming upload signs when it sends no `x-amz-content-sha256`
/// (AWS's C producer signs PutMedia this way).
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// What the signature must be scoped to, and the body as far as it is known.
#[derive(Debug)]
pub struct Expected<'a> {
    pub service: &'a str,
    pub region: &'a str,
    pub now_secs: i64,
    /// Hex SHA-256 of the buffered body; `None` for a streamed body.
    pub body_sha256: Option<&'a str>,
}

/// The access key id a request names, before it is verified (for the audit log).
pub fn claimed_key_id(parts: &Parts) -> Option<String> {
    let (header, _) = signature_source(parts).ok()?;
    parse_authorization(&header).ok().map(|auth| auth.access_key_id)
}

/// A request whose signature names a known key and is in date and scope, not yet verified.
#[derive(Debug)]
pub struct Identified<'k> {
    authorization: Authorization,
    amz_date: String,
    presigned: bool,
    pub key: &'k Key,
}

impl Identified<'_> {
    pub fn access_key_id(&self) -> &str {
        &self.authorization.access_key_id
    }
}

/// Everything that needs only the headers: run before a body is read, so an unsigned or
/// unknown caller never gets the server to buffer and hash a body for it.
pub fn identify<'k>(keys: &'k KeyTable, parts: &Parts, expected: &Expected) -> Result<Identified<'k>, ApiError> {
    let (header, presigned) = signature_source(parts)?;
    let authorization = parse_authorization(&header).map_err(|e| from_sigv4(e, &header))?;
    let amz_date = request_date(parts, presigned.as_ref(), &header)?;
    check_time(&amz_date, presigned.as_ref(), expected.now_secs)?;
    check_scope(&authorization, &amz_date, expected)?;
    let key = keys.get(&authorization.access_key_id).ok_or_else(unrecognized)?;
    check_session(key, parts, presigned.as_ref(), expected.now_secs)?;
    if presigned.is_none() && parts.headers.contains_key("x-amz-date") {
        require_signed(&authorization, "x-amz-date", "X-Amz-Date")?;
    }
    if parts.headers.contains_key("x-amz-content-sha256") {
        require_signed(&authorization, "x-amz-content-sha256", "X-Amz-Content-Sha256")?;
    }
    Ok(Identified { authorization, amz_date, presigned: presigned.is_some(), key })
}

/// Verifies the signature itself, once the body (or its absence, for a stream) is known.
pub fn verify_identified(parts: &Parts, identified: &Identified, expected: &Expected) -> Result<(), ApiError> {
    verify_signature(
        parts,
        &identified.authorization,
        identified.key,
        &identified.amz_date,
        identified.presigned,
        expected,
    )
}

/// The `X-Amz-*` parameters of a presigned URL.
#[derive(Debug)]
struct Presigned {
    date: String,
    expires_secs: i64,
    security_token: Option<String>,
}

/// The signature in header form, whether it came in the header or in the query.
fn signature_source(parts: &Parts) -> Result<(String, Option<Presigned>), ApiError> {
    let header = parts.headers.get(axum::http::header::AUTHORIZATION).map(|v| v.to_str().unwrap_or_default());
    let query: Vec<(String, String)> =
        form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes()).into_owned().collect();
    let param = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    match (header, param("X-Amz-Algorithm")) {
        (Some(_), Some(_)) => Err(ApiError::new(
            ErrorType::InvalidSignature,
            "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header.",
        )),
        (Some(header), None) => Ok((header.to_string(), None)),
        (None, Some(algorithm)) => {
            let header = format!(
                "{algorithm} Credential={}, SignedHeaders={}, Signature={}",
                param("X-Amz-Credential").unwrap_or_default(),
                param("X-Amz-SignedHeaders").unwrap_or_default(),
                param("X-Amz-Signature").unwrap_or_default()
            );
            // AWS requires X-Amz-Expires; a URL without one (or with garbage) is refused below.
            let expires_secs = param("X-Amz-Expires").and_then(|v| v.parse().ok()).unwrap_or(0);
            let date = param("X-Amz-Date").unwrap_or_default();
            Ok((header, Some(Presigned { date, expires_secs, security_token: param("X-Amz-Security-Token") })))
        }
        (None, None) => Err(ApiError::new(ErrorType::MissingAuthenticationToken, "Missing Authentication Token")),
    }
}

fn request_date(parts: &Parts, presigned: Option<&Presigned>, header: &str) -> Result<String, ApiError> {
    let date = match presigned {
        Some(presigned) => Some(presigned.date.clone()).filter(|d| !d.is_empty()),
        None => parts.headers.get("x-amz-date").and_then(|v| v.to_str().ok()).map(str::to_string),
    };
    date.ok_or_else(|| {
        ApiError::new(
            ErrorType::IncompleteSignature,
            format!(
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. \
                 Authorization={header}"
            ),
        )
    })
}

fn check_time(amz_date: &str, presigned: Option<&Presigned>, now_secs: i64) -> Result<(), ApiError> {
    let signed_secs = civil_date::parse_basic(amz_date).ok_or_else(|| {
        ApiError::new(
            ErrorType::IncompleteSignature,
            format!(
                "Date must be in ISO-8601 'basic format'. Got '{amz_date}'. See http://en.wikipedia.org/wiki/ISO_8601"
            ),
        )
    })?;
    let invalid = |message: String| ApiError::new(ErrorType::InvalidSignature, message);
    if signed_secs > now_secs + MAX_SKEW_SECS {
        return Err(invalid(format!(
            "Signature not yet current: {amz_date} is still later than {} ({} + 15 min.)",
            civil_date::basic(now_secs + MAX_SKEW_SECS),
            civil_date::basic(now_secs)
        )));
    }
    let oldest_secs = match presigned {
        Some(presigned) => {
            if !(1..=MAX_PRESIGNED_SECS).contains(&presigned.expires_secs) {
                return Err(invalid("X-Amz-Expires must be between 1 and 604800 seconds.".into()));
            }
            now_secs - presigned.expires_secs
        }
        None => now_secs - MAX_SKEW_SECS,
    };
    if signed_secs < oldest_secs {
        return Err(invalid(format!(
            "Signature expired: {amz_date} is now earlier than {} ({} - {} min.)",
            civil_date::basic(oldest_secs),
            civil_date::basic(now_secs),
            (now_secs - oldest_secs) / 60
        )));
    }
    Ok(())
}

fn check_scope(authorization: &Authorization, amz_date: &str, expected: &Expected) -> Result<(), ApiError> {
    let scope = &authorization.scope;
    let invalid = |message: String| ApiError::new(ErrorType::InvalidSignature, message);
    if !amz_date.starts_with(&scope.date) {
        return Err(invalid(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', \
             from '{amz_date}'.",
            scope.date,
            amz_date.get(..8).unwrap_or(amz_date)
        )));
    }
    if scope.service != expected.service {
        return Err(invalid(format!("Credential should be scoped to correct service: '{}'. ", expected.service)));
    }
    if scope.region != expected.region {
        return Err(invalid("Credential should be scoped to a valid region. ".into()));
    }
    Ok(())
}

fn unrecognized() -> ApiError {
    ApiError::new(ErrorType::UnrecognizedClient, "The security token included in the request is invalid.")
}

/// A key with a session token is usable only with that token, and only until it expires.
fn check_session(key: &Key, parts: &Parts, presigned: Option<&Presigned>, now_secs: i64) -> Result<(), ApiError> {
    let sent = match presigned {
        Some(presigned) => presigned.security_token.clone(),
        None => parts.headers.get("x-amz-security-token").and_then(|v| v.to_str().ok()).map(str::to_string),
    };
    match (&key.session_token, sent) {
        (None, None) => {}
        (Some(expected), Some(sent)) if bool::from(expected.as_bytes().ct_eq(sent.as_bytes())) => {}
        _ => return Err(unrecognized()),
    }
    if key.expiration_epoch_secs.is_some_and(|expires| now_secs >= expires as i64) {
        return Err(ApiError::new(ErrorType::ExpiredToken, "The security token included in the request is expired"));
    }
    Ok(())
}

fn require_signed(authorization: &Authorization, name: &str, shown: &str) -> Result<(), ApiError> {
    if authorization.signed_headers.iter().any(|h| h == name) {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorType::IncompleteSignature,
        format!("'{shown}' must be a 'SignedHeader' in the AWS Authorization."),
    ))
}

/// The payload hashes a valid signature may have used.
fn payload_candidates<'a>(parts: &'a Parts, expected: &Expected<'a>) -> Result<Vec<&'a str>, ApiError> {
    let declared = parts.headers.get("x-amz-content-sha256").and_then(|v| v.to_str().ok());
    Ok(match (declared, expected.body_sha256) {
        (Some(declared), None) => vec![declared],
        // Streamed without a declaration: AWS's C producer signs the empty hash, AWS's Rust
        // signer defaults to UNSIGNED-PAYLOAD without sending the header.
        (None, None) => vec![EMPTY_SHA256, UNSIGNED_PAYLOAD],
        // A buffered body is always covered by its signature: UNSIGNED-PAYLOAD would let a
        // captured request be replayed with another body.
        (Some(UNSIGNED_PAYLOAD), Some(_)) => {
            return Err(ApiError::new(
                ErrorType::InvalidSignature,
                "UNSIGNED-PAYLOAD is accepted only for streamed uploads (PutMedia).",
            ));
        }
        (Some(declared), Some(computed)) if declared.eq_ignore_ascii_case(computed) => vec![computed],
        (Some(_), Some(_)) => {
            return Err(ApiError::new(
                ErrorType::InvalidSignature,
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            ));
        }
        (None, Some(computed)) => vec![computed],
    })
}

fn verify_signature(
    parts: &Parts,
    authorization: &Authorization,
    key: &Key,
    amz_date: &str,
    presigned: bool,
    expected: &Expected,
) -> Result<(), ApiError> {
    let mut headers: Vec<(&str, &str)> =
        parts.headers.iter().filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?))).collect();
    // HTTP/2 carries the host in the :authority pseudo-header, not in a Host header.
    let authority = parts.uri.authority().map(|a| a.as_str());
    if !parts.headers.contains_key(axum::http::header::HOST)
        && let Some(authority) = authority
    {
        headers.push(("host", authority));
    }
    if parts.version == axum::http::Version::HTTP_2 {
        restore_hop_by_hop(&mut headers, &authorization.signed_headers);
    }
    let query = parts.uri.query().unwrap_or_default();
    let unsigned_query;
    let query = if presigned {
        unsigned_query =
            query.split('&').filter(|pair| !pair.starts_with("X-Amz-Signature=")).collect::<Vec<_>>().join("&");
        unsigned_query.as_str()
    } else {
        query
    };
    let mut result = Err(SigV4Error::Mismatch);
    for payload in payload_candidates(parts, expected)? {
        let request = Request {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query,
            headers: &headers,
            payload_sha256: payload,
        };
        result = verify(&request, authorization, &key.secret_access_key, amz_date);
        if !matches!(result, Err(SigV4Error::Mismatch)) {
            break;
        }
    }
    result.map_err(|e| from_sigv4(e, ""))
}

/// HTTP/2 forbids `connection` and `transfer-encoding`, so a client that signed them for
/// HTTP/1.1 and then negotiated h2 (libcurl, under AWS's C producer) sends neither. The producer
/// always signs the same values, so a signed but absent header of the two is put back with that
/// value; nothing else is ever invented.
fn restore_hop_by_hop(headers: &mut Vec<(&str, &str)>, signed: &[String]) {
    for (name, value) in [("connection", "keep-alive"), ("transfer-encoding", "chunked")] {
        let signed_here = signed.iter().any(|h| h == name);
        if signed_here && !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            headers.push((name, value));
        }
    }
}

fn from_sigv4(error: SigV4Error, header: &str) -> ApiError {
    match error {
        SigV4Error::Incomplete(message) if header.is_empty() || message.contains("Authorization=") => {
            ApiError::new(ErrorType::IncompleteSignature, message)
        }
        SigV4Error::Incomplete(message) => {
            ApiError::new(ErrorType::IncompleteSignature, format!("{message} Authorization={header}"))
        }
        SigV4Error::MissingSignedHeader(message) => ApiError::new(ErrorType::IncompleteSignature, message),
        SigV4Error::Mismatch => ApiError::new(
            ErrorType::InvalidSignature,
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret \
             Access Key and signing method. Consult the service documentation for details.",
        ),
    }
}
