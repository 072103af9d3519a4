"""`GET /config` on both servers: the settings each process runs with, secrets shown as "***"."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import httpx
import pytest

from mock_llm.settings import FIELDS as MOCK_FIELDS
from service.settings import FIELDS as SERVICE_FIELDS
from tests.integration.conftest import Start

pytestmark = pytest.mark.timeout(60)


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def test_mock_config_reports_every_layer_and_hides_the_key(start: Start) -> None:
    env = {"SURGE_MOCK_API_KEY": "sekret-mock", "SURGE_MOCK_SEED": "3", "SURGE_MOCK_ITL_MS": "9"}
    mock = start("mock", "--profile", "instant", "--itl-ms", "2", "--max-num-seqs", "12", env=env)
    reply = httpx.get(mock.url + "/config", timeout=5)  # no key needed, like /metrics
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/json"
    assert "sekret-mock" not in reply.text
    body = reply.json()
    assert set(body) == {"component", "settings"} and body["component"] == "mock"
    got = body["settings"]
    assert set(got) == set(MOCK_FIELDS)
    assert got["profile"] == "instant" and got["ttft_ms"] == 0.0  # from the profile
    assert got["seed"] == 3  # environment
    assert got["itl_ms"] == 2.0 and got["max_num_seqs"] == 12  # flags win over the environment
    assert got["api_key"] == "***" and got["port"] == port_of(mock.url) != 0
    assert got["output_tokens"] == 50  # default

    head = httpx.head(mock.url + "/config", timeout=5)
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(reply.content))
    refused = httpx.post(mock.url + "/config", timeout=5)
    assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"
    assert refused.json()["error"]["message"]


def test_mock_without_a_key_shows_it_empty(start: Start) -> None:
    mock = start("mock")
    assert httpx.get(mock.url + "/config", timeout=5).json()["settings"]["api_key"] == ""


def test_service_config_reports_flags_env_defaults_and_hides_secrets(start: Start) -> None:
    env = {
        "SURGE_SERVICE_UPSTREAM_API_KEY": "sk-upstream-secret",
        "SURGE_SERVICE_QUEUE_SIZE": "7",
        "SURGE_SERVICE_MAX_CONCURRENT": "5",
    }
    service = start(
        "serve",
        "--admission",
        "semaphore",
        "--max-concurrent",
        "32",
        "--auth-token",
        "tok-secret",
        "--upstream-url",
        "http://127.0.0.1:9/v1",
        env=env,
    )
    reply = httpx.get(service.url + "/config", timeout=5)
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/json"
    assert "sk-upstream-secret" not in reply.text and "tok-secret" not in reply.text
    body = reply.json()
    assert set(body) == {"component", "settings"} and body["component"] == "service"
    got = body["settings"]
    assert set(got) == set(SERVICE_FIELDS)
    assert got["admission"] == "semaphore" and got["max_concurrent"] == 32  # flag over env
    assert got["queue_size"] == 7  # environment
    assert got["timeout_s"] == 60.0 and got["workers"] == 0  # defaults
    assert got["upstream_api_key"] == "***" and got["auth_token"] == "***"
    assert got["upstream_url"] == "http://127.0.0.1:9/v1"
    assert got["port"] == port_of(service.url) != 0
    assert reply.headers["x-request-id"]


def test_service_head_config_has_the_length_but_no_body(start: Start) -> None:
    """HEAD then GET pipelined on one raw connection: a body after HEAD would corrupt the GET."""
    service = start("serve", "--upstream-url", "http://127.0.0.1:9/v1")
    length = len(httpx.get(service.url + "/config", timeout=5).content)
    host = urlsplit(service.url).hostname or "127.0.0.1"
    with socket.create_connection((host, port_of(service.url)), timeout=5) as sock:
        sock.sendall(
            b"HEAD /config HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /config HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert f"content-length: {length}".encode() in head.lower()
    assert rest.startswith(b"HTTP/1.1 200")  # the GET's answer follows at once: no HEAD body
    assert rest.endswith(b"}")
