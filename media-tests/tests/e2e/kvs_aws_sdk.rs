//! The AWS Rust SDK crates for Kinesis Video (`aws-sdk-kinesisvideo`, `-kinesisvideomedia`,
//! `-kinesisvideoarchivedmedia`) against a real server, configured as a user would: control
//! plane, GetDataEndpoint, ListFragments, GetMedia and GetMediaForFragmentList, and typed errors.

use std::time::Duration;

use aws_sdk_kinesisvideo::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesisvideo::types::{
    ApiName, ComparisonOperator, Status, StreamNameCondition, UpdateDataRetentionOperation,
};
use aws_sdk_kinesisvideoarchivedmedia::primitives::DateTime;
use aws_sdk_kinesisvideoarchivedmedia::types::{FragmentSelector, FragmentSelectorType, TimestampRange};
use aws_sdk_kinesisvideomedia::primitives::ByteStream;
use aws_sdk_kinesisvideomedia::types::{StartSelector, StartSelectorType};
use framelog_media::{Event, Fragmenter, Limits};
use framelog_media_tests::Server;
use framelog_sdk::{ClientConfig, EncodedFrame, ProducerConfig, TrackSpec};

const START_MS: u64 = 1_764_100_000_000;

fn credentials() -> Credentials {
    Credentials::new("AKIDUMMY", "dummy", None, None, "static")
}

fn http() -> aws_smithy_http_client::Builder {
    aws_smithy_http_client::Builder::new()
}

fn kinesisvideo(url: &str) -> aws_sdk_kinesisvideo::Client {
    let config = aws_sdk_kinesisvideo::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(credentials())
        .http_client(http().build_http())
        .build();
    aws_sdk_kinesisvideo::Client::from_conf(config)
}

