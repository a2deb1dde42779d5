//! HTTP to the service: JSON calls and streamed requests/responses, signed with SigV4 when the
//! client has credentials.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::CertificateDer;
use serde_json::Value;

use crate::credentials::Credentials;
use crate::error::{Error, Result};

/// Every Kinesis Video API is signed for this service name (docs/spec/kvs.md#protocol).
pub(crate) const KINESIS_VIDEO: &str = "kinesisvideo";

pub(crate) type RequestBody = UnsyncBoxBody<Bytes, Infallible>;

/// Where and how to reach the service.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URL of the control plane, e.g. `http://127.0.0.1:4566`.
    pub endpoint: String,
    pub region: String,
    /// Requests are signed with SigV4 when set, and sent unsigned otherwise.
    pub credentials: Option<Credentials>,
    /// CAs trusted for `https://` endpoints besides the system's.
    pub ca_certificates: Vec<CertificateDer<'static>>,
}

impl ClientConfig {
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self { endpoint: endpoint.into(), region: "us-east-1".into(), credentials: None, ca_certificates: Vec::new() }
    }

    /// Also trusts the CAs of a PEM file (e.g. `framelog cert --dev`'s `ca.pem`).
    pub fn with_ca_file(mut self, path: &std::path::Path) -> Result<Self> {
        self.ca_certificates.extend(crate::connector::read_ca_file(path)?);
        Ok(self)
    }

    /// Credentials from the environment or the shared credentials file, when there are any.
    pub fn with_default_credentials(mut self) -> Result<Self> {
        if let Some(credentials) = Credentials::from_default_chain()? {
            self.credentials = Some(credentials);
        }
        Ok(self)
    }

    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = region.into();
        self
    }
}

/// What a signature covers of the body.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Payload<'a> {
    Bytes(&'a [u8]),
    /// A streamed body is signed as UNSIGNED-PAYLOAD, as the KVS producer SDKs do.
    Unsigned,
}

#[derive(Debug, Clone)]
pub(crate) struct Transport {
    http: HttpClient<HttpsConnector<HttpConnector>, RequestBody>,
    config: Arc<ClientConfig>,
}

impl Transport {
    pub fn new(config: ClientConfig) -> Self {
        let http =
            HttpClient::builder(TokioExecutor::new()).build(crate::connector::connector(&config.ca_certificates));
        Self { http, config: Arc::new(config) }
    }

    pub fn endpoint(&self) -> &str {
        self.config.endpoint.trim_end_matches('/')
    }

    /// A Kinesis Video POST to `base` + `path`, signed when credentials are configured.
    pub fn post(
        &self,
        base: &str,
        path: &str,
        headers: &[(&str, String)],
        payload: Payload<'_>,
        body: RequestBody,
    ) -> Result<Request<RequestBody>> {
        self.post_to(KINESIS_VIDEO, base, path, headers, payload, body)
    }

    /// A POST to `base` + `path` signed for `service` (`kinesis`, `firehose`) when credentials
    /// are configured.
    pub fn post_to(
        &self,
        service: &str,
        base: &str,
        path: &str,
        headers: &[(&str, String)],
        payload: Payload<'_>,
        body: RequestBody,
    ) -> Result<Request<RequestBody>> {
        let url = format!("{}{}", base.trim_end_matches('/'), path);
        let mut request = Request::builder().method(Method::POST).uri(&url);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let mut request = request.body(body).map_err(|e| Error::InvalidInput(e.to_string()))?;
        let uri = request.uri().clone();
        if let Some(authority) = uri.authority() {
            let host =
                http::HeaderValue::from_str(authority.as_str()).map_err(|e| Error::InvalidInput(e.to_string()))?;
            request.headers_mut().insert(http::header::HOST, host);
        }
        if let Some(credentials) = &self.config.credentials {
            self.sign(&mut request, service, credentials, payload)?;
        }
        Ok(request)
    }

