"""Lambda preprocessing of a Kinesis Data Analytics input (InputProcessingConfiguration), against a real
server through boto3: a function standing in for the Lambda turns pipe-separated records into JSON,
drops some and fails others; the application sees exactly the converted records, the failed ones land
in the error stream with their original bytes, and the events carry AWS's record metadata.
"""

from __future__ import annotations

import base64
import json
import random

import pytest
from botocore.exceptions import ClientError

from function_stub import FunctionStub
from kds_helpers import REGION, FramelogServer, framelog_bin, read_shard
from test_analytics import ACCOUNT, ROLE, analytics_client, make_streams, output, outputs, start, ticker_input, wait_for

PASSTHROUGH = """
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (ticker_symbol VARCHAR(4), price DOUBLE);
CREATE OR REPLACE PUMP "STREAM_PUMP" AS INSERT INTO "DESTINATION_SQL_STREAM"
    SELECT STREAM ticker_symbol, price FROM "SOURCE_SQL_STREAM_001";
"""
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:pipes"


def pipes(event: dict, first_call: list[bool]) -> tuple[int, dict | None]:
    """The preprocessing Lambda: `SYMBOL|PRICE` becomes JSON, `DROP` is dropped, `FAIL` fails; its
    very first invocation answers HTTP 500 (the server must call again)."""
    if first_call:
        first_call.clear()
        return 500, None
    return 200, {"records": [convert(r) for r in event["records"]]}


def convert(record: dict) -> dict:
    text = base64.b64decode(record["data"]).decode()
    if text == "DROP":
        return {"recordId": record["recordId"], "result": "Dropped"}
    if text == "FAIL":
        return {"recordId": record["recordId"], "result": "ProcessingFailed", "data": record["data"]}
    symbol, price = text.split("|")
    data = json.dumps({"TICKER_SYMBOL": symbol, "PRICE": float(price)}).encode()
    return {"recordId": record["recordId"], "result": "Ok", "data": base64.b64encode(data).decode()}


@pytest.fixture
def function_server(tmp_path):
    first_call = [True]
    function = FunctionStub(lambda event: pipes(event, first_call))
    config = tmp_path / "framelog.toml"
    config.write_text(f'[lambda_functions.pipes]\nurl = "{function.url}"\n')
    server = FramelogServer(framelog_bin(), tmp_path / "data", tmp_path, extra_args=["--config", str(config)]).start()
    yield function, server
    function.close()
    server.stop()


def processed_input() -> dict:
    app_input = ticker_input("ticks")
    app_input["InputProcessingConfiguration"] = {"InputLambdaProcessor": {"ResourceARN": FUNCTION_ARN, "RoleARN": ROLE}}
    return app_input


def test_preprocessed_records_are_what_the_application_reads(function_server):
    function, server = function_server
    kinesis, client = server.client(), analytics_client(server)
    make_streams(kinesis, "ticks", "out", "errors")
    client.create_application(ApplicationName="pipes", ApplicationCode=PASSTHROUGH, Inputs=[processed_input()],
                              Outputs=[output("out"), output("errors", "error_stream")])
    described = client.describe_application(ApplicationName="pipes")["ApplicationDetail"]["InputDescriptions"][0]
    assert described["InputProcessingConfigurationDescription"] == {
        "InputLambdaProcessorDescription": {"ResourceARN": FUNCTION_ARN, "RoleARN": ROLE}}
    start(client, "pipes")
    rng = random.Random(5)
    sent: list[tuple[str, bytes]] = []
    for i in range(300):
        kind = rng.random()
        data = b"DROP" if kind < 0.1 else b"FAIL" if kind < 0.15 else f"{rng.choice(['AMZN', 'MSFT'])}|{i}.5".encode()
        sent.append((f"k{i}", data))
    for first in range(0, len(sent), 100):
        records = [{"Data": data, "PartitionKey": key} for key, data in sent[first:first + 100]]
        assert kinesis.put_records(StreamName="ticks", Records=records)["FailedRecordCount"] == 0
    converted = sorted((d.decode().split("|")[0], float(d.decode().split("|")[1]))
                       for _, d in sent if d not in (b"DROP", b"FAIL"))
    failed = sum(1 for _, d in sent if d == b"FAIL")
    rows = wait_for(lambda: (found := outputs(kinesis, "out")) and len(found) >= len(converted) and found, 30,
                    f"{len(converted)} rows")
    assert sorted((r["TICKER_SYMBOL"], r["PRICE"]) for _, r in rows) == converted, "each converted record once"
    errors = wait_for(lambda: (found := outputs(kinesis, "errors")) and len(found) >= failed and found, 20,
                      f"{failed} error rows")
    assert len(errors) == failed
    assert all(e["ERROR_NAME"] == "Lambda_Processing_Failed" and bytes.fromhex(e["DATA_ROW"]) == b"FAIL"
               for _, e in errors), errors[:3]
    stored = {r["PartitionKey"]: r for r in read_shard(kinesis, "ticks", "shardId-000000000000")}
    seen = 0
    for event in function.events[1:]:
        assert event["applicationArn"] == f"arn:aws:kinesisanalytics:{REGION}:{ACCOUNT}:application/pipes"
        assert event["streamArn"] == f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/ticks"
        for record in event["records"]:
            metadata = record["kinesisStreamRecordMetadata"]
            original = stored[metadata["partitionKey"]]
            assert metadata["shardId"] == "shardId-000000000000"
            assert metadata["sequenceNumber"] == original["SequenceNumber"]
            assert base64.b64decode(record["data"]) == original["Data"]
            seen += 1
    assert seen == len(sent), "after the failed first call, every record went to the function once"


