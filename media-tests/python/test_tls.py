"""HTTPS: `framelog cert --dev` and `framelog serve --tls-cert/--tls-key`, through the clients people point at it:
boto3 (kinesis, kinesisvideo, kinesis-video-archived-media), the AWS CLI, openssl s_client and curl, AWS's kvssink
producer and hls.js in headless Chromium.

One HTTPS server serves the whole module. Its certificate comes from `framelog cert --dev` (a new local CA and a
certificate for localhost / 127.0.0.1 / ::1), and it checks signatures against a credentials file with one admin
key made by `framelog keys add` (test_auth.py), as a real deployment with TLS would. Every client is given the CA
(or, for Chromium, the server key's SPKI hash) and nothing more: no test turns certificate checking off, and the
negative tests show that without the CA each client refuses the server.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import re
import shutil
import socket
import ssl
import stat
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import SSLError

from hls_helpers import HLS_API, UPLOAD_RANGE_MS, brief, parse_master, source_media
from kds_helpers import (
    REGION,
    SHARD_ZERO,
    AwsCli,
    FramelogServer,
    client_config,
    framelog_bin,
    new_stream_name,
    read_shard,
)
from kvs_helpers import PRODUCER_START_MS, assert_full_ack_sequence, create_stream, producer_range, server_range, upload
from kvssink_helpers import CameraPattern, kvssink_plugin_dir, stream_test_pattern
from test_auth import Key, audit_lines, keys_add
from test_browser_playback import assert_played, run_play, summary

# 3 s of camera, a key frame every second: three fragments, the last one only after kvssink's end-of-stream flush.
CAMERA = CameraPattern(frames=90, fps=30, key_int=30)
# Seconds of ON_DEMAND playback asked of hls.js: enough to cross fragment boundaries (2 s each), short enough to
# keep the module fast; test_browser_playback.py plays whole clips over plain HTTP.
PLAY_SECONDS = 4.0
DAY_S = 86_400
SERVICE_OF_PUT_MEDIA = "kinesisvideo"  # the SigV4 service name KVS data-plane requests are signed for


def run(cmd: list[str], stdin: bytes | None = b"", timeout: float = 30) -> subprocess.CompletedProcess:
    """Runs a command with stdin (empty by default: s_client then ends after the handshake); text output."""
    proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout)
    return subprocess.CompletedProcess(
        cmd, proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    )


def openssl(*args: str, stdin: bytes | None = b"") -> subprocess.CompletedProcess:
    binary = shutil.which("openssl")
    if not binary:
        pytest.fail("openssl not found (the TLS tests read certificates and handshakes with it)", pytrace=False)
    return run([binary, *args], stdin=stdin)


def spki_sha256_base64(cert_pem: Path) -> str:
    """Base64 SHA-256 of the certificate's DER SubjectPublicKeyInfo: what Chromium's
    --ignore-certificate-errors-spki-list takes. openssl extracts the key; the hash is computed here."""
    pubkey = openssl("x509", "-pubkey", "-noout", "-in", str(cert_pem))
    assert pubkey.returncode == 0, pubkey.stderr
    der = subprocess.run(
        [shutil.which("openssl") or "openssl", "pkey", "-pubin", "-outform", "der"],
        input=pubkey.stdout.encode(),
        capture_output=True,
        timeout=30,
    )
    assert der.returncode == 0 and der.stdout, der.stderr
    # The SPKI is a substructure of the certificate: finding its bytes there shows it is this certificate's key.
    assert der.stdout in ssl.PEM_cert_to_DER_cert(cert_pem.read_text())
    return base64.b64encode(hashlib.sha256(der.stdout).digest()).decode()


# ------------------------------------------------------------------------------------------------
# The module's server
# ------------------------------------------------------------------------------------------------


@dataclass
class TlsSetup:
    server: FramelogServer
    certs: Path  # what `framelog cert --dev --out` wrote into
    cert_proc: subprocess.CompletedProcess
    admin: Key

    @property
    def ca(self) -> Path:
        return self.certs / "ca.pem"

    @property
    def cert(self) -> Path:
        return self.certs / "server.pem"

    @property
    def key(self) -> Path:
        return self.certs / "server-key.pem"

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port

    def ssl_context(self) -> ssl.SSLContext:
        """Python's default client context (hostname and chain checked) trusting only the dev CA."""
        return ssl.create_default_context(cafile=str(self.ca))

    def kinesis(self):
        return self.server.client(self.admin.access_key_id, self.admin.secret_access_key)

    def kinesisvideo(self):
        return self.server.kinesisvideo_client(self.admin.access_key_id, self.admin.secret_access_key)

    def data_plane(self, service: str, stream: str, api_name: str):
        """A KVS data-plane client at the endpoint GetDataEndpoint returns, trusting the CA, signing as admin."""
        endpoint = self.kinesisvideo().get_data_endpoint(StreamName=stream, APIName=api_name)["DataEndpoint"]
        return boto3.client(
            service,
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=self.admin.access_key_id,
            aws_secret_access_key=self.admin.secret_access_key,
            config=client_config(),
            verify=str(self.ca),
        )

    def fragments(self, stream: str) -> list[dict]:
        archive = self.data_plane("kinesis-video-archived-media", stream, "LIST_FRAGMENTS")
        selector = server_range(0, int(time.time() * 1000) + DAY_S * 1000)
        return archive.list_fragments(StreamName=stream, FragmentSelector=selector, MaxResults=1000)["Fragments"]

    def sign_put_media(self, url: str, headers: dict[str, str]) -> dict[str, str]:
        """put_media's `sign` hook: SigV4 by botocore with the admin key, the body signed as the empty hash without
        an x-amz-content-sha256 header (as AWS's C producer signs its streamed PutMedia)."""
        unsigned = {k: v for k, v in headers.items() if k.lower() not in ("authorization", "x-amz-date")}
        request = AWSRequest(method="POST", url=url, headers=unsigned, data=b"")
        credentials = Credentials(self.admin.access_key_id, self.admin.secret_access_key)
        SigV4Auth(credentials, SERVICE_OF_PUT_MEDIA, REGION).add_auth(request)
        return dict(request.headers.items())


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> TlsSetup:
    base = tmp_path_factory.mktemp("tls")
    certs = base / "certs"
    cert_proc = run([framelog_bin(), "cert", "--dev", "--out", str(certs)])
    assert cert_proc.returncode == 0, f"framelog cert --dev exited {cert_proc.returncode}:\n{cert_proc.stderr}"
    credentials = base / "credentials.json"
    admin, _ = keys_add(credentials, "admin")
    server = FramelogServer(
        framelog_bin(),
        base / "data",
        base,
        extra_args=[
            "--tls-cert",
            str(certs / "server.pem"),
            "--tls-key",
            str(certs / "server-key.pem"),
            "--credentials",
            str(credentials),
        ],
        scheme="https",
        verify=str(certs / "ca.pem"),
    )
    server.start()
    yield TlsSetup(server, certs, cert_proc, admin)
    server.stop_and_check_clean_exit()


