//! Resharding and enhanced fan-out through the Rust AWS SDK (`aws-sdk-kinesis`, whose
//! SubscribeToShard decodes the event stream itself) against the real server.

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{
    ScalingType, ShardFilter, ShardFilterType, ShardIteratorType, StartingPosition, SubscribeToShardEventStream,
};
use framelog_media_tests::Server;

use crate::client::kinesis;

const HALF: &str = "170141183460469231731687303715884105728";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reshard_operations_and_their_typed_errors_through_the_rust_sdk() {
    let server = Server::start().expect("server starts");
    let client = kinesis(&server.url());
    client.create_stream().stream_name("s").shard_count(2).send().await.expect("create");

    let scaled = client
        .update_shard_count()
        .stream_name("s")
        .target_shard_count(4)
        .scaling_type(ScalingType::UniformScaling)
        .send()
        .await
        .expect("scales");
    assert_eq!((scaled.current_shard_count(), scaled.target_shard_count()), (Some(2), Some(4)));
    let open = client
        .list_shards()
        .stream_name("s")
        .shard_filter(ShardFilter::builder().r#type(ShardFilterType::AtLatest).build().expect("filter"))
        .send()
        .await
        .expect("lists");
    assert_eq!(open.shards().len(), 4);
    assert!(open.shards().iter().all(|s| s.parent_shard_id().is_some()));

    let ids: Vec<String> = open.shards().iter().map(|s| s.shard_id().to_string()).collect();
    client
        .merge_shards()
        .stream_name("s")
        .shard_to_merge(&ids[0])
        .adjacent_shard_to_merge(&ids[1])
        .send()
        .await
        .expect("merges");
    let error =
        client.merge_shards().stream_name("s").shard_to_merge(&ids[0]).adjacent_shard_to_merge(&ids[2]).send().await;
    assert!(error.expect_err("a closed shard").into_service_error().is_invalid_argument_exception());
    let error = client
        .split_shard()
        .stream_name("s")
        .shard_to_split("shardId-000000000099")
        .new_starting_hash_key("5")
        .send()
        .await;
    assert!(error.expect_err("no such shard").into_service_error().is_resource_not_found_exception());
    let error = client
        .update_shard_count()
        .stream_name("s")
        .target_shard_count(9)
        .scaling_type(ScalingType::UniformScaling)
        .send()
        .await;
    assert!(error.expect_err("over double").into_service_error().is_limit_exceeded_exception());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_to_shard_streams_records_and_ends_at_a_split_through_the_rust_sdk() {
    let server = Server::start().expect("server starts");
    let client = kinesis(&server.url());
    client.create_stream().stream_name("s").shard_count(1).send().await.expect("create");
    let arn = client.describe_stream_summary().stream_name("s").send().await.expect("summary");
    let stream_arn = arn.stream_description_summary().expect("summary").stream_arn().to_string();
    let consumer =
        client.register_stream_consumer().stream_arn(&stream_arn).consumer_name("sdk").send().await.expect("register");
    let consumer_arn = consumer.consumer().expect("consumer").consumer_arn().to_string();
    for i in 0..3 {
        client
            .put_record()
            .stream_name("s")
            .partition_key("k")
            .data(Blob::new(format!("r{i}")))
            .send()
            .await
            .expect("put");
    }

    let position = StartingPosition::builder().r#type(ShardIteratorType::TrimHorizon).build().expect("position");
    let mut output = client
        .subscribe_to_shard()
        .consumer_arn(&consumer_arn)
        .shard_id("shardId-000000000000")
        .starting_position(position.clone())
        .send()
        .await
        .expect("subscribes");
    let again = client
        .subscribe_to_shard()
        .consumer_arn(&consumer_arn)
        .shard_id("shardId-000000000000")
        .starting_position(position)
        .send()
        .await;
    assert!(again.expect_err("one subscription at a time").into_service_error().is_resource_in_use_exception());

    let mut seen = Vec::new();
    let mut child_shards = Vec::new();
    let mut split = false;
    while let Some(event) = output.event_stream.recv().await.expect("an event decodes") {
        let SubscribeToShardEventStream::SubscribeToShardEvent(event) = event else { continue };
        seen.extend(event.records().iter().map(|r| String::from_utf8_lossy(r.data().as_ref()).into_owned()));
        child_shards.extend(event.child_shards().iter().map(|c| c.shard_id().to_string()));
        if seen.len() == 3 && !split {
            split = true;
            client
                .split_shard()
                .stream_name("s")
                .shard_to_split("shardId-000000000000")
                .new_starting_hash_key(HALF)
                .send()
                .await
                .expect("splits");
        }
    }
    assert_eq!(seen, ["r0", "r1", "r2"]);
    assert_eq!(child_shards, ["shardId-000000000001", "shardId-000000000002"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_tags_policies_limits_and_consumers_through_the_rust_sdk() {
    use aws_sdk_kinesis::types::{MetricsName, StreamMode, StreamModeDetails};

    let server = Server::start().expect("server starts");
    let client = kinesis(&server.url());
    client.create_stream().stream_name("s").shard_count(2).send().await.expect("create");
    let summary = client.describe_stream_summary().stream_name("s").send().await.expect("summary");
    let arn = summary.stream_description_summary().expect("summary").stream_arn().to_string();

    let limits = client.describe_limits().send().await.expect("limits");
    assert_eq!(limits.open_shard_count(), 2);
    let enabled = client
        .enable_enhanced_monitoring()
        .stream_name("s")
        .shard_level_metrics(MetricsName::IncomingBytes)
        .send()
        .await
        .expect("enables");
    assert_eq!(enabled.desired_shard_level_metrics(), [MetricsName::IncomingBytes]);
    let disabled = client
        .disable_enhanced_monitoring()
        .stream_name("s")
        .shard_level_metrics(MetricsName::All)
        .send()
        .await
        .expect("disables");
    assert!(disabled.desired_shard_level_metrics().is_empty());

    let on_demand = StreamModeDetails::builder().stream_mode(StreamMode::OnDemand).build().expect("mode");
    client.update_stream_mode().stream_arn(&arn).stream_mode_details(on_demand).send().await.expect("mode");
    client.update_max_record_size().stream_arn(&arn).max_record_size_in_kib(2048).send().await.expect("size");
    let summary = client.describe_stream_summary().stream_name("s").send().await.expect("summary");
    let summary = summary.stream_description_summary().expect("summary");
    assert_eq!(summary.stream_mode_details().map(|m| m.stream_mode().clone()), Some(StreamMode::OnDemand));
    assert_eq!(summary.max_record_size_in_kib(), Some(2048));

    let consumer =
        client.register_stream_consumer().stream_arn(&arn).consumer_name("c").send().await.expect("register");
    let consumer_arn = consumer.consumer().expect("consumer").consumer_arn().to_string();
    let listed = client.list_stream_consumers().stream_arn(&arn).send().await.expect("list");
    assert_eq!(listed.consumers().len(), 1);
    for resource in [&arn, &consumer_arn] {
        client.tag_resource().resource_arn(resource).tags("team", "video").send().await.expect("tags");
        let tags = client.list_tags_for_resource().resource_arn(resource).send().await.expect("lists tags");
        assert_eq!(tags.tags().iter().map(|t| t.key()).collect::<Vec<_>>(), ["team"]);
        client.untag_resource().resource_arn(resource).tag_keys("team").send().await.expect("untags");
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kinesis:*"}]}"#;
        client.put_resource_policy().resource_arn(resource).policy(policy).send().await.expect("puts policy");
        let got = client.get_resource_policy().resource_arn(resource).send().await.expect("gets policy");
        assert_eq!(got.policy(), policy);
        client.delete_resource_policy().resource_arn(resource).send().await.expect("deletes policy");
    }
    client.deregister_stream_consumer().consumer_arn(&consumer_arn).send().await.expect("deregister");
    let gone = client.describe_stream_consumer().consumer_arn(&consumer_arn).send().await;
    assert!(gone.expect_err("deregistered").into_service_error().is_resource_not_found_exception());
    let error = client.update_max_record_size().stream_arn(&arn).max_record_size_in_kib(99).send().await;
    let error = error.expect_err("below the model's minimum").into_service_error();
    assert_eq!(aws_sdk_kinesis::error::ProvideErrorMetadata::code(&error), Some("ValidationException"));
    let account = client.describe_account_settings().send().await.expect("account settings");
    assert!(account.minimum_throughput_billing_commitment().is_some());
    let error = client.list_channels().send().await.expect_err("not implemented").into_service_error();
    assert!(error.is_invalid_argument_exception(), "{error:?}");
}
