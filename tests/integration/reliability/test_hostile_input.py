"""Hostile bytes over real sockets, to the service and to the mock: always a 4xx JSON answer (or
a closed connection), never a traceback, a 5xx or a hang; no header injection; nothing leaks.

The owners' tests cover most validators in-process (service: tests/unit/service/test_http.py,
test_sse_and_validation.py; mock: tests/integration/mock_llm/test_robustness.py). These add the
same attacks through the real HTTP servers (uvicorn + httptools, the mock's own parser), and the
cases those tests leave out: bodies announced huge but never sent, oversized chunked bodies,
numbers beyond any range, NUL bytes, raw CR/LF and folded lines in echoed headers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import orjson
import pytest

from surgebench.process import ServerProcess, surgebench_argv

from .conftest import assert_leak_free, parse_sse, raw_request

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[str, str]]:
    """(mock URL, service URL); the service's body limit is 4 KiB."""
    mock = ServerProcess(
        surgebench_argv("mock", "--port", "0", "--ttft-ms", "5", "--output-tokens", "4")
    )
    service = ServerProcess(surgebench_argv(
        "serve", "--port", "0", "--upstream-url", mock.url + "/v1", "--max-body-bytes", "4096",
        "--body-timeout-s", "2"))  # fmt: skip
    yield mock.url, service.url
    service.stop()
    mock.stop()


def post(path: str, body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%s"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
        % (path.encode(), extra, len(body), body)
    )


def split(raw: bytes) -> tuple[int, bytes, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head[9:12]), head.lower(), body


def assert_clean_4xx(raw: bytes, statuses: tuple[int, ...]) -> dict[str, object]:
    status, head, body = split(raw)
    assert status in statuses, raw[:300]
    assert b"traceback" not in raw.lower() and b'file "' not in raw.lower()
    assert b"content-type: application/json" in head, head
    error = orjson.loads(body)["error"]
    assert isinstance(error, dict) and error.get("message")
    return error


HOSTILE_BODIES = [
    (b"{not json", (400,)),
    (b'{"question": "\xff\xfe\xfd"}', (400,)),  # invalid UTF-8
    (b"[" * 100_000, (400, 413)),  # deep nesting (or too large for the limit)
    (b'{"question": ' * 200 + b"1" + b"}" * 200, (400, 413)),
    (b'{"question": "x", "max_tokens": 1e400}', (400, 422)),  # beyond any float
    (b'{"question": "x", "max_tokens": 123456789012345678901234567890}', (400, 422)),
    (b'{"question": "x", "max_tokens": -1}', (400, 422)),
    (b'{"question": null}', (400, 422)),
    (b'{"question": {"$gt": ""}}', (400, 422)),
    (b'"just a string"', (400, 422)),
    (b"", (400, 422)),
    (b"null", (400, 422)),
]


@pytest.mark.parametrize(("body", "statuses"), HOSTILE_BODIES)
def test_hostile_bodies_to_the_service(
    servers: tuple[str, str], body: bytes, statuses: tuple[int, ...]
) -> None:
    _, url = servers
    for path in ("/chat/stream", "/chat", "/chat/batch"):
        assert_clean_4xx(raw_request(url, post(path, body)), statuses)
    assert_leak_free(url)


@pytest.mark.parametrize(("body", "statuses"), HOSTILE_BODIES)
def test_hostile_bodies_to_the_mock(
    servers: tuple[str, str], body: bytes, statuses: tuple[int, ...]
) -> None:
    mock, _ = servers
    body = body.replace(b'"question"', b'"messages"')
    raw = raw_request(mock, post("/v1/chat/completions", body))
    assert_clean_4xx(raw, statuses)


def test_nul_bytes_and_odd_unicode_are_answered_not_crashed(servers: tuple[str, str]) -> None:
    mock, url = servers
    question = "nul\u0000 rtl\u202e bom\ufeff emoji\U0001f600 line\u2028sep"
    resp = httpx.post(url + "/chat/stream", json={"question": question}, timeout=10)
    assert resp.status_code == 200 and parse_sse(resp.text)[-1][0] == "done"
    body = {"model": "m", "messages": [{"role": "user", "content": question}]}
    assert httpx.post(mock + "/v1/chat/completions", json=body, timeout=10).status_code == 200


@pytest.mark.serial  # an upper bound on time: run alone (see the Makefile)
def test_huge_announced_body_is_refused_before_it_is_sent(servers: tuple[str, str]) -> None:
    """Content-Length of 1 GB, 12 bytes sent: 413 at once, not after waiting for the rest."""
    mock, url = servers
    for base, path in ((url, "/chat/stream"), (mock, "/v1/chat/completions")):
        head = (
            b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000000000\r\n\r\n{"question":' % path.encode()
        )
        t0 = time.monotonic()
        raw = raw_request(base, head, timeout_s=5)
        elapsed_s = time.monotonic() - t0
        assert split(raw)[0] == 413, raw[:200]
        assert elapsed_s < 1.5  # well before the 2 s body timeout: the body was never awaited
    assert_leak_free(url)


def test_oversized_chunked_body_is_cut_off_at_the_limit(servers: tuple[str, str]) -> None:
    _, url = servers
    chunk = b"x" * 1000
    data = (
        b"POST /chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        + b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(10))
    )  # 10 KB, over the 4 KiB limit, with no end chunk: the server must not wait for one
    assert_clean_4xx(raw_request(url, data, timeout_s=5), (413,))
    assert_leak_free(url)


@pytest.mark.parametrize(
    "header",
    [
        b"X-Request-Id: a\rSet-Cookie: evil=1",  # bare CR inside a value
        b"X-Request-Id: a\r\n Set-Cookie: evil=1",  # obs-fold continuation line
        b"X-Request-Id: a%0d%0aSet-Cookie: evil=1",  # URL-encoded CR LF
        b"X-Request-Id: a\x00Set-Cookie: evil=1",  # NUL
        b"X-Request-Id: " + b"A" * 8000,  # very long
    ],
)
def test_header_injection_in_the_echoed_request_id(servers: tuple[str, str], header: bytes) -> None:
    mock, url = servers
    for base, path in ((url, b"/healthz"), (mock, b"/health")):
        request = b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n" + header
        raw = raw_request(base, request + b"\r\nConnection: close\r\n\r\n")
        status, head, _ = split(raw)
        # Refused by the HTTP parser (400) or answered with a fresh id: never echoed.
        assert status in (200, 400, 431), raw[:200]
        assert b"set-cookie" not in head and b"evil" not in head
        for line in head.split(b"\r\n"):
            if line.startswith(b"x-request-id:"):  # a fresh id, not the client's value
                assert not line.startswith((b"x-request-id: a", b"x-request-id: A")), line
    assert_leak_free(url)