# ------------------------------------------------------------------------------------------------
# 1. framelog cert --dev
# ------------------------------------------------------------------------------------------------


def test_cert_dev_writes_a_ca_and_a_localhost_certificate_it_signs(tls):
    files = {path.name for path in tls.certs.iterdir()}
    text = openssl("x509", "-noout", "-text", "-in", str(tls.cert))
    dates = openssl("x509", "-noout", "-startdate", "-enddate", "-in", str(tls.cert))
    verified = openssl("verify", "-CAfile", str(tls.ca), str(tls.cert))
    ca_text = openssl("x509", "-noout", "-text", "-in", str(tls.ca))
    cert_key = openssl("x509", "-pubkey", "-noout", "-in", str(tls.cert))
    private_key = openssl("pkey", "-pubout", "-in", str(tls.key))

    assert files == {"ca.pem", "server.pem", "server-key.pem"}, files
    # The command tells the operator what to give clients and how to start the server.
    assert str(tls.ca) in tls.cert_proc.stdout and "--tls-cert" in tls.cert_proc.stdout, tls.cert_proc.stdout
    assert stat.S_IMODE(tls.key.stat().st_mode) == 0o600
    # The CA's private key is not kept (it can sign nothing else); the certificates hold no key.
    for pem in (tls.ca, tls.cert):
        assert "PRIVATE KEY" not in pem.read_text(), pem
    assert text.returncode == 0, text.stderr
    san = re.search(r"X509v3 Subject Alternative Name:.*?\n\s*(.+)", text.stdout)
    assert san, text.stdout
    names = {name.strip() for name in san.group(1).split(",")}
    assert {"DNS:localhost", "IP Address:127.0.0.1", "IP Address:0:0:0:0:0:0:0:1"} <= names, names
    assert "ASN1 OID: prime256v1" in text.stdout, "not an ECDSA P-256 key"
    assert "TLS Web Server Authentication" in text.stdout, "no serverAuth extended key usage"
    assert "CA:TRUE" in ca_text.stdout and "CA:TRUE" not in text.stdout
    # Valid from (at most a couple of days) before now for one year.
    # openssl prints `notBefore=Dec  3 00:00:00 2026 GMT`, the format ssl.cert_time_to_seconds reads.
    lines = dict(line.split("=", 1) for line in dates.stdout.splitlines())
    not_before, not_after = (ssl.cert_time_to_seconds(lines[k]) for k in ("notBefore", "notAfter"))
    now = time.time()
    assert now - 3 * DAY_S <= not_before <= now, dates.stdout
    assert 364 * DAY_S <= not_after - not_before <= 367 * DAY_S, dates.stdout
    # The CA signed it: the chain verifies with ca.pem as the only trust anchor.
    assert verified.returncode == 0 and verified.stdout.strip() == f"{tls.cert}: OK", verified
    # server-key.pem is the certificate's key.
    assert cert_key.returncode == 0 and private_key.returncode == 0, (cert_key.stderr, private_key.stderr)
    assert cert_key.stdout == private_key.stdout


