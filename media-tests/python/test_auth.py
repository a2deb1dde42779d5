"""SigV4 authentication, IAM-style policies, hot reload and the audit log, through real clients: boto3 (kinesis,
kinesisvideo, kinesis-video-archived-media), the AWS CLI and AWS's own kvssink producer, against the real binary
started with `--credentials FILE`. Every key is made by `framelog keys add` itself, as an operator would.

Error shapes are AWS's: the KDS JSON protocol answers a refused request with HTTP 400, the KVS REST protocols
with HTTP 403, and the `__type`/`Message` of real Kinesis.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from kds_helpers import (
    ACCOUNT_ID,
    REGION,
    SHARD_ZERO,
    AwsCli,
    FramelogServer,
    _free_port,
    client_config,
    framelog_bin,
    new_stream_name,
    read_shard,
    stream_arn,
)
from kvs_helpers import server_range
from kvssink_helpers import CameraPattern, gst_env, kvssink_command, kvssink_plugin_dir, stream_test_pattern

# The server checks the credentials file's modification time every second; 5 s leaves room for a loaded machine.
RELOAD_WAIT_S = 5.0
# A refused start must not hang: it is decided before the listener opens.
REFUSED_START_S = 5.0
INVALID_SIGNATURE_MESSAGE = "The request signature we calculated does not match the signature you provided."
UNRECOGNIZED_CLIENT_MESSAGE = "The security token included in the request is invalid."
# Signed with by the tests of refused requests (wrong secrets of real key ids).
WRONG_SECRETS = ("x" * 40, "y" * 40, "z" * 40)
# 3 s of camera, a key frame every second: three fragments, the last one only after kvssink's end-of-stream flush.
CAMERA = CameraPattern(frames=90, fps=30, key_int=30)


@dataclass(frozen=True)
class Key:
    user_name: str
    access_key_id: str
    secret_access_key: str


def keys_add(credentials: Path, name: str, policy: dict | None = None) -> tuple[Key, subprocess.CompletedProcess]:
    """`framelog keys add NAME --credentials FILE [--policy FILE]`; returns the printed key and the process."""
    cmd = [framelog_bin(), "keys", "add", name, "--credentials", str(credentials)]
    if policy is not None:
        policy_path = credentials.parent / f"policy-{name}.json"
        policy_path.write_text(json.dumps(policy))
        cmd += ["--policy", str(policy_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    printed = json.loads(proc.stdout)
    return Key(printed["UserName"], printed["AccessKeyId"], printed["SecretAccessKey"]), proc


def write_credentials_file(path: Path, document: dict) -> None:
    """Rewrites the credentials file the way an operator's script would: a 0600 temp file renamed over it (the
    server refuses a file others can read, so the mode must already be right when the new file appears)."""
    temp = path.with_name(path.name + ".edit")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(document, out, indent=2)
    os.replace(temp, path)


def error_of(excinfo) -> tuple[str, str, int]:
    """(code, message, HTTP status) of a botocore ClientError."""
    response = excinfo.value.response
    error = response["Error"]
    return error["Code"], error.get("Message", ""), response["ResponseMetadata"]["HTTPStatusCode"]


def code_status(excinfo) -> tuple[str, int]:
    code, _, status = error_of(excinfo)
    return code, status


def outcome(call: Callable[[], object]) -> str:
    """'ok' or the error code of one boto3 call."""
    try:
        call()
    except ClientError as err:
        return err.response["Error"]["Code"]
    return "ok"


def poll_outcomes(call: Callable[[], object], wanted: str, timeout: float = RELOAD_WAIT_S) -> list[str]:
    """Repeats `call` until its outcome is `wanted` or `timeout` passed; returns every outcome seen."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        seen.append(outcome(call))
        if seen[-1] == wanted or time.monotonic() > deadline:
            return seen
        time.sleep(0.1)


def denied_message(user: str, action: str, resource: str) -> str:
    """The start of AWS's AccessDeniedException message for an IAM user."""
    return f"User: arn:aws:iam::{ACCOUNT_ID}:user/{user} is not authorized to perform: {action} on resource: {resource}"


