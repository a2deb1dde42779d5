"""Record consumers on KDS data streams: the consumer API of docs/consumers.md with `DataStreamName` delivers
a data stream's records to a webhook (consumer_helpers.WebhookReceiver) as AWS Lambda Kinesis events, one shard
per call, in order, with retries, dead letters and durable checkpoints. Expected records come from GetRecords."""

from __future__ import annotations

import base64
import threading
import time

from consumer_helpers import (
    WebhookReceiver,
    api_ok,
    consumer_api,
    events,
    kds_request,
    key,
    put_mixed,
    settle,
    wait_for_records,
)
from kds_helpers import ACCOUNT_ID, REGION, read_shard, shard_id

METRICS = {"LagMs", "LagRecords", "DeliveredRecords", "DeliveredBatches", "RetriedCalls", "DeadLetteredBatches"}


def describe(endpoint: str, stream: str, name: str) -> dict:
    return api_ok(endpoint, "describeConsumer", key(stream, name))["Consumer"]


def dead_letters(endpoint: str, stream: str, name: str) -> list[dict]:
    return api_ok(endpoint, "listConsumerDeadLetters", key(stream, name))["DeadLetters"]


def wait_for_metric(endpoint, stream, name, metric, predicate, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while not predicate((consumer := describe(endpoint, stream, name))["Metrics"][metric]):
        assert time.monotonic() < deadline, f"{metric} never satisfied the condition: {consumer}"
        time.sleep(0.1)
    return consumer


def stream_records(kinesis, stream: str) -> dict[str, list[dict]]:
    """{shard id: every record of the shard as GetRecords returns them, in order}."""
    shards = kinesis.describe_stream(StreamName=stream)["StreamDescription"]["Shards"]
    return {s["ShardId"]: read_shard(kinesis, stream, s["ShardId"]) for s in shards}


def seqs(records_by_shard: dict[str, list[dict]], keep=lambda r: True) -> dict[str, list[str]]:
    out = {shard: [r["SequenceNumber"] for r in rs if keep(r)] for shard, rs in records_by_shard.items()}
    return {shard: s for shard, s in out.items() if s}


def call_shard(call) -> str:
    shards = {e["eventID"].partition(":")[0] for e in events(call)}
    assert len(shards) == 1, ("a call must carry the records of one shard", [e["eventID"] for e in events(call)])
    return shards.pop()


def by_shard(calls) -> dict[str, list[str]]:
    """{shard: sequence numbers in the order the calls carried them}."""
    out: dict[str, list[str]] = {}
    for call in calls:
        if events(call):
            out.setdefault(call_shard(call), []).extend(e["kinesis"]["sequenceNumber"] for e in events(call))
    return out


def delivered(hook: WebhookReceiver) -> dict[str, list[str]]:
    return by_shard(hook.delivered_calls())


def check_events(calls, expected: dict[str, list[dict]], arn: str, max_records: int) -> None:
    """Every call is exactly a Lambda Kinesis event for records of one shard, matching GetRecords."""
    by_seq = {r["SequenceNumber"]: (shard, r) for shard, rs in expected.items() for r in rs}
    for call in calls:
        assert call.path == "/frames"
        assert call.headers.get("content-type", "").startswith("application/json"), call.headers
        assert set(call.body) == {"Records"}, list(call.body)
        assert 1 <= len(events(call)) <= max_records, len(events(call))
        call_shard(call)
        for event in events(call):
            shard, want = by_seq[event["kinesis"]["sequenceNumber"]]
            arrival = event["kinesis"]["approximateArrivalTimestamp"]
            assert isinstance(arrival, (int, float)) and not isinstance(arrival, bool), event
            assert abs(arrival - want["ApproximateArrivalTimestamp"].timestamp()) < 0.002, (event, want)
            assert event == {
                "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": want["PartitionKey"],
                            "sequenceNumber": want["SequenceNumber"], "data": base64.b64encode(want["Data"]).decode(),
                            "approximateArrivalTimestamp": arrival},
                "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": f"{shard}:{want['SequenceNumber']}",
                "eventName": "aws:kinesis:record", "awsRegion": REGION, "eventSourceARN": arn,
                "invokeIdentityArn": f"arn:aws:iam::{ACCOUNT_ID}:role/framelog-consumer",
            }, event