# ------------------------------------------------------------------------------------------------
# 2. boto3
# ------------------------------------------------------------------------------------------------


def test_boto3_kinesis_round_trip_over_https_with_the_ca(tls):
    kinesis = tls.kinesis()  # verify=ca.pem (the server's `verify`), signed with the admin key
    name = new_stream_name("tls-kds")

    kinesis.create_stream(StreamName=name, ShardCount=1)
    put = kinesis.put_record(StreamName=name, Data=b"over tls", PartitionKey="pk")
    records = read_shard(kinesis, name, SHARD_ZERO)

    assert kinesis.meta.endpoint_url.startswith("https://"), kinesis.meta.endpoint_url
    assert [(r["Data"], r["PartitionKey"], r["SequenceNumber"]) for r in records] == [
        (b"over tls", "pk", put["SequenceNumber"])
    ]


def test_boto3_kinesisvideo_data_endpoints_are_https(tls):
    kinesisvideo = tls.kinesisvideo()
    name = new_stream_name("tls-kvs")

    arn = kinesisvideo.create_stream(StreamName=name, DataRetentionInHours=24)["StreamARN"]
    info = kinesisvideo.describe_stream(StreamName=name)["StreamInfo"]
    endpoints = {
        api: kinesisvideo.get_data_endpoint(StreamName=name, APIName=api)["DataEndpoint"]
        for api in ("PUT_MEDIA", "GET_MEDIA", "LIST_FRAGMENTS", HLS_API)
    }
    # The data plane answers at that endpoint, over TLS with the same CA.
    fragments = tls.fragments(name)

    assert (info["StreamARN"], info["Status"]) == (arn, "ACTIVE")
    # Clients build every data-plane URL from this: it must name the scheme the server speaks.
    assert set(endpoints.values()) == {f"https://127.0.0.1:{tls.port}"}, endpoints
    assert fragments == []


