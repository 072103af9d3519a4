"""Bearer auth over raw sockets: bytes of one encoding (a non-ASCII token matches its UTF-8
header), duplicate `Authorization` headers refused with 400 on every route, and a warning when the
token is given on the command line rather than through the environment."""

from __future__ import annotations

import os
from collections.abc import Iterator

import orjson
import pytest

from surgebench.process import ServerProcess, surgebench_argv

from .conftest import raw_request

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
TOKEN = "sésame-ключ-🔑"
WARNING = "--auth-token on the command line"


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    with ServerProcess(
        surgebench_argv("mock", "--port", "0", "--ttft-ms", "1", "--output-tokens", "3")
    ) as mock:
        yield mock.url


@pytest.fixture(scope="module")
def service(mock_url: str) -> Iterator[ServerProcess]:
    """The token given on the command line (so the warning is expected)."""
    env = {k: v for k, v in os.environ.items() if k != "SURGE_SERVICE_AUTH_TOKEN"}
    with ServerProcess(surgebench_argv(
        "serve", "--port", "0", "--upstream-url", mock_url + "/v1", "--auth-token", TOKEN),
        env=env) as proc:  # fmt: skip
        yield proc


def request(method: bytes, path: bytes, auth: list[bytes], body: bytes = b"") -> bytes:
    headers = b"".join(b"Authorization: " + value + b"\r\n" for value in auth)
    return (
        b"%s %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%s"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
        % (method, path, headers, len(body), body)
    )


def status(raw: bytes) -> int:
    return int(raw[9:12])


CHAT = b'{"question": "q"}'
ROUTES = [
    (b"POST", b"/chat/stream", CHAT),
    (b"POST", b"/chat", CHAT),
    (b"POST", b"/chat/batch", b'{"questions": ["q"]}'),
    (b"GET", b"/healthz", b""),
    (b"GET", b"/readyz", b""),
    (b"GET", b"/metrics", b""),
]


def test_non_ascii_token_matches_its_utf8_header(service: ServerProcess) -> None:
    good = b"Bearer " + TOKEN.encode("utf-8")
    for path in (b"/chat/stream", b"/chat"):
        ok = raw_request(service.url, request(b"POST", path, [good], CHAT))
        assert status(ok) == 200, ok[:300]
        latin = b"Bearer " + TOKEN.encode("utf-8").decode("latin-1").encode("utf-8")
        assert status(raw_request(service.url, request(b"POST", path, [latin], CHAT))) == 401
        assert status(raw_request(service.url, request(b"POST", path, [], CHAT))) == 401


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_duplicate_authorization_headers_get_400_on_every_route(
    service: ServerProcess, method: bytes, path: bytes, body: bytes
) -> None:
    good = b"Bearer " + TOKEN.encode("utf-8")
    for pair in ([good, b"Bearer wrong"], [b"Bearer wrong", good], [good, good]):
        raw = raw_request(service.url, request(method, path, pair, body))
        assert status(raw) == 400, raw[:300]
        error = orjson.loads(raw.partition(b"\r\n\r\n")[2])["error"]
        assert "Authorization" in error["message"], error


def test_token_on_the_command_line_warns_once(service: ServerProcess, mock_url: str) -> None:
    assert service.output.count(WARNING) == 1, service.output
    assert TOKEN not in service.output
    env = {**os.environ, "SURGE_SERVICE_AUTH_TOKEN": TOKEN}
    with ServerProcess(
        surgebench_argv("serve", "--port", "0", "--upstream-url", mock_url + "/v1"), env=env
    ) as quiet:
        good = b"Bearer " + TOKEN.encode("utf-8")
        assert status(raw_request(quiet.url, request(b"POST", b"/chat", [good], CHAT))) == 200
        assert WARNING not in quiet.output, quiet.output
