"""The web console's sign-in, in headless Chromium (media-tests/browser/play.mjs, console-script mode): against a
server started with `--credentials`, the console asks for a key, signs every API call with SigV4 in the browser
(WebCrypto), shows what the key's policy refuses in place of the data, and keeps the key in sessionStorage only.

One keys-mode server serves the module, with two keys made by `framelog keys add`: an admin key (no policy: may do
everything) and a viewer key whose policy allows listing every stream but viewing only ALLOWED. The fixture clip is
uploaded (signed PutMedia) into ALLOWED and OTHER. Each browser run is a list of steps (sign in, open a stream,
play, sign out...) after each of which play.mjs records what the page shows and its storages; it also records every
request the page made with all its headers, which is where the tests look for the secret.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from hls_helpers import source_media
from kds_helpers import ACCOUNT_ID, REGION, FramelogServer, framelog_bin
from kvs_helpers import assert_full_ack_sequence, create_stream, upload
from test_auth import INVALID_SIGNATURE_MESSAGE, UNRECOGNIZED_CLIENT_MESSAGE, Key, denied_message, keys_add
from test_browser_playback import run_play, summary

ALLOWED = "allowed-cam"
OTHER = "other-cam"
PLAY_SECONDS = 4.0
CREDENTIALS_ITEM = "framelog.console.credentials"  # the console's sessionStorage entry
WRONG_SECRET = "w" * 40
UNKNOWN_KEY_ID = "FLAKNOSUCHKEY0000000"


def viewer_policy() -> dict:
    """Lists every stream; describes, lists fragments of and plays ALLOWED only (no GetImages)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "WatchAllowedCam",
                "Effect": "Allow",
                "Action": [
                    "kinesisvideo:ListStreams",
                    "kinesisvideo:DescribeStream",
                    "kinesisvideo:GetDataEndpoint",
                    "kinesisvideo:GetHLSStreamingSessionURL",
                    "kinesisvideo:ListFragments",
                ],
                "Resource": f"arn:aws:kinesisvideo:*:*:stream/{ALLOWED}/*",
            },
            {"Sid": "ListEveryStream", "Effect": "Allow", "Action": "kinesisvideo:ListStreams", "Resource": "*"},
        ],
    }


def put_media_signer(key: Key):
    """put_media's `sign` hook: botocore's SigV4 with `key`, the streamed body signed as the empty hash (as
    test_tls.py signs it, and AWS's C producer)."""

    def sign(url: str, headers: dict[str, str]) -> dict[str, str]:
        unsigned = {k: v for k, v in headers.items() if k.lower() not in ("authorization", "x-amz-date")}
        request = AWSRequest(method="POST", url=url, headers=unsigned, data=b"")
        SigV4Auth(Credentials(key.access_key_id, key.secret_access_key), "kinesisvideo", REGION).add_auth(request)
        return dict(request.headers.items())

    return sign


@dataclass(frozen=True)
class KeysSetup:
    server: FramelogServer
    admin: Key
    viewer: Key
    width: int
    height: int

    @property
    def secrets(self) -> list[str]:
        return [self.admin.secret_access_key, self.viewer.secret_access_key]


@pytest.fixture(scope="module")
def keys(tmp_path_factory, h264_420_aac_mkv) -> KeysSetup:
    base = tmp_path_factory.mktemp("console-signin")
    credentials = base / "credentials.json"
    admin, _ = keys_add(credentials, "console-admin")
    viewer, _ = keys_add(credentials, "console-viewer", viewer_policy())
    server = FramelogServer(framelog_bin(), base / "data", base, extra_args=["--credentials", str(credentials)])
    server.start()
    kinesisvideo = server.kinesisvideo_client(admin.access_key_id, admin.secret_access_key)
    for stream in (ALLOWED, OTHER):
        kinesisvideo.create_stream(StreamName=stream, DataRetentionInHours=24)
        # Recorded in the last half minute, inside the console's default 24 h look-back.
        result = upload(
            kinesisvideo, stream, h264_420_aac_mkv, producer_start=time.time() - 25, sign=put_media_signer(admin)
        )
        assert_full_ack_sequence(result)
    video = source_media(h264_420_aac_mkv).streams["video"]
    yield KeysSetup(server, admin, viewer, int(video["width"]), int(video["height"]))
    server.stop_and_check_clean_exit()


def run_script(name: str, directory: Path, endpoint: str, steps: list[dict]) -> dict:
    """One console-script run of play.mjs: the result with result["steps"][i]["view"] after step i."""
    steps_file = directory / f"{name}.steps.json"
    steps_file.write_text(json.dumps(steps))
    result = run_play(name, directory, "console-script", endpoint, str(steps_file))
    assert len(result.get("steps", [])) == len(steps), summary(without_requests(result))
    return result