@pytest.mark.parametrize("service", ["kinesis", "kinesisvideo"])
def test_boto3_without_the_ca_fails_ssl_validation(tls, monkeypatch, service):
    # botocore's default trust store (certifi), unless AWS_CA_BUNDLE points elsewhere: make sure it does not.
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    client = boto3.client(
        service,
        endpoint_url=tls.server.endpoint,
        region_name=REGION,
        aws_access_key_id=tls.admin.access_key_id,
        aws_secret_access_key=tls.admin.secret_access_key,
        config=client_config(),
    )

    with pytest.raises(SSLError) as refused:
        client.list_streams()

    assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value), refused.value


# ------------------------------------------------------------------------------------------------
# 3. AWS CLI
# ------------------------------------------------------------------------------------------------


def test_aws_cli_with_ca_bundle_works_and_without_fails_ssl_validation(tls, tmp_path):
    cli = AwsCli(tls.server.endpoint, tmp_path)  # strips AWS_* (no AWS_CA_BUNDLE) from the environment
    cli.env.update({"AWS_ACCESS_KEY_ID": tls.admin.access_key_id, "AWS_SECRET_ACCESS_KEY": tls.admin.secret_access_key})
    name = new_stream_name("tls-cli")
    ca = ["--ca-bundle", str(tls.ca)]

    cli.run("kinesis", "create-stream", "--stream-name", name, "--shard-count", "1", *ca)
    listed = cli.json("kinesis", "list-streams", *ca)
    refused = cli.run("kinesis", "list-streams", check=False)

    assert name in listed["StreamNames"], listed
    assert refused.returncode != 0, refused
    assert "SSL validation failed" in refused.stderr, refused.stderr
    assert name not in refused.stdout


# ------------------------------------------------------------------------------------------------
# 4. Plain HTTP to the HTTPS port
# ------------------------------------------------------------------------------------------------