def video_arn_pattern(stream: str) -> str:
    # A KVS stream ARN ends in its creation time in ms, unknown before CreateStream: match any.
    return f"arn:aws:kinesisvideo:*:*:stream/{stream}/*"


def audit_lines(server: FramelogServer) -> list[dict]:
    path = server.data_dir / "audit" / "audit.log"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------------
# The module's server: three keys made before it starts
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Names:
    """Streams the policies name; created by the admin key once the server runs."""

    kds_a: str
    kds_b: str
    kvs_a: str
    kvs_b: str
    camera: str


@dataclass
class AuthSetup:
    server: FramelogServer
    credentials: Path
    names: Names
    admin: Key
    limited: Key
    camera: Key

    def kinesis(self, key: Key, config: Config | None = None):
        return self.server.client(key.access_key_id, key.secret_access_key, config)

    def kinesisvideo(self, key: Key, config: Config | None = None):
        return self.server.kinesisvideo_client(key.access_key_id, key.secret_access_key, config)

    def data_plane(self, service: str, key: Key, stream: str, api_name: str, config: Config | None = None):
        """A KVS data-plane client at the endpoint GetDataEndpoint returns to the admin key."""
        endpoint = self.kinesisvideo(self.admin).get_data_endpoint(StreamName=stream, APIName=api_name)["DataEndpoint"]
        return boto3.client(
            service,
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=key.access_key_id,
            aws_secret_access_key=key.secret_access_key,
            config=client_config().merge(config) if config else client_config(),
        )

    def fragments(self, stream: str) -> list[dict]:
        """Every fragment of `stream`, read with the admin key."""
        archive = self.data_plane("kinesis-video-archived-media", self.admin, stream, "LIST_FRAGMENTS")
        selector = server_range(0, int(time.time() * 1000) + 86_400_000)
        return archive.list_fragments(StreamName=stream, FragmentSelector=selector, MaxResults=1000)["Fragments"]


def limited_policy(names: Names) -> dict:
    """Writes to any data stream except B (Deny beats the Allow); reads of video stream A only."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "WriteDescribeDeleteAnyDataStream",
                "Effect": "Allow",
                "Action": ["kinesis:PutRecord", "kinesis:DescribeStreamSummary", "kinesis:DeleteStream"],
                "Resource": "arn:aws:kinesis:*:*:stream/*",
            },
            {"Sid": "NeverStreamB", "Effect": "Deny", "Action": "kinesis:*", "Resource": stream_arn(names.kds_b)},
            {
                "Sid": "ViewVideoA",
                "Effect": "Allow",
                "Action": ["kinesisvideo:Describe*", "kinesisvideo:GetDataEndpoint", "kinesisvideo:ListFragments"],
                "Resource": video_arn_pattern(names.kvs_a),
            },
        ],
    }


def camera_policy(names: Names) -> dict:
    """What a camera running kvssink needs on its own stream, and nothing else."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["kinesisvideo:DescribeStream", "kinesisvideo:GetDataEndpoint", "kinesisvideo:PutMedia"],
                "Resource": video_arn_pattern(names.camera),
            }
        ],
    }


@pytest.fixture(scope="module")
def auth(tmp_path_factory) -> AuthSetup:
    base = tmp_path_factory.mktemp("auth")
    credentials = base / "credentials.json"
    names = Names(*(new_stream_name(prefix) for prefix in ("auth-a", "auth-b", "auth-va", "auth-vb", "auth-cam")))
    admin, _ = keys_add(credentials, "admin")
    limited, _ = keys_add(credentials, "limited", limited_policy(names))
    camera, _ = keys_add(credentials, "camera", camera_policy(names))
    server = FramelogServer(framelog_bin(), base / "data", base, extra_args=["--credentials", str(credentials)])
    server.start()
    setup = AuthSetup(server, credentials, names, admin, limited, camera)
    kinesis = setup.kinesis(admin)
    kinesisvideo = setup.kinesisvideo(admin)
    for name in (names.kds_a, names.kds_b):
        kinesis.create_stream(StreamName=name, ShardCount=1)
    for name in (names.kvs_a, names.kvs_b, names.camera):
        kinesisvideo.create_stream(StreamName=name, DataRetentionInHours=24)
    yield setup
    server.stop_and_check_clean_exit()