def without_requests(result: dict) -> dict:
    """The result for an assertion message: the request log is long and says little there."""
    return {k: v for k, v in result.items() if k != "requests"}


def sign_in(key: Key, secret: str | None = None, **extra) -> dict:
    return {"do": "signIn", "accessKeyId": key.access_key_id, "secretAccessKey": secret or key.secret_access_key, **extra}


def api_requests(result: dict) -> list[dict]:
    """The page's API calls: POSTs to the server (HLS playlists and media are GETs under /hls/v1; a WHEP offer is a
    POST under /whep/v1 whose session token, not a signature, is its authority)."""
    return [r for r in result["requests"] if r["method"] == "POST" and "/whep/v1/" not in r["url"]]


# ------------------------------------------------------------------------------------------------
# The runs (one browser each, shared by the tests that read them)
# ------------------------------------------------------------------------------------------------

ADMIN_STEPS = ["load", "wrong secret", "unknown key", "admin", "open allowed", "play", "open other", "reload",
               "sign out", "reload after sign-out"]  # fmt: skip


@pytest.fixture(scope="module")
def admin_run(tmp_path_factory, keys) -> dict[str, dict]:
    """The admin's session: refused sign-ins first, then in, both streams, out. {step name: step record}."""
    admin = keys.admin
    steps = [
        {"do": "load", "shot": True},
        {**sign_in(admin, WRONG_SECRET), "shot": True},
        sign_in(Key("nobody", UNKNOWN_KEY_ID, admin.secret_access_key)),
        sign_in(admin),
        {"do": "open", "stream": ALLOWED},
        {"do": "play", "seconds": PLAY_SECONDS, "shot": True},
        {"do": "open", "stream": OTHER},
        {"do": "reload"},
        {"do": "signOut", "shot": True},
        {"do": "reload"},
    ]
    result = run_script("console_signin_admin", tmp_path_factory.mktemp("signin-admin"), keys.server.endpoint, steps)
    return {"result": result, **dict(zip(ADMIN_STEPS, result["steps"]))}


@pytest.fixture(scope="module")
def viewer_run(tmp_path_factory, keys) -> dict[str, dict]:
    """The viewer key's session: OTHER is refused, ALLOWED plays, its still is refused. {step name: record}."""
    steps = [
        {"do": "load"},
        sign_in(keys.viewer),
        {"do": "open", "stream": OTHER, "shot": True},
        {"do": "open", "stream": ALLOWED},
        {"do": "play", "seconds": PLAY_SECONDS},
        {"do": "still", "shot": True},
    ]
    names = ["load", "viewer", "open other", "open allowed", "play", "still"]
    result = run_script("console_signin_viewer", tmp_path_factory.mktemp("signin-viewer"), keys.server.endpoint, steps)
    return {"result": result, **dict(zip(names, result["steps"]))}


def assert_played(step: dict, keys: KeysSetup) -> None:
    text = summary(step)
    assert step["errors"] == [], text
    assert step["played"] >= PLAY_SECONDS, text
    assert step["end"] - step["start"] >= PLAY_SECONDS - 0.5, text  # no seek ate the played time
    assert (step["width"], step["height"]) == (keys.width, keys.height), text
    assert step["ok"] is True, text


def stored_key(view: dict) -> dict | None:
    item = view["sessionStorage"].get(CREDENTIALS_ITEM)
    return json.loads(item) if item else None


# ------------------------------------------------------------------------------------------------
# (a)-(e): what the console shows
# ------------------------------------------------------------------------------------------------


def test_console_asks_for_a_key_when_the_server_checks_signatures(admin_run):
    view = admin_run["load"]["view"]

    assert view["signIn"] is True and view["main"] is False, summary(view)
    assert view["signInError"] == "", summary(view)  # asked, not refused
    assert view["streams"] == [] and view["account"] is None, summary(view)
    # The console's first call went unsigned and was answered MissingAuthenticationToken.
    first = api_requests(admin_run["result"])[0]
    assert first["url"].endswith("/listStreams") and "authorization" not in first["headers"], first


def test_a_wrong_secret_or_unknown_key_fails_the_sign_in_and_is_not_kept(admin_run):
    for name, message in (("wrong secret", INVALID_SIGNATURE_MESSAGE), ("unknown key", UNRECOGNIZED_CLIENT_MESSAGE)):
        view = admin_run[name]["view"]
        assert view["signIn"] is True and view["main"] is False, (name, summary(view))
        assert view["signInError"].startswith(f"Sign-in failed: {message}"), (name, view["signInError"])
        assert view["sessionStorage"] == {} and view["account"] is None, (name, summary(view))