# --- Delivery -------------------------------------------------------------------------------------


def test_every_record_arrives_exactly_once_in_shard_order_as_a_lambda_event(server, kinesis, make_stream, hooks,
                                                                           record_consumers):
    stream = make_stream(4)
    put_mixed(kinesis, stream, 600, keys=40)
    expected = stream_records(kinesis, stream)
    assert all(len(rs) > 60 for rs in expected.values()), {s: len(rs) for s, rs in expected.items()}
    arn = kinesis.describe_stream(StreamName=stream)["StreamDescription"]["StreamARN"]
    hook = hooks()
    created = record_consumers(server.endpoint, kds_request(stream, "all", hook.url,
                                                            Batching={"MaxRecords": 50, "MaxWaitMs": 200}))
    assert created["ConsumerName"] == "all", created

    wait_for_records(hook, 600)
    # Records put while the consumer is at the tip arrive too.
    put_mixed(kinesis, stream, 60, prefix="live", keys=7)
    expected = stream_records(kinesis, stream)
    wait_for_records(hook, 660)

    assert all(c.ok for c in hook.snapshot())
    assert delivered(hook) == seqs(expected)
    check_events(hook.snapshot(), expected, arn, 50)
    consumer = wait_for_metric(server.endpoint, stream, "all", "LagRecords", lambda n: n == 0)
    assert set(consumer["Metrics"]) >= METRICS, consumer
    assert consumer["Metrics"]["DeliveredRecords"] == 660, consumer
    assert consumer["Metrics"]["DeliveredBatches"] == len(hook.snapshot()), consumer
    assert consumer["Metrics"]["RetriedCalls"] == 0 and consumer["Metrics"]["DeadLetteredBatches"] == 0, consumer
    assert consumer["Metrics"]["LagMs"] == 0, consumer
    assert {k: consumer[k] for k in ("ConsumerName", "DataStreamName", "State", "Webhook", "Batching", "Retry")} == {
        "ConsumerName": "all", "DataStreamName": stream, "State": "ACTIVE", "Webhook": {"Url": hook.url},
        "Batching": {"MaxRecords": 50, "MaxWaitMs": 200}, "Retry": {"MaxAttempts": 5}}, consumer
    assert consumer["StartSelector"]["StartSelectorType"] == "TRIM_HORIZON"
    assert abs(consumer["CreationTime"] - time.time()) < 300, consumer
    shards = consumer["Checkpoint"]["Shards"]
    assert [s["ShardId"] for s in shards] == [shard_id(i) for i in range(4)], consumer
    assert all(s["NextSequenceNumber"] is None or isinstance(s["NextSequenceNumber"], str) for s in shards)
    listed = api_ok(server.endpoint, "listConsumers", {"DataStreamName": stream})["Consumers"]
    assert [c["ConsumerName"] for c in listed] == ["all"], listed


