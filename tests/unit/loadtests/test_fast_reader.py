"""The fast reader's HTTP side, fed crafted byte streams through a fake socket.

Every answer is cut at every byte boundary (and byte by byte): the events, their arrival times
(the ``recv`` that completed them), the body kept for errors and the connection's fate must not
depend on where the cuts fall.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from loadtests import fast_reader as fr
from loadtests import outcomes as oc
from loadtests.sse_reader import SSEEvent, SSEParser
from loadtests.stream import OpenAIStreamTracker, ServiceStreamTracker, StreamFeed

SERVICE_BODY_LF = (
    b": t=1000\n"
    b"event: thinking\n"
    b'data: {"type":"thinking"}\n'
    b"\n"
    b": t=2000\n"
    b"event: token\n"
    b'data: {"type":"token","content":"Hel"}\n'
    b"\n"
    b": ping\n"
    b"event: token\n"
    b"data: line one\n"
    b"data: line two\n"
    b"\n"
    b"event: done\n"
    b'data: {"type":"done","usage":{"completion_tokens":2}}\n'
    b"\n"
)
SERVICE_BODY_CRLF = SERVICE_BODY_LF.replace(b"\n", b"\r\n")
OPENAI_BODY = (
    b": t=5\r\n"
    b'data: {"choices":[{"delta":{"role":"assistant"}}]}\r\n\r\n'
    b": t=6\r\n"
    b'data: {"choices":[{"delta":{"content":"a"}}]}\r\n\r\n'
    b": t=7\r\n"
    b'data: {"choices":[{"delta":{"content":"b"}}]}\r\n\r\n'
    b'data: {"choices":[],"usage":{"completion_tokens":2}}\r\n\r\n'
    b"data: [DONE]\r\n\r\n"
)


def chunked(body: bytes, sizes: list[int]) -> tuple[bytes, list[int]]:
    """``body`` in chunks of the given sizes (cycled); also each body byte's offset on the wire."""
    out = bytearray()
    where: list[int] = []
    pos = 0
    i = 0
    while pos < len(body):
        size = min(sizes[i % len(sizes)], len(body) - pos)
        i += 1
        out += f"{size:x}\r\n".encode()
        where.extend(range(len(out), len(out) + size))
        out += body[pos : pos + size] + b"\r\n"
        pos += size
    out += b"0\r\n\r\n"
    return bytes(out), where


def answer(head: bytes, body: bytes, sizes: list[int] | None) -> tuple[bytes, list[int]]:
    """A whole HTTP answer: chunked (``sizes``) or with Content-Length (``sizes`` None)."""
    if sizes is None:
        start = head + f"Content-Length: {len(body)}\r\n\r\n".encode()
        return start + body, [len(start) + i for i in range(len(body))]
    start = head + b"Transfer-Encoding: chunked\r\n\r\n"
    wire, where = chunked(body, sizes)
    return start + wire, [len(start) + i for i in where]


OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"


class FakeSocket:
    """Answers every request with the given pieces, one per ``recv``; counts what it saw."""

    def __init__(self, pieces: list[bytes | BaseException]) -> None:
        self.pieces = list(pieces)
        self.sent = b""
        self.closed = False

    def sendall(self, data: bytes) -> None:
        self.sent += data

    def recv(self, size: int) -> bytes:
        assert size == fr.RECV_BYTES
        if not self.pieces:
            return b""
        piece = self.pieces.pop(0)
        if isinstance(piece, BaseException):
            raise piece
        return piece

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """``time.time_ns()`` in the reader returns 0, 1, 2...: the index of the ``recv``."""
    calls = [0]

    def time_ns() -> int:
        calls[0] += 1
        return calls[0] - 1

    monkeypatch.setattr(fr, "time", SimpleNamespace(time_ns=time_ns))
    yield calls


class FakeConnection(fr.Connection):
    """A `Connection` whose connects hand out the given fake sockets in turn."""

    __slots__ = ("queue",)

    def _connect(self) -> Any:
        return self.queue.pop(0)


def connection(*socks: FakeSocket) -> fr.Connection:
    target, why = fr.reader_choice("http://127.0.0.1:9/v1", environ={})
    assert target is not None, why
    conn = FakeConnection(target, connect_timeout_s=1.0, read_timeout_s=1.0)
    conn.queue = list(socks)
    return conn