def test_the_admin_key_lists_both_streams_and_plays(admin_run, keys):
    signed_in = admin_run["admin"]["view"]
    opened = admin_run["open allowed"]["view"]
    other = admin_run["open other"]["view"]

    assert signed_in["signIn"] is False and signed_in["main"] is True, summary(signed_in)
    assert signed_in["streams"] == [ALLOWED, OTHER], summary(signed_in)
    assert signed_in["account"] == f"Signed in as {keys.admin.access_key_id}", summary(signed_in)
    assert opened["fragments"] > 0 and opened["viewerMessage"] is None, summary(opened)
    assert_played(admin_run["play"], keys)
    assert other["fragments"] > 0 and other["viewerMessage"] is None, summary(other)


def test_the_key_lasts_the_tab_across_a_reload(admin_run, keys):
    view = admin_run["reload"]["view"]

    assert view["signIn"] is False and view["streams"] == [ALLOWED, OTHER], summary(view)
    assert stored_key(view)["accessKeyId"] == keys.admin.access_key_id


def test_the_viewer_key_sees_only_what_its_policy_allows(viewer_run, keys):
    listed = viewer_run["viewer"]["view"]
    refused = viewer_run["open other"]["view"]
    allowed = viewer_run["open allowed"]["view"]
    still = viewer_run["still"]["view"]
    user = keys.viewer.user_name

    # ListStreams is allowed on "*": both streams are listed.
    assert listed["signIn"] is False and listed["streams"] == [ALLOWED, OTHER], summary(listed)
    # OTHER: the server's AccessDenied message where the timeline would be, no fragments.
    other_arn = f"arn:aws:kinesisvideo:{REGION}:{ACCOUNT_ID}:stream/{OTHER}/"
    expected = "Not allowed: " + denied_message(user, "kinesisvideo:ListFragments", other_arn)
    assert (refused["viewerMessage"] or "").startswith(expected), summary(refused)
    assert refused["fragments"] == 0, summary(refused)
    # ALLOWED: the message is gone, the timeline is there and it plays.
    assert allowed["viewerMessage"] is None and allowed["fragments"] > 0, summary(allowed)
    assert_played(viewer_run["play"], keys)
    # GetImages is not in the policy: the still is refused in the same place, the video plays on.
    allowed_arn = f"arn:aws:kinesisvideo:{REGION}:{ACCOUNT_ID}:stream/{ALLOWED}/"
    expected = "Not allowed: " + denied_message(user, "kinesisvideo:GetImages", allowed_arn)
    assert (still["viewerMessage"] or "").startswith(expected), summary(still)
    assert still["still"] is False, summary(still)


def test_sign_out_forgets_the_key_and_asks_again(admin_run):
    for name in ("sign out", "reload after sign-out"):
        view = admin_run[name]["view"]
        assert view["sessionStorage"] == {}, (name, summary(view))
        assert view["signIn"] is True and view["main"] is False, (name, summary(view))
        assert view["streams"] == [] and view["account"] is None, (name, summary(view))
    # After the sign-out's reload the console asked the server once more, unsigned.
    assert api_requests(admin_run["result"])[-1]["headers"].get("authorization") is None


# ------------------------------------------------------------------------------------------------
# (f): where the key goes
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", ["admin_run", "viewer_run"])
def test_the_secret_is_never_in_a_url_a_request_or_local_storage(request, keys, run):
    result = request.getfixturevalue(run)["result"]
    secrets = [*keys.secrets, WRONG_SECRET]

    assert result["requests"], summary(without_requests(result))
    for sent in result["requests"]:
        text = json.dumps(sent)
        assert not any(secret in text for secret in secrets), sent["url"]
    for step in result["steps"]:
        view = step["view"]
        kept = json.dumps([view["localStorage"], view["cookie"], view["url"]])
        assert not any(secret in kept for secret in secrets), (step["do"], kept)
        assert view["localStorage"] == {} and view["cookie"] == "", (step["do"], summary(view))
        # The form is never submitted as a page load: the page stays at the console's root.
        assert view["url"] == f"{keys.server.endpoint}/", (step["do"], view["url"])


