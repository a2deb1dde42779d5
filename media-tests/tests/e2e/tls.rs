//! HTTPS with signature verification, end to end: the AWS Rust SDK (rustls, the dev CA as its
//! only trust), framelog-sdk's producer and reader, and the edge agent, against a server started
//! with `--tls-cert`, `--tls-key` and `--credentials` from `framelog cert --dev` and
//! `framelog keys add`.

use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::ShardIteratorType;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use framelog_media_tests::edge::{EdgeAgent, free_status_address};
use framelog_media_tests::{Secure, Server};
use framelog_sdk::{
    Client, ClientConfig, Credentials, EncodedFrame, NewStream, ProducerConfig, StartSelector, TrackSpec,
};

const START_MS: u64 = 1_764_200_000_000;

/// An HTTPS client that trusts exactly the server's development CA.
fn https_client(ca_file: &Path) -> aws_sdk_kinesis::config::SharedHttpClient {
    let pem = std::fs::read(ca_file).expect("ca.pem");
    let context = TlsContext::builder()
        .with_trust_store(TrustStore::empty().with_native_roots(false).with_pem_certificate(pem))
        .build()
        .expect("tls context");
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(context)
        .build_https()
}

fn kinesis(server: &Server, secure: &Secure, secret: &str) -> aws_sdk_kinesis::Client {
    let credentials = aws_sdk_kinesis::config::Credentials::new(&secure.access_key_id, secret, None, None, "test");
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
        .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
        .endpoint_url(server.url())
        .credentials_provider(credentials)
        .http_client(https_client(&secure.ca_file))
        .build();
    aws_sdk_kinesis::Client::from_conf(config)
}

fn kinesisvideo(server: &Server, secure: &Secure) -> aws_sdk_kinesisvideo::Client {
    let credentials = aws_sdk_kinesisvideo::config::Credentials::new(
        &secure.access_key_id,
        &secure.secret_access_key,
        None,
        None,
        "t",
    );
    let config = aws_sdk_kinesisvideo::Config::builder()
        .behavior_version(aws_sdk_kinesisvideo::config::BehaviorVersion::latest())
        .region(aws_sdk_kinesisvideo::config::Region::new("us-east-1"))
        .endpoint_url(server.url())
        .credentials_provider(credentials)
        .http_client(https_client(&secure.ca_file))
        .build();
    aws_sdk_kinesisvideo::Client::from_conf(config)
}

