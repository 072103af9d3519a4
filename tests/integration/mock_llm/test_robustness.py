"""Hostile and bad input gets a 4xx JSON answer, and the server keeps serving."""

from __future__ import annotations

import socket
import subprocess
import time
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from surgebench.process import surgebench_argv
from tests.integration.mock_llm.conftest import StartMock

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]
CHAT = "/v1/chat/completions"
OK_BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def raw_exchange(url: str, data: bytes, *, timeout_s: float = 5.0) -> bytes:
    """Send raw bytes, return everything the server sends until it closes (or timeout)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout_s) as sock:
        sock.sendall(data)
        out = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            out += chunk
        return out


def status_and_error(raw: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head[9:12]), orjson.loads(body)["error"]


def assert_still_serving(url: str) -> None:
    r = httpx.post(url + CHAT, json=OK_BODY, timeout=5)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 8


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", "body"),
        (b'{"model": "m", "messages": [{"role": "user", "content": "\xff\xfe"}]}', "body"),
        (b"[" * 3000 + b"]" * 3000, "body"),
        (b'{"model": "m"}', "messages"),
        (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": -5}', "max_tokens"),
        (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": "9"}', "max_tokens"),
        (b'{"messages": [{"role": "user", "content": "x"}], "stream": 1}', "stream"),
        (b'{"messages": {"role": "user"}}', "messages"),
    ],
)
def test_bad_bodies_get_400_naming_the_field(mock_url: str, body: bytes, param: str) -> None:
    r = httpx.post(mock_url + CHAT, content=body, timeout=5)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error" and err["message"]
    assert_still_serving(mock_url)


def test_oversized_body_rejected_before_it_is_read(start_mock: StartMock) -> None:
    url = start_mock("--max-body-bytes", "10000", "--output-tokens", "8", "--itl-ms", "0").url
    host = urlsplit(url).netloc
    # Announce 1 GB but send only the headers: the 413 must come without the body.
    raw = raw_exchange(
        url,
        f"POST {CHAT} HTTP/1.1\r\nhost: {host}\r\ncontent-length: 1000000000\r\n\r\n".encode(),
    )
    status, err = status_and_error(raw)
    assert status == 413 and "10000" in str(err["message"])
    # A chunked body that grows past the limit while being read.
    chunk = b"a" * 8000
    data = (
        f"POST {CHAT} HTTP/1.1\r\nhost: {host}\r\ntransfer-encoding: chunked\r\n\r\n".encode()
        + (b"%x\r\n%s\r\n" % (len(chunk), chunk)) * 3
    )
    status, _ = status_and_error(raw_exchange(url, data))
    assert status == 413
    assert_still_serving(url)


def test_malformed_http_gets_400(mock_url: str) -> None:
    status, err = status_and_error(raw_exchange(mock_url, b"NOT HTTP AT ALL\r\n\r\n"))
    assert status == 400 and "malformed" in str(err["message"])
    assert_still_serving(mock_url)


@pytest.mark.serial  # an upper bound on time: run alone (see the Makefile)
def test_slowloris_gets_408_after_the_read_timeout(start_mock: StartMock) -> None:
    url = start_mock("--read-timeout-s", "0.5", "--output-tokens", "8", "--itl-ms", "0").url
    parts = urlsplit(url)
    started = time.monotonic()
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{"
        )
        raw = sock.recv(65536)
    elapsed = time.monotonic() - started
    status, _ = status_and_error(raw)
    assert status == 408 and 0.4 < elapsed < 3.0
    assert_still_serving(url)


def test_unknown_path_method_and_model(start_mock: StartMock) -> None:
    url = start_mock("--served-models", "a,b", "--output-tokens", "8", "--itl-ms", "0").url
    unknown = httpx.post(url + "/v1/nope", json={})
    assert unknown.status_code == 404  # as OpenAI words it
    assert unknown.json()["error"]["type"] == "invalid_request_error"
    assert unknown.json()["error"]["message"] == "Invalid URL (POST /v1/nope)"
    assert httpx.get(url + CHAT).status_code == 405
    r = httpx.post(url + CHAT, json={**OK_BODY, "model": "zzz"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    assert httpx.post(url + CHAT, json={**OK_BODY, "model": "b"}).status_code == 200
    assert [m["id"] for m in httpx.get(url + "/v1/models").json()["data"]] == ["a", "b"]


def test_api_key(start_mock: StartMock) -> None:
    proc = start_mock("--output-tokens", "3", env={"SURGE_MOCK_API_KEY": "s3cret"})
    url = proc.url
    r = httpx.post(url + CHAT, json=OK_BODY)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    bad = httpx.post(url + CHAT, json=OK_BODY, headers={"authorization": "Bearer nope"})
    assert bad.status_code == 401
    good = httpx.post(url + CHAT, json=OK_BODY, headers={"authorization": "Bearer s3cret"})
    assert good.status_code == 200
    assert httpx.get(url + "/health").status_code == 200
    assert "s3cret" not in proc.output


def test_pipelined_requests_are_answered_in_order(mock_url: str) -> None:
    host = urlsplit(mock_url).netloc
    body = orjson.dumps({**OK_BODY, "seed": 1})
    one = (
        f"POST {CHAT} HTTP/1.1\r\nhost: {host}\r\ncontent-length: {len(body)}\r\n\r\n".encode()
        + body
    )
    last = one.replace(b"HTTP/1.1\r\n", b"HTTP/1.1\r\nconnection: close\r\n")
    raw = raw_exchange(mock_url, one + one + last)
    assert raw.count(b"HTTP/1.1 200 OK") == 3


def test_expect_100_continue(mock_url: str) -> None:
    host = urlsplit(mock_url).netloc
    body = orjson.dumps(OK_BODY)
    parts = urlsplit(mock_url)
    head = (
        f"POST {CHAT} HTTP/1.1\r\nhost: {host}\r\nexpect: 100-continue\r\n"
        f"connection: close\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(head.encode())
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(body)
        rest = b""
        while chunk := sock.recv(65536):
            rest += chunk
    assert b"HTTP/1.1 200 OK" in rest


@pytest.mark.parametrize("command", ["mock", "serve"])
def test_a_held_port_is_one_line_and_exit_2(start_mock: StartMock, command: str) -> None:
    """Both servers, one process each, word a port already in use alike (as the replica
    supervisor does): the flags, the OS's reason, exit 2."""
    port = urlsplit(start_mock().url).port
    second = subprocess.run(
        surgebench_argv(command, "--port", str(port)), capture_output=True, text=True, timeout=30
    )
    assert second.returncode == 2
    assert second.stderr == (
        f"surgebench {command}: cannot bind --host 127.0.0.1 --port {port}: "
        "Address already in use\n"
    )