# ------------------------------------------------------------------------------------------------
# framelog keys add
# ------------------------------------------------------------------------------------------------


def test_keys_add_prints_the_key_once_and_keeps_the_file_private(tmp_path):
    credentials = tmp_path / "credentials.json"

    first, first_proc = keys_add(credentials, "camera-1")
    mode_after_first = stat.S_IMODE(credentials.stat().st_mode)
    viewer_policy = {"Statement": [{"Effect": "Allow", "Action": "kinesisvideo:Get*", "Resource": "*"}]}
    second, second_proc = keys_add(credentials, "viewer", viewer_policy)
    stored = json.loads(credentials.read_text())["Keys"]

    # stdout is exactly one JSON document (json.loads in keys_add would fail on anything around it).
    assert set(json.loads(first_proc.stdout)) == {"UserName", "AccessKeyId", "SecretAccessKey"}
    assert first.user_name == "camera-1"
    for key in (first, second):
        assert len(key.access_key_id) == 20 and key.access_key_id.isalnum() and key.access_key_id.isupper(), key
        assert len(key.secret_access_key) == 40, key
    assert first.access_key_id != second.access_key_id and first.secret_access_key != second.secret_access_key
    # Printed once: the second add does not repeat the first secret.
    assert first.secret_access_key not in second_proc.stdout + second_proc.stderr
    # Without --policy the key may do everything, and the command says so on stderr (not in the JSON).
    assert "--policy" in first_proc.stderr
    assert mode_after_first == 0o600
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    # The second add appended: the first key is still there, unchanged.
    assert [(k["UserName"], k["AccessKeyId"], k["SecretAccessKey"]) for k in stored] == [
        ("camera-1", first.access_key_id, first.secret_access_key),
        ("viewer", second.access_key_id, second.secret_access_key),
    ]
    assert stored[1]["Policy"]["Statement"][0]["Action"] == "kinesisvideo:Get*"


# ------------------------------------------------------------------------------------------------
# The right key works, a wrong one is refused
# ------------------------------------------------------------------------------------------------


def test_kds_round_trip_with_the_right_key(auth):
    kinesis = auth.kinesis(auth.admin)
    name = new_stream_name("auth-rt")

    kinesis.create_stream(StreamName=name, ShardCount=1)
    put = kinesis.put_record(StreamName=name, Data=b"signed bytes", PartitionKey="pk")
    records = read_shard(kinesis, name, SHARD_ZERO)

    assert put["ShardId"] == SHARD_ZERO
    assert [(r["Data"], r["PartitionKey"], r["SequenceNumber"]) for r in records] == [
        (b"signed bytes", "pk", put["SequenceNumber"])
    ]


def test_kvs_control_plane_and_archive_with_the_right_key(auth):
    kinesisvideo = auth.kinesisvideo(auth.admin)
    name = new_stream_name("auth-v")

    arn = kinesisvideo.create_stream(StreamName=name, DataRetentionInHours=24)["StreamARN"]
    info = kinesisvideo.describe_stream(StreamName=name)["StreamInfo"]
    endpoint = kinesisvideo.get_data_endpoint(StreamName=name, APIName="LIST_FRAGMENTS")["DataEndpoint"]
    archive = auth.data_plane("kinesis-video-archived-media", auth.admin, name, "LIST_FRAGMENTS")
    selector = server_range(0, int(time.time() * 1000) + 60_000)
    fragments = archive.list_fragments(StreamName=name, FragmentSelector=selector)
    with pytest.raises(ClientError) as hls:
        archive.get_hls_streaming_session_url(StreamName=name, PlaybackMode="LIVE")

    assert arn.startswith(f"arn:aws:kinesisvideo:{REGION}:{ACCOUNT_ID}:stream/{name}/")
    assert (info["StreamName"], info["StreamARN"], info["Status"]) == (name, arn, "ACTIVE")
    assert endpoint == auth.server.endpoint
    assert fragments["Fragments"] == []
    # The signature was accepted: what comes back is the answer AWS gives for a stream without media.
    assert error_of(hls) == (
        "ResourceNotFoundException",
        "No fragments found in the stream for the streaming request.",
        404,
    )