def reference(body: bytes) -> list[SSEEvent]:
    """Events of a body fed one byte at a time; ``t_ns`` = the body offset that completed each."""
    parser = SSEParser()
    events: list[SSEEvent] = []
    for i in range(len(body)):
        events += parser.feed(body[i : i + 1], i)
    return events


def cuts_of(wire: bytes) -> Iterator[list[int]]:
    for i in range(1, len(wire)):
        yield [0, i, len(wire)]
    yield list(range(len(wire) + 1))  # byte by byte


def read(conn: fr.Connection, sock: FakeSocket) -> tuple[list[SSEEvent], fr.Response]:
    events: list[SSEEvent] = []
    parser = SSEParser()

    def sink(data: bytes, now_ns: int) -> None:
        events.extend(parser.feed(data, now_ns))

    response = conn.exchange(b"POST / HTTP/1.1\r\n\r\n", sink)
    return events, response


@pytest.mark.parametrize(
    ("body", "sizes"),
    [
        (SERVICE_BODY_LF, [7, 13, 1, 40]),  # chunk boundaries inside lines and inside "\n\n"
        (SERVICE_BODY_CRLF, [3, 17, 2]),  # ... and between "\r" and "\n"
        (SERVICE_BODY_CRLF, [len(SERVICE_BODY_CRLF)]),  # one chunk
        (OPENAI_BODY, [5, 29, 11]),
        (SERVICE_BODY_LF, None),  # Content-Length
        (OPENAI_BODY, None),
    ],
)
def test_any_cut_gives_the_same_events_at_the_recv_that_completed_them(
    body: bytes, sizes: list[int] | None, clock: list[int]
) -> None:
    wire, where = answer(OK_HEAD, body, sizes)
    expected = reference(body)
    assert [e.event for e in expected] and all(e.data for e in expected)
    for bounds in cuts_of(wire):
        pieces = [wire[a:b] for a, b in itertools.pairwise(bounds)]
        sock = FakeSocket(list(pieces))
        conn = connection(sock)
        clock[0] = 0
        events, response = read(conn, sock)
        assert response.status == 200 and response.complete and not response.body
        assert [(e.event, e.data, e.sent_ns) for e in events] == [
            (e.event, e.data, e.sent_ns) for e in expected
        ], bounds
        for event, ref in zip(events, expected, strict=True):
            wire_pos = where[ref.t_ns]  # the byte that completed the event
            piece = next(i for i in range(len(bounds) - 1) if bounds[i] <= wire_pos < bounds[i + 1])
            assert event.t_ns == piece, (bounds, ref)
        assert conn.sock is sock and not sock.closed  # kept alive for the next request


def test_a_service_stream_and_an_openai_stream_make_their_records() -> None:
    for body, tracker, tokens in (
        (SERVICE_BODY_CRLF, ServiceStreamTracker(0), 2),
        (OPENAI_BODY, OpenAIStreamTracker(0), 2),
    ):
        wire, _ = answer(OK_HEAD, body, [9, 4])
        sock = FakeSocket([wire[i : i + 10] for i in range(0, len(wire), 10)])
        feed = StreamFeed(tracker)
        connection(sock).exchange(b"x", feed)
        record = tracker.finish(feed.end_ns)
        assert record.outcome == oc.OK, record.error
        assert record.output_tokens == tokens
        assert record.client_lag_ns  # the stamps were read
        assert feed.end_ns > 0


def test_a_body_that_ends_with_the_connection(clock: list[int]) -> None:
    head = b"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"
    sock = FakeSocket([head + SERVICE_BODY_LF[:20], SERVICE_BODY_LF[20:]])
    conn = connection(sock)
    events, response = read(conn, sock)
    assert response.complete and [e.event for e in events] == [
        "thinking",
        "token",
        "token",
        "done",
    ]
    assert conn.sock is None and sock.closed


def test_a_rejection_keeps_its_body_and_retry_after_and_streams_nothing() -> None:
    body = b'{"error":{"type":"overloaded","message":"queue full"}}'
    head = (
        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nContent-Type: application/json\r\n"
    )
    wire, _ = answer(head, body, None)
    for i in range(1, len(wire)):
        sock = FakeSocket([wire[:i], wire[i:]])
        events, response = read(connection(sock), sock)
        assert events == [] and response.status == 503
        assert response.retry_after == "2"
        assert oc.classify_status(response.status, bytes(response.body)) == oc.REJECTED


