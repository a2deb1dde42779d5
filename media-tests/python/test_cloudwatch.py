"""CloudWatch's metrics of data and video streams through boto3 and the AWS CLI (both speak
CloudWatch's Smithy RPC v2 CBOR protocol), read back from what the server recorded."""

from __future__ import annotations

import datetime as dt
import json

import boto3
import pytest
from botocore.exceptions import ClientError

from kds_helpers import ACCESS_KEY, REGION, SECRET_KEY, SHARD_ZERO, client_config
from kvs_helpers import create_stream as create_video_stream
from kvs_helpers import upload

FRAGMENTS = 10
FRAMES = 600


def cloudwatch_client(server):
    return boto3.client(
        "cloudwatch",
        endpoint_url=server.endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=client_config(),
        verify=server.verify,
    )


@pytest.fixture(scope="module")
def cloudwatch(server):
    return cloudwatch_client(server)


def window() -> tuple[dt.datetime, dt.datetime]:
    now = dt.datetime.now(dt.timezone.utc)
    return now - dt.timedelta(minutes=10), now + dt.timedelta(minutes=2)


def total(cloudwatch, namespace: str, metric: str, stream: str, statistic: str = "Sum") -> float:
    start, end = window()
    answer = cloudwatch.get_metric_statistics(
        Namespace=namespace,
        MetricName=metric,
        Dimensions=[{"Name": "StreamName", "Value": stream}],
        StartTime=start,
        EndTime=end,
        Period=60,
        Statistics=[statistic],
    )
    values = [point[statistic] for point in answer["Datapoints"]]
    return max(values) if statistic == "Maximum" else sum(values)


def put_three(kinesis, stream: str) -> None:
    records = [{"Data": b"x" * size, "PartitionKey": "k"} for size in (10, 20, 30)]
    answer = kinesis.put_records(StreamName=stream, Records=records)
    assert answer["FailedRecordCount"] == 0


def test_boto3_statistics_count_what_was_put(kinesis, cloudwatch, make_stream):
    stream = make_stream()
    put_three(kinesis, stream)

    assert total(cloudwatch, "AWS/Kinesis", "IncomingRecords", stream) == 3
    # Data and partition key, as the shard quotas count them.
    assert total(cloudwatch, "AWS/Kinesis", "IncomingBytes", stream) == 63
    assert total(cloudwatch, "AWS/Kinesis", "PutRecords.SuccessfulRecords", stream) == 3
    assert total(cloudwatch, "AWS/Kinesis", "PutRecords.Success", stream, "SampleCount") == 1


def test_boto3_get_metric_data_reads_two_series_and_list_metrics_names_them(kinesis, cloudwatch, make_stream):
    stream = make_stream()
    put_three(kinesis, stream)
    iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=SHARD_ZERO, ShardIteratorType="TRIM_HORIZON")
    assert len(kinesis.get_records(ShardIterator=iterator["ShardIterator"])["Records"]) == 3
    start, end = window()

    def query(query_id: str, metric: str, stat: str) -> dict:
        series = {"Namespace": "AWS/Kinesis", "MetricName": metric, "Dimensions": [{"Name": "StreamName", "Value": stream}]}
        return {"Id": query_id, "MetricStat": {"Metric": series, "Period": 60, "Stat": stat}}

    answer = cloudwatch.get_metric_data(
        MetricDataQueries=[query("put", "IncomingRecords", "Sum"), query("read", "GetRecords.Records", "Sum")],
        StartTime=start,
        EndTime=end,
    )
    results = {result["Id"]: result for result in answer["MetricDataResults"]}
    assert sum(results["put"]["Values"]) == 3
    assert sum(results["read"]["Values"]) == 3
    assert all(isinstance(t, dt.datetime) for t in results["put"]["Timestamps"])
    assert results["put"]["StatusCode"] == "Complete"

    listed = cloudwatch.list_metrics(Namespace="AWS/Kinesis", Dimensions=[{"Name": "StreamName", "Value": stream}])
    names = {(m["MetricName"], tuple(d["Name"] for d in m["Dimensions"])) for m in listed["Metrics"]}
    assert ("IncomingBytes", ("StreamName",)) in names
    assert ("IncomingBytes", ("ShardId", "StreamName")) in names
    assert ("PutRecords.Latency", ("StreamName",)) in names
    assert ("GetRecords.IteratorAgeMilliseconds", ("StreamName",)) in names