BAD_CREDENTIALS = {
    # The key exists, the secret is wrong: the signature does not match.
    "wrong-secret": ("InvalidSignatureException", INVALID_SIGNATURE_MESSAGE),
    # No such key in the credentials file.
    "unknown-key": ("UnrecognizedClientException", UNRECOGNIZED_CLIENT_MESSAGE),
    # botocore's UNSIGNED sends no Authorization header at all.
    "unsigned": ("MissingAuthenticationTokenException", ""),
}
# The KDS JSON protocol refuses with 400, the KVS REST protocols with 403.
SERVICES = {"kinesis": 400, "kinesisvideo": 403, "kinesis-video-archived-media": 403}


@pytest.mark.parametrize("case", list(BAD_CREDENTIALS))
@pytest.mark.parametrize("service", list(SERVICES))
def test_bad_credentials_are_refused_with_awss_error(auth, service, case):
    key = {
        "wrong-secret": Key("admin", auth.admin.access_key_id, WRONG_SECRETS[0]),
        "unknown-key": Key("nobody", "FLAKAAAAAAAAAAAAAAAA", auth.admin.secret_access_key),
        "unsigned": auth.admin,
    }[case]
    config = Config(signature_version=UNSIGNED) if case == "unsigned" else None
    if service == "kinesis":
        call = auth.kinesis(key, config).describe_stream_summary
        kwargs = {"StreamName": auth.names.kds_a}
    elif service == "kinesisvideo":
        call = auth.kinesisvideo(key, config).describe_stream
        kwargs = {"StreamName": auth.names.kvs_a}
    else:
        client = auth.data_plane(service, key, auth.names.kvs_a, "LIST_FRAGMENTS", config)
        call = client.list_fragments
        kwargs = {"StreamName": auth.names.kvs_a, "FragmentSelector": server_range(0, 1)}
    expected_code, expected_message = BAD_CREDENTIALS[case]

    with pytest.raises(ClientError) as refused:
        call(**kwargs)

    code, message, status = error_of(refused)
    assert (code, status) == (expected_code, SERVICES[service]), refused.value.response
    assert message.startswith(expected_message), message


# ------------------------------------------------------------------------------------------------
# Policies
# ------------------------------------------------------------------------------------------------


def test_policy_allows_the_listed_actions_on_the_listed_stream(auth):
    kinesis = auth.kinesis(auth.limited)

    put = kinesis.put_record(StreamName=auth.names.kds_a, Data=b"from limited", PartitionKey="pk")
    summary = kinesis.describe_stream_summary(StreamName=auth.names.kds_a)["StreamDescriptionSummary"]

    assert put["ShardId"] == SHARD_ZERO
    assert summary["StreamName"] == auth.names.kds_a
    # The record is really there (read with the admin key: the limited key may not read).
    data = [r["Data"] for r in read_shard(auth.kinesis(auth.admin), auth.names.kds_a, SHARD_ZERO)]
    assert b"from limited" in data


def test_policy_explicit_deny_beats_allow_and_the_denied_delete_deletes_nothing(auth):
    kinesis = auth.kinesis(auth.limited)
    b = auth.names.kds_b

    with pytest.raises(ClientError) as put:
        kinesis.put_record(StreamName=b, Data=b"x", PartitionKey="pk")
    # DeleteStream is allowed on stream/*, but the Deny on B wins.
    with pytest.raises(ClientError) as delete:
        kinesis.delete_stream(StreamName=b)

    for excinfo, action in ((put, "kinesis:PutRecord"), (delete, "kinesis:DeleteStream")):
        code, message, status = error_of(excinfo)
        assert (code, status) == ("AccessDeniedException", 400), excinfo.value.response
        assert message.startswith(denied_message("limited", action, stream_arn(b))), message
        assert "explicit deny" in message, message
    summary = auth.kinesis(auth.admin).describe_stream_summary(StreamName=b)["StreamDescriptionSummary"]
    assert summary["StreamStatus"] == "ACTIVE"