def test_the_processing_configuration_is_added_and_deleted(function_server):
    _, server = function_server
    kinesis, client = server.client(), analytics_client(server)
    make_streams(kinesis, "ticks", "out")
    client.create_application(ApplicationName="later", ApplicationCode=PASSTHROUGH, Inputs=[ticker_input("ticks")],
                              Outputs=[output("out")])
    configuration = {"InputLambdaProcessor": {"ResourceARN": FUNCTION_ARN, "RoleARN": ROLE}}
    client.add_application_input_processing_configuration(
        ApplicationName="later", CurrentApplicationVersionId=1, InputId="1.1", InputProcessingConfiguration=configuration)
    detail = client.describe_application(ApplicationName="later")["ApplicationDetail"]
    assert detail["ApplicationVersionId"] == 2
    assert "InputProcessingConfigurationDescription" in detail["InputDescriptions"][0]
    with pytest.raises(ClientError) as unknown:
        client.add_application_input_processing_configuration(
            ApplicationName="later", CurrentApplicationVersionId=2, InputId="9.9", InputProcessingConfiguration=configuration)
    assert unknown.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as unconfigured:
        client.create_application(ApplicationName="nofn", ApplicationCode=PASSTHROUGH, Outputs=[output("out")], Inputs=[{
            **ticker_input("ticks"), "InputProcessingConfiguration": {"InputLambdaProcessor": {
                "ResourceARN": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:absent", "RoleARN": ROLE}}}])
    assert unconfigured.value.response["Error"]["Code"] == "InvalidArgumentException"
    client.delete_application_input_processing_configuration(ApplicationName="later", CurrentApplicationVersionId=2,
                                                             InputId="1.1")
    detail = client.describe_application(ApplicationName="later")["ApplicationDetail"]
    assert "InputProcessingConfigurationDescription" not in detail["InputDescriptions"][0]
    assert detail["ApplicationVersionId"] == 3


def test_discover_input_schema_reads_the_sample_as_the_function_leaves_it(function_server):
    _, server = function_server
    kinesis, client = server.client(), analytics_client(server)
    make_streams(kinesis, "ticks")
    records = [{"Data": data, "PartitionKey": f"k{i}"} for i, data in enumerate([b"AMZN|10.5", b"DROP", b"MSFT|7.25"])]
    assert kinesis.put_records(StreamName="ticks", Records=records)["FailedRecordCount"] == 0
    discovered = client.discover_input_schema(
        ResourceARN=f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/ticks", RoleARN=ROLE,
        InputStartingPositionConfiguration={"InputStartingPosition": "TRIM_HORIZON"},
        InputProcessingConfiguration={"InputLambdaProcessor": {"ResourceARN": FUNCTION_ARN, "RoleARN": ROLE}})
    assert discovered["RawInputRecords"] == ["AMZN|10.5", "DROP", "MSFT|7.25"]
    assert [json.loads(r) for r in discovered["ProcessedInputRecords"]] == [
        {"TICKER_SYMBOL": "AMZN", "PRICE": 10.5}, {"TICKER_SYMBOL": "MSFT", "PRICE": 7.25}]
    columns = {c["Name"]: c["SqlType"] for c in discovered["InputSchema"]["RecordColumns"]}
    assert columns == {"TICKER_SYMBOL": "VARCHAR(4)", "PRICE": "DOUBLE"}, columns