def test_trim_horizon_latest_and_at_timestamp_start_where_documented(server, kinesis, make_stream, hooks,
                                                                    record_consumers):
    stream = make_stream(2)
    put_mixed(kinesis, stream, 20, prefix="before", keys=6)
    time.sleep(1.5)
    at = time.time()
    time.sleep(1.5)
    put_mixed(kinesis, stream, 20, prefix="middle", keys=6)
    selectors = {"TRIM_HORIZON": {}, "EARLIEST": {}, "LATEST": {}, "NOW": {},
                 "AT_TIMESTAMP": {"StartTimestamp": at}, "SERVER_TIMESTAMP": {"StartTimestamp": at}}
    hook = {}
    for selector, extra in selectors.items():
        hook[selector] = hooks()
        record_consumers(server.endpoint, kds_request(stream, f"from-{selector.lower().replace('_', '-')}",
                                                      hook[selector].url,
                                                      StartSelector={"StartSelectorType": selector, **extra}))
    time.sleep(1.5)  # long enough for a wrong LATEST start to show
    assert hook["LATEST"].snapshot() == [] and hook["NOW"].snapshot() == []
    put_mixed(kinesis, stream, 20, prefix="after", keys=6)
    expected = stream_records(kinesis, stream)
    want = {
        "TRIM_HORIZON": seqs(expected),
        "AT_TIMESTAMP": seqs(expected, lambda r: not r["PartitionKey"].startswith("before")),
        "LATEST": seqs(expected, lambda r: r["PartitionKey"].startswith("after")),
    }
    want.update(EARLIEST=want["TRIM_HORIZON"], NOW=want["LATEST"], SERVER_TIMESTAMP=want["AT_TIMESTAMP"])

    for selector in selectors:
        wait_for_records(hook[selector], sum(map(len, want[selector].values())))
    for selector in selectors:
        assert delivered(hook[selector]) == want[selector], selector


def test_batches_hold_at_most_max_records_and_a_partial_batch_goes_after_max_wait(server, kinesis, make_stream,
                                                                                 hooks, record_consumers):
    stream = make_stream(1)
    put_mixed(kinesis, stream, 30)
    hook = hooks()
    max_wait = 2.0
    record_consumers(server.endpoint, kds_request(stream, "batched", hook.url,
                                                  Batching={"MaxRecords": 7, "MaxWaitMs": int(max_wait * 1000)}))

    wait_for_records(hook, 30)
    calls = hook.snapshot()
    assert [len(events(c)) for c in calls] == [7, 7, 7, 7, 2]
    assert calls[3].at - calls[0].at < max_wait - 0.3, [c.at for c in calls]  # full batches go at once
    assert max_wait - 0.1 <= calls[4].at - calls[3].at <= max_wait + 3.0, [c.at for c in calls]

    # At the tip: three records put together go as one partial batch, MaxWaitMs after they came.
    put_at = time.monotonic()
    for i in range(3):
        kinesis.put_record(StreamName=stream, Data=f"tail-{i}".encode(), PartitionKey=f"tail-{i}")
    wait_for_records(hook, 33)
    calls = hook.snapshot()
    assert [len(events(c)) for c in calls] == [7, 7, 7, 7, 2, 3]
    assert max_wait - 0.1 <= calls[5].at - put_at <= max_wait + 3.0, calls[5].at - put_at
    assert delivered(hook) == seqs(stream_records(kinesis, stream))
    consumer = describe(server.endpoint, stream, "batched")
    assert (consumer["Metrics"]["DeliveredBatches"], consumer["Metrics"]["DeliveredRecords"]) == (6, 33), consumer


# --- Failing webhooks -----------------------------------------------------------------------------


def test_webhook_failing_for_a_while_is_retried_then_caught_up_exactly_once(server, kinesis, make_stream, hooks,
                                                                          record_consumers):
    stream = make_stream(2)
    put_mixed(kinesis, stream, 100)
    expected = stream_records(kinesis, stream)
    hook = hooks()
    hook.fail_next(4, status=503)
    record_consumers(server.endpoint, kds_request(stream, "patient", hook.url, Retry={"MaxAttempts": 10},
                                                  Batching={"MaxRecords": 20, "MaxWaitMs": 200}))

    wait_for_records(hook, 100)
    calls = hook.snapshot()
    assert [c.status for c in calls].count(503) == 4
    assert delivered(hook) == seqs(expected)
    # A failed call is retried with the same records, after a backoff.
    for shard in expected:
        mine = [c for c in calls if events(c) and call_shard(c) == shard]
        for failed, retry in zip(mine, mine[1:]):
            if not failed.ok:
                assert by_shard([retry]) == by_shard([failed]), shard
                assert retry.at - failed.at >= 0.09, (shard, retry.at - failed.at)
    consumer = wait_for_metric(server.endpoint, stream, "patient", "LagRecords", lambda n: n == 0)
    metrics = consumer["Metrics"]
    assert (metrics["RetriedCalls"], metrics["DeadLetteredBatches"], metrics["DeliveredRecords"]) == (4, 0, 100), consumer
    assert dead_letters(server.endpoint, stream, "patient") == []