def test_policy_without_a_matching_allow_denies(auth):
    kinesis = auth.kinesis(auth.limited)
    a = auth.names.kds_a
    never_created = new_stream_name("auth-denied")

    with pytest.raises(ClientError) as iterator:
        kinesis.get_shard_iterator(StreamName=a, ShardId=SHARD_ZERO, ShardIteratorType="TRIM_HORIZON")
    with pytest.raises(ClientError) as create:
        kinesis.create_stream(StreamName=never_created, ShardCount=1)
    # ListStreams names no stream: it is checked against resource "*", which stream/* does not cover.
    with pytest.raises(ClientError) as listing:
        kinesis.list_streams()

    assert code_status(iterator) == ("AccessDeniedException", 400)
    assert error_of(iterator)[1].startswith(denied_message("limited", "kinesis:GetShardIterator", stream_arn(a)))
    assert code_status(create) == ("AccessDeniedException", 400)
    assert error_of(create)[1].startswith(denied_message("limited", "kinesis:CreateStream", stream_arn(never_created)))
    assert code_status(listing) == ("AccessDeniedException", 400)
    assert never_created not in auth.kinesis(auth.admin).list_streams(Limit=1000)["StreamNames"]


def test_video_policy_scopes_reads_to_one_stream_and_answers_403(auth):
    kinesisvideo = auth.kinesisvideo(auth.limited)
    names = auth.names

    info = kinesisvideo.describe_stream(StreamName=names.kvs_a)["StreamInfo"]
    endpoint = kinesisvideo.get_data_endpoint(StreamName=names.kvs_a, APIName="GET_HLS_STREAMING_SESSION_URL")
    archive = auth.data_plane("kinesis-video-archived-media", auth.limited, names.kvs_a, "LIST_FRAGMENTS")
    listed = archive.list_fragments(StreamName=names.kvs_a, FragmentSelector=server_range(0, 1))
    with pytest.raises(ClientError) as other_stream:
        kinesisvideo.describe_stream(StreamName=names.kvs_b)
    with pytest.raises(ClientError) as delete:
        kinesisvideo.delete_stream(StreamARN=info["StreamARN"])
    # Only a caller allowed GetHLSStreamingSessionURL gets a session URL (its playlists are then unsigned).
    with pytest.raises(ClientError) as hls:
        archive.get_hls_streaming_session_url(StreamName=names.kvs_a, PlaybackMode="LIVE")

    assert info["StreamName"] == names.kvs_a
    assert endpoint["DataEndpoint"] == auth.server.endpoint
    assert listed["Fragments"] == []
    # B's ARN ends in its creation time, which this test does not know: its prefix is enough.
    b_arn_prefix = f"arn:aws:kinesisvideo:{REGION}:{ACCOUNT_ID}:stream/{names.kvs_b}/"
    for excinfo, action, resource in (
        (other_stream, "kinesisvideo:DescribeStream", b_arn_prefix),
        (delete, "kinesisvideo:DeleteStream", info["StreamARN"]),
        (hls, "kinesisvideo:GetHLSStreamingSessionURL", info["StreamARN"]),
    ):
        code, message, status = error_of(excinfo)
        assert (code, status) == ("AccessDeniedException", 403), excinfo.value.response
        assert message.startswith(denied_message("limited", action, resource)), message
    # The denied DeleteStream deleted nothing.
    assert auth.kinesisvideo(auth.admin).describe_stream(StreamName=names.kvs_a)["StreamInfo"]["Status"] == "ACTIVE"


# ------------------------------------------------------------------------------------------------
# AWS CLI
# ------------------------------------------------------------------------------------------------


def cli_as(auth: AuthSetup, key: Key, home: Path) -> AwsCli:
    cli = AwsCli(auth.server.endpoint, home)
    cli.env.update({"AWS_ACCESS_KEY_ID": key.access_key_id, "AWS_SECRET_ACCESS_KEY": key.secret_access_key})
    return cli


