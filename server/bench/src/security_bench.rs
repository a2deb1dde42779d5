//! What security costs, each against the same work without it in the same run:
//! - PutRecords (500 × 1 KiB, 1 shard) with every signature verified against a credentials file,
//!   vs the open server that verifies none. The client sends the same pre-signed requests to
//!   both (signed once per body at start; the 15-minute window covers the run), so the difference
//!   is the server's verification.
//! - PutMedia of one stream over TLS vs plain HTTP, and into a stream stored encrypted vs plain.
//! - Full TLS handshakes per second (ECDSA P-256, no resumption) against a server on one core.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use crate::stats::{Row, percentile_ms};
use crate::target::Target;

type Https = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

const RECORDS_PER_CALL: usize = 500;
const RECORD_BYTES: usize = 1024;

/// A key and certificates made by the binary itself, as an operator would.
struct Setup {
    dir: tempfile::TempDir,
    access_key_id: String,
    secret_access_key: String,
}

impl Setup {
    fn new(binary: &Path) -> anyhow::Result<Setup> {
        let dir = tempfile::tempdir_in(".")?;
        let made = Command::new(binary).args(["cert", "--dev", "--out"]).arg(dir.path().join("tls")).output()?;
        anyhow::ensure!(made.status.success(), "framelog cert failed");
        let added = Command::new(binary)
            .args(["keys", "add", "bench", "--credentials"])
            .arg(dir.path().join("credentials.json"))
            .output()?;
        anyhow::ensure!(added.status.success(), "framelog keys add failed");
        let key: Value = serde_json::from_slice(&added.stdout)?;
        let field = |name: &str| key[name].as_str().map(str::to_string).ok_or_else(|| anyhow::anyhow!("no {name}"));
        Ok(Setup { access_key_id: field("AccessKeyId")?, secret_access_key: field("SecretAccessKey")?, dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn credentials_args(&self) -> Vec<OsString> {
        vec!["--credentials".into(), self.path("credentials.json").into()]
    }

    fn tls_args(&self) -> Vec<OsString> {
        vec![
            "--tls-cert".into(),
            self.path("tls/server.pem").into(),
            "--tls-key".into(),
            self.path("tls/server-key.pem").into(),
        ]
    }

    /// An HTTP(S) client trusting the dev CA; `resume` off makes every connection a full handshake.
    fn client(&self, resume: bool) -> anyhow::Result<Https> {
        let mut roots = rustls::RootCertStore::empty();
        use rustls_pki_types::pem::PemObject as _;
        for certificate in rustls_pki_types::CertificateDer::pem_file_iter(self.path("tls/ca.pem"))? {
            roots.add(certificate?)?;
        }
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        if !resume {
            tls.resumption = rustls::client::Resumption::disabled();
        }
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Client::builder(TokioExecutor::new()).build(connector))
    }

    /// Headers of a SigV4 signature for a POST of `body` to `url`; `None` signs a streamed body
    /// as UNSIGNED-PAYLOAD.
    fn sign(
        &self,
        url: &str,
        service: &str,
        headers: &[(&str, String)],
        body: Option<&[u8]>,
    ) -> anyhow::Result<Vec<(String, String)>> {
        use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
        let identity =
            aws_credential_types::Credentials::new(&self.access_key_id, &self.secret_access_key, None, None, "bench")
                .into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name(service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()?
            .into();
        let signable = SignableRequest::new(
            "POST",
            url,
            headers.iter().map(|(k, v)| (*k, v.as_str())),
            body.map_or(SignableBody::UnsignedPayload, SignableBody::Bytes),
        )?;
        let (instructions, _) = sign(signable, &params)?.into_parts();
        Ok(instructions.headers().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }
}

/// A signed request ready to send many times.
#[derive(Clone)]
struct Prepared {
    headers: Vec<(String, String)>,
    body: Bytes,
}

fn records_body(stream: &str, variant: usize) -> Bytes {
    let records: Vec<Value> = (0..RECORDS_PER_CALL)
        .map(|i| {
            let data: Vec<u8> = (0..RECORD_BYTES).map(|b| (b ^ i ^ variant) as u8).collect();
            json!({"Data": base64::engine::general_purpose::STANDARD.encode(data), "PartitionKey": format!("pk-{variant}-{i}")})
        })
        .collect();
    json!({"StreamName": stream, "Records": records}).to_string().into()
}

fn prepare_kds(setup: &Setup, target: &Target, op: &str, body: Bytes) -> anyhow::Result<Prepared> {
    let url = format!("http://{}/", target.address);
    let mut headers = vec![
        ("content-type", "application/x-amz-json-1.1".to_string()),
        ("x-amz-target", format!("Kinesis_20131202.{op}")),
        ("host", target.address.to_string()),
    ];
    let signed = setup.sign(&url, "kinesis", &headers, Some(&body))?;
    headers.retain(|(k, _)| *k != "host");
    let mut all: Vec<(String, String)> = headers.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    all.extend(signed);
    Ok(Prepared { headers: all, body })
}

async fn send(http: &Https, url: &str, prepared: &Prepared) -> anyhow::Result<Value> {
    let mut request = hyper::Request::post(url);
    for (name, value) in &prepared.headers {
        request = request.header(name, value);
    }
    let response = http.request(request.body(Full::new(prepared.body.clone()))?).await?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    anyhow::ensure!(status.is_success(), "{url} answered {status}: {}", String::from_utf8_lossy(&bytes));
    Ok(if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes)? })
}

/// PutRecords from `connections` loops for `duration` on one shard; records per second and p50/p99.
async fn put_records(
    setup: &Setup,
    target: &Target,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<(f64, f64, f64)> {
    let http = setup.client(true)?;
    let url = format!("http://{}/", target.address);
    let create =
        prepare_kds(setup, target, "CreateStream", json!({"StreamName": "sig", "ShardCount": 1}).to_string().into())?;
    send(&http, &url, &create).await?;
    let bodies: Vec<Prepared> =
        (0..8).map(|v| prepare_kds(setup, target, "PutRecords", records_body("sig", v))).collect::<Result<_, _>>()?;
    let bodies = Arc::new(bodies);
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for connection in 0..connections {
        let (http, bodies, url) = (http.clone(), bodies.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = connection;
            while Instant::now() < deadline {
                let sent = Instant::now();
                let answer = send(&http, &url, &bodies[n % bodies.len()]).await?;
                anyhow::ensure!(answer["FailedRecordCount"] == 0, "PutRecords reported failures");
                latencies.push(sent.elapsed());
                n += connections;
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let rate = (latencies.len() * RECORDS_PER_CALL) as f64 / elapsed.as_secs_f64();
    Ok((rate, percentile_ms(&latencies, 50.0), percentile_ms(&latencies, 99.0)))
}

fn scheme(tls: bool) -> &'static str {
    if tls { "https" } else { "http" }
}

/// Creates a video stream (sealed when `kms_key`) and pushes `upload` on one PutMedia
/// connection; the time until every fragment is PERSISTED.
async fn put_media(
    setup: &Setup,
    target: &Target,
    tls: bool,
    kms_key: bool,
    upload: Bytes,
    fragments: usize,
) -> anyhow::Result<Duration> {
    let http = setup.client(true)?;
    let base = format!("{}://{}", scheme(tls), target.address);
    let mut create = json!({"StreamName": "bench-video", "DataRetentionInHours": 24});
    if kms_key {
        create["KmsKeyId"] = "alias/aws/kinesisvideo".into();
    }
    let body = Bytes::from(create.to_string());
    let headers = vec![("content-type", "application/json".to_string()), ("host", target.address.to_string())];
    let signed = setup.sign(&format!("{base}/createStream"), "kinesisvideo", &headers, Some(&body))?;
    let mut all: Vec<(String, String)> = vec![("content-type".into(), "application/json".into())];
    all.extend(signed);
    send(&http, &format!("{base}/createStream"), &Prepared { headers: all, body }).await?;

    let media_headers = vec![
        ("x-amzn-stream-name", "bench-video".to_string()),
        ("x-amzn-fragment-timecode-type", "RELATIVE".to_string()),
        ("x-amzn-producer-start-timestamp", "1795650000.000".to_string()),
        ("x-amz-content-sha256", "UNSIGNED-PAYLOAD".to_string()),
        ("host", target.address.to_string()),
    ];
    let signed = setup.sign(&format!("{base}/putMedia"), "kinesisvideo", &media_headers, None)?;
    let mut request = hyper::Request::post(format!("{base}/putMedia"));
    for (name, value) in media_headers.iter().filter(|(k, _)| *k != "host") {
        request = request.header(*name, value);
    }
    for (name, value) in &signed {
        if name != "x-amz-content-sha256" {
            request = request.header(name, value);
        }
    }
    let started = Instant::now();
    let body = http.request(request.body(Full::new(upload))?).await?.into_body();
    crate::video_bench::await_persisted(body, fragments).await?;
    Ok(started.elapsed())
}

/// Full handshakes per second from `clients` concurrent loops for `duration`.
async fn handshakes(setup: &Setup, target: &Target, clients: usize, duration: Duration) -> anyhow::Result<f64> {
    let url = format!("https://localhost:{}/favicon.ico", target.address.port());
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        // A new client per request: no pooled connection, no session ticket.
        let client = setup.client(false)?;
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                let fresh = client.clone();
                let request = hyper::Request::get(&url).header("connection", "close").body(Full::new(Bytes::new()))?;
                let response = fresh.request(request).await?;
                response.into_body().collect().await?;
                done += 1;
            }
            Ok::<_, anyhow::Error>(done)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

pub fn run(
    binary: &Path,
    runtime: &tokio::runtime::Runtime,
    seconds: u64,
    fragments: usize,
) -> anyhow::Result<Vec<Row>> {
    let setup = Setup::new(binary)?;
    let mut rows = Vec::new();
    let duration = Duration::from_secs(seconds);

    let name = "PutRecords 500x1KiB, 1 shard, 8 conns, pre-signed";
    let mut results = Vec::new();
    for verified in [false, true] {
        let data = tempfile::tempdir_in(".")?;
        let extra = if verified { setup.credentials_args() } else { Vec::new() };
        let target = Target::framelog_with(binary, data.path(), &extra, None)?;
        results.push(runtime.block_on(put_records(&setup, &target, 8, duration))?);
    }
    let (off, on) = (results[0], results[1]);
    let row = |subject: &str, (rate, p50, p99): (f64, f64, f64), ratio| Row {
        p50_ms: Some(p50),
        p99_ms: Some(p99),
        mib_per_sec: rate * RECORD_BYTES as f64 / (1024.0 * 1024.0),
        ..Row::rate(name, subject, rate, ratio)
    };
    rows.push(row("SigV4 not verified (baseline)", off, None));
    rows.push(row("SigV4 verified, credentials file", on, Some(on.0 / off.0)));

    let upload = crate::video_bench::upload_bytes(fragments);
    let mib = upload.len() as f64 / (1024.0 * 1024.0);
    let media_name = format!("PutMedia 1 stream, {fragments} x 2 s 1080p fragments");
    let mut timed = Vec::new();
    for (tls, sealed) in [(false, false), (true, false), (false, true)] {
        let data = tempfile::tempdir_in(".")?;
        let mut extra = setup.credentials_args();
        if tls {
            extra.extend(setup.tls_args());
        }
        let target = Target::framelog_with(binary, data.path(), &extra, None)?;
        let upload = Bytes::from(upload.clone());
        timed.push(runtime.block_on(put_media(&setup, &target, tls, sealed, upload, fragments))?);
    }
    let plain = timed[0];
    let media_row = |subject: &str, elapsed: Duration, ratio| {
        Row::timed(&media_name, subject, fragments as f64, mib, elapsed, ratio)
    };
    rows.push(media_row("plain HTTP, unencrypted (baseline)", plain, None));
    rows.push(media_row("TLS", timed[1], Some(plain.as_secs_f64() / timed[1].as_secs_f64())));
    rows.push(media_row("encrypted at rest", timed[2], Some(plain.as_secs_f64() / timed[2].as_secs_f64())));

    let data = tempfile::tempdir_in(".")?;
    let mut extra = setup.credentials_args();
    extra.extend(setup.tls_args());
    let target = Target::framelog_with(binary, data.path(), &extra, Some(0))?;
    let rate = runtime.block_on(handshakes(&setup, &target, 4, duration))?;
    rows.push(Row::rate("TLS 1.3 full handshakes (ECDSA P-256), server on 1 core", "framelog", rate, None));
    Ok(rows)
}
