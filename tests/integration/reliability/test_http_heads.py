"""Request heads over raw sockets: HEAD answers, CONNECT and upgrades, absolute-form targets,
methods per path (the mock), and the limits on request heads (both servers).

The bytes matter here (a body after a HEAD answer, a second response to one request), so every
test reads the raw stream and splits it into responses itself.
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Iterator

import orjson
import pytest

from surgebench.process import ServerProcess, surgebench_argv
from tests.integration.conftest import Start

from .conftest import host_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, ServerProcess]]:
    """{"mock": ..., "service": ...}; the service's head deadline is 2 s."""
    mock = ServerProcess(
        surgebench_argv("mock", "--port", "0", "--ttft-ms", "5", "--output-tokens", "4")
    )
    service = ServerProcess(surgebench_argv(
        "serve", "--port", "0", "--upstream-url", mock.url + "/v1",
        "--body-timeout-s", "2"))  # fmt: skip
    yield {"mock": mock, "service": service}
    service.stop()
    mock.stop()


def exchange(url: str, data: bytes, timeout_s: float = 10.0) -> bytes:
    """Send `data`, return every byte the server sends until it closes the connection."""
    with socket.create_connection(host_port(url), timeout=timeout_s) as sock:
        sock.sendall(data)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
        return out


def responses(raw: bytes, head_requests: frozenset[int] = frozenset()) -> list[tuple[int, bytes]]:
    """Split a raw stream into (status, body) responses by Content-Length; the responses whose
    index is in `head_requests` answer HEAD and have no body. Fails on any stray byte."""
    out: list[tuple[int, bytes]] = []
    while raw:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        assert sep and head.startswith(b"HTTP/1.1 "), f"not a response: {raw[:200]!r}"
        match = re.search(rb"(?im)^content-length: *(\d+)", head)
        assert match is not None, head
        length = 0 if len(out) in head_requests else int(match.group(1))
        out.append((int(head[9:12]), rest[:length]))
        raw = rest[length:]
    return out


def test_head_answers_carry_no_body_and_the_next_response_is_intact(
    servers: dict[str, ServerProcess],
) -> None:
    url = servers["mock"].url
    raw = exchange(
        url,
        b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
        b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    got = responses(raw, head_requests=frozenset({0, 1}))
    assert [status for status, _ in got] == [200, 200, 200], raw[:500]
    assert got[2][1] == b'{"status":"ok"}'
    assert b"content-length: 15" in raw.split(b"\r\n\r\n")[1].lower()  # HEAD keeps the length


def test_connect_gets_one_response_and_the_connection_closes(
    servers: dict[str, ServerProcess],
) -> None:
    raw = exchange(
        servers["mock"].url,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    got = responses(raw)
    assert len(got) == 1 and got[0][0] == 501, raw
    assert "CONNECT" in orjson.loads(got[0][1])["error"]["message"]


def test_h2c_upgrade_is_ignored_one_plain_response_per_request(
    servers: dict[str, ServerProcess],
) -> None:
    raw = exchange(
        servers["mock"].url,
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
        b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    got = responses(raw)
    assert [status for status, _ in got] == [200, 200], raw
    assert got[0][1] == b'{"status":"ok"}' and b'"data"' in got[1][1]


def test_upgrade_with_a_body_gets_one_refusal(servers: dict[str, ServerProcess]) -> None:
    body = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
    raw = exchange(
        servers["mock"].url,
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
        b"Upgrade: h2c\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body),
    )
    got = responses(raw)
    assert len(got) == 1 and got[0][0] == 501, raw


def test_absolute_form_target_routes_by_path(servers: dict[str, ServerProcess]) -> None:
    url = servers["mock"].url
    raw = exchange(
        url,
        b"GET %s/health?probe=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % url.encode(),
    )
    assert responses(raw) == [(200, b'{"status":"ok"}')]


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/health", "GET, HEAD"),
        ("DELETE", "/metrics", "GET, HEAD"),
        ("PUT", "/v1/models", "GET, HEAD"),
        ("GET", "/v1/chat/completions", "POST"),
        ("PATCH", "/v1/completions", "POST"),
    ],
)
def test_wrong_method_on_a_known_path_gets_405_with_allow(
    servers: dict[str, ServerProcess], method: str, path: str, allow: str
) -> None:
    raw = exchange(
        servers["mock"].url,
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
        "Connection: close\r\n\r\n".encode(),
    )
    head = raw.partition(b"\r\n\r\n")[0].lower()
    assert responses(raw)[0][0] == 405, raw
    assert f"allow: {allow}".lower().encode() in head, head


# ------------------------------------------------------------------ limits on the request head
SERVERS = ("mock", "service")
HEALTH = {"mock": b"/health", "service": b"/healthz"}


def head_request(target: bytes = b"/health", headers: bytes = b"") -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: x\r\n%sConnection: close\r\n\r\n" % (target, headers)


def assert_refused(raw: bytes, status: int) -> None:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status), raw[:300]
    assert b"content-type: application/json" in head.lower(), head
    assert orjson.loads(body)["error"]["message"]


