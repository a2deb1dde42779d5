//! Authentication and authorization, request by request, in process: requests signed by AWS's
//! own signer (aws-sigv4) against a server with a credentials file.

use std::path::Path;
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign};
use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use framelog_server::{AppState, Config, router};
use serde_json::{Value, json};
use tower::ServiceExt as _;

const REGION: &str = "us-east-1";

struct Key {
    id: String,
    secret: String,
    token: Option<String>,
}

struct App {
    router: Router,
    dir: tempfile::TempDir,
}

fn write_credentials(path: &Path, keys: Value) {
    std::fs::write(path, serde_json::to_vec(&json!({ "Keys": keys })).expect("json")).expect("written");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
}

fn allow(actions: Value, resources: Value) -> Value {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": resources}]})
}

impl App {
    /// A server whose credentials file holds: `admin` (everything), `reader` (Describe*/List*
    /// except on stream `secret`), and `temp` (a session token).
    fn new() -> App {
        let dir = tempfile::tempdir().expect("tempdir");
        let credentials = dir.path().join("credentials.json");
        let reader_policy = json!({"Statement": [
            {"Effect": "Allow", "Action": ["kinesis:Describe*", "kinesis:List*", "kinesisvideo:Describe*"], "Resource": "*"},
            {"Effect": "Deny", "Action": "*", "Resource": ["arn:aws:kinesis:*:*:stream/secret", "arn:aws:kinesisvideo:*:*:stream/secret/*"]}
        ]});
        write_credentials(
            &credentials,
            json!([
                {"UserName": "admin", "AccessKeyId": "AKADMIN", "SecretAccessKey": "admin-secret", "Policy": allow(json!("*"), json!("*"))},
                {"UserName": "reader", "AccessKeyId": "AKREADER", "SecretAccessKey": "reader-secret", "Policy": reader_policy},
                {"UserName": "temp", "AccessKeyId": "ASTEMP", "SecretAccessKey": "temp-secret", "SessionToken": "session-token-1",
                 "Policy": allow(json!("*"), json!("*"))},
            ]),
        );
        let mut config = Config { data_dir: dir.path().join("data"), ..Config::default() };
        config.auth.credentials_file = Some(credentials);
        let opened = AppState::open(&config, "127.0.0.1:4566".parse().expect("address")).expect("state opens");
        App { router: router(opened.state), dir }
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, Option<String>, Value) {
        let response = self.router.clone().oneshot(request).await.expect("the router always answers");
        let status = response.status();
        let header_type = response
            .headers()
            .get("x-amzn-ErrorType")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(':').next().unwrap_or_default().to_string());
        let bytes = to_bytes(response.into_body(), 1 << 20).await.expect("body");
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let error_type = header_type.or_else(|| body["__type"].as_str().map(str::to_string));
        (status, error_type, body)
    }

    fn audit_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("data/audit/audit.log")).unwrap_or_default()
    }
}

fn admin() -> Key {
    Key { id: "AKADMIN".into(), secret: "admin-secret".into(), token: None }
}

fn reader() -> Key {
    Key { id: "AKREADER".into(), secret: "reader-secret".into(), token: None }
}

struct Call<'a> {
    path: &'a str,
    service: &'a str,
    headers: Vec<(&'a str, String)>,
    body: String,
    time: SystemTime,
    presigned: bool,
}