def test_boto3_sees_cloudwatch_error_codes(cloudwatch):
    start, end = window()
    asked = dict(Namespace="AWS/Kinesis", MetricName="IncomingBytes", StartTime=start, EndTime=end)

    with pytest.raises(ClientError) as seconds:
        cloudwatch.get_metric_statistics(**asked, Period=30, Statistics=["Sum"])
    assert seconds.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert seconds.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "multiple of 60" in seconds.value.response["Error"]["Message"]

    with pytest.raises(ClientError) as neither:
        cloudwatch.get_metric_statistics(**asked, Period=60)
    assert neither.value.response["Error"]["Code"] == "InvalidParameterCombination"


def test_put_media_reports_fragments_and_frames(server, kinesisvideo, cloudwatch, h264_mkv):
    stream = create_video_stream(kinesisvideo, prefix="watched")
    upload(kinesisvideo, stream, h264_mkv, chunk_size=64 * 1024)

    assert total(cloudwatch, "AWS/KinesisVideo", "PutMedia.IncomingFragments", stream) == FRAGMENTS
    assert total(cloudwatch, "AWS/KinesisVideo", "PutMedia.IncomingFrames", stream) == FRAMES
    assert total(cloudwatch, "AWS/KinesisVideo", "PutMedia.Requests", stream) == 1
    assert total(cloudwatch, "AWS/KinesisVideo", "PutMedia.FragmentPersistLatency", stream, "SampleCount") == FRAGMENTS
    listed = cloudwatch.list_metrics(Namespace="AWS/KinesisVideo", MetricName="PutMedia.ActiveConnections")
    streams = {d["Value"] for m in listed["Metrics"] for d in m["Dimensions"]}
    assert stream in streams
    # The upload is over: its connection was counted and then closed.
    assert total(cloudwatch, "AWS/KinesisVideo", "PutMedia.ActiveConnections", stream, "Maximum") >= 1


def test_aws_cli_reads_statistics_data_and_metrics(kinesis, aws_cli, make_stream):
    stream = make_stream()
    put_three(kinesis, stream)
    start, end = (t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in window())

    stats = aws_cli.json(
        "cloudwatch", "get-metric-statistics", "--namespace", "AWS/Kinesis", "--metric-name", "IncomingRecords",
        "--dimensions", f"Name=StreamName,Value={stream}", "--start-time", start, "--end-time", end,
        "--period", "60", "--statistics", "Sum", "Maximum",
    )
    assert sum(point["Sum"] for point in stats["Datapoints"]) == 3
    assert stats["Label"] == "IncomingRecords"
    assert all(point["Unit"] == "Count" for point in stats["Datapoints"])

    queries = [{"Id": "bytes", "MetricStat": {"Metric": {"Namespace": "AWS/Kinesis", "MetricName": "IncomingBytes",
        "Dimensions": [{"Name": "StreamName", "Value": stream}]}, "Period": 60, "Stat": "Sum"}}]
    data = aws_cli.json(
        "cloudwatch", "get-metric-data", "--metric-data-queries", json.dumps(queries),
        "--start-time", start, "--end-time", end,
    )
    assert sum(data["MetricDataResults"][0]["Values"]) == 63

    listed = aws_cli.json("cloudwatch", "list-metrics", "--namespace", "AWS/Kinesis", "--metric-name", "IncomingRecords")
    assert any(d["Value"] == stream for m in listed["Metrics"] for d in m["Dimensions"])

    refused = aws_cli.run(
        "cloudwatch", "get-metric-statistics", "--namespace", "AWS/Kinesis", "--metric-name", "IncomingRecords",
        "--start-time", start, "--end-time", end, "--period", "7", "--statistics", "Sum", check=False,
    )
    assert refused.returncode != 0
    assert "InvalidParameterValue" in refused.stderr, refused.stderr


def test_rollups_outlive_a_restart(private_server):
    kinesis = private_server.client()
    kinesis.create_stream(StreamName="kept-metrics", ShardCount=1)
    put_three(kinesis, "kept-metrics")

    private_server.restart()
    cloudwatch = cloudwatch_client(private_server)

    # The minute in progress was stored at the clean stop; the records count once.
    assert total(cloudwatch, "AWS/Kinesis", "IncomingRecords", "kept-metrics") == 3
    listed = cloudwatch.list_metrics(Namespace="AWS/Kinesis", MetricName="IncomingRecords")["Metrics"]
    streams = {d["Value"] for m in listed for d in m["Dimensions"] if d["Name"] == "StreamName"}
    assert streams == {"kept-metrics"}