def test_connection_close_is_honoured_and_keep_alive_is_reused() -> None:
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    first = FakeSocket([closing])
    conn = connection(first)
    assert conn.exchange(b"x", None).body == b"ok"
    assert first.closed and conn.sock is None
    keep = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    second = FakeSocket([keep, keep])
    conn = connection(second)
    assert conn.exchange(b"a", None).body == b"ok"
    assert conn.exchange(b"b", None).body == b"ok"
    assert second.sent == b"ab" and conn.sock is second  # one socket, two requests


@pytest.mark.parametrize(
    "stale", [b"", ConnectionResetError(104, "reset")], ids=["closed", "reset"]
)
def test_a_kept_alive_socket_closed_by_the_server_is_replaced_once(
    stale: bytes | BaseException,
) -> None:
    keep = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    first = FakeSocket([keep, stale])
    second = FakeSocket([keep])
    conn = connection(first, second)
    conn.exchange(b"a", None)
    assert conn.exchange(b"b", None).body == b"ok"
    assert first.closed and second.sent == b"b"


def test_a_fresh_socket_that_closes_early_is_an_error_not_a_retry() -> None:
    sock = FakeSocket([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"])
    conn = connection(sock, FakeSocket([]))
    with pytest.raises(ConnectionError) as info:
        conn.exchange(b"x", lambda data, now: None)
    assert oc.classify_exception(info.value) == oc.ERROR
    assert sock.closed and conn.sock is None


def test_a_read_timeout_is_a_timeout_and_closes_the_socket() -> None:
    sock = FakeSocket([OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n", TimeoutError("timed out")])
    conn = connection(sock)
    with pytest.raises(TimeoutError) as info:
        conn.exchange(b"x", lambda data, now: None)
    assert oc.classify_exception(info.value) == oc.TIMEOUT
    assert sock.closed and conn.sock is None


def test_a_malformed_answer_is_an_error() -> None:
    sock = FakeSocket([b"SMTP ready\r\n\r\n"])
    with pytest.raises(Exception) as info:
        connection(sock).exchange(b"x", None)
    assert oc.classify_exception(info.value) == oc.ERROR
    assert sock.closed


def test_bodies_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fr, "MAX_BODY_BYTES", 10)
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 25\r\n\r\n" + b"x" * 25
    response = connection(FakeSocket([big[:40], big[40:]])).exchange(b"x", None)
    assert response.complete and response.truncated and len(response.body) == 10
    error = b"HTTP/1.1 429 Too Many\r\nContent-Length: 70000\r\n\r\n" + b"y" * 70000
    response = connection(FakeSocket([error])).exchange(b"x", lambda d, n: None)
    assert response.status == 429 and len(response.body) == fr.MAX_ERROR_BODY_BYTES


def test_interim_100_continue_is_skipped() -> None:
    wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    response = connection(FakeSocket([wire[:30], wire[30:]])).exchange(b"x", None)
    assert response.status == 200 and response.body == b"ok"


def test_request_head() -> None:
    conn = connection()
    head = conn.request_head("POST", "/chat/completions", {"Accept": "text/event-stream"}, 12)
    assert head == (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:9\r\n"
        b"Accept: text/event-stream\r\nContent-Length: 12\r\n\r\n"
    )


@pytest.mark.parametrize(
    ("url", "env", "fast", "host_header"),
    [
        ("http://127.0.0.1:8000", {}, True, "127.0.0.1:8000"),
        ("https://api.example.com/v1/", {}, True, "api.example.com"),
        ("http://example.com:80/v1", {}, True, "example.com"),
        ("http://[::1]:8001/v1", {}, True, "[::1]:8001"),
        ("http://127.0.0.1:8000", {"HTTPS_PROXY": "http://proxy:3128"}, False, ""),
        ("http://127.0.0.1:8000", {"http_proxy": "http://proxy:3128"}, False, ""),
        ("unix:///tmp/x.sock", {}, False, ""),
        ("", {}, False, ""),
        ("http://127.0.0.1:99999", {}, False, ""),
    ],
)
def test_reader_choice(url: str, env: dict[str, str], fast: bool, host_header: str) -> None:
    target, why = fr.reader_choice(url, environ=env)
    assert (target is not None) == fast, why
    if target is not None:
        assert target.host_header == host_header and why == ""
    else:
        assert why
    target, why = fr.reader_choice("http://a:1", proxy_host="p", environ={})
    assert target is None and "proxy_host" in why