def test_aws_cli_signs_with_the_given_key_and_reports_access_denied(auth, tmp_path):
    admin = cli_as(auth, auth.admin, tmp_path)
    limited = cli_as(auth, auth.limited, tmp_path)
    wrong = cli_as(auth, Key("admin", auth.admin.access_key_id, WRONG_SECRETS[1]), tmp_path)
    name = new_stream_name("auth-cli")

    admin.run("kinesis", "create-stream", "--stream-name", name, "--shard-count", "1")
    described = limited.json("kinesis", "describe-stream-summary", "--stream-name", name)
    put = limited.json("kinesis", "put-record", "--stream-name", name, "--partition-key", "pk", "--data", "cli")
    denied = limited.run(
        "kinesis", "put-record", "--stream-name", auth.names.kds_b, "--partition-key", "pk", "--data", "x", check=False
    )
    not_allowed = limited.run("kinesis", "list-streams", check=False)
    bad_signature = wrong.run("kinesis", "list-streams", check=False)

    assert described["StreamDescriptionSummary"]["StreamName"] == name
    assert put["ShardId"] == SHARD_ZERO
    for proc in (denied, not_allowed):
        assert proc.returncode != 0, proc
        assert "AccessDeniedException" in proc.stderr, proc.stderr
    assert f"kinesis:PutRecord on resource: {stream_arn(auth.names.kds_b)}" in denied.stderr
    assert bad_signature.returncode != 0
    assert "InvalidSignatureException" in bad_signature.stderr, bad_signature.stderr


# ------------------------------------------------------------------------------------------------
# Hot reload of the credentials file
# ------------------------------------------------------------------------------------------------


def test_key_added_with_keys_add_works_without_a_restart(auth, tmp_path):
    # A key the server has never seen: made in a scratch file first, so it can be tried before it is known.
    unknown, _ = keys_add(tmp_path / "scratch.json", "late")
    before = outcome(auth.kinesis(unknown).list_streams)

    added, _ = keys_add(auth.credentials, "late")
    seen = poll_outcomes(auth.kinesis(added).list_streams, "ok")

    assert before == "UnrecognizedClientException"
    assert seen[-1] == "ok", f"the key added with `framelog keys add` was not accepted within {RELOAD_WAIT_S} s: {seen}"
    # Until the reload, the new key is simply unknown; nothing else may come back.
    assert set(seen[:-1]) <= {"UnrecognizedClientException"}, seen


def test_key_written_into_and_removed_from_the_file_takes_effect_without_a_restart(auth, tmp_path):
    # The key is minted into a scratch file, then copied into the live file by hand.
    key, _ = keys_add(tmp_path / "scratch.json", "hand-edited")
    scratch = json.loads((tmp_path / "scratch.json").read_text())["Keys"]
    kinesisvideo = auth.kinesisvideo(key)

    before = outcome(kinesisvideo.list_streams)
    document = json.loads(auth.credentials.read_text())
    write_credentials_file(auth.credentials, {"Keys": document["Keys"] + scratch})
    after_add = poll_outcomes(kinesisvideo.list_streams, "ok")
    document = json.loads(auth.credentials.read_text())
    remaining = [k for k in document["Keys"] if k["AccessKeyId"] != key.access_key_id]
    write_credentials_file(auth.credentials, {"Keys": remaining})
    after_remove = poll_outcomes(kinesisvideo.list_streams, "UnrecognizedClientException")

    assert before == "UnrecognizedClientException"
    assert after_add[-1] == "ok", f"not accepted within {RELOAD_WAIT_S} s of being written: {after_add}"
    assert after_remove[-1] == "UnrecognizedClientException", f"still accepted after {RELOAD_WAIT_S} s: {after_remove}"
    assert set(after_remove[:-1]) <= {"ok"}, after_remove
    assert stat.S_IMODE(auth.credentials.stat().st_mode) == 0o600
    # The other keys survived both reloads.
    assert outcome(auth.kinesis(auth.admin).list_streams) == "ok"


# ------------------------------------------------------------------------------------------------
# kvssink: AWS's producer signs DescribeStream, GetDataEndpoint and PutMedia itself
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kvssink_plugin():
    return kvssink_plugin_dir()


