//! framelog-sdk against a real server: the frame producer and the consumer round-trip every frame
//! byte, timestamp and tag; a producer survives a server crash by replaying what was not
//! acknowledged; the MKV producer uploads a ready file; SigV4-signed requests are accepted.

use std::collections::BTreeMap;
use std::time::Duration;

use framelog_media_tests::Server;
use framelog_sdk::{
    Ack, Client, ClientConfig, ConsumedFragment, Credentials, EncodedFrame, NewStream, ProducerConfig, RetryPolicy,
    StartSelector, TimecodeType, TimestampKind, TrackSpec,
};

const START_MS: u64 = 1_764_000_000_000;
/// 25 fps video with a key frame every second, and 50 audio frames per second.
const VIDEO_STEP_MS: u64 = 40;
const AUDIO_STEP_MS: u64 = 20;

fn tracks() -> Vec<TrackSpec> {
    vec![TrackSpec::h264(1, vec![1, 0x64, 0, 0x1f, 0xff], 1280, 720), TrackSpec::aac(2, vec![0x11, 0x90], 48_000.0, 2)]
}

/// Deterministic frames for `seconds` of media; every payload differs (track, time, length).
fn frames(seconds: u64) -> Vec<EncodedFrame> {
    let mut out = Vec::new();
    for ms in (0..seconds * 1000).step_by(AUDIO_STEP_MS as usize) {
        if ms.is_multiple_of(VIDEO_STEP_MS) {
            let size = 200 + (ms % 977) as usize;
            let data: Vec<u8> = (0..size).map(|i| (i as u64 * 31 + ms) as u8).collect();
            out.push(EncodedFrame {
                track: 1,
                pts_ms: START_MS + ms,
                keyframe: ms.is_multiple_of(1000),
                data: data.into(),
            });
        }
        let data: Vec<u8> = (0..64u64).map(|i| (i * 7 + ms / 20) as u8).collect();
        out.push(EncodedFrame { track: 2, pts_ms: START_MS + ms + 5, keyframe: true, data: data.into() });
    }
    out
}

fn client(server: &Server) -> Client {
    Client::new(ClientConfig::new(server.url()))
}

fn consumed_frames(fragments: &[ConsumedFragment]) -> Vec<EncodedFrame> {
    fragments
        .iter()
        .flat_map(|f| &f.frames)
        .map(|f| EncodedFrame { track: f.track, pts_ms: f.pts_ms as u64, keyframe: f.keyframe, data: f.data.clone() })
        .collect()
}