fn media(url: &str) -> aws_sdk_kinesisvideomedia::Client {
    let config = aws_sdk_kinesisvideomedia::Config::builder()
        .behavior_version(aws_sdk_kinesisvideomedia::config::BehaviorVersion::latest())
        .region(aws_sdk_kinesisvideomedia::config::Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(credentials())
        .http_client(http().build_http())
        .build();
    aws_sdk_kinesisvideomedia::Client::from_conf(config)
}

/// Uploads `seconds` one-second fragments of a single H.264 track through framelog-sdk.
async fn upload(url: &str, stream: &str, seconds: u64) -> Vec<String> {
    let client = framelog_sdk::Client::new(ClientConfig::new(url));
    let tracks = vec![TrackSpec::h264(1, vec![1, 0x42, 0, 0x1e, 0xff], 320, 240)];
    let mut producer = client.producer(ProducerConfig::new(stream, tracks)).await.expect("producer");
    for ms in (0..seconds * 1000).step_by(100) {
        let data: Vec<u8> = (0..100u64).map(|i| (i + ms) as u8).collect();
        let frame = EncodedFrame { track: 1, pts_ms: START_MS + ms, keyframe: ms % 1000 == 0, data: data.into() };
        producer.push_frame(frame).await.expect("push");
    }
    let report = producer.finish().await.expect("finish");
    report.delivered.into_iter().map(|d| d.fragment_number.expect("persisted")).collect()
}

/// Reads clusters from an MKV chunk stream until `count` have arrived; returns their timecodes.
async fn cluster_timecodes(mut body: ByteStream, count: usize) -> Vec<u64> {
    let mut fragmenter = Fragmenter::new(Limits::default());
    let mut timecodes = Vec::new();
    while timecodes.len() < count {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next()).await.expect("data within 10 s");
        let Some(chunk) = chunk else { break };
        fragmenter.push(&chunk.expect("readable body"));
        while let Some(event) = fragmenter.next_event().expect("valid MKV") {
            if let Event::Cluster(cluster) = event {
                timecodes.push(cluster.timecode);
            }
        }
    }
    timecodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_through_aws_sdk_kinesisvideo() {
    let server = Server::start().expect("server starts");
    let client = kinesisvideo(&server.url());
    let arn = client
        .create_stream()
        .stream_name("door-cam")
        .media_type("video/h264")
        .data_retention_in_hours(24)
        .tags("site", "berlin")
        .send()
        .await
        .expect("create")
        .stream_arn
        .expect("arn");
    client.create_stream().stream_name("yard-cam").send().await.expect("create default retention");

    let info =
        client.describe_stream().stream_name("door-cam").send().await.expect("describe").stream_info.expect("info");
    assert_eq!(info.stream_arn(), Some(arn.as_str()));
    assert_eq!(info.status(), Some(&Status::Active));
    assert_eq!(info.data_retention_in_hours(), Some(24));
    assert_eq!(info.media_type(), Some("video/h264"));
    let yard = client.describe_stream().stream_arn(
        client
            .describe_stream()
            .stream_name("yard-cam")
            .send()
            .await
            .expect("d")
            .stream_info
            .expect("i")
            .stream_arn
            .expect("a"),
    );
    assert_eq!(yard.send().await.expect("by arn").stream_info.expect("info").data_retention_in_hours(), Some(168));

    let condition = StreamNameCondition::builder()
        .comparison_operator(ComparisonOperator::BeginsWith)
        .comparison_value("door")
        .build();
    let listed = client.list_streams().stream_name_condition(condition).send().await.expect("list");
    let names: Vec<&str> = listed.stream_info_list().iter().filter_map(|s| s.stream_name()).collect();
    assert_eq!(names, ["door-cam"]);

    client
        .update_data_retention()
        .stream_name("door-cam")
        .current_version(info.version().expect("version"))
        .operation(UpdateDataRetentionOperation::IncreaseDataRetention)
        .data_retention_change_in_hours(6)
        .send()
        .await
        .expect("increase");
    let stale = client
        .update_data_retention()
        .stream_name("door-cam")
        .current_version(info.version().expect("version"))
        .operation(UpdateDataRetentionOperation::DecreaseDataRetention)
        .data_retention_change_in_hours(1)
        .send()
        .await
        .expect_err("the version moved on");
    assert!(stale.into_service_error().is_version_mismatch_exception());

    client.tag_stream().stream_name("door-cam").tags("floor", "2").send().await.expect("tag");
    let tags = client.list_tags_for_stream().stream_name("door-cam").send().await.expect("tags").tags.expect("map");
    assert_eq!(tags.get("site").map(String::as_str), Some("berlin"));
    assert_eq!(tags.get("floor").map(String::as_str), Some("2"));
    client.untag_stream().stream_name("door-cam").tag_key_list("site").send().await.expect("untag");
    client
        .tag_resource()
        .resource_arn(&arn)
        .tags(aws_sdk_kinesisvideo::types::Tag::builder().key("owner").value("ops").build().expect("tag"))
        .send()
        .await
        .expect("tag resource");
    let by_arn = client.list_tags_for_resource().resource_arn(&arn).send().await.expect("tags").tags.expect("map");
    assert_eq!(by_arn.keys().map(String::as_str).collect::<std::collections::BTreeSet<_>>(), ["floor", "owner"].into());

    let endpoint = client
        .get_data_endpoint()
        .stream_name("door-cam")
        .api_name(ApiName::PutMedia)
        .send()
        .await
        .expect("endpoint")
        .data_endpoint
        .expect("url");
    assert_eq!(endpoint.trim_end_matches('/'), server.url().trim_end_matches('/'));

    let missing = client.describe_stream().stream_name("nope").send().await.expect_err("missing");
    assert!(missing.into_service_error().is_resource_not_found_exception());
    let taken = client.create_stream().stream_name("door-cam").send().await.expect_err("exists");
    assert!(taken.into_service_error().is_resource_in_use_exception());

    client.delete_stream().stream_arn(&arn).send().await.expect("delete");
    let gone = client.describe_stream().stream_name("door-cam").send().await.expect_err("deleted");
    assert!(gone.into_service_error().is_resource_not_found_exception());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_reads_through_aws_sdk_kinesisvideomedia_and_archivedmedia() {
    let server = Server::start().expect("server starts");
    let url = server.url();
    kinesisvideo(&url).create_stream().stream_name("lobby").send().await.expect("create");
    let numbers = upload(&url, "lobby", 5).await;
    assert_eq!(numbers.len(), 5);
    let expected: Vec<u64> = (0..5).map(|s| START_MS + s * 1000).collect();

    let archive = crate::client::archived_media(&url);
    let range = TimestampRange::builder()
        .start_timestamp(DateTime::from_millis(START_MS as i64 + 1000))
        .end_timestamp(DateTime::from_millis(START_MS as i64 + 3000))
        .build()
        .expect("range");
    let selector = FragmentSelector::builder()
        .fragment_selector_type(FragmentSelectorType::ProducerTimestamp)
        .timestamp_range(range)
        .build()
        .expect("selector");
    let mut listed = Vec::new();
    let mut page = archive
        .list_fragments()
        .stream_name("lobby")
        .fragment_selector(selector)
        .max_results(2)
        .send()
        .await
        .expect("list");
    loop {
        listed.extend(page.fragments().iter().map(|f| {
            (
                f.fragment_number().expect("number").to_string(),
                f.producer_timestamp().expect("ts").to_millis().expect("ms") as u64,
            )
        }));
        let Some(token) = page.next_token().map(str::to_string) else { break };
        page =
            archive.list_fragments().stream_name("lobby").next_token(token).max_results(2).send().await.expect("page");
    }
    listed.sort();
    assert_eq!(listed, (1..=3).map(|i| (numbers[i].clone(), expected[i])).collect::<Vec<_>>(), "inclusive range");

    let reversed: Vec<String> = numbers.iter().rev().cloned().collect();
    let list_read = archive
        .get_media_for_fragment_list()
        .stream_name("lobby")
        .set_fragments(Some(reversed))
        .send()
        .await
        .expect("read");
    let mut in_order = expected.clone();
    in_order.reverse();
    assert_eq!(cluster_timecodes(list_read.payload, 5).await, in_order, "in the requested order");

    let reader = media(&url);
    let earliest = StartSelector::builder().start_selector_type(StartSelectorType::Earliest).build().expect("selector");
    let stream = reader.get_media().stream_name("lobby").start_selector(earliest).send().await.expect("get media");
    assert_eq!(cluster_timecodes(stream.payload, 5).await, expected);
    let after = StartSelector::builder()
        .start_selector_type(StartSelectorType::FragmentNumber)
        .after_fragment_number(&numbers[2])
        .build()
        .expect("selector");
    let stream = reader.get_media().stream_name("lobby").start_selector(after).send().await.expect("get media");
    assert_eq!(cluster_timecodes(stream.payload, 2).await, expected[3..]);

    let missing = reader
        .get_media()
        .stream_name("nope")
        .start_selector(StartSelector::builder().start_selector_type(StartSelectorType::Now).build().expect("s"))
        .send()
        .await
        .expect_err("missing stream");
    assert!(missing.into_service_error().is_resource_not_found_exception());
    let bad = archive
        .get_media_for_fragment_list()
        .stream_name("lobby")
        .fragments("12345")
        .send()
        .await
        .expect_err("bad number");
    assert!(bad.into_service_error().is_resource_not_found_exception());
}