def test_webhook_failing_forever_dead_letters_each_batch_and_delivery_goes_on(server, kinesis, make_stream, hooks,
                                                                            record_consumers):
    stream = make_stream(2)
    put_mixed(kinesis, stream, 50)
    first = seqs(stream_records(kinesis, stream))
    batches = {shard: [s[i : i + 10] for i in range(0, len(s), 10)] for shard, s in first.items()}
    total = sum(map(len, batches.values()))
    hook = hooks()
    hook.fail_always(500)
    record_consumers(server.endpoint, kds_request(stream, "unlucky", hook.url, Retry={"MaxAttempts": 2},
                                                  Batching={"MaxRecords": 10, "MaxWaitMs": 200}))

    consumer = wait_for_metric(server.endpoint, stream, "unlucky", "DeadLetteredBatches", lambda n: n >= total)
    settle(hook, 1.0)
    letters = dead_letters(server.endpoint, stream, "unlucky")
    assert consumer["Metrics"]["DeadLetteredBatches"] == total, consumer
    assert consumer["Metrics"]["RetriedCalls"] == total, consumer  # one retry per batch with MaxAttempts 2
    assert consumer["Metrics"]["DeliveredRecords"] == 0, consumer
    assert len(letters) == total, letters
    for shard, chunks in batches.items():
        assert [l["SequenceNumbers"] for l in letters if l["ShardId"] == shard] == chunks, (shard, letters)
        tried = [by_shard([c])[shard] for c in hook.snapshot() if events(c) and call_shard(c) == shard]
        assert tried == [chunk for chunk in chunks for _ in range(2)], shard
    for letter in letters:
        assert letter["Attempts"] == 2 and "500" in letter["Error"], letter
        assert abs(letter["Time"] - time.time()) < 120, letter

    # The webhook recovers: later records are delivered, the dead-lettered ones are not sent again.
    hook.succeed()
    put_mixed(kinesis, stream, 30, prefix="later")
    later = seqs(stream_records(kinesis, stream), lambda r: r["PartitionKey"].startswith("later"))
    wait_for_records(hook, 30)
    assert delivered(hook) == later
    consumer = wait_for_metric(server.endpoint, stream, "unlucky", "LagRecords", lambda n: n == 0)
    assert consumer["Metrics"]["DeliveredRecords"] == 30, consumer
    assert consumer["Metrics"]["DeadLetteredBatches"] == total, consumer


# --- Pause, resume, update, delete ----------------------------------------------------------------