def test_kvssink_with_a_camera_key_persists_its_fragments(auth, kvssink_plugin, tmp_path):
    stream = auth.names.camera

    run = stream_test_pattern(
        auth.server.endpoint,
        stream,
        kvssink_plugin,
        tmp_path,
        CAMERA,
        access_key=auth.camera.access_key_id,
        secret_key=auth.camera.secret_access_key,
    )
    context = f"\n--- kvssink (tail) ---\n{run.log_tail()}\n--- framelog (tail) ---\n{auth.server.log_tail()}"

    assert run.returncode == 0, f"gst-launch-1.0 with kvssink exited {run.returncode}{context}"
    fragments = auth.fragments(stream)
    # One fragment per key frame (kvssink's key-frame fragmentation), the last one sent by the EOS flush.
    assert len(fragments) == CAMERA.key_frames, f"{len(fragments)} fragments stored{context}"
    assert run.log.count('"EventType":"PERSISTED"') == len(fragments), context
    # The camera key's PutMedia was allowed on its own stream's ARN, and audited as such.
    arn = auth.kinesisvideo(auth.admin).describe_stream(StreamName=stream)["StreamInfo"]["StreamARN"]
    puts = [e for e in audit_lines(auth.server) if e["action"] == "kinesisvideo:PutMedia" and e["resource"] == arn]
    assert puts and all(e["key_id"] == auth.camera.access_key_id and e["result"] == "allowed" for e in puts), puts


def test_kvssink_with_a_wrong_secret_stores_nothing(auth, kvssink_plugin, tmp_path):
    stream = new_stream_name("auth-badcam")
    auth.kinesisvideo(auth.admin).create_stream(StreamName=stream, DataRetentionInHours=24)
    wrong_secret = WRONG_SECRETS[2]
    cmd, cwd, _ = kvssink_command(stream, tmp_path, CAMERA, auth.admin.access_key_id, wrong_secret)
    log_path = tmp_path / "kvssink.log"

    # kvssink retries a refused DescribeStream forever, as a camera must: it never exits by itself, so the test
    # waits for the server to have refused it, then stops it.
    started_ms = time.time() * 1000

    def kvssink_entries() -> list[dict]:
        # The audit lines of this stream since kvssink started (the admin's CreateStream before is left out).
        return [e for e in audit_lines(auth.server) if stream in e["resource"] and e["time_ms"] >= started_ms]

    with open(log_path, "wb") as log:
        env = gst_env(kvssink_plugin, CONTROL_PLANE_URI=auth.server.endpoint)
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            refusals: list[dict] = []
            while not refusals and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.2)
                refusals = kvssink_entries()
            # Long enough for the whole 3 s pattern: had anything been accepted, PutMedia would have started.
            time.sleep(CAMERA.frames / CAMERA.fps)
        finally:
            proc.kill()
            proc.wait(timeout=10)
    sdk_log = log_path.read_text(errors="replace")
    entries = kvssink_entries()

    assert refusals, f"the server saw no request from kvssink within 30 s:\n{sdk_log[-4000:]}"
    assert {(e["key_id"], e["result"]) for e in entries} == {
        (auth.admin.access_key_id, "InvalidSignatureException")
    }, entries
    assert "kinesisvideo:PutMedia" not in {e["action"] for e in entries}
    assert "HTTP Error 403" in sdk_log and INVALID_SIGNATURE_MESSAGE in sdk_log, sdk_log[-4000:]
    assert auth.fragments(stream) == []


# ------------------------------------------------------------------------------------------------
# Start-up: no network listener without credentials
# ------------------------------------------------------------------------------------------------


def serve_command(listen: str, data_dir: Path, credentials: Path | None = None) -> list[str]:
    cmd = [framelog_bin(), "serve", "--listen", listen, "--data-dir", str(data_dir)]
    return cmd + ["--credentials", str(credentials)] if credentials else cmd