impl<'a> Call<'a> {
    fn kds(op: &str, document: Value) -> Call<'a> {
        Call {
            path: "/",
            service: "kinesis",
            headers: vec![
                ("content-type", "application/x-amz-json-1.1".into()),
                ("x-amz-target", format!("Kinesis_20131202.{op}")),
            ],
            body: document.to_string(),
            time: SystemTime::now(),
            presigned: false,
        }
    }

    fn kvs(path: &'a str, document: Value) -> Call<'a> {
        Call {
            path,
            service: "kinesisvideo",
            headers: vec![("content-type", "application/json".into())],
            body: document.to_string(),
            time: SystemTime::now(),
            presigned: false,
        }
    }

    /// Signs with AWS's signer, as boto3 and the SDKs do.
    fn signed(self, key: &Key) -> Request<Body> {
        let mut headers = self.headers.clone();
        headers.push(("host", "127.0.0.1:4566".into()));
        let identity =
            aws_credential_types::Credentials::new(&key.id, &key.secret, key.token.clone(), None, "test").into();
        let mut settings = SigningSettings::default();
        if self.presigned {
            settings.signature_location = SignatureLocation::QueryParams;
            settings.expires_in = Some(Duration::from_secs(300));
        }
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(REGION)
            .name(self.service)
            .time(self.time)
            .settings(settings)
            .build()
            .expect("params")
            .into();
        let url = format!("http://127.0.0.1:4566{}", self.path);
        let signable = SignableRequest::new(
            "POST",
            &url,
            headers.iter().map(|(k, v)| (*k, v.as_str())),
            SignableBody::Bytes(self.body.as_bytes()),
        )
        .expect("signable");
        let (instructions, _) = sign(signable, &params).expect("signs").into_parts();
        let mut request = Request::post(self.path);
        for (name, value) in &headers {
            request = request.header(*name, value);
        }
        let mut request = request.body(Body::from(self.body)).expect("request");
        instructions.apply_to_request_http1x(&mut request);
        // The router sees the path and query only, as a server does.
        let path_and_query = request.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
        *request.uri_mut() = path_and_query.parse().expect("uri");
        request
    }
}

#[tokio::test]
async fn a_valid_signature_is_accepted_and_a_wrong_secret_is_refused_with_aws_text() {
    let app = App::new();
    let (status, _, body) =
        app.send(Call::kds("CreateStream", json!({"StreamName": "s", "ShardCount": 1})).signed(&admin())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let wrong = Key { secret: "not-the-secret".into(), ..admin() };
    let (status, error, body) = app.send(Call::kds("ListStreams", json!({})).signed(&wrong)).await;
    assert_eq!((status.as_u16(), error.as_deref()), (400, Some("InvalidSignatureException")));
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("The request signature we calculated does not match the signature you provided."),
        "{body}"
    );
    let (status, error, _) = app.send(Call::kvs("/listStreams", json!({})).signed(&wrong)).await;
    assert_eq!((status.as_u16(), error.as_deref()), (403, Some("InvalidSignatureException")));
}

#[tokio::test]
async fn unknown_keys_missing_signatures_and_old_dates_get_their_own_errors() {
    let app = App::new();
    let stranger = Key { id: "AKNOBODY".into(), secret: "x".into(), token: None };
    let (_, error, body) = app.send(Call::kds("ListStreams", json!({})).signed(&stranger)).await;
    assert_eq!(error.as_deref(), Some("UnrecognizedClientException"));
    assert_eq!(body["message"], "The security token included in the request is invalid.");

    let unsigned = Request::post("/listStreams").header("content-type", "application/json").body(Body::from("{}"));
    let (status, error, _) = app.send(unsigned.expect("request")).await;
    assert_eq!((status.as_u16(), error.as_deref()), (403, Some("MissingAuthenticationTokenException")));

    let mut old = Call::kds("ListStreams", json!({}));
    old.time = SystemTime::now() - Duration::from_secs(20 * 60);
    let (_, error, body) = app.send(old.signed(&admin())).await;
    assert_eq!(error.as_deref(), Some("InvalidSignatureException"));
    assert!(body["message"].as_str().unwrap_or_default().starts_with("Signature expired: "), "{body}");

    let mut wrong_service = Call::kds("ListStreams", json!({}));
    wrong_service.service = "kinesisvideo";
    let (_, error, body) = app.send(wrong_service.signed(&admin())).await;
    assert_eq!(error.as_deref(), Some("InvalidSignatureException"));
    assert_eq!(body["message"], "Credential should be scoped to correct service: 'kinesis'. ");
}

#[tokio::test]
async fn a_tampered_body_fails_the_signature() {
    let app = App::new();
    let mut request = Call::kds("CreateStream", json!({"StreamName": "a", "ShardCount": 1})).signed(&admin());
    *request.body_mut() = Body::from(json!({"StreamName": "b", "ShardCount": 1}).to_string());
    let (_, error, _) = app.send(request).await;
    assert_eq!(error.as_deref(), Some("InvalidSignatureException"));
}

