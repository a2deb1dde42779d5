//! The Rust AWS SDK (`aws-sdk-kinesis`) against a real server: every KDS operation and the typed
//! errors it must parse.

use aws_sdk_kinesis::primitives::{Blob, DateTime};
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType, StreamMode, StreamModeDetails};
use framelog_media_tests::Server;

use crate::client::kinesis;

async fn drain(client: &aws_sdk_kinesis::Client, mut iterator: String) -> Vec<aws_sdk_kinesis::types::Record> {
    let mut out = Vec::new();
    loop {
        let page = client.get_records().shard_iterator(&iterator).limit(1000).send().await.expect("get_records");
        let empty = page.records().is_empty();
        out.extend(page.records().iter().cloned());
        if empty && page.millis_behind_latest() == Some(0) {
            return out;
        }
        iterator = page.next_shard_iterator().expect("open shard has a next iterator").to_string();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_lifecycle_through_the_rust_sdk() {
    let server = Server::start().expect("server starts");
    let client = kinesis(&server.url());

    client.create_stream().stream_name("orders").shard_count(3).send().await.expect("create");
    let described = client.describe_stream().stream_name("orders").send().await.expect("describe");
    let description = described.stream_description().expect("description");
    assert_eq!(description.stream_status().as_str(), "ACTIVE");
    assert_eq!(description.shards().len(), 3);
    assert_eq!(description.shards()[2].hash_key_range().expect("range").ending_hash_key(), u128::MAX.to_string());
    assert_eq!(description.retention_period_hours(), 24);

    let summary = client.describe_stream_summary().stream_name("orders").send().await.expect("summary");
    assert_eq!(summary.stream_description_summary().expect("summary").open_shard_count(), 3);

    client
        .create_stream()
        .stream_name("on-demand")
        .stream_mode_details(StreamModeDetails::builder().stream_mode(StreamMode::OnDemand).build().expect("mode"))
        .send()
        .await
        .expect("create on-demand");
    let listed = client.list_streams().limit(1).send().await.expect("list");
    assert_eq!(listed.stream_names(), ["on-demand"]);
    assert!(listed.has_more_streams());
    let rest = client.list_streams().next_token(listed.next_token().expect("token")).send().await.expect("page 2");
    assert_eq!(rest.stream_names(), ["orders"]);
    assert!(!rest.has_more_streams());

    let shards = client.list_shards().stream_name("orders").max_results(2).send().await.expect("list shards");
    assert_eq!(shards.shards().len(), 2);
    let more = client.list_shards().next_token(shards.next_token().expect("token")).send().await.expect("page 2");
    assert_eq!(more.shards()[0].shard_id(), "shardId-000000000002");

    client
        .increase_stream_retention_period()
        .stream_name("orders")
        .retention_period_hours(48)
        .send()
        .await
        .expect("increase");
    client
        .decrease_stream_retention_period()
        .stream_name("orders")
        .retention_period_hours(36)
        .send()
        .await
        .expect("decrease");
    let error = client.decrease_stream_retention_period().stream_name("orders").retention_period_hours(40).send().await;
    assert!(error.expect_err("longer is not a decrease").into_service_error().is_invalid_argument_exception());

    client
        .add_tags_to_stream()
        .stream_name("orders")
        .tags("team", "video")
        .tags("env", "test")
        .send()
        .await
        .expect("tag");
    client.remove_tags_from_stream().stream_name("orders").tag_keys("env").send().await.expect("untag");
    let tags = client.list_tags_for_stream().stream_name("orders").send().await.expect("list tags");
    assert_eq!(tags.tags().iter().map(|t| (t.key(), t.value())).collect::<Vec<_>>(), [("team", Some("video"))]);

    client.delete_stream().stream_name("orders").send().await.expect("delete");
    let gone = client.describe_stream().stream_name("orders").send().await.expect_err("deleted");
    let gone = gone.into_service_error();
    assert!(gone.is_resource_not_found_exception());
    assert_eq!(gone.meta().message(), Some("Stream orders under account 000000000000 not found."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_round_trip_through_every_iterator_type() {
    let server = Server::start().expect("server starts");
    let client = kinesis(&server.url());
    client.create_stream().stream_name("events").shard_count(1).send().await.expect("create");

    let before = DateTime::from_millis(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64 - 1,
    );
    let first = client
        .put_record()
        .stream_name("events")
        .partition_key("k")
        .data(Blob::new(b"first".to_vec()))
        .send()
        .await
        .expect("put");
    assert_eq!(first.shard_id(), "shardId-000000000000");
    assert_eq!(first.sequence_number().len(), 56);
    let entries: Vec<_> = (0..20u8)
        .map(|i| {
            PutRecordsRequestEntry::builder()
                .partition_key(format!("k{i}"))
                .data(Blob::new(vec![i; 100]))
                .build()
                .expect("entry")
        })
        .collect();
    let batch =
        client.put_records().stream_name("events").set_records(Some(entries)).send().await.expect("put records");
    assert_eq!(batch.failed_record_count(), Some(0));
    assert_eq!(batch.records().len(), 20);

    let iterator = |kind: ShardIteratorType| {
        client.get_shard_iterator().stream_name("events").shard_id("shardId-000000000000").shard_iterator_type(kind)
    };
    let trim = iterator(ShardIteratorType::TrimHorizon).send().await.expect("trim horizon");
    let all = drain(&client, trim.shard_iterator().expect("iterator").to_string()).await;
    assert_eq!(all.len(), 21);
    assert_eq!(all[0].data().as_ref(), b"first");
    assert_eq!(all[0].partition_key(), Some("k"));
    for (i, record) in all[1..].iter().enumerate() {
        assert_eq!(record.data().as_ref(), vec![i as u8; 100].as_slice());
        assert_eq!(record.sequence_number(), batch.records()[i].sequence_number().expect("seq"));
    }

    let at = iterator(ShardIteratorType::AtSequenceNumber)
        .starting_sequence_number(first.sequence_number())
        .send()
        .await
        .expect("at");
    assert_eq!(drain(&client, at.shard_iterator().expect("iterator").to_string()).await.len(), 21);
    let after = iterator(ShardIteratorType::AfterSequenceNumber)
        .starting_sequence_number(first.sequence_number())
        .send()
        .await
        .expect("after");
    assert_eq!(drain(&client, after.shard_iterator().expect("iterator").to_string()).await.len(), 20);
    let at_time = iterator(ShardIteratorType::AtTimestamp).timestamp(before).send().await.expect("at timestamp");
    assert_eq!(drain(&client, at_time.shard_iterator().expect("iterator").to_string()).await.len(), 21);

    let latest = iterator(ShardIteratorType::Latest).send().await.expect("latest");
    client
        .put_record()
        .stream_name("events")
        .partition_key("k")
        .data(Blob::new(b"late".to_vec()))
        .send()
        .await
        .expect("put");
    let tail = drain(&client, latest.shard_iterator().expect("iterator").to_string()).await;
    assert_eq!(tail.iter().map(|r| r.data().as_ref().to_vec()).collect::<Vec<_>>(), [b"late".to_vec()]);

    let bad = client
        .get_records()
        .shard_iterator("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .send()
        .await;
    let bad = bad.expect_err("forged iterator").into_service_error();
    assert!(bad.is_invalid_argument_exception());
    assert_eq!(bad.meta().message(), Some("Invalid ShardIterator."));

    let missing =
        client.put_record().stream_name("nope").partition_key("k").data(Blob::new(b"x".to_vec())).send().await;
    assert!(missing.expect_err("no such stream").into_service_error().is_resource_not_found_exception());
}
