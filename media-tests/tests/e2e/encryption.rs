//! At-rest encryption through the public APIs: a data stream after StartStreamEncryption and a
//! video stream created with a KmsKeyId keep their payloads sealed on disk, while a plain stream
//! beside them shows its marker in the data directory; everything reads back the same.

use std::path::Path;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{EncryptionType, ShardIteratorType};
use framelog_media_tests::Server;
use framelog_sdk::{Client, ClientConfig, EncodedFrame, NewStream, ProducerConfig, StartSelector, TrackSpec};

use crate::client::kinesis;

/// A marker per stream with nothing in common with the others, so that LZ4 keeps each one as a
/// literal in a plain stream's files (a shared suffix would be stored as a back-reference).
fn marker(stream: &str) -> Vec<u8> {
    let noise = match stream {
        "sealed-records" => "q8Zt3vLw0xKc7NbRj5Ae1GyUo9Tm2QpH",
        "plain-records" => "Hy4mJ2sPe9UaG6fDx0Wk3NbLr8Vc1ZtM",
        "sealed-video" => "w1XoCk5rTn8BiV3Eg7Ja0Ls4Qd9YhF2u",
        _ => "Fz7gMq0YdL4hWu2Sb6Rn9Kc3Xe1Pj5Ta",
    };
    noise.as_bytes().to_vec()
}

fn found_on_disk(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).expect("dir").flatten().any(|item| {
        let path = item.path();
        if path.is_dir() {
            return found_on_disk(&path, needle);
        }
        std::fs::read(&path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
    })
}

async fn put_and_read(client: &aws_sdk_kinesis::Client, stream: &str) -> Vec<u8> {
    let put = client
        .put_record()
        .stream_name(stream)
        .partition_key("k")
        .data(Blob::new(marker(stream)))
        .send()
        .await
        .expect("put");
    let iterator = client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(put.shard_id())
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect("iterator");
    let records =
        client.get_records().shard_iterator(iterator.shard_iterator().expect("it")).send().await.expect("records");
    records.records()[0].data().as_ref().to_vec()
}

async fn produce(client: &Client, stream: &str) -> Vec<u8> {
    let tracks = vec![TrackSpec::h264(1, vec![1, 0x64, 0, 0x1f, 0xff], 640, 360)];
    let mut producer = client.producer(ProducerConfig::new(stream, tracks)).await.expect("producer");
    let frame = EncodedFrame { track: 1, pts_ms: 1_764_300_000_000, keyframe: true, data: marker(stream).into() };
    producer.push_frame(frame).await.expect("push");
    producer.finish().await.expect("acknowledged");
    let mut reader = client.get_media(stream, StartSelector::Earliest).await.expect("get media");
    let fragment = reader.next_fragment().await.expect("readable").expect("a fragment");
    fragment.frames[0].data.to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_streams_keep_no_plaintext_on_disk_and_plain_ones_do() {
    let mut server = Server::start().expect("server");
    let kds = kinesis(&server.url());
    for stream in ["sealed-records", "plain-records"] {
        kds.create_stream().stream_name(stream).shard_count(1).send().await.expect("create");
    }
    kds.start_stream_encryption()
        .stream_name("sealed-records")
        .encryption_type(EncryptionType::Kms)
        .key_id("alias/aws/kinesis")
        .send()
        .await
        .expect("start encryption");
    let summary = kds.describe_stream_summary().stream_name("sealed-records").send().await.expect("summary");
    let summary = summary.stream_description_summary().expect("summary");
    assert_eq!(summary.encryption_type(), Some(&EncryptionType::Kms));
    assert_eq!(summary.key_id(), Some("alias/aws/kinesis"));

    let video = Client::new(ClientConfig::new(server.url()));
    let mut sealed = NewStream::named("sealed-video");
    sealed.kms_key_id = Some("arn:aws:kms:us-east-1:000000000000:key/local".into());
    video.ensure_stream(&sealed).await.expect("sealed video stream");
    video.ensure_stream(&NewStream::named("plain-video")).await.expect("plain video stream");

    for stream in ["sealed-records", "plain-records"] {
        assert_eq!(put_and_read(&kds, stream).await, marker(stream), "{stream} reads back");
    }
    for stream in ["sealed-video", "plain-video"] {
        assert_eq!(produce(&video, stream).await, marker(stream), "{stream} reads back");
    }
    assert!(server.stop().expect("stops"), "a clean stop flushes everything to the files");

    for (stream, sealed) in
        [("sealed-records", true), ("plain-records", false), ("sealed-video", true), ("plain-video", false)]
    {
        assert_eq!(found_on_disk(server.data_dir(), &marker(stream)), !sealed, "{stream}: marker on disk");
    }
}