#[tokio::test]
async fn policies_allow_deny_and_name_the_user_in_the_refusal() {
    let app = App::new();
    for name in ["open", "secret"] {
        let call = Call::kds("CreateStream", json!({"StreamName": name, "ShardCount": 1}));
        assert_eq!(app.send(call.signed(&admin())).await.0, StatusCode::OK);
    }
    let (status, _, _) =
        app.send(Call::kds("DescribeStreamSummary", json!({"StreamName": "open"})).signed(&reader())).await;
    assert_eq!(status, StatusCode::OK);
    let (_, error, body) =
        app.send(Call::kds("DescribeStreamSummary", json!({"StreamName": "secret"})).signed(&reader())).await;
    assert_eq!(error.as_deref(), Some("AccessDeniedException"));
    assert_eq!(
        body["message"],
        "User: arn:aws:iam::000000000000:user/reader is not authorized to perform: kinesis:DescribeStreamSummary on \
         resource: arn:aws:kinesis:us-east-1:000000000000:stream/secret with an explicit deny in an identity-based policy"
    );
    let (_, error, body) = app.send(Call::kds("DeleteStream", json!({"StreamName": "open"})).signed(&reader())).await;
    assert_eq!(error.as_deref(), Some("AccessDeniedException"));
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .ends_with("because no identity-based policy allows the kinesis:DeleteStream action")
    );
    // The stream is still there: the refusal changed nothing.
    let (status, _, _) =
        app.send(Call::kds("DescribeStreamSummary", json!({"StreamName": "open"})).signed(&admin())).await;
    assert_eq!(status, StatusCode::OK);

    let log = app.audit_log();
    let lines: Vec<Value> = log.lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
    assert!(
        lines
            .iter()
            .any(|l| l["action"] == "kinesis:CreateStream" && l["result"] == "allowed" && l["key_id"] == "AKADMIN")
    );
    assert!(lines.iter().any(|l| l["action"] == "kinesis:DeleteStream" && l["result"] == "AccessDeniedException"));
    assert!(
        !lines.iter().any(|l| l["action"] == "kinesis:DescribeStreamSummary" && l["result"] == "allowed"),
        "reads are not audited"
    );
    assert!(!log.contains("admin-secret"), "no secret in the audit log");
}