    fn sign(
        &self,
        request: &mut Request<RequestBody>,
        service: &str,
        credentials: &Credentials,
        payload: Payload<'_>,
    ) -> Result<()> {
        use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
        let identity = aws_credential_types::Credentials::new(
            &credentials.access_key_id,
            &credentials.secret_access_key,
            credentials.session_token.clone(),
            None,
            "framelog-sdk",
        )
        .into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.config.region)
            .name(service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| Error::Signing(e.to_string()))?
            .into();
        let headers: Vec<(&str, &str)> =
            request.headers().iter().filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?))).collect();
        let body = match payload {
            Payload::Bytes(bytes) => SignableBody::Bytes(bytes),
            Payload::Unsigned => SignableBody::UnsignedPayload,
        };
        let uri = request.uri().to_string();
        let signable = SignableRequest::new(request.method().as_str(), &uri, headers.into_iter(), body)
            .map_err(|e| Error::Signing(e.to_string()))?;
        let (instructions, _) = sign(signable, &params).map_err(|e| Error::Signing(e.to_string()))?.into_parts();
        instructions.apply_to_request_http1x(request);
        Ok(())
    }

    pub async fn send(&self, request: Request<RequestBody>) -> Result<Response<Incoming>> {
        self.http.request(request).await.map_err(|e| Error::Transport(e.to_string()))
    }

    /// A signed POST of a JSON document.
    fn json_request(&self, base: &str, path: &str, document: &Value) -> Result<Request<RequestBody>> {
        let bytes = Bytes::from(serde_json::to_vec(document).map_err(|e| Error::InvalidInput(e.to_string()))?);
        self.post(
            base,
            path,
            &[("content-type", "application/json".into())],
            Payload::Bytes(&bytes),
            Full::new(bytes.clone()).boxed_unsync(),
        )
    }

    /// A rest-json call: POST a JSON document, read a JSON document (or a typed error).
    pub async fn json(&self, base: &str, path: &str, document: &Value) -> Result<Value> {
        let response = self.send(self.json_request(base, path, document)?).await?;
        let body = ok_body(response).await?;
        let body = body.collect().await.map_err(|e| Error::Transport(e.to_string()))?.to_bytes();
        if body.is_empty() {
            return Ok(Value::Object(Default::default()));
        }
        serde_json::from_slice(&body).map_err(|e| Error::Protocol(format!("{path}: {e}")))
    }

    /// An awsJson1_1 call (KDS, Firehose): POST `/` with `X-Amz-Target`, signed for `service`.
    pub async fn aws_json(&self, service: &str, target: &str, document: &Value) -> Result<Value> {
        let bytes = Bytes::from(serde_json::to_vec(document).map_err(|e| Error::InvalidInput(e.to_string()))?);
        let headers =
            [("content-type", "application/x-amz-json-1.1".to_string()), ("x-amz-target", target.to_string())];
        let request = self.post_to(
            service,
            self.endpoint(),
            "/",
            &headers,
            Payload::Bytes(&bytes),
            Full::new(bytes.clone()).boxed_unsync(),
        )?;
        let body = ok_body(self.send(request).await?).await?;
        let body = body.collect().await.map_err(|e| Error::Transport(e.to_string()))?.to_bytes();
        serde_json::from_slice(&body).map_err(|e| Error::Protocol(format!("{target}: {e}")))
    }

    /// POSTs a JSON document and returns the streamed body of a 200 (GetMedia and friends).
    pub async fn json_streamed(&self, base: &str, path: &str, document: &Value) -> Result<Incoming> {
        ok_body(self.send(self.json_request(base, path, document)?).await?).await
    }
}

/// The body of a 200, or the typed error of anything else.
pub(crate) async fn ok_body(response: Response<Incoming>) -> Result<Incoming> {
    let status = response.status();
    if status == StatusCode::OK {
        return Ok(response.into_body());
    }
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.map_err(|e| Error::Transport(e.to_string()))?.to_bytes();
    Err(service_error(status, &headers, &body))
}

/// Reads an AWS error from the `x-amzn-ErrorType` header (`Type:uri` form allowed) or the body's
/// `__type`, and the message from `Message` or `message`.
fn service_error(status: StatusCode, headers: &http::HeaderMap, body: &[u8]) -> Error {
    let document: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let from_header = headers.get("x-amzn-errortype").and_then(|v| v.to_str().ok()).map(str::to_string);
    let from_body = document.get("__type").and_then(Value::as_str).map(str::to_string);
    let error_type = from_header
        .or(from_body)
        .map(|t| t.split(':').next().unwrap_or_default().rsplit('#').next().unwrap_or_default().to_string())
        .unwrap_or_else(|| format!("HTTP{}", status.as_u16()));
    let message = ["Message", "message"]
        .iter()
        .find_map(|k| document.get(*k).and_then(Value::as_str))
        .unwrap_or_default()
        .to_string();
    Error::Service { status: status.as_u16(), error_type, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_errors_take_the_type_from_the_header_or_the_body() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "x-amzn-errortype",
            "ResourceNotFoundException:http://internal.amazon.com/".parse().expect("valid header"),
        );
        let error = service_error(StatusCode::NOT_FOUND, &headers, br#"{"Message":"gone"}"#);
        assert_eq!(error.error_type(), Some("ResourceNotFoundException"));
        assert!(error.to_string().contains("gone"));
        let error = service_error(
            StatusCode::BAD_REQUEST,
            &http::HeaderMap::new(),
            br#"{"__type":"a#InvalidArgumentException","message":"m"}"#,
        );
        assert_eq!(error.error_type(), Some("InvalidArgumentException"));
    }
}