def test_pause_resume_redirect_and_delete(server, kinesis, make_stream, hooks, record_consumers):
    stream = make_stream(2)
    put_mixed(kinesis, stream, 20, prefix="old")
    hook, other = hooks(), hooks()
    record_consumers(server.endpoint, {**key(stream, "pausable"), "Webhook": {"Url": hook.url}})  # defaults: LATEST
    consumer = describe(server.endpoint, stream, "pausable")
    assert consumer["StartSelector"]["StartSelectorType"] == "LATEST", consumer
    assert consumer["Batching"] == {"MaxRecords": 100, "MaxWaitMs": 1000}, consumer
    assert consumer["Retry"] == {"MaxAttempts": 5}, consumer

    paused = api_ok(server.endpoint, "updateConsumer", {**key(stream, "pausable"), "State": "PAUSED"})["Consumer"]
    assert paused["State"] == "PAUSED" and paused["Webhook"] == {"Url": hook.url}, paused
    put_mixed(kinesis, stream, 30, prefix="new")
    time.sleep(2.0)
    assert hook.snapshot() == []
    consumer = describe(server.endpoint, stream, "pausable")
    assert consumer["State"] == "PAUSED"
    assert consumer["Metrics"]["LagRecords"] == 30, consumer
    assert consumer["Metrics"]["LagMs"] >= 1500, consumer

    resumed = api_ok(server.endpoint, "updateConsumer", {**key(stream, "pausable"), "State": "ACTIVE",
                                                         "Batching": {"MaxRecords": 4}})["Consumer"]
    assert resumed["State"] == "ACTIVE" and resumed["Batching"]["MaxRecords"] == 4, resumed
    assert resumed["Retry"] == {"MaxAttempts": 5} and resumed["Webhook"] == {"Url": hook.url}, resumed
    wait_for_records(hook, 30)
    records = stream_records(kinesis, stream)
    assert delivered(hook) == seqs(records, lambda r: r["PartitionKey"].startswith("new"))
    assert all(len(events(c)) <= 4 for c in hook.snapshot())
    consumer = wait_for_metric(server.endpoint, stream, "pausable", "LagRecords", lambda n: n == 0)
    assert consumer["Metrics"]["LagMs"] == 0, consumer

    api_ok(server.endpoint, "updateConsumer", {**key(stream, "pausable"), "Webhook": {"Url": other.url}})
    put_mixed(kinesis, stream, 10, prefix="moved")
    wait_for_records(other, 10)
    assert delivered(other) == seqs(stream_records(kinesis, stream), lambda r: r["PartitionKey"].startswith("moved"))
    assert sum(len(events(c)) for c in hook.snapshot()) == 30

    assert consumer_api(server.endpoint, "deleteConsumer", key(stream, "pausable")).status == 200
    calls_at_delete = len(other.snapshot())
    put_mixed(kinesis, stream, 10, prefix="gone")
    time.sleep(2.0)
    assert len(other.snapshot()) == calls_at_delete
    gone = consumer_api(server.endpoint, "describeConsumer", key(stream, "pausable"))
    assert (gone.status, gone.error_type) == (404, "ResourceNotFoundException"), gone
    assert api_ok(server.endpoint, "listConsumers", {"DataStreamName": stream})["Consumers"] == []


# --- kill -9 --------------------------------------------------------------------------------------


def test_kill_9_mid_delivery_resumes_after_the_last_committed_batch(private_server, hooks, record_consumers):
    kinesis = private_server.client()
    stream = "kds-consumer-kill"
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    put_mixed(kinesis, stream, 600)
    want = seqs(stream_records(kinesis, stream))
    hook = hooks(delay_s=0.15)
    reached = threading.Event()
    hook.on_call = lambda call: reached.set() if len(hook.calls) >= 12 else None
    record_consumers(lambda: private_server.endpoint, kds_request(stream, "killed", hook.url,
                                                                  Batching={"MaxRecords": 10, "MaxWaitMs": 100}))

    assert reached.wait(timeout=30), len(hook.snapshot())
    private_server.kill()  # while the webhook holds the 12th call (it answers after 150 ms)
    time.sleep(0.5)  # calls sent before the kill are all recorded
    before = hook.snapshot()
    private_server.start()
    everything = {s for ss in want.values() for s in ss}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not everything <= {s for ss in by_shard(hook.snapshot()).values() for s in ss}:
        time.sleep(0.2)
    settle(hook, 1.0)
    after = hook.snapshot()[len(before):]

    pre, post = by_shard(before), by_shard(after)
    report = {shard: (len(want[shard]), len(pre.get(shard, [])), len(post.get(shard, []))) for shard in want}
    assert sum(len(s) for s in pre.values()) < 600, report
    for shard, expected in want.items():
        sent = pre.get(shard, [])
        mine = [c for c in before if events(c) and call_shard(c) == shard]
        last_batch = by_shard(mine[-1:]).get(shard, [])
        assert sent == expected[: len(sent)], (shard, report)  # in order, nothing skipped before the kill
        resent = post.get(shard, [])
        start = expected.index(resent[0]) if resent else len(expected)
        # Resumes right after the last committed batch: the repeats are a suffix of the batch in flight.
        assert len(sent) - len(last_batch) <= start <= len(sent), (shard, start, report)
        assert resent == expected[start:], (shard, report)  # no gap, no other repeat
    consumer = wait_for_metric(private_server.endpoint, stream, "killed", "LagRecords", lambda n: n == 0)
    assert consumer["Metrics"]["DeliveredRecords"] == 600, consumer