#[tokio::test]
async fn video_stream_policies_match_the_stream_arn_with_its_creation_time() {
    let app = App::new();
    let (status, _, _) = app.send(Call::kvs("/createStream", json!({"StreamName": "secret"})).signed(&admin())).await;
    assert_eq!(status, StatusCode::OK);
    let (status, error, _) =
        app.send(Call::kvs("/describeStream", json!({"StreamName": "secret"})).signed(&reader())).await;
    assert_eq!((status.as_u16(), error.as_deref()), (403, Some("AccessDeniedException")));
    let (status, _, body) =
        app.send(Call::kvs("/describeStream", json!({"StreamName": "nope"})).signed(&reader())).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn temporary_keys_need_their_session_token() {
    let app = App::new();
    let with_token = Key { id: "ASTEMP".into(), secret: "temp-secret".into(), token: Some("session-token-1".into()) };
    let (status, _, _) = app.send(Call::kds("ListStreams", json!({})).signed(&with_token)).await;
    assert_eq!(status, StatusCode::OK);
    let without = Key { token: None, ..with_token };
    let (_, error, _) = app.send(Call::kds("ListStreams", json!({})).signed(&without)).await;
    assert_eq!(error.as_deref(), Some("UnrecognizedClientException"));
    let wrong = Key { token: Some("session-token-2".into()), ..without };
    let (_, error, _) = app.send(Call::kds("ListStreams", json!({})).signed(&wrong)).await;
    assert_eq!(error.as_deref(), Some("UnrecognizedClientException"));
}

#[tokio::test]
async fn presigned_urls_are_verified_too() {
    let app = App::new();
    let mut call = Call::kvs("/listStreams", json!({}));
    call.presigned = true;
    let request = call.signed(&admin());
    assert!(request.uri().query().unwrap_or_default().contains("X-Amz-Signature="));
    let (status, _, body) = app.send(request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut call = Call::kvs("/listStreams", json!({}));
    call.presigned = true;
    let mut request = call.signed(&admin());
    let tampered = request.uri().to_string().replace("X-Amz-Expires=300", "X-Amz-Expires=900");
    *request.uri_mut() = tampered.parse().expect("uri");
    let (_, error, _) = app.send(request).await;
    assert_eq!(error.as_deref(), Some("InvalidSignatureException"));
}

#[tokio::test]
async fn playback_urls_and_the_console_need_no_signature() {
    let app = App::new();
    let console = app.send(Request::get("/").body(Body::empty()).expect("request")).await;
    assert_eq!(console.0, StatusCode::OK);
    let playlist = Request::get("/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken=forged").body(Body::empty());
    let (status, error, _) = app.send(playlist.expect("request")).await;
    assert_eq!(
        (status.as_u16(), error.as_deref()),
        (403, Some("AccessDeniedException")),
        "the token, not SigV4, decides"
    );
    let metrics = app.send(Request::get("/metrics").body(Body::empty()).expect("request")).await;
    assert_eq!(metrics.1.as_deref(), Some("MissingAuthenticationTokenException"));
}

#[test]
fn without_credentials_the_server_refuses_a_network_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config { data_dir: dir.path().to_path_buf(), ..Config::default() };
    let refused = AppState::open(&config, "0.0.0.0:4566".parse().expect("address")).map(|_| ());
    let error = refused.expect_err("an open server on the network must not start");
    let chain = format!("{error}: {}", std::error::Error::source(&error).map(|s| s.to_string()).unwrap_or_default());
    assert!(chain.contains("refusing to listen on 0.0.0.0:4566 without a credentials file"), "{chain}");
    assert!(AppState::open(&config, "127.0.0.1:4566".parse().expect("address")).is_ok());
}

#[tokio::test]
async fn hop_by_hop_headers_signed_for_http1_are_restored_on_http2_only() {
    let app = App::new();
    let mut call = Call::kvs("/listStreams", json!({}));
    call.headers.push(("connection", "keep-alive".into()));
    let strip = |mut request: Request<Body>, version| {
        request.headers_mut().remove("connection");
        *request.version_mut() = version;
        request
    };
    let http2 = strip(call.signed(&admin()), axum::http::Version::HTTP_2);
    assert_eq!(app.send(http2).await.0, StatusCode::OK, "h2 cannot carry Connection; the producer's value is restored");
    let mut call = Call::kvs("/listStreams", json!({}));
    call.headers.push(("connection", "keep-alive".into()));
    let http1 = strip(call.signed(&admin()), axum::http::Version::HTTP_11);
    let (_, error, _) = app.send(http1).await;
    assert_eq!(error.as_deref(), Some("IncompleteSignatureException"), "HTTP/1.1 must carry what it signed");
}

#[tokio::test]
async fn the_policy_sees_the_stream_the_operation_acts_on() {
    let app = App::new();
    for name in ["open", "secret"] {
        let call = Call::kds("CreateStream", json!({"StreamName": name, "ShardCount": 1}));
        assert_eq!(app.send(call.signed(&admin())).await.0, StatusCode::OK);
    }
    // KDS takes StreamName before StreamARN: naming an allowed ARN beside it changes nothing.
    let both = json!({"StreamName": "secret", "StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/open"});
    let (_, error, _) = app.send(Call::kds("DescribeStreamSummary", both).signed(&reader())).await;
    assert_eq!(error.as_deref(), Some("AccessDeniedException"));
    // A body the check cannot read the way the operation will is refused, not evaluated as `*`.
    let mut duplicate = Call::kds("DescribeStreamSummary", json!({}));
    duplicate.body = r#"{"StreamName":"open","StreamName":"secret"}"#.to_string();
    let (_, error, _) = app.send(duplicate.signed(&reader())).await;
    assert_eq!(error.as_deref(), Some("SerializationException"));
}

#[tokio::test]
async fn encoded_paths_and_unsigned_bodies_are_refused() {
    let app = App::new();
    let (status, error, _) = app.send(Call::kvs("/%64eleteStream", json!({"StreamName": "x"})).signed(&admin())).await;
    assert_eq!((status.as_u16(), error.as_deref()), (400, Some("UnknownOperationException")));
    let mut unsigned = Call::kds("ListStreams", json!({}));
    unsigned.headers.push(("x-amz-content-sha256", "UNSIGNED-PAYLOAD".into()));
    let (_, error, body) = app.send(unsigned.signed(&admin())).await;
    assert_eq!(error.as_deref(), Some("InvalidSignatureException"), "{body}");
}
