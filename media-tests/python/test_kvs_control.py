"""KVS control plane (`kinesisvideo`, rest-json `POST /<lowerCamelName>`) through boto3, raw HTTP and the
AWS CLI v1.

Expected values come from docs/spec/kvs.md (protocol, errors, control plane) and from framelog's own choices:
- a stream created without DataRetentionInHours keeps 168 hours (framelog default; the AWS API default is 0);
- the data endpoint of every API is the server's own base URL;
- the account is 000000000000 and the region us-east-1.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError

from kds_helpers import ACCOUNT_ID, REGION, new_stream_name
from kvs_helpers import code_status, kvs_error, missing_arn

DEFAULT_RETENTION_HOURS = 168
DEFAULT_KMS_KEY_ID = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:alias/aws/kinesisvideo"
NOT_FOUND_MESSAGE = "The requested stream is not found or not active."
VERSION_RE = re.compile(r"^[A-Za-z0-9]{20}$")
STREAM_INFO_KEYS = {
    "StreamName",
    "StreamARN",
    "KmsKeyId",
    "Version",
    "Status",
    "CreationTime",
    "DataRetentionInHours",
}
DATA_ENDPOINT_APIS = ["PUT_MEDIA", "GET_MEDIA", "LIST_FRAGMENTS", "GET_HLS_STREAMING_SESSION_URL"]
MAX_TAGS = 50
KVS_DUMMY_AUTHORIZATION = (
    "AWS4-HMAC-SHA256 Credential=AKIDUMMY/20261125/us-east-1/kinesisvideo/aws4_request, "
    "SignedHeaders=host, Signature=00"
)


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------


def arn_pattern(name: str) -> re.Pattern:
    return re.compile(rf"^arn:aws:kinesisvideo:us-east-1:{ACCOUNT_ID}:stream/{re.escape(name)}/\d{{13}}$")


def create(kvs, name: str | None = None, prefix: str = "kvs", **kwargs) -> tuple[str, str]:
    """CreateStream; returns (name, ARN)."""
    name = name or new_stream_name(prefix)
    arn = kvs.create_stream(StreamName=name, **kwargs)["StreamARN"]
    return name, arn


def describe(kvs, name: str) -> dict:
    return kvs.describe_stream(StreamName=name)["StreamInfo"]


def tags_of(kvs, name: str) -> dict:
    return kvs.list_tags_for_stream(StreamName=name)["Tags"]


def list_names(kvs, prefix: str) -> list[str]:
    condition = {"ComparisonOperator": "BEGINS_WITH", "ComparisonValue": prefix}
    pages = kvs.get_paginator("list_streams").paginate(StreamNameCondition=condition)
    return [info["StreamName"] for page in pages for info in page["StreamInfoList"]]


def all_kvs_names(kvs) -> list[str]:
    return [info["StreamName"] for page in kvs.get_paginator("list_streams").paginate() for info in page["StreamInfoList"]]


def all_kds_names(kinesis) -> list[str]:
    return [n for page in kinesis.get_paginator("list_streams").paginate() for n in page["StreamNames"]]


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def raw_kvs_post(endpoint_url: str, path: str, body: bytes) -> tuple[int, dict, bytes]:
    """POST <path> with a JSON body and a dummy SigV4 header; returns (status, lower-cased headers, body)."""
    headers = {
        "Content-Type": "application/json",
        "Authorization": KVS_DUMMY_AUTHORIZATION,
        "X-Amz-Date": "20261125T000000Z",
    }
    request = urllib.request.Request(endpoint_url + path, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


# ------------------------------------------------------------------------------------------------
# CreateStream / DescribeStream
# ------------------------------------------------------------------------------------------------


def test_create_stream_returns_arn_with_account_name_and_creation_millis(kinesisvideo):
    name, arn = create(kinesisvideo)

    info = describe(kinesisvideo, name)

    assert arn_pattern(name).match(arn), arn
    assert info["StreamARN"] == arn
    assert info["StreamName"] == name
    # The ARN suffix is the creation time in epoch milliseconds (docs/spec/kvs.md#control-plane).
    assert abs(int(arn.rsplit("/", 1)[1]) / 1000 - info["CreationTime"].timestamp()) < 1.0


def test_stream_created_without_retention_keeps_168_hours_and_is_active_with_defaults(kinesisvideo):
    before = now_utc()
    name, arn = create(kinesisvideo)

    info = describe(kinesisvideo, name)

    assert STREAM_INFO_KEYS <= set(info), info
    assert info["DataRetentionInHours"] == DEFAULT_RETENTION_HOURS
    assert info["Status"] == "ACTIVE"
    assert info["KmsKeyId"] == DEFAULT_KMS_KEY_ID
    assert VERSION_RE.match(info["Version"]), info["Version"]
    assert isinstance(info["CreationTime"], dt.datetime)
    assert abs((info["CreationTime"] - before).total_seconds()) < 60
    assert abs((info["CreationTime"] - now_utc()).total_seconds()) < 60


@pytest.mark.parametrize("hours", [0, 24])
def test_create_stream_keeps_explicit_retention(kinesisvideo, hours):
    name, _ = create(kinesisvideo, DataRetentionInHours=hours)

    assert describe(kinesisvideo, name)["DataRetentionInHours"] == hours


def test_create_stream_echoes_media_type_device_name_and_kms_key(kinesisvideo):
    kms_key = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    name, _ = create(
        kinesisvideo,
        MediaType="video/h264,audio/aac",
        DeviceName="cam-1",
        KmsKeyId=kms_key,
        DataRetentionInHours=2,
    )

    info = describe(kinesisvideo, name)

    assert info["MediaType"] == "video/h264,audio/aac"
    assert info["DeviceName"] == "cam-1"
    assert info["KmsKeyId"] == kms_key
    assert info["DataRetentionInHours"] == 2


def test_tags_given_at_create_are_listed(kinesisvideo):
    name, _ = create(kinesisvideo, Tags={"site": "lab", "floor": "2", "empty": ""})

    assert tags_of(kinesisvideo, name) == {"site": "lab", "floor": "2", "empty": ""}


def test_each_stream_gets_its_own_version(kinesisvideo):
    first, _ = create(kinesisvideo)
    second, _ = create(kinesisvideo)

    assert describe(kinesisvideo, first)["Version"] != describe(kinesisvideo, second)["Version"]


def test_duplicate_create_is_resource_in_use_and_keeps_the_original(kinesisvideo):
    name, arn = create(kinesisvideo, DataRetentionInHours=24, MediaType="video/h264")
    original = describe(kinesisvideo, name)

    with pytest.raises(ClientError) as excinfo:
        kinesisvideo.create_stream(StreamName=name, DataRetentionInHours=48, MediaType="video/h265")

    assert kvs_error(excinfo) == ("ResourceInUseException", f"The stream {name} already exists.", 400)
    assert describe(kinesisvideo, name) == original


def test_describe_by_arn_returns_the_same_stream_info(kinesisvideo):
    name, arn = create(kinesisvideo, MediaType="video/h264", DeviceName="cam-arn")

    by_arn = kinesisvideo.describe_stream(StreamARN=arn)["StreamInfo"]

    assert by_arn == describe(kinesisvideo, name)
    assert by_arn["StreamName"] == name


# ------------------------------------------------------------------------------------------------
# ListStreams
# ------------------------------------------------------------------------------------------------


def test_list_streams_entries_equal_describe_stream_info(kinesisvideo):
    prefix = new_stream_name("kvs-list")
    a, _ = create(kinesisvideo, name=f"{prefix}-a", MediaType="video/h264", DeviceName="cam-a")
    b, _ = create(kinesisvideo, name=f"{prefix}-b", DataRetentionInHours=0, Tags={"k": "v"})

    listed = kinesisvideo.list_streams(
        StreamNameCondition={"ComparisonOperator": "BEGINS_WITH", "ComparisonValue": prefix}
    )

    assert listed["StreamInfoList"] == [describe(kinesisvideo, a), describe(kinesisvideo, b)]
    assert not listed.get("NextToken")


def test_list_streams_is_sorted_by_stream_name(kinesisvideo):
    prefix = new_stream_name("kvs-sort")
    for suffix in ("c", "A", "b", "a-2", "a"):
        create(kinesisvideo, name=f"{prefix}-{suffix}")

    names = list_names(kinesisvideo, prefix)

    assert names == [f"{prefix}-{s}" for s in ("A", "a", "a-2", "b", "c")]


def test_list_streams_begins_with_filters_by_name_prefix(kinesisvideo):
    prefix = new_stream_name("kvs-filter")
    create(kinesisvideo, name=f"{prefix}-x-1")
    create(kinesisvideo, name=f"{prefix}-x-2")
    create(kinesisvideo, name=f"{prefix}-y-1")
    create(kinesisvideo, name=f"other-{prefix}-x-3")  # contains the prefix but does not begin with it

    assert list_names(kinesisvideo, f"{prefix}-x") == [f"{prefix}-x-1", f"{prefix}-x-2"]
    assert list_names(kinesisvideo, f"{prefix}-y") == [f"{prefix}-y-1"]
    assert list_names(kinesisvideo, f"{prefix}-z") == []


def test_list_streams_max_results_1_pages_with_next_token(kinesisvideo):
    prefix = new_stream_name("kvs-page")
    expected = [f"{prefix}-{i}" for i in range(3)]
    for name in expected:
        create(kinesisvideo, name=name)
    condition = {"ComparisonOperator": "BEGINS_WITH", "ComparisonValue": prefix}

    pages = [kinesisvideo.list_streams(MaxResults=1, StreamNameCondition=condition)]
    while pages[-1].get("NextToken"):
        assert len(pages) <= len(expected) + 1, "ListStreams keeps returning a NextToken"
        pages.append(
            kinesisvideo.list_streams(MaxResults=1, StreamNameCondition=condition, NextToken=pages[-1]["NextToken"])
        )

    # Every page but a possible trailing empty one holds exactly one stream.
    assert [len(p["StreamInfoList"]) for p in pages[: len(expected)]] == [1] * len(expected)
    assert all(not p["StreamInfoList"] for p in pages[len(expected) :])
    assert [info["StreamName"] for p in pages for info in p["StreamInfoList"]] == expected


def test_list_streams_paginator_collects_every_stream(kinesisvideo):
    prefix = new_stream_name("kvs-pager")
    expected = [f"{prefix}-{i}" for i in range(5)]
    for name in expected:
        create(kinesisvideo, name=name)
    condition = {"ComparisonOperator": "BEGINS_WITH", "ComparisonValue": prefix}

    pages = list(
        kinesisvideo.get_paginator("list_streams").paginate(
            StreamNameCondition=condition, PaginationConfig={"PageSize": 2}
        )
    )
    everything = all_kvs_names(kinesisvideo)

    assert [info["StreamName"] for p in pages for info in p["StreamInfoList"]] == expected
    assert len(pages) >= 3
    assert all(len(p["StreamInfoList"]) <= 2 for p in pages)
    assert set(expected) <= set(everything)
    assert everything == sorted(everything)
    assert len(everything) == len(set(everything))


def test_kds_streams_never_appear_in_kvs_list_streams(kinesisvideo, kinesis):
    name = new_stream_name("kds-only")
    kinesis.create_stream(StreamName=name, ShardCount=1)

    assert list_names(kinesisvideo, name) == []
    assert name not in all_kvs_names(kinesisvideo)
    with pytest.raises(ClientError) as excinfo:
        kinesisvideo.describe_stream(StreamName=name)
    assert kvs_error(excinfo) == ("ResourceNotFoundException", NOT_FOUND_MESSAGE, 404)


def test_kvs_streams_never_appear_in_kds_list_streams(kinesisvideo, kinesis):
    name, _ = create(kinesisvideo, prefix="kvs-only")

    assert name not in all_kds_names(kinesis)
    with pytest.raises(ClientError) as excinfo:
        kinesis.describe_stream_summary(StreamName=name)
    assert excinfo.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_kvs_and_kds_streams_may_share_a_name(kinesisvideo, kinesis):
    kds_first = new_stream_name("shared")
    kinesis.create_stream(StreamName=kds_first, ShardCount=1)
    create(kinesisvideo, name=kds_first, DataRetentionInHours=24)
    kvs_first, kvs_first_arn = create(kinesisvideo, prefix="shared", MediaType="video/h264")
    kinesis.create_stream(StreamName=kvs_first, ShardCount=2)

    for name in (kds_first, kvs_first):
        assert list_names(kinesisvideo, name) == [name]
        assert name in all_kds_names(kinesis)
    assert describe(kinesisvideo, kds_first)["DataRetentionInHours"] == 24
    assert describe(kinesisvideo, kvs_first)["MediaType"] == "video/h264"
    assert kinesis.describe_stream_summary(StreamName=kds_first)["StreamDescriptionSummary"]["OpenShardCount"] == 1
    assert kinesis.describe_stream_summary(StreamName=kvs_first)["StreamDescriptionSummary"]["OpenShardCount"] == 2

    # Deleting the KVS stream leaves the KDS stream of the same name alone.
    kinesisvideo.delete_stream(StreamARN=kvs_first_arn)
    assert list_names(kinesisvideo, kvs_first) == []
    summary = kinesis.describe_stream_summary(StreamName=kvs_first)["StreamDescriptionSummary"]
    assert summary["StreamStatus"] == "ACTIVE"
    assert summary["OpenShardCount"] == 2


# ------------------------------------------------------------------------------------------------
# UpdateStream / UpdateDataRetention
# ------------------------------------------------------------------------------------------------


def test_update_stream_changes_media_type_device_name_and_version(kinesisvideo):
    name, arn = create(kinesisvideo, MediaType="video/h264", DeviceName="cam-1", DataRetentionInHours=24)
    before = describe(kinesisvideo, name)

    kinesisvideo.update_stream(
        StreamName=name, CurrentVersion=before["Version"], MediaType="video/h265", DeviceName="cam-2"
    )
    after = describe(kinesisvideo, name)

    assert after["MediaType"] == "video/h265"
    assert after["DeviceName"] == "cam-2"
    assert after["Version"] != before["Version"]
    assert VERSION_RE.match(after["Version"]), after["Version"]
    unchanged = ("StreamName", "StreamARN", "KmsKeyId", "Status", "CreationTime", "DataRetentionInHours")
    assert {k: after[k] for k in unchanged} == {k: before[k] for k in unchanged}
    assert after["StreamARN"] == arn


def test_update_stream_with_stale_version_is_version_mismatch(kinesisvideo):
    name, _ = create(kinesisvideo, MediaType="video/h264")
    stale = describe(kinesisvideo, name)["Version"]
    kinesisvideo.update_stream(StreamName=name, CurrentVersion=stale, MediaType="video/h265")
    current = describe(kinesisvideo, name)

    with pytest.raises(ClientError) as excinfo:
        kinesisvideo.update_stream(StreamName=name, CurrentVersion=stale, MediaType="audio/aac")

    assert code_status(excinfo) == ("VersionMismatchException", 400)
    assert describe(kinesisvideo, name) == current


def test_update_data_retention_increases_and_decreases_relative_to_current(kinesisvideo):
    name, _ = create(kinesisvideo)
    v0 = describe(kinesisvideo, name)["Version"]

    kinesisvideo.update_data_retention(
        StreamName=name, CurrentVersion=v0, Operation="INCREASE_DATA_RETENTION", DataRetentionChangeInHours=24
    )
    after_increase = describe(kinesisvideo, name)
    kinesisvideo.update_data_retention(
        StreamName=name,
        CurrentVersion=after_increase["Version"],
        Operation="DECREASE_DATA_RETENTION",
        DataRetentionChangeInHours=100,
    )
    after_decrease = describe(kinesisvideo, name)

    assert after_increase["DataRetentionInHours"] == DEFAULT_RETENTION_HOURS + 24 == 192
    assert after_decrease["DataRetentionInHours"] == 192 - 100 == 92
    versions = [v0, after_increase["Version"], after_decrease["Version"]]
    assert len(set(versions)) == 3, versions
    assert all(VERSION_RE.match(v) for v in versions), versions


def test_update_data_retention_by_arn(kinesisvideo):
    name, arn = create(kinesisvideo, DataRetentionInHours=0)

    kinesisvideo.update_data_retention(
        StreamARN=arn,
        CurrentVersion=describe(kinesisvideo, name)["Version"],
        Operation="INCREASE_DATA_RETENTION",
        DataRetentionChangeInHours=1,
    )

    assert describe(kinesisvideo, name)["DataRetentionInHours"] == 1


# ------------------------------------------------------------------------------------------------
# GetDataEndpoint
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("api_name", DATA_ENDPOINT_APIS)
def test_data_endpoint_is_the_server_base_url(kinesisvideo, endpoint, api_name):
    name, arn = create(kinesisvideo)

    by_name = kinesisvideo.get_data_endpoint(StreamName=name, APIName=api_name)["DataEndpoint"]
    by_arn = kinesisvideo.get_data_endpoint(StreamARN=arn, APIName=api_name)["DataEndpoint"]

    assert by_name == endpoint
    assert by_arn == endpoint
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", by_name), by_name


# ------------------------------------------------------------------------------------------------
# Tags
# ------------------------------------------------------------------------------------------------


def test_tag_stream_untag_stream_and_list_tags_for_stream(kinesisvideo):
    name, arn = create(kinesisvideo, Tags={"a": "1"})

    kinesisvideo.tag_stream(StreamName=name, Tags={"b": "2", "a": "override"})
    after_tag = tags_of(kinesisvideo, name)
    kinesisvideo.tag_stream(StreamARN=arn, Tags={"c": "3"})
    after_arn_tag = kinesisvideo.list_tags_for_stream(StreamARN=arn)["Tags"]
    kinesisvideo.untag_stream(StreamName=name, TagKeyList=["a", "never-set"])
    after_untag = tags_of(kinesisvideo, name)

    assert after_tag == {"a": "override", "b": "2"}
    assert after_arn_tag == {"a": "override", "b": "2", "c": "3"}
    assert after_untag == {"b": "2", "c": "3"}


def test_stream_without_tags_lists_an_empty_tag_map(kinesisvideo):
    name, _ = create(kinesisvideo)

    assert tags_of(kinesisvideo, name) == {}


def test_tagging_a_missing_stream_is_404_resource_not_found(kinesisvideo):
    missing = new_stream_name("kvs-missing")

    with pytest.raises(ClientError) as tag_err:
        kinesisvideo.tag_stream(StreamName=missing, Tags={"a": "1"})
    with pytest.raises(ClientError) as list_err:
        kinesisvideo.list_tags_for_stream(StreamName=missing)

    assert code_status(tag_err) == ("ResourceNotFoundException", 404)
    assert code_status(list_err) == ("ResourceNotFoundException", 404)


def test_more_than_50_tags_in_total_is_tags_per_resource_exceeded(kinesisvideo):
    forty = {f"k{i:02d}": str(i) for i in range(40)}
    name, arn = create(kinesisvideo, Tags=forty)

    with pytest.raises(ClientError) as too_many:
        kinesisvideo.tag_stream(StreamName=name, Tags={f"n{i:02d}": "x" for i in range(11)})
    after_rejected = tags_of(kinesisvideo, name)
    kinesisvideo.tag_stream(StreamName=name, Tags={f"n{i:02d}": "x" for i in range(10)})
    at_limit = tags_of(kinesisvideo, name)
    # Overwriting existing keys does not add to the total.
    kinesisvideo.tag_stream(StreamName=name, Tags={f"k{i:02d}": "new" for i in range(5)})
    with pytest.raises(ClientError) as one_more:
        kinesisvideo.tag_stream(StreamName=name, Tags={"one-more": "x"})
    with pytest.raises(ClientError) as one_more_by_arn:
        kinesisvideo.tag_resource(ResourceARN=arn, Tags=[{"Key": "one-more", "Value": "x"}])

    assert code_status(too_many) == ("TagsPerResourceExceededLimitException", 400)
    assert after_rejected == forty, "a rejected TagStream must not add any tag"
    assert len(at_limit) == MAX_TAGS
    assert code_status(one_more) == ("TagsPerResourceExceededLimitException", 400)
    assert code_status(one_more_by_arn) == ("TagsPerResourceExceededLimitException", 400)
    final = tags_of(kinesisvideo, name)
    assert len(final) == MAX_TAGS
    assert final["k00"] == "new" and final["k39"] == "39" and "one-more" not in final


def test_tag_resource_untag_resource_and_list_tags_for_resource(kinesisvideo):
    name, arn = create(kinesisvideo, Tags={"a": "1"})

    kinesisvideo.tag_resource(ResourceARN=arn, Tags=[{"Key": "b", "Value": "2"}, {"Key": "a", "Value": "override"}])
    after_tag = kinesisvideo.list_tags_for_resource(ResourceARN=arn)["Tags"]
    kinesisvideo.untag_resource(ResourceARN=arn, TagKeyList=["a"])
    after_untag = kinesisvideo.list_tags_for_resource(ResourceARN=arn)["Tags"]

    assert after_tag == {"a": "override", "b": "2"}
    assert after_untag == {"b": "2"}
    # Both tag APIs see the same tags.
    assert tags_of(kinesisvideo, name) == {"b": "2"}


def test_list_tags_for_missing_resource_is_resource_not_found(kinesisvideo):
    with pytest.raises(ClientError) as excinfo:
        kinesisvideo.list_tags_for_resource(ResourceARN=missing_arn(new_stream_name("kvs-missing")))

    assert kvs_error(excinfo)[0] == "ResourceNotFoundException"


# ------------------------------------------------------------------------------------------------
# DeleteStream
# ------------------------------------------------------------------------------------------------


def test_deleted_stream_is_404_and_its_name_can_be_reused(kinesisvideo):
    name, arn = create(kinesisvideo, DataRetentionInHours=24, Tags={"a": "1"})

    kinesisvideo.delete_stream(StreamARN=arn)

    with pytest.raises(ClientError) as excinfo:
        kinesisvideo.describe_stream(StreamName=name)
    assert kvs_error(excinfo) == ("ResourceNotFoundException", NOT_FOUND_MESSAGE, 404)
    with pytest.raises(ClientError) as by_arn:
        kinesisvideo.describe_stream(StreamARN=arn)
    assert kvs_error(by_arn) == ("ResourceNotFoundException", NOT_FOUND_MESSAGE, 404)
    assert list_names(kinesisvideo, name) == []
    with pytest.raises(ClientError) as again:
        kinesisvideo.delete_stream(StreamARN=arn)
    assert code_status(again) == ("ResourceNotFoundException", 404)

    # The name is free again; the new stream starts from scratch.
    _, new_arn = create(kinesisvideo, name=name)
    info = describe(kinesisvideo, name)
    assert info["StreamARN"] == new_arn
    assert info["DataRetentionInHours"] == DEFAULT_RETENTION_HOURS
    assert tags_of(kinesisvideo, name) == {}


def test_delete_stream_with_current_version_deletes(kinesisvideo):
    name, arn = create(kinesisvideo)

    kinesisvideo.delete_stream(StreamARN=arn, CurrentVersion=describe(kinesisvideo, name)["Version"])

    assert list_names(kinesisvideo, name) == []


def test_delete_stream_with_wrong_version_is_version_mismatch_and_keeps_the_stream(kinesisvideo):
    name, arn = create(kinesisvideo, MediaType="video/h264")
    stale = describe(kinesisvideo, name)["Version"]
    kinesisvideo.update_stream(StreamName=name, CurrentVersion=stale, MediaType="video/h265")
    current = describe(kinesisvideo, name)

    with pytest.raises(ClientError) as excinfo:
        kinesisvideo.delete_stream(StreamARN=arn, CurrentVersion=stale)

    assert code_status(excinfo) == ("VersionMismatchException", 400)
    assert describe(kinesisvideo, name) == current


def test_deleting_a_missing_arn_is_resource_not_found(kinesisvideo):
    with pytest.raises(ClientError) as excinfo:
        kinesisvideo.delete_stream(StreamARN=missing_arn(new_stream_name("kvs-missing")))

    assert code_status(excinfo) == ("ResourceNotFoundException", 404)


# ------------------------------------------------------------------------------------------------
# Raw wire format
# ------------------------------------------------------------------------------------------------


def test_describe_stream_wire_format_uses_epoch_second_numbers(kinesisvideo, endpoint):
    name, arn = create(kinesisvideo, DataRetentionInHours=24)

    status, _, body = raw_kvs_post(endpoint, "/describeStream", json.dumps({"StreamName": name}).encode())

    assert status == 200
    info = json.loads(body)["StreamInfo"]
    assert info["StreamARN"] == arn
    assert info["DataRetentionInHours"] == 24
    assert isinstance(info["CreationTime"], (int, float)) and not isinstance(info["CreationTime"], bool)
    # Seconds, not milliseconds (docs/spec/kvs.md#protocol).
    assert abs(info["CreationTime"] - now_utc().timestamp()) < 60


# ------------------------------------------------------------------------------------------------
# Persistence
# ------------------------------------------------------------------------------------------------


def test_streams_versions_and_tags_survive_a_graceful_restart(private_server):
    kvs = private_server.kinesisvideo_client()
    name, arn = create(
        kvs, Tags={"site": "lab", "floor": "2"}, DataRetentionInHours=48, MediaType="video/h264", DeviceName="cam-1"
    )
    kvs.update_stream(
        StreamName=name, CurrentVersion=describe(kvs, name)["Version"], MediaType="video/h265", DeviceName="cam-2"
    )
    other, _ = create(kvs, DataRetentionInHours=0)
    before = describe(kvs, name)
    other_before = describe(kvs, other)

    private_server.restart()  # SIGTERM, asserts exit code 0, starts again on the same data dir
    kvs = private_server.kinesisvideo_client()
    after = describe(kvs, name)

    assert after == before
    assert after["StreamARN"] == arn
    assert after["DataRetentionInHours"] == 48
    assert after["MediaType"] == "video/h265"
    assert after["DeviceName"] == "cam-2"
    assert describe(kvs, other) == other_before
    assert tags_of(kvs, name) == {"site": "lab", "floor": "2"}
    assert [info["StreamName"] for info in kvs.list_streams()["StreamInfoList"]] == sorted([name, other])
    assert kvs.get_data_endpoint(StreamName=name, APIName="PUT_MEDIA")["DataEndpoint"] == private_server.endpoint
    # The persisted Version is still the one optimistic concurrency checks against.
    kvs.update_data_retention(
        StreamName=name,
        CurrentVersion=before["Version"],
        Operation="INCREASE_DATA_RETENTION",
        DataRetentionChangeInHours=24,
    )
    assert describe(kvs, name)["DataRetentionInHours"] == 72


# ------------------------------------------------------------------------------------------------
# AWS CLI v1
# ------------------------------------------------------------------------------------------------


def test_cli_creates_describes_lists_gets_endpoint_and_deletes_a_stream(aws_cli, endpoint):
    name = new_stream_name("kvs-cli")

    created = aws_cli.json("kinesisvideo", "create-stream", "--stream-name", name, "--data-retention-in-hours", "24")
    info = aws_cli.json("kinesisvideo", "describe-stream", "--stream-name", name)["StreamInfo"]
    listed = aws_cli.json("kinesisvideo", "list-streams")["StreamInfoList"]
    data_endpoint = aws_cli.json(
        "kinesisvideo", "get-data-endpoint", "--stream-name", name, "--api-name", "PUT_MEDIA"
    )["DataEndpoint"]
    deleted = aws_cli.run("kinesisvideo", "delete-stream", "--stream-arn", created["StreamARN"])
    after_delete = aws_cli.run("kinesisvideo", "describe-stream", "--stream-name", name, check=False)

    assert arn_pattern(name).match(created["StreamARN"]), created
    assert info["StreamName"] == name
    assert info["StreamARN"] == created["StreamARN"]
    assert info["DataRetentionInHours"] == 24
    assert info["Status"] == "ACTIVE"
    assert VERSION_RE.match(info["Version"]), info
    assert [i["StreamARN"] for i in listed if i["StreamName"] == name] == [created["StreamARN"]]
    assert data_endpoint == endpoint
    assert deleted.stdout.strip() == "", "DeleteStream has an empty response"
    assert after_delete.returncode != 0
    assert "ResourceNotFoundException" in after_delete.stderr


def test_cli_describe_missing_stream_fails_with_resource_not_found(aws_cli):
    proc = aws_cli.run("kinesisvideo", "describe-stream", "--stream-name", new_stream_name("kvs-missing"), check=False)

    assert proc.returncode != 0
    assert "ResourceNotFoundException" in proc.stderr
    assert NOT_FOUND_MESSAGE in proc.stderr