def wait_until_listening(proc: subprocess.Popen, port: int, log_path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"exited {proc.returncode}:\n{log_path.read_text(errors='replace')}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            log = log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, f"not listening after {timeout} s:\n{log}"
            time.sleep(0.05)


def test_open_server_refuses_to_listen_on_all_interfaces(tmp_path):
    port = _free_port()
    started = time.monotonic()

    proc = subprocess.run(
        serve_command(f"0.0.0.0:{port}", tmp_path / "data"), capture_output=True, text=True, timeout=REFUSED_START_S * 4
    )
    elapsed = time.monotonic() - started

    assert proc.returncode != 0, proc
    assert f"refusing to listen on 0.0.0.0:{port} without a credentials file" in proc.stdout + proc.stderr, proc
    assert elapsed < REFUSED_START_S, f"took {elapsed:.1f} s to refuse"


def test_server_with_credentials_listens_on_all_interfaces(tmp_path):
    credentials = tmp_path / "credentials.json"
    key, _ = keys_add(credentials, "admin")
    port = _free_port()
    log_path = tmp_path / "server.log"
    endpoint = f"http://127.0.0.1:{port}"
    signed = boto3.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=key.access_key_id,
        aws_secret_access_key=key.secret_access_key,
        config=client_config(),
    )
    unsigned_config = client_config().merge(Config(signature_version=UNSIGNED))
    unsigned = boto3.client("kinesis", endpoint_url=endpoint, region_name=REGION, config=unsigned_config)

    with open(log_path, "wb") as log:
        cmd = serve_command(f"0.0.0.0:{port}", tmp_path / "data", credentials)
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until_listening(proc, port, log_path)
            listed = signed.list_streams()
            with pytest.raises(ClientError) as refused:
                unsigned.list_streams()
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=10)

    assert listed["StreamNames"] == []
    assert code_status(refused) == ("MissingAuthenticationTokenException", 400)
    assert code == 0, log_path.read_text(errors="replace")


def test_server_refuses_a_credentials_file_others_can_read(tmp_path):
    credentials = tmp_path / "credentials.json"
    keys_add(credentials, "admin")
    credentials.chmod(0o644)

    proc = subprocess.run(
        serve_command(f"127.0.0.1:{_free_port()}", tmp_path / "data", credentials),
        capture_output=True,
        text=True,
        timeout=REFUSED_START_S * 4,
    )

    assert proc.returncode != 0, proc
    assert "chmod 600" in proc.stdout + proc.stderr, proc


# ------------------------------------------------------------------------------------------------
# Audit log
# ------------------------------------------------------------------------------------------------


def test_audit_log_records_mutations_and_refusals_without_secrets(auth):
    admin = auth.kinesis(auth.admin)
    name = new_stream_name("auth-audit")
    denied_name = new_stream_name("auth-audit-denied")

    admin.create_stream(StreamName=name, ShardCount=1)
    admin.describe_stream_summary(StreamName=name)  # a read: not audited
    with pytest.raises(ClientError) as denied:
        auth.kinesis(auth.limited).create_stream(StreamName=denied_name, ShardCount=1)
    path = auth.server.data_dir / "audit" / "audit.log"
    text = path.read_text()
    entries = audit_lines(auth.server)

    assert error_of(denied)[0] == "AccessDeniedException"
    fields = {"time_ms", "key_id", "action", "resource", "source_ip", "result"}
    assert all(set(e) == fields for e in entries), entries[:3]
    created = [e for e in entries if e["action"] == "kinesis:CreateStream" and e["resource"] == stream_arn(name)]
    refused = [e for e in entries if e["resource"] == stream_arn(denied_name)]
    assert [(e["key_id"], e["result"]) for e in created] == [(auth.admin.access_key_id, "allowed")], created
    assert [(e["key_id"], e["action"], e["result"]) for e in refused] == [
        (auth.limited.access_key_id, "kinesis:CreateStream", "AccessDeniedException")
    ], refused
    assert not [e for e in entries if e["action"] == "kinesis:DescribeStreamSummary" and name in e["resource"]]
    now_ms = time.time() * 1000
    assert all(now_ms - 60_000 < e["time_ms"] <= now_ms + 1000 for e in created + refused), created + refused
    # Secrets never reach the log: neither the keys' nor (when the earlier tests of this module ran) the wrong
    # ones their refused requests were signed with; the log names keys by id only.
    secrets = [auth.admin.secret_access_key, auth.limited.secret_access_key, auth.camera.secret_access_key]
    for secret in [*secrets, *WRONG_SECRETS]:
        assert secret not in text
    assert "SecretAccessKey" not in text
    assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, "the audit log must not be readable by others"


def test_audit_log_records_the_callers_address(auth):
    name = new_stream_name("auth-audit-ip")

    auth.kinesis(auth.admin).create_stream(StreamName=name, ShardCount=1)
    created = [e for e in audit_lines(auth.server) if e["resource"] == stream_arn(name)]

    assert [e["source_ip"] for e in created] == ["127.0.0.1"], created
