"""Clients that leave mid-stream, stop reading, send nothing, or send half a body.

One mock (long, fast answers) and one service stay up for the module; each test asserts the
behaviour, then the zero-leak end state (nothing in flight, nothing queued, no upstream
connection held) and that the service still answers.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from surgebench.process import ServerProcess, surgebench_argv

from .conftest import (
    Stack,
    assert_leak_free,
    host_port,
    metric,
    open_fds,
    parse_sse,
    raw_request,
    rss_kib,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
BODY = b'{"question":"misbehave"}'
SHORT = {"question": "still there?", "max_tokens": 3}


LONG = ("--ttft-ms", "5", "--itl-ms", "1", "--output-tokens", "200000")


@pytest.fixture(scope="module")
def pair() -> Iterator[Stack]:
    """A service in front of a port where the mock can be swapped (see `Stack`)."""
    first = ServerProcess(surgebench_argv("mock", "--port", "0", *LONG))
    port = first.url.rsplit(":", 1)[1]
    service = ServerProcess(surgebench_argv(
        "serve", "--port", "0", "--upstream-url", first.url + "/v1", "--admission", "queue",
        "--max-concurrent", "16", "--queue-size", "16", "--idle-timeout-s", "1",
        "--body-timeout-s", "1"))  # fmt: skip
    stack = Stack(port, service, first)
    yield stack
    stack.stop_mock()
    service.stop()


def still_serving(url: str) -> None:
    resp = httpx.post(url + "/chat/stream", json=SHORT, timeout=20)
    assert parse_sse(resp.text)[-1][0] == "done"


def stream_request(body: bytes = BODY) -> bytes:
    return (
        b"POST /chat/stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )


def test_burst_of_mid_stream_disconnects_frees_slots_and_cancels_upstream(pair: Stack) -> None:
    url = pair.url
    assert pair.mock_proc is not None
    mock_url = pair.mock_proc.url
    cancelled0 = metric(url, "surge_service_cancelled_total", '{reason="client_disconnect"}')
    mock_gone0 = metric(mock_url, "mock_client_disconnects_total")

    for _ in range(24):  # each leaves right after its first token
        with socket.create_connection(host_port(url), timeout=10) as sock:
            sock.sendall(stream_request())
            seen = b""
            while b"event: token" not in seen:
                seen += sock.recv(4096)
    assert_leak_free(url)
    wait_until(
        lambda: (
            metric(url, "surge_service_cancelled_total", '{reason="client_disconnect"}')
            - cancelled0
            == 24
        ),
        what="24 cancellations counted",
    )
    # The service hung up on the upstream too: the mock saw each of its streams end early.
    wait_until(
        lambda: metric(mock_url, "mock_client_disconnects_total") - mock_gone0 >= 24,
        what="the mock saw 24 early disconnects",
    )
    still_serving(url)


def test_slow_readers_get_back_pressure_memory_stays_bounded(pair: Stack) -> None:
    """6 clients that never read a 300k-token stream: the service must not buffer it."""
    url = pair.url
    # 300k tokens (~20 MB, written by the mock at once since ITL is 0): several times what the
    # kernel socket buffers between service and client absorb (tcp_wmem max 4 MiB), so every
    # stream must stall on back-pressure. At its default 8 MiB of unread output the mock would
    # drop the stalled service as a slow reader, racing the service's 1 s idle deadline (seen:
    # 3 upstream errors instead of 3 idle timeouts), so the test raises that limit.
    pair.mock(
        "--ttft-ms", "5", "--itl-ms", "0", "--output-tokens", "300000",
        "--max-write-buffer-bytes", "268435456",
    )  # fmt: skip
    rss0 = rss_kib(pair.service.pid)
    idle0 = metric(url, "surge_service_timed_out_total", '{stage="idle"}')
    readers = []
    try:
        for _ in range(6):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(10)
            sock.connect(host_port(url))
            sock.sendall(stream_request())
            seen = b""
            while b"event: token" not in seen:
                seen += sock.recv(256)
            readers.append(sock)  # streaming; from now on never read
        # Each stalled stream ends by the 1 s idle deadline instead of being buffered whole.
        wait_until(
            lambda: metric(url, "surge_service_timed_out_total", '{stage="idle"}') - idle0 == 6,
            what="6 idle timeouts",
        )
        peak_growth_mib = (rss_kib(pair.service.pid) - rss0) / 1024
        print(f"\nservice RSS growth with 6 stalled readers: {peak_growth_mib:.1f} MiB")
        # Buffered whole, 6 x 100k tokens would cost over 6 x 5 MB; bounded means far less.
        assert peak_growth_mib < 16
        assert_leak_free(url)
    finally:
        for sock in readers:
            sock.close()
        pair.mock(*LONG)
    still_serving(url)


def test_silent_connections_take_no_slot_and_are_released_when_closed(pair: Stack) -> None:
    url = pair.url
    pid = pair.service.pid
    fds0 = open_fds(pid)
    silent = []
    try:
        # connect, send nothing
        silent.extend(socket.create_connection(host_port(url), timeout=10) for _ in range(100))
        half = socket.create_connection(host_port(url), timeout=10)
        half.sendall(b"POST /chat/stream HTTP/1.1\r\nHost: x\r\nContent-Le")  # half a head
        silent.append(half)
        # (the slack: pooled upstream connections may come and go meanwhile)
        wait_until(lambda: open_fds(pid) >= fds0 + 95, what="service accepted 101 connections")
        # None of them holds a slot or a queue place, and real clients are served meanwhile.
        assert_leak_free(url)
        still_serving(url)
    finally:
        for sock in silent:
            sock.close()
    # Closing them gives every descriptor back.
    wait_until(lambda: open_fds(pid) <= fds0 + 5, what="descriptors back to the baseline")


def test_partial_body_gets_408_without_taking_a_slot(pair: Stack) -> None:
    url = pair.url
    head = (
        b"POST /chat/stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n"
    )
    with socket.create_connection(host_port(url), timeout=10) as sock:
        sock.sendall(head + b'{"question":')  # 12 of the 100 promised bytes, then nothing
        assert_leak_free(url)  # while it waits for the rest, no slot is held
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert (
        b'"type":"timeout"' in answer or b'"type":"request_timeout"' in answer or b"408" in answer
    )
    assert b"Traceback" not in answer
    # A client that gives up half-way through its body frees everything too.
    gone = raw_request(url, head + b'{"quest', timeout_s=0.2)
    assert gone == b""
    assert_leak_free(url)
    still_serving(url)