fn sdk_client(server: &Server, secure: &Secure) -> Client {
    let credentials = Credentials {
        access_key_id: secure.access_key_id.clone(),
        secret_access_key: secure.secret_access_key.clone(),
        session_token: None,
    };
    let config = ClientConfig::new(server.url()).with_credentials(credentials).with_ca_file(&secure.ca_file);
    Client::new(config.expect("the dev CA loads"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_rust_sdk_signs_over_https_and_a_wrong_secret_is_refused() {
    let (server, secure) = Server::start_secure().expect("server starts");
    assert!(server.url().starts_with("https://"));
    let client = kinesis(&server, &secure, &secure.secret_access_key);
    client.create_stream().stream_name("tls").shard_count(1).send().await.expect("create over TLS");
    let put = client
        .put_record()
        .stream_name("tls")
        .partition_key("k")
        .data(Blob::new(b"over tls".to_vec()))
        .send()
        .await
        .expect("put");
    let iterator = client
        .get_shard_iterator()
        .stream_name("tls")
        .shard_id(put.shard_id())
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect("iterator");
    let records = client
        .get_records()
        .shard_iterator(iterator.shard_iterator().expect("iterator"))
        .send()
        .await
        .expect("records");
    assert_eq!(records.records()[0].data().as_ref(), b"over tls");

    let wrong = kinesis(&server, &secure, "not-the-secret");
    let error = wrong.list_streams().send().await.expect_err("a wrong secret is refused");
    assert_eq!(error.into_service_error().meta().code(), Some("InvalidSignatureException"));

    let video = kinesisvideo(&server, &secure);
    video.create_stream().stream_name("tls-video").send().await.expect("create video stream");
    let endpoint = video
        .get_data_endpoint()
        .stream_name("tls-video")
        .api_name(aws_sdk_kinesisvideo::types::ApiName::GetMedia)
        .send()
        .await
        .expect("endpoint");
    assert_eq!(endpoint.data_endpoint(), Some(server.url().as_str()), "data calls stay on https");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_the_ca_cannot_connect() {
    let (server, secure) = Server::start_secure().expect("server starts");
    let credentials = aws_sdk_kinesis::config::Credentials::new(&secure.access_key_id, "x", None, None, "test");
    let other_ca = tempfile::tempdir().expect("dir");
    let made = std::process::Command::new(framelog_media_tests::framelog_bin().expect("bin"))
        .args(["cert", "--dev", "--out"])
        .arg(other_ca.path())
        .status()
        .expect("cert");
    assert!(made.success());
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
        .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
        .endpoint_url(server.url())
        .credentials_provider(credentials)
        .http_client(https_client(&other_ca.path().join("ca.pem")))
        .build();
    let error = aws_sdk_kinesis::Client::from_conf(config).list_streams().send().await.expect_err("untrusted");
    assert!(
        matches!(error, aws_sdk_kinesis::error::SdkError::DispatchFailure(_)),
        "another CA's client must fail the handshake: {error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framelog_sdk_produces_and_reads_over_https() {
    let (server, secure) = Server::start_secure().expect("server starts");
    let client = sdk_client(&server, &secure);
    client.ensure_stream(&NewStream::named("tls-cam")).await.expect("stream");
    let tracks = vec![TrackSpec::h264(1, vec![1, 0x64, 0, 0x1f, 0xff], 1280, 720)];
    let mut producer = client.producer(ProducerConfig::new("tls-cam", tracks)).await.expect("producer");
    let frames: Vec<EncodedFrame> = (0..75u64)
        .map(|i| EncodedFrame {
            track: 1,
            pts_ms: START_MS + i * 40,
            keyframe: i % 25 == 0,
            data: vec![i as u8; 300 + i as usize].into(),
        })
        .collect();
    for frame in &frames {
        producer.push_frame(frame.clone()).await.expect("push");
    }
    let report = producer.finish().await.expect("every fragment acknowledged over TLS");
    assert_eq!(report.delivered.len(), 3);
    let mut reader = client.get_media("tls-cam", StartSelector::Earliest).await.expect("get media");
    let mut read = Vec::new();
    while read.len() < frames.len() {
        let fragment = tokio::time::timeout(Duration::from_secs(10), reader.next_fragment()).await;
        let fragment = fragment.expect("in time").expect("readable").expect("a fragment");
        read.extend(fragment.frames.iter().map(|f| f.data.to_vec()));
    }
    assert_eq!(read, frames.iter().map(|f| f.data.to_vec()).collect::<Vec<_>>());

    let unsigned = Client::new(ClientConfig::new(server.url()).with_ca_file(&secure.ca_file).expect("ca"));
    let error = unsigned.list_streams().await.expect_err("unsigned requests are refused");
    assert_eq!(error.error_type(), Some("MissingAuthenticationTokenException"));
}

#[test]
fn the_edge_agent_uploads_over_https_with_its_ca_file_and_keys() {
    let (server, secure) = Server::start_secure().expect("server starts");
    let dir = tempfile::tempdir().expect("dir");
    let source = dir.path().join("source.mkv");
    let pipeline = format!(
        "videotestsrc num-buffers=90 pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1,format=I420 \
         ! x264enc key-int-max=30 bitrate=300 speed-preset=ultrafast ! h264parse ! matroskamux ! filesink location={}",
        source.display()
    );
    let made = std::process::Command::new("gst-launch-1.0").arg("-q").args(pipeline.split_whitespace()).status();
    assert!(made.expect("gst-launch-1.0").success());
    let status = free_status_address().expect("port");
    let config = format!(
        "server = \"{}\"\nbuffer_dir = \"{}\"\nstatus_listen = \"{status}\"\nmax_backoff_ms = 300\nca_file = \"{}\"\n\
         [credentials]\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n\
         [[stream]]\nname = \"edge-tls\"\nfragment_duration_ms = 1000\nsource = \"file://{}\"\nloop_file = false\n",
        server.url(),
        dir.path().join("buffer").display(),
        secure.ca_file.display(),
        secure.access_key_id,
        secure.secret_access_key,
        source.display()
    );
    let agent = EdgeAgent::start(&config, dir.path(), status).expect("agent");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stream = agent.status().expect("status")[0].clone();
        let done = !stream["recording"].as_bool().unwrap_or(true)
            && stream["buffered_fragments"] == 0
            && stream["recorded_fragments"].as_u64() > Some(0);
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "the agent did not upload in time:\n{}", agent.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let listed = runtime.block_on(async {
        let client = sdk_client(&server, &secure);
        client.list_fragments("edge-tls", framelog_sdk::TimestampKind::Server, 0, u64::MAX / 2).await
    });
    assert_eq!(listed.expect("list").len(), 3, "three one-second fragments from a three-second file");
}
