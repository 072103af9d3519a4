"""An upstream that breaks the protocol, served by a scripted raw-socket server in the test.

The real mock is well behaved, so these faults come from `FakeUpstream`: a line that never ends,
gzip the service did or did not ask for, a malformed chunk size, a status line that is not HTTP.
Each must end as an `upstream` error (502 for `/chat`) at once, with bounded memory, no traceback
in the service's log, nothing of the upstream's address in what the client sees, and the
service still serving the next request. Both upstream transports are checked.
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from surgebench.process import ServerProcess, surgebench_argv

from .conftest import assert_leak_free, parse_sse, rss_kib

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

GOOD_EVENTS = (
    b"".join(
        b'data: {"choices":[{"delta":{"content":"%s"}}]}\n\n' % word for word in (b"a", b"b", b"c")
    )
    + b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":3}}\n\ndata: [DONE]\n\n'
)


def chunked(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload)


class FakeUpstream:
    """A loopback HTTP server answering every request according to `mode`; it records the
    request heads it saw."""

    def __init__(self) -> None:
        self.mode = "good"
        self.heads: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            try:
                while True:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            return
                        data += chunk
                    head, _, body = data.partition(b"\r\n\r\n")
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value)
                    while len(body) < length:
                        body += conn.recv(65536)
                    self.heads.append(head)
                    if not self._answer(conn, head.lower()):
                        return
            except OSError:
                return

    def _answer(self, conn: socket.socket, head: bytes) -> bool:
        """Answer one request; False to close the connection."""
        ok = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        mode = self.mode
        if mode == "good":
            conn.sendall(ok + b"transfer-encoding: chunked\r\n\r\n" + chunked(GOOD_EVENTS))
            return True
        if mode == "endless":
            conn.sendall(ok + b"connection: close\r\n\r\ndata: {")
            piece = b"x" * (1 << 20)
            for _ in range(512):  # 512 MiB at most, then give up
                conn.sendall(piece)
            return False
        if mode in ("gzip-if-asked", "gzip-always"):
            asked = b"gzip" in head.split(b"accept-encoding:", 1)[-1].split(b"\r\n", 1)[0]
            if "accept-encoding:" not in head.decode("latin-1"):
                asked = False
            if mode == "gzip-always" or asked:
                body = gzip.compress(GOOD_EVENTS)
                conn.sendall(ok + b"content-encoding: gzip\r\ncontent-length: %d\r\n\r\n%s"
                             % (len(body), body))  # fmt: skip
            else:
                conn.sendall(ok + b"content-length: %d\r\n\r\n%s" % (len(GOOD_EVENTS), GOOD_EVENTS))
            return True
        if mode == "bad-chunk":
            conn.sendall(ok + b"transfer-encoding: chunked\r\n\r\nzz\r\ndata: x\r\n")
            return False
        if mode == "bad-status":
            conn.sendall(b"HELLO THERE\r\nnot: http\r\n\r\n")
            return False
        raise AssertionError(mode)

    def close(self) -> None:
        self.stopped = True
        self.sock.close()


TRANSPORTS = ("aiohttp", "httpx")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    upstream = FakeUpstream()
    yield upstream
    upstream.close()


@pytest.fixture(scope="module")
def services(fake: FakeUpstream) -> Iterator[dict[str, ServerProcess]]:
    """One service per upstream transport in front of the fake; 20 s TTFT limit."""
    started = {}
    for transport in TRANSPORTS:
        argv = surgebench_argv(
            "serve", "--port", "0", "--upstream-url", fake.url, "--upstream-transport", transport,
            "--ttft-timeout-s", "20", "--timeout-s", "25")  # fmt: skip
        started[transport] = ServerProcess(argv)
    yield started
    for proc in started.values():
        proc.stop()


def assert_serves_normally(fake: FakeUpstream, url: str) -> None:
    fake.mode = "good"
    events = parse_sse(httpx.post(url + "/chat/stream", json={"question": "q"}, timeout=30).text)
    assert [e for e, _ in events] == ["thinking", "token", "token", "token", "done"], events
    assert_leak_free(url)


def assert_upstream_error(fake: FakeUpstream, proc: ServerProcess, words: str) -> str:
    """Both endpoints answer `upstream` (502 for /chat), without the upstream's address and
    without a traceback in the service's log; returns the stream's error message."""
    events = parse_sse(
        httpx.post(proc.url + "/chat/stream", json={"question": "q"}, timeout=30).text
    )
    kind, data = events[-1]
    assert kind == "error" and data["error"]["type"] == "upstream", events
    message = str(data["error"]["message"])
    assert words in message, message
    chat = httpx.post(proc.url + "/chat", json={"question": "q"}, timeout=30)
    assert chat.status_code == 502 and chat.json()["error"]["type"] == "upstream", chat.text
    for text in (message, chat.text):
        assert str(fake.port) not in text and "127.0.0.1" not in text, text
    assert "Traceback" not in proc.output, proc.output[-3000:]
    return message


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_endless_event_line_ends_at_once_with_bounded_memory(
    fake: FakeUpstream, services: dict[str, ServerProcess], transport: str
) -> None:
    proc = services[transport]
    assert_serves_normally(fake, proc.url)
    rss_before = rss_kib(proc.process.pid)
    fake.mode = "endless"
    t0 = time.monotonic()
    assert_upstream_error(fake, proc, "longer than")
    elapsed = time.monotonic() - t0
    grown_mib = (rss_kib(proc.process.pid) - rss_before) / 1024
    # Two calls (stream and /chat) each ended by the line limit, far before the 20 s TTFT limit.
    assert elapsed < 15, f"the endless line was read for {elapsed:.1f}s"
    assert grown_mib < 40, f"service RSS grew {grown_mib:.1f} MiB"
    assert_serves_normally(fake, proc.url)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_service_asks_for_identity_and_refuses_unasked_gzip(
    fake: FakeUpstream, services: dict[str, ServerProcess], transport: str
) -> None:
    proc = services[transport]
    fake.mode = "gzip-if-asked"
    fake.heads.clear()
    events = parse_sse(
        httpx.post(proc.url + "/chat/stream", json={"question": "q"}, timeout=30).text
    )
    assert [e for e, _ in events][-1] == "done", events
    assert fake.heads and b"accept-encoding: identity" in fake.heads[-1].lower(), fake.heads
    fake.mode = "gzip-always"
    assert_upstream_error(fake, proc, "content-encoding")
    assert_serves_normally(fake, proc.url)


@pytest.mark.parametrize("mode", ["bad-chunk", "bad-status"])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_malformed_upstream_response_is_an_upstream_error(
    fake: FakeUpstream, services: dict[str, ServerProcess], transport: str, mode: str
) -> None:
    proc = services[transport]
    fake.mode = mode
    assert_upstream_error(fake, proc, "upstream")
    assert_leak_free(proc.url)
    assert_serves_normally(fake, proc.url)


def test_refused_connection_is_logged_but_not_shown(
    services: dict[str, ServerProcess],
) -> None:
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens on `port` now
    proc = ServerProcess(surgebench_argv(
        "serve", "--port", "0", "--upstream-url", f"http://127.0.0.1:{port}/v1"))  # fmt: skip
    try:
        events = parse_sse(
            httpx.post(proc.url + "/chat/stream", json={"question": "q"}, timeout=30).text
        )
        kind, data = events[-1]
        assert kind == "error" and data["error"]["type"] == "upstream"
        message = str(data["error"]["message"])
        assert "connection" in message and str(port) not in message, message
        chat = httpx.post(proc.url + "/chat", json={"question": "q"}, timeout=30)
        assert chat.status_code == 502 and str(port) not in chat.text, chat.text
        # The operator still sees where the call went.
        assert proc.wait_for_output(lambda out: str(port) in out, 10), proc.output[-2000:]
    finally:
        proc.stop()