@pytest.mark.parametrize("server", SERVERS)
def test_long_request_target_gets_414(servers: dict[str, ServerProcess], server: str) -> None:
    url, health = servers[server].url, HEALTH[server]
    ok = exchange(url, head_request(health + b"?" + b"q" * 4000))
    assert ok.startswith(b"HTTP/1.1 200 "), ok[:200]
    assert_refused(exchange(url, head_request(health + b"?" + b"q" * 20_000)), 414)
    assert_refused(exchange(url, head_request(health + b"?" + b"q" * 1_000_000)), 414)


@pytest.mark.parametrize("server", SERVERS)
def test_large_header_section_gets_431(servers: dict[str, ServerProcess], server: str) -> None:
    url, health = servers[server].url, HEALTH[server]

    def get(headers: bytes) -> bytes:
        return exchange(url, head_request(health, headers))

    ok = get(b"X-Big: " + b"b" * 8000 + b"\r\n")
    assert ok.startswith(b"HTTP/1.1 200 "), ok[:200]
    assert_refused(get(b"X-Big: " + b"b" * 100_000 + b"\r\n"), 431)
    assert_refused(get(b"".join(b"X-H%d: v\r\n" % i for i in range(5000))), 431)
    assert get(b"".join(b"X-H%d: v\r\n" % i for i in range(90))).startswith(b"HTTP/1.1 200 ")
    assert_refused(get(b"".join(b"X-H%d: v\r\n" % i for i in range(101))), 431)


@pytest.mark.parametrize("server", SERVERS)
def test_endless_header_line_is_cut_off_with_431(
    servers: dict[str, ServerProcess], server: str
) -> None:
    """A header line that never ends (1 MiB writes): 431 long before it would fill memory."""
    proc = servers[server]
    piece = b"a" * (1 << 20)
    with socket.create_connection(host_port(proc.url), timeout=10) as sock:
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nX-Endless: " % HEALTH[server])
        sent = 0
        try:
            for _ in range(64):  # at most 64 MiB
                sock.sendall(piece)
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass
        raw = b""
        try:
            while chunk := sock.recv(65536):
                raw += chunk
        except ConnectionResetError:
            pass
    assert sent < 64 * len(piece), "the server read 64 MiB of one header line"
    assert_refused(raw, 431)


def test_service_times_out_a_trickled_head(servers: dict[str, ServerProcess]) -> None:
    """A head sent one byte per 0.2 s gets 408 (or a close) at the 2 s deadline, not never."""
    url = servers["service"].url
    request = head_request(b"/healthz")
    started = time.monotonic()
    raw = b""
    with socket.create_connection(host_port(url), timeout=10) as sock:
        sock.settimeout(0.2)  # the pace of the trickle
        try:
            for byte in request[:-1]:  # never complete
                sock.sendall(bytes([byte]))
                try:
                    raw = sock.recv(65536)
                except TimeoutError:
                    continue
                break  # an answer, or b"" for a close
        except (BrokenPipeError, ConnectionResetError):
            pass
        else:
            if raw:  # read the rest of the answer
                sock.settimeout(5)
                with contextlib.suppress(OSError):
                    while chunk := sock.recv(65536):
                        raw += chunk
    elapsed = time.monotonic() - started
    assert elapsed < len(request) * 0.2, "the whole trickled head was read without a deadline"
    assert 1.5 < elapsed < 10, f"cut off after {elapsed:.1f}s; the deadline is 2 s"
    assert raw == b"" or raw.startswith(b"HTTP/1.1 408 "), raw[:200]
    if raw:
        assert_refused(raw, 408)


def test_service_closes_a_connection_that_never_sends_a_byte(start: Start) -> None:
    """A silent connection is an idle keep-alive connection: closed after --http-keepalive-s."""
    url = start("serve", "--http-keepalive-s", "1", "--upstream-url", "http://127.0.0.1:9/v1").url
    with socket.create_connection(host_port(url), timeout=10) as sock:
        started = time.monotonic()
        assert sock.recv(1) == b""  # the server closed it
    assert time.monotonic() - started < 8