async fn read_all(mut reader: framelog_sdk::MediaReader, count: usize) -> Vec<ConsumedFragment> {
    let mut out = Vec::new();
    while out.len() < count {
        let next = tokio::time::timeout(Duration::from_secs(10), reader.next_fragment()).await;
        match next.expect("a fragment within 10 s").expect("readable") {
            Some(fragment) => out.push(fragment),
            None => break,
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_and_consumer_round_trip_every_frame_timestamp_and_tag() {
    let server = Server::start().expect("server starts");
    let client = client(&server);
    let info = client.ensure_stream(&NewStream::named("camera-1")).await.expect("stream");
    assert_eq!(info.data_retention_in_hours, 168);
    assert_eq!(client.ensure_stream(&NewStream::named("camera-1")).await.expect("exists").stream_arn, info.stream_arn);

    let mut producer = client.producer(ProducerConfig::new("camera-1", tracks())).await.expect("producer");
    let sent = frames(6);
    for frame in &sent {
        if frame.track == 1 && frame.keyframe && (frame.pts_ms - START_MS).is_multiple_of(2000) {
            producer.add_tag("second", ((frame.pts_ms - START_MS) / 1000).to_string());
        }
        producer.push_frame(frame.clone()).await.expect("push");
    }
    let report = producer.finish().await.expect("every fragment acknowledged");
    let timecodes: Vec<u64> = report.delivered.iter().map(|d| d.timecode).collect();
    assert_eq!(timecodes, (0..6).map(|s| START_MS + s * 1000).collect::<Vec<_>>());
    assert!(report.rejected.is_empty());
    assert_eq!(report.connections, 1);

    let listed =
        client.list_fragments("camera-1", TimestampKind::Producer, START_MS, START_MS + 60_000).await.expect("list");
    let numbers: Vec<String> = listed.iter().map(|f| f.fragment_number.clone()).collect();
    let delivered: Vec<String> = report.delivered.iter().filter_map(|d| d.fragment_number.clone()).collect();
    assert_eq!(numbers, delivered);
    // Video 0..=960 ms in 40 ms steps ends at 1000; audio 5..=985 in 20 ms steps ends at 1005.
    assert!(listed.iter().all(|f| f.length_ms == 1005 && f.size_bytes > 0), "{listed:?}");

    for reader in [
        client.get_media_for_fragment_list("camera-1", &numbers).await.expect("list read"),
        client.get_media("camera-1", StartSelector::Earliest).await.expect("get media"),
    ] {
        let fragments = read_all(reader, numbers.len()).await;
        assert_eq!(fragments.iter().map(|f| f.fragment_number.clone()).collect::<Vec<_>>(), numbers);
        assert_eq!(consumed_frames(&fragments), sent, "every frame byte, time, track and key flag");
        let producer_ms: Vec<u64> = fragments.iter().map(|f| f.producer_ts_ms).collect();
        assert_eq!(producer_ms, timecodes);
        let tags: Vec<Vec<(String, String)>> = fragments.iter().map(|f| f.tags.clone()).collect();
        for (index, tags) in tags.iter().enumerate() {
            let expected = if index % 2 == 0 { vec![("second".to_string(), index.to_string())] } else { vec![] };
            assert_eq!(*tags, expected, "fragment {index}");
        }
        assert_eq!(fragments[0].tracks.len(), 2);
        assert_eq!(fragments[0].tracks[1].codec_private, vec![0x11, 0x90]);
    }

    // NOW starts at the newest fragment and carries the live tags.
    let now = read_all(client.get_media("camera-1", StartSelector::Now).await.expect("now"), 1).await;
    assert_eq!(now[0].fragment_number, *numbers.last().expect("fragments"));
    assert_eq!(now[0].continuation_token.as_deref(), numbers.last().map(String::as_str));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_reader_receives_fragments_as_they_are_produced() {
    let server = Server::start().expect("server starts");
    let client = client(&server);
    client.ensure_stream(&NewStream::named("live")).await.expect("stream");
    let reader = client.get_media("live", StartSelector::Now).await.expect("reader");
    let reading = tokio::spawn(read_all(reader, 3));
    let mut producer = client.producer(ProducerConfig::new("live", tracks())).await.expect("producer");
    for frame in frames(4) {
        producer.push_frame(frame).await.expect("push");
    }
    producer.finish().await.expect("finish");
    let fragments = reading.await.expect("reader task");
    let producer_ms: Vec<u64> = fragments.iter().map(|f| f.producer_ts_ms).collect();
    assert_eq!(producer_ms, [START_MS, START_MS + 1000, START_MS + 2000]);
    assert!(fragments.iter().all(|f| f.millis_behind_now.is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producer_replays_unacknowledged_fragments_after_a_server_crash() {
    let mut server = Server::start().expect("server starts");
    let client = client(&server);
    client.ensure_stream(&NewStream::named("flaky")).await.expect("stream");
    let mut config = ProducerConfig::new("flaky", tracks());
    config.retry = RetryPolicy {
        first_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(400),
        max_attempts: Some(200),
    };
    let mut producer = client.producer(config).await.expect("producer");
    let sent = frames(12);
    let (first, second) = sent.split_at(sent.len() / 2);
    for frame in first {
        producer.push_frame(frame.clone()).await.expect("push");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill9().expect("kill -9");
    // Fragments produced while the server is down wait in the producer.
    for frame in second {
        if let Err(e) = producer.push_frame(frame.clone()).await {
            panic!("push while down: {e}: {:?}", producer.finish().await);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.restart_on_same_port().expect("restart");
    let report = producer.finish().await.expect("delivered after the restart");
    assert!(report.connections >= 2, "{report:?}");
    assert!(report.rejected.is_empty(), "{report:?}");

    let listed =
        client.list_fragments("flaky", TimestampKind::Producer, START_MS, START_MS + 60_000).await.expect("list");
    let stored_starts: Vec<u64> = listed.iter().map(|f| f.producer_ts_ms).collect();
    // Nothing lost and nothing stored twice: a fragment persisted just before the crash whose
    // ack was lost is replayed, and the server answers the replay with the stored fragment.
    assert_eq!(stored_starts, (0..12).map(|s| START_MS + s * 1000).collect::<Vec<_>>());
    let numbers: Vec<String> = listed.iter().map(|f| f.fragment_number.clone()).collect();
    let fragments =
        read_all(client.get_media_for_fragment_list("flaky", &numbers).await.expect("read"), numbers.len()).await;
    assert_eq!(consumed_frames(&fragments), sent);
    let ids: std::collections::BTreeSet<Option<String>> =
        fragments.iter().map(|f| f.producer_fragment_id.clone()).collect();
    assert_eq!(ids.len(), 12, "every fragment carries its own identity: {ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mkv_producer_uploads_a_ready_file_with_relative_timecodes() {
    let server = Server::start().expect("server starts");
    let client = client(&server);
    client.ensure_stream(&NewStream::named("file")).await.expect("stream");
    // A ready MKV, written the way a muxer would: relative cluster timecodes from 0.
    let mut mkv = Vec::new();
    let relative: Vec<EncodedFrame> =
        frames(3).into_iter().map(|f| EncodedFrame { pts_ms: f.pts_ms - START_MS, ..f }).collect();
    mkv.extend(framelog_sdk_mkv_header());
    for second in 0..3u64 {
        let in_second: Vec<EncodedFrame> = relative.iter().filter(|f| f.pts_ms / 1000 == second).cloned().collect();
        mkv.extend(cluster_bytes(second * 1000, &in_second));
    }
    let mut producer = client
        .mkv_producer(ProducerConfig::new("file", Vec::new()), TimecodeType::Relative { start_ms: START_MS })
        .await
        .expect("producer");
    // Fed in odd-sized pieces, as a pipe would deliver it.
    for piece in mkv.chunks(1_337) {
        producer.push(piece).await.expect("push");
    }
    let report = producer.finish().await.expect("finish");
    assert_eq!(report.delivered.iter().map(|d| d.timecode).collect::<Vec<_>>(), [0, 1000, 2000]);

    let listed =
        client.list_fragments("file", TimestampKind::Producer, START_MS, START_MS + 10_000).await.expect("list");
    assert_eq!(
        listed.iter().map(|f| f.producer_ts_ms).collect::<Vec<_>>(),
        [START_MS, START_MS + 1000, START_MS + 2000]
    );
    let numbers: Vec<String> = listed.iter().map(|f| f.fragment_number.clone()).collect();
    let fragments = read_all(client.get_media_for_fragment_list("file", &numbers).await.expect("read"), 3).await;
    assert_eq!(consumed_frames(&fragments), frames(3), "absolute times come back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_requests_and_typed_errors() {
    let server = Server::start().expect("server starts");
    let credentials = Credentials {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        session_token: Some("session".into()),
    };
    let client = Client::new(ClientConfig::new(server.url()).with_credentials(credentials).with_region("eu-west-1"));
    let mut stream = NewStream::named("signed");
    stream.retention_hours = Some(2);
    stream.tags = BTreeMap::from([("team".to_string(), "vision".to_string())]);
    client.create_stream(&stream).await.expect("signed create");
    assert_eq!(client.list_tags_for_stream("signed").await.expect("tags")["team"], "vision");
    let info = client.describe_stream("signed").await.expect("describe");
    client.update_data_retention("signed", &info.version, 3).await.expect("increase");
    assert_eq!(client.describe_stream("signed").await.expect("describe").data_retention_in_hours, 5);
    assert!(client.list_streams().await.expect("list").iter().any(|s| s.stream_name == "signed"));

    let error = client.describe_stream("missing").await.expect_err("no such stream");
    assert_eq!(error.error_type(), Some("ResourceNotFoundException"));
    let error = client.create_stream(&stream).await.expect_err("exists");
    assert_eq!(error.error_type(), Some("ResourceInUseException"));
    let error = client.producer(ProducerConfig::new("missing", tracks())).await.expect_err("no stream to produce to");
    assert_eq!(error.error_type(), Some("ResourceNotFoundException"));

    client.delete_stream(&info.stream_arn).await.expect("delete");
    assert!(client.describe_stream("signed").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_media_upload_reads_every_acknowledgement_and_replays_are_stored_once() {
    let server = Server::start().expect("server starts");
    let client = client(&server);
    client.ensure_stream(&NewStream::named("raw")).await.expect("stream");
    let sent = frames(2);
    let fragment = |second: u64| {
        let in_second: Vec<EncodedFrame> =
            sent.iter().filter(|f| (f.pts_ms - START_MS) / 1000 == second).cloned().collect();
        let mut bytes =
            framelog_sdk::mkv::tags(&[(framelog_media::FRAGMENT_ID_TAG.to_string(), format!("raw-{second}"))]);
        bytes.extend(framelog_sdk::mkv::cluster(START_MS + second * 1000, &in_second).expect("cluster"));
        bytes::Bytes::from(bytes)
    };
    let header = bytes::Bytes::from(framelog_sdk::mkv::stream_header(&tracks()));
    let mut numbers = Vec::new();
    // The second connection replays the first fragment, as after a lost PERSISTED ack.
    for seconds in [vec![0], vec![0, 1]] {
        let mut upload =
            client.open_media_upload("raw", TimecodeType::Absolute, header.clone()).await.expect("connection");
        for &second in &seconds {
            upload.send(fragment(second)).expect("queued");
        }
        upload.end();
        let mut persisted = Vec::new();
        while let Some(ack) = upload.next_ack().await.expect("acks") {
            match ack {
                Ack::Persisted { timecode, fragment_number } => persisted.push((timecode, fragment_number)),
                Ack::Error { .. } => panic!("unexpected {ack:?}"),
                _ => {}
            }
        }
        assert_eq!(
            persisted.iter().map(|p| p.0).collect::<Vec<_>>(),
            seconds.iter().map(|s| START_MS + s * 1000).collect::<Vec<_>>()
        );
        numbers.push(persisted.into_iter().map(|p| p.1).collect::<Vec<_>>());
    }
    assert_eq!(numbers[1][0], numbers[0][0], "the replay is answered with the stored fragment");
    let listed =
        client.list_fragments("raw", TimestampKind::Producer, START_MS, START_MS + 10_000).await.expect("list");
    assert_eq!(listed.len(), 2);
}

/// EBML header, Segment, Info and the test tracks, as a muxer writes them.
fn framelog_sdk_mkv_header() -> Vec<u8> {
    let audio = framelog_media::Track { track_type: 2, ..framelog_media::video_track(2, "A_AAC") };
    let mut out = Vec::new();
    framelog_media::write_stream_header(
        &mut out,
        1_000_000,
        "muxer",
        &[framelog_media::video_track(1, "V_MPEG4/ISO/AVC"), audio],
    );
    out
}

fn cluster_bytes(timecode: u64, frames: &[EncodedFrame]) -> Vec<u8> {
    use framelog_media::{ebml, ids};
    let mut out = Vec::new();
    ebml::write_element(&mut out, ids::CLUSTER, |c| {
        ebml::write_uint(c, ids::TIMECODE, timecode);
        for frame in frames {
            let relative_ms = (frame.pts_ms - timecode) as i16;
            framelog_media::write_simple_block(c, frame.track as u8, relative_ms, frame.keyframe, &frame.data);
        }
    });
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_are_managed_through_the_sdk() {
    let server = Server::start().expect("server starts");
    let client = client(&server);
    client.ensure_stream(&NewStream::named("hooked")).await.expect("stream");
    let definition = serde_json::json!({
        "StreamName": "hooked", "ConsumerName": "detector",
        "StartSelector": {"StartSelectorType": "EARLIEST"},
        "Selection": {"Type": "KEY_FRAMES"},
        "Output": {"Format": "JPEG"},
        "Webhook": {"Url": "http://127.0.0.1:9/frames"},
    });
    client.create_consumer(&definition).await.expect("create");
    let error = client.create_consumer(&definition).await.expect_err("a second one with the name");
    assert_eq!(error.error_type(), Some("ResourceInUseException"));
    let paused = client
        .update_consumer("hooked", "detector", &serde_json::json!({"State": "PAUSED", "Retry": {"MaxAttempts": 2}}))
        .await
        .expect("update");
    assert_eq!(paused["Consumer"]["State"], "PAUSED");
    let described = client.describe_consumer("hooked", "detector").await.expect("describe");
    assert_eq!(
        (described["Retry"]["MaxAttempts"].as_u64(), described["Selection"]["Type"].as_str()),
        (Some(2), Some("KEY_FRAMES"))
    );
    assert_eq!(client.list_consumers("hooked").await.expect("list").len(), 1);
    assert!(client.list_consumer_dead_letters("hooked", "detector").await.expect("dead letters").is_empty());
    client.delete_consumer("hooked", "detector").await.expect("delete");
    let error = client.describe_consumer("hooked", "detector").await.expect_err("gone");
    assert_eq!(error.error_type(), Some("ResourceNotFoundException"));
}