def test_plain_http_to_the_https_port_gets_no_http_answer(tls):
    with socket.create_connection(("127.0.0.1", tls.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer = b""
        try:
            while chunk := sock.recv(4096):
                answer += chunk
        except (TimeoutError, ConnectionResetError):
            pass  # what arrived before the server gave up on us is still checked below
    with pytest.raises((http.client.HTTPException, urllib.error.URLError, ConnectionError)) as urllib_error:
        urllib.request.urlopen(f"http://127.0.0.1:{tls.port}/", timeout=10)
    # The refusal did not hurt the listener: the next HTTPS request is answered.
    with urllib.request.urlopen(f"https://127.0.0.1:{tls.port}/", timeout=10, context=tls.ssl_context()) as ok:
        status = ok.status

    # The server answers cleartext with at most a TLS alert record (content type 21) and closes: never HTTP.
    assert not answer.startswith(b"HTTP/"), answer[:200]
    assert answer == b"" or answer[0] == 0x15, answer[:200]
    assert not isinstance(urllib_error.value, urllib.error.HTTPError), urllib_error.value
    assert status == 200


# ------------------------------------------------------------------------------------------------
# 5. ALPN (openssl s_client, curl)
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("offered", "chosen"), [("h2,http/1.1", "h2"), ("http/1.1", "http/1.1")])
def test_alpn_prefers_h2_and_falls_back_to_http11(tls, offered, chosen):
    # -verify_ip: the certificate must name 127.0.0.1, not just chain to the CA; -verify_return_error fails the
    # handshake on any verification error.
    proc = openssl(
        "s_client",
        "-alpn",
        offered,
        "-connect",
        f"127.0.0.1:{tls.port}",
        "-CAfile",
        str(tls.ca),
        "-verify_ip",
        "127.0.0.1",
        "-verify_return_error",
        stdin=b"",
    )

    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"ALPN protocol: {chosen}\n" in proc.stdout, proc.stdout[-3000:]
    assert "Verify return code: 0 (ok)" in proc.stdout, proc.stdout[-3000:]


def curl_path() -> str:
    found = shutil.which("curl")
    if not found:
        pytest.skip("curl is not installed")
    return found


def test_curl_http2_with_cacert_gets_200_and_without_it_is_refused(tls):
    url = f"https://localhost:{tls.port}/"
    # The URL's host is localhost (resolved to 127.0.0.1, where the server listens): the DNS SAN is checked too.
    common = [curl_path(), "-sS", "-o", "/dev/null", "--resolve", f"localhost:{tls.port}:127.0.0.1", "--max-time", "20"]
    write_out = ["-w", "%{http_version} %{http_code} %{ssl_verify_result}"]

    trusted = run([*common, *write_out, "--http2", "--cacert", str(tls.ca), url])
    untrusted = run([*common, "--http2", url])

    assert trusted.returncode == 0, trusted.stderr
    assert trusted.stdout == "2 200 0", trusted.stdout
    # 60: the peer certificate cannot be authenticated with the known CA certificates.
    assert untrusted.returncode == 60, (untrusted.returncode, untrusted.stderr)


# ------------------------------------------------------------------------------------------------
# 6. kvssink over TLS
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kvssink_plugin():
    return kvssink_plugin_dir()


def test_kvssink_streams_over_https_trusting_the_ca(tls, kvssink_plugin, tmp_path):
    stream = create_stream(tls.kinesisvideo(), prefix="tls-cam")

    # kvssink's producer SDK (libcurl) verifies the server against KVSSINK_CA_CERT_PATH (it must end in .pem) for
    # DescribeStream, GetDataEndpoint and PutMedia alike; the endpoint it is given is https only.
    timed_out = None
    try:
        camera = stream_test_pattern(
            tls.server.endpoint,
            stream,
            kvssink_plugin,
            tmp_path,
            CAMERA,
            access_key=tls.admin.access_key_id,
            secret_key=tls.admin.secret_access_key,
            env={"KVSSINK_CA_CERT_PATH": str(tls.ca)},
        )
    except pytest.fail.Exception as failed:
        timed_out = failed.msg
    if timed_out is not None:
        # kvssink retries refused requests forever, so a refusal shows up as a timeout: the server's audit log says
        # what it refused (the SDK's log tail rarely reaches back to the answer).
        refused = [e for e in audit_lines(tls.server) if stream in e["resource"] and e["result"] != "allowed"]
        pytest.fail(
            f"{timed_out}\n--- refused by the server (audit log, last 5 of {len(refused)}) ---\n{refused[-5:]}",
            pytrace=False,
        )
    context = f"\n--- kvssink (tail) ---\n{camera.log_tail()}\n--- framelog (tail) ---\n{tls.server.log_tail()}"

    assert camera.returncode == 0, f"gst-launch-1.0 with kvssink exited {camera.returncode}{context}"
    acks = re.findall(r'"EventType":"(\w+)"', camera.log)
    assert "ERROR" not in acks, f"the server sent kvssink ERROR acks{context}"
    fragments = tls.fragments(stream)
    # One fragment per key frame (kvssink's key-frame fragmentation), the last one sent by the EOS flush.
    assert len(fragments) == CAMERA.key_frames, f"{len(fragments)} fragments stored{context}"
    assert acks.count("PERSISTED") == len(fragments), context


# ------------------------------------------------------------------------------------------------
# 7. hls.js in headless Chromium over HTTPS
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Clip:
    path: Path
    width: int
    height: int


@pytest.fixture(scope="module")
def clip(h264_420_aac_mkv) -> Clip:
    """The browser suite's media (8-bit 4:2:0 H.264 High + AAC LC, which Chromium decodes)."""
    video = source_media(h264_420_aac_mkv).streams["video"]
    return Clip(h264_420_aac_mkv, int(video["width"]), int(video["height"]))


@pytest.fixture(scope="module")
def vod_stream(tls, clip) -> str:
    """The clip uploaded once over HTTPS (RELATIVE, the HLS suite's producer start) with the browser suite's upload
    helper, PutMedia signed with the admin key."""
    kinesisvideo = tls.kinesisvideo()
    stream = create_stream(kinesisvideo, prefix="tls-vod")
    result = upload(kinesisvideo, stream, clip.path, ssl_context=tls.ssl_context(), sign=tls.sign_put_media)
    assert_full_ack_sequence(result)
    return stream


@pytest.fixture(scope="module")
def hls_url(tls, vod_stream) -> str:
    """An ON_DEMAND HLS session over the whole upload, from GetHLSStreamingSessionURL over HTTPS."""
    selector = producer_range(PRODUCER_START_MS, PRODUCER_START_MS + UPLOAD_RANGE_MS)
    client = tls.data_plane("kinesis-video-archived-media", vod_stream, HLS_API)
    response = client.get_hls_streaming_session_url(
        StreamName=vod_stream, PlaybackMode="ON_DEMAND", HLSFragmentSelector=selector
    )
    return response["HLSStreamingSessionURL"]


def chromium_trusting(spki_hash: str, directory: Path) -> Path:
    """An executable that starts play.mjs's Chromium with --ignore-certificate-errors-spki-list=<hash>: certificate
    errors are overlooked for a chain holding exactly that key and for nothing else. play.mjs takes its browser
    from FRAMELOG_CHROMIUM, so only the runs of this module get the flag."""
    chromium = os.environ.get("FRAMELOG_CHROMIUM", "/usr/bin/chromium")
    wrapper = directory / "chromium-spki"
    wrapper.write_text(f'#!/bin/sh\nexec {chromium} --ignore-certificate-errors-spki-list={spki_hash} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def play_over_https(tls, monkeypatch, tmp_path: Path, name: str, url: str, spki_hash: str) -> dict:
    monkeypatch.setenv("FRAMELOG_CHROMIUM", str(chromium_trusting(spki_hash, tmp_path)))
    # play.mjs asks (from node) whether the server serves /console/hls.min.js; node trusts the CA for that probe,
    # so the page then loads hls.js from the server over TLS, through Chromium.
    monkeypatch.setenv("NODE_EXTRA_CA_CERTS", str(tls.ca))
    return run_play(name, tmp_path, "hls", url, seconds=PLAY_SECONDS)


def test_session_url_and_playlists_are_https(tls, hls_url):
    origin = f"https://127.0.0.1:{tls.port}"
    with urllib.request.urlopen(hls_url, timeout=30, context=tls.ssl_context()) as response:
        master = parse_master(hls_url, response.read().decode())
    media_urls = master.media_playlist_urls()
    with urllib.request.urlopen(media_urls[0], timeout=30, context=tls.ssl_context()) as response:
        media_text = response.read().decode()

    assert hls_url.startswith(f"{origin}/hls/v1/getHLSMasterPlaylist.m3u8?"), brief(hls_url)
    # A browser page of the https origin cannot load http:// playlists or segments (mixed content).
    assert media_urls and all(u.startswith(f"{origin}/hls/v1/") for u in media_urls), brief(master.text)
    assert "http://" not in master.text + media_text, brief(master.text + media_text)


def test_hls_js_plays_over_https_trusting_only_the_server_key(request, tls, monkeypatch, tmp_path, clip, hls_url):
    origin = f"https://127.0.0.1:{tls.port}"

    result = play_over_https(tls, monkeypatch, tmp_path, request.node.name, hls_url, spki_sha256_base64(tls.cert))

    assert result["pageOrigin"] == origin, summary(result)
    # hls.js itself came from the server over TLS (the probe succeeded), not from node_modules.
    assert result["hlsJs"]["from"] == f"{origin}/console/hls.min.js", summary(result)
    assert result["live"] is False, summary(result)
    assert_played(result, PLAY_SECONDS, clip.width, clip.height)
    assert result["httpErrors"] == [], summary(result)
    assert result["fragmentNumbers"], summary(result)


def test_chromium_pinning_another_key_refuses_the_server(request, tls, monkeypatch, tmp_path, hls_url):
    # The control of the test above: the same run with the CA's key in the list instead of the server's. Chromium
    # checks certificates here (nothing else in the launch turns checking off), and the flag is not a blanket
    # override: it trusts the listed key only.
    result = play_over_https(tls, monkeypatch, tmp_path, request.node.name, hls_url, spki_sha256_base64(tls.ca))

    origin = f"https://127.0.0.1:{tls.port}/"
    failures = [e for e in result.get("httpErrors", []) if e.get("url", "").startswith(origin)]
    assert result["ok"] is False and result["played"] == 0, summary(result)
    assert failures and all(e["status"] == 0 and e["error"].startswith("net::ERR_CERT_") for e in failures), (
        summary(result)
    )