# --- API errors -----------------------------------------------------------------------------------


def test_api_errors_and_limits(server, kinesis, make_stream, hooks, record_consumers):
    endpoint = server.endpoint
    stream = make_stream(1)
    hook = hooks()
    record_consumers(endpoint, kds_request(stream, "taken", hook.url))

    def status(operation: str, body: dict) -> tuple[int, str | None]:
        result = consumer_api(endpoint, operation, body)
        assert result.status == 200 or result.body.get("Message"), (operation, body, result)
        return result.status, result.error_type

    assert status("createConsumer", kds_request(stream, "taken", hook.url)) == (400, "ResourceInUseException")
    assert status("createConsumer", kds_request("no-such-data-stream", "c", hook.url)) == (
        404, "ResourceNotFoundException")
    assert status("listConsumers", {"DataStreamName": "no-such-data-stream"}) == (404, "ResourceNotFoundException")
    for operation in ("describeConsumer", "updateConsumer", "deleteConsumer", "listConsumerDeadLetters"):
        assert status(operation, key(stream, "nobody")) == (404, "ResourceNotFoundException"), operation

    invalid = [
        {"StreamName": stream}, {"Selection": {"Type": "KEY_FRAMES"}}, {"Output": {"Format": "RAW"}},
        {"LagPolicy": {"Type": "BLOCK"}}, {"Batching": {"MaxRecords": 0}}, {"Batching": {"MaxRecords": 10001}},
        {"Batching": {"MaxWaitMs": 60001}}, {"Batching": {"MaxWaitMs": -1}}, {"Retry": {"MaxAttempts": 0}},
        {"Retry": {"MaxAttempts": 101}}, {"StartSelector": {"StartSelectorType": "YESTERDAY"}},
        {"StartSelector": {"StartSelectorType": "AT_TIMESTAMP"}}, {"Webhook": {"Url": "ftp://127.0.0.1:9/x"}},
        {"Webhook": None}, {"ConsumerName": "a b"},
    ]
    for index, change in enumerate(invalid):
        request = {k: v for k, v in {**kds_request(stream, f"c{index}", hook.url), **change}.items() if v is not None}
        assert status("createConsumer", request) == (400, "InvalidArgumentException"), change
    for what, change in {"State ON": {"State": "ON"}, "Output": {"Output": {"Format": "RAW"}},
                         "MaxRecords 0": {"Batching": {"MaxRecords": 0}}}.items():
        assert status("updateConsumer", {**key(stream, "taken"), **change}) == (400, "InvalidArgumentException"), what
    listed = api_ok(endpoint, "listConsumers", {"DataStreamName": stream})["Consumers"]
    assert [c["ConsumerName"] for c in listed] == ["taken"], listed

    # The limits themselves are accepted, and the stream may be named by its ARN.
    arn = kinesis.describe_stream(StreamName=stream)["StreamDescription"]["StreamARN"]
    request = {"DataStreamARN": arn, "ConsumerName": "limits", "Webhook": {"Url": hook.url},
               "Batching": {"MaxRecords": 10000, "MaxWaitMs": 60000}, "Retry": {"MaxAttempts": 100}}
    assert consumer_api(endpoint, "createConsumer", request).status == 200
    try:
        consumer = describe(endpoint, stream, "limits")
        assert consumer["DataStreamName"] == stream
        assert consumer["Batching"] == {"MaxRecords": 10000, "MaxWaitMs": 60000}
        assert consumer["Retry"] == {"MaxAttempts": 100}
        changed = api_ok(endpoint, "updateConsumer", {**key(stream, "limits"), "Batching": {"MaxRecords": 1,
                                                                                            "MaxWaitMs": 0}})
        assert changed["Consumer"]["Batching"] == {"MaxRecords": 1, "MaxWaitMs": 0}, changed
    finally:
        consumer_api(endpoint, "deleteConsumer", key(stream, "limits"))