def test_every_api_call_after_sign_in_is_signed_with_the_key(viewer_run, keys):
    calls = api_requests(viewer_run["result"])
    video_scope = f"/{REGION}/kinesisvideo/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature="
    # The data streams view's KDS calls (POST / with an X-Amz-Target) sign the target too.
    data_scope = f"/{REGION}/kinesis/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature="

    # The first ListStreams is unsigned (it is what asks for the key); every later call is signed by the viewer key.
    assert calls[0]["headers"].get("authorization") is None, calls[0]
    assert len(calls) > 4, [c["url"] for c in calls]
    assert any(call["headers"].get("x-amz-target", "").startswith("Kinesis_20131202.") for call in calls[1:]), calls
    for call in calls[1:]:
        authorization = call["headers"].get("authorization", "")
        assert authorization.startswith(f"AWS4-HMAC-SHA256 Credential={keys.viewer.access_key_id}/"), call
        scope = data_scope if call["headers"].get("x-amz-target") else video_scope
        assert scope in authorization, authorization
        assert call["headers"]["host"] == keys.server.endpoint.split("//")[1], call["headers"]


# ------------------------------------------------------------------------------------------------
# Open mode: unchanged, and the signer against botocore
# ------------------------------------------------------------------------------------------------

SIGN_DATE = datetime(2026, 3, 14, 15, 9, 26, tzinfo=timezone.utc)
SIGN_BODY = json.dumps({"StreamName": "a cam é", "MaxResults": 5}, ensure_ascii=False)  # non-ASCII: hashed as the UTF-8 sent
SESSION_TOKEN = "FwoGZXIvYXdzEJr//////////wEaDOpaque+Token/Value=="


@pytest.fixture(scope="module")
def open_run(tmp_path_factory, server, kinesisvideo) -> dict:
    """The console on the session's open-mode server: it loads, then its signer signs two requests."""
    stream = create_stream(kinesisvideo, prefix="signin-open")
    credentials = {"accessKeyId": "AKIDEXAMPLE", "secretAccessKey": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}
    date = SIGN_DATE.isoformat().replace("+00:00", "Z")
    steps = [
        {"do": "load"},
        {"do": "sign", "credentials": {**credentials, "region": REGION}, "path": "/listFragments", "body": SIGN_BODY,
         "date": date},
        {"do": "sign", "credentials": {**credentials, "region": "eu-west-1", "sessionToken": SESSION_TOKEN},
         "path": "/getHLSStreamingSessionURL", "body": "{}", "date": date},
    ]  # fmt: skip
    result = run_script("console_signin_open", tmp_path_factory.mktemp("signin-open"), server.endpoint, steps)
    return {"result": result, "stream": stream, "credentials": credentials}


def test_open_mode_asks_for_no_key_and_signs_nothing(open_run):
    result = open_run["result"]
    view = result["steps"][0]["view"]

    assert view["signIn"] is False and view["main"] is True, summary(view)
    assert open_run["stream"] in view["streams"], summary(view)
    assert view["account"] is None and view["sessionStorage"] == {}, summary(view)
    calls = api_requests(result)
    video = [c for c in calls if not c["headers"].get("x-amz-target")]
    assert [c["headers"].get("authorization") for c in video] == [None], calls
    # KDS wants an Authorization header whatever the mode: the data streams view signs with the
    # placeholder key "anonymous", which an open server accepts like any other.
    data = [c for c in calls if c["headers"].get("x-amz-target")]
    assert data and all("Credential=anonymous/" in c["headers"].get("authorization", "") for c in data), data


def botocore_headers(endpoint: str, path: str, body: str, key_id: str, secret: str, region: str, token=None) -> dict:
    """botocore's SigV4 of the console's request at SIGN_DATE: {lower-cased header name: value}."""
    request = AWSRequest(method="POST", url=f"{endpoint}{path}", data=body.encode(),
                         headers={"Content-Type": "application/json"})  # fmt: skip
    with mock.patch("botocore.auth.get_current_datetime", return_value=SIGN_DATE.replace(tzinfo=None)):
        SigV4Auth(Credentials(key_id, secret, token), "kinesisvideo", region).add_auth(request)
    return {k.lower(): v for k, v in request.headers.items()}


@pytest.mark.parametrize("index, region, token", [(1, REGION, None), (2, "eu-west-1", SESSION_TOKEN)])
def test_the_console_signer_matches_botocore(open_run, server, index, region, token):
    step = open_run["result"]["steps"][index]
    key_id, secret = open_run["credentials"]["accessKeyId"], open_run["credentials"]["secretAccessKey"]
    path = "/listFragments" if index == 1 else "/getHLSStreamingSessionURL"
    body = SIGN_BODY if index == 1 else "{}"

    expected = botocore_headers(server.endpoint, path, body, key_id, secret, region, token)
    signed = {k.lower(): v for k, v in step["headers"].items()}

    assert signed["authorization"] == expected["authorization"], (signed, expected)
    assert signed["x-amz-date"] == expected["x-amz-date"] == "20260314T150926Z"
    assert signed.get("x-amz-security-token") == expected.get("x-amz-security-token") == token
