"""Every operation of the boto3 `kinesis` model reaches a handler (none answers UnknownOperation), and the
settings, limits, tags and policies operations work through boto3 as AWS documents them."""

from __future__ import annotations

import json

import botocore.session
import pytest
from botocore.exceptions import ClientError

from kds_helpers import raw_post

JSON_CONTENT_TYPE = "application/x-amz-json-1.1"


def kinesis_operations() -> list[str]:
    return botocore.session.get_session().get_service_model("kinesis").operation_names


def error_code(call, **kwargs) -> str:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    return caught.value.response["Error"]["Code"]


@pytest.mark.parametrize("operation", kinesis_operations())
def test_no_operation_of_the_model_is_unknown(endpoint, operation):
    status, _, body = raw_post(endpoint, f"Kinesis_20131202.{operation}", b"{}", JSON_CONTENT_TYPE)
    if status != 200:
        assert json.loads(body)["__type"] != "UnknownOperationException", (operation, body)


def test_enhanced_monitoring_is_enabled_and_disabled_per_metric(kinesis, make_stream):
    stream = make_stream(1)
    enabled = kinesis.enable_enhanced_monitoring(StreamName=stream, ShardLevelMetrics=["IncomingBytes", "OutgoingRecords"])
    assert enabled["CurrentShardLevelMetrics"] == []
    assert enabled["DesiredShardLevelMetrics"] == ["IncomingBytes", "OutgoingRecords"]
    every = kinesis.enable_enhanced_monitoring(StreamName=stream, ShardLevelMetrics=["ALL"])
    assert len(every["DesiredShardLevelMetrics"]) == 7
    disabled = kinesis.disable_enhanced_monitoring(StreamName=stream, ShardLevelMetrics=["IncomingBytes"])
    assert "IncomingBytes" not in disabled["DesiredShardLevelMetrics"] and len(disabled["DesiredShardLevelMetrics"]) == 6
    summary = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
    assert summary["EnhancedMonitoring"] == [{"ShardLevelMetrics": disabled["DesiredShardLevelMetrics"]}]
    assert error_code(kinesis.enable_enhanced_monitoring, StreamName=stream, ShardLevelMetrics=["Nope"]) == (
        "ValidationException"
    )


def test_stream_mode_record_size_and_on_demand_settings(kinesis, make_stream):
    stream = make_stream(2)
    arn = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]
    assert error_code(kinesis.update_stream_warm_throughput, StreamARN=arn, WarmThroughputMiBps=10) == (
        "InvalidArgumentException"
    )
    kinesis.update_stream_mode(StreamARN=arn, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    warm = kinesis.update_stream_warm_throughput(StreamARN=arn, WarmThroughputMiBps=40)
    assert warm["WarmThroughput"] == {"TargetMiBps": 40, "CurrentMiBps": 40}
    kinesis.update_stream_record_distribution_strategy(StreamARN=arn, RecordDistributionStrategy="AUTO")
    kinesis.update_max_record_size(StreamARN=arn, MaxRecordSizeInKiB=2048)
    summary = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
    assert summary["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
    assert summary["RecordDistributionStrategy"] == "AUTO" and summary["MaxRecordSizeInKiB"] == 2048
    # A record over 1 MiB now fits.
    kinesis.put_record(StreamName=stream, PartitionKey="big", Data=b"x" * (1536 * 1024))
    limits = kinesis.describe_limits()
    assert limits["OnDemandStreamCount"] >= 1 and limits["ShardLimit"] > 0 and limits["OpenShardCount"] >= 2
    kinesis.update_stream_mode(StreamARN=arn, StreamModeDetails={"StreamMode": "PROVISIONED"})
    assert "WarmThroughput" not in kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]


def test_tags_and_resource_policies_by_arn_for_streams_and_consumers(kinesis, make_stream):
    stream = make_stream(1)
    arn = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]
    consumer_arn = kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="tagged")["Consumer"]["ConsumerARN"]
    for resource in (arn, consumer_arn):
        kinesis.tag_resource(ResourceARN=resource, Tags={"team": "video", "env": "test"})
        kinesis.untag_resource(ResourceARN=resource, TagKeys=["env"])
        assert kinesis.list_tags_for_resource(ResourceARN=resource)["Tags"] == [{"Key": "team", "Value": "video"}]
        policy = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kinesis:*"}]})
        assert error_code(kinesis.delete_resource_policy, ResourceARN=resource) == "ResourceNotFoundException"
        kinesis.put_resource_policy(ResourceARN=resource, Policy=policy)
        assert json.loads(kinesis.get_resource_policy(ResourceARN=resource)["Policy"]) == json.loads(policy)
        kinesis.delete_resource_policy(ResourceARN=resource)
        assert kinesis.get_resource_policy(ResourceARN=resource)["Policy"] == "{}"
    assert kinesis.list_tags_for_stream(StreamName=stream)["Tags"] == [{"Key": "team", "Value": "video"}]
    assert error_code(kinesis.put_resource_policy, ResourceARN=arn, Policy="not json") == "InvalidArgumentException"


def test_account_settings_and_unimplemented_operations_answer_typed_errors(kinesis):
    assert kinesis.describe_account_settings()["MinimumThroughputBillingCommitment"]["Status"] == "DISABLED"
    assert error_code(kinesis.update_account_settings, MinimumThroughputBillingCommitment={"Status": "ENABLED"}) == (
        "InvalidArgumentException"
    )
    with pytest.raises(ClientError) as caught:
        kinesis.list_queues()
    assert caught.value.response["Error"]["Code"] == "InvalidArgumentException"
    assert "ListQueues is not implemented" in caught.value.response["Error"]["Message"]


def test_every_violation_of_a_request_is_reported_at_once_in_the_models_order(endpoint):
    body = json.dumps({
        "Records": [{"Data": "AA==", "PartitionKey": ""}, {"PartitionKey": "p", "ExplicitHashKey": "-1"}],
        "StreamName": "bad name",
    }).encode()
    status, _, raw = raw_post(endpoint, "Kinesis_20131202.PutRecords", body, JSON_CONTENT_TYPE)
    document = json.loads(raw)
    assert status == 400 and document["__type"] == "ValidationException"
    message = document["message"]
    assert message.startswith("4 validation errors detected: "), message
    paths = [part.split(" at '")[1].split("'")[0] for part in message.split("; ")]
    assert paths == ["records.1.member.partitionKey", "records.2.member.data", "records.2.member.explicitHashKey",
                     "streamName"]


def test_a_member_of_the_wrong_type_is_a_serialization_error_before_any_constraint(endpoint):
    body = json.dumps({"StreamName": "", "ShardCount": "three"}).encode()
    status, _, raw = raw_post(endpoint, "Kinesis_20131202.CreateStream", body, JSON_CONTENT_TYPE)
    assert status == 400 and json.loads(raw)["__type"] == "SerializationException"


def test_stream_name_and_arn_must_name_the_same_stream(kinesis, make_stream):
    stream = make_stream(1)
    other = make_stream(1)
    arn = kinesis.describe_stream_summary(StreamName=other)["StreamDescriptionSummary"]["StreamARN"]
    assert error_code(kinesis.describe_stream_summary, StreamName=stream, StreamARN=arn) == "InvalidArgumentException"
    same = kinesis.describe_stream_summary(StreamName=other, StreamARN=arn)["StreamDescriptionSummary"]
    assert same["StreamName"] == other
    with pytest.raises(ClientError) as caught:
        kinesis.describe_stream_summary()
    assert caught.value.response["Error"]["Message"] == "Either StreamName or StreamARN should be provided."
