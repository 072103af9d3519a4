"""The real service in front of the real mock: sequence, shedding, timeouts, zero leaks, input."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from service.agent import ToolLatency
from surgebench.process import ServerProcess
from tests.integration.conftest import Start

from .conftest import metric, parse_sse

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
Q = {"question": "hello"}


def serve(start: Start, upstream: str, *args: str) -> str:
    return start("serve", "--upstream-url", upstream + "/v1", *args).url


async def stream(
    client: httpx.AsyncClient, url: str, admitted: asyncio.Event | None = None
) -> tuple[int, str]:
    """POST /chat/stream and read it whole; `admitted` is set once `thinking` arrived."""
    async with client.stream("POST", url + "/chat/stream", json=Q) as resp:
        text = ""
        async for chunk in resp.aiter_text():
            text += chunk
            if admitted is not None and "event: thinking" in text:
                admitted.set()
        return resp.status_code, text


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_event_sequence_through_the_mock(start: Start, transport: str) -> None:
    mock = start("mock", "--ttft-ms", "20", "--itl-ms", "2", "--output-tokens", "6")
    url = serve(start, mock.url, "--upstream-transport", transport, "--stamp")
    resp = httpx.post(url + "/chat/stream", json=Q, headers={"X-Request-Id": "it-1"}, timeout=10)
    assert resp.status_code == 200 and resp.headers["x-request-id"] == "it-1"
    assert resp.text.count(": t=") == 8  # one stamp per event
    events = parse_sse(resp.text)
    assert [e for e, _ in events] == ["thinking"] + ["token"] * 6 + ["done"]
    done = events[-1][1]
    assert done["usage"]["completion_tokens"] == 6
    assert done["timings_ms"]["upstream_ttft"] >= 15  # the mock's 20 ms TTFT lands there
    answer = httpx.post(url + "/chat", json={"question": "q", "max_tokens": 3}, timeout=10).json()
    assert answer["usage"]["completion_tokens"] == 3 and answer["answer"]


@pytest.mark.serial  # all admitted and one rejected within the mock's 400 ms TTFT: run alone
@pytest.mark.anyio
async def test_full_queue_rejects_at_once_while_admitted_streams_continue(start: Start) -> None:
    mock = start("mock", "--ttft-ms", "400", "--itl-ms", "5", "--output-tokens", "5")
    url = serve(start, mock.url, "--admission", "queue", "--max-concurrent", "2",
                "--queue-size", "2", "--retry-after-s", "2")  # fmt: skip
    async with httpx.AsyncClient(timeout=10) as client:
        flags = [asyncio.Event() for _ in range(4)]
        admitted = [asyncio.create_task(stream(client, url, flag)) for flag in flags]
        for flag in flags:  # `thinking` is sent once admitted (running or queued)
            await asyncio.wait_for(flag.wait(), 5)
        assert metric(url, "surge_service_queue_depth") == 2
        t0 = time.perf_counter()
        rejected = await client.post(url + "/chat/stream", json=Q)
        reject_ms = (time.perf_counter() - t0) * 1000
        assert not any(t.done() for t in admitted)  # the rejection came before any finished
        results = await asyncio.gather(*admitted)
    print(f"rejection answered in {reject_ms:.1f} ms")
    assert rejected.status_code == 503
    assert rejected.headers["retry-after"] == "2"
    assert rejected.json()["error"]["type"] == "overloaded"
    for status, text in results:
        assert status == 200 and parse_sse(text)[-1][0] == "done"
    assert metric(url, "surge_service_rejected_total", '{reason="queue_full"}') == 1


@pytest.mark.parametrize(
    ("mock_args", "service_args", "message"),
    [
        (["--slow-first-token-prob", "1", "--slow-first-token-ms", "3000"],
         ["--ttft-timeout-s", "0.2"], "no first token"),
        (["--stall-prob", "1", "--stall-after-tokens", "2", "--stall-ms", "3000"],
         ["--idle-timeout-s", "0.2"], "no token for"),
        (["--itl-ms", "50", "--output-tokens", "100"], ["--timeout-s", "0.3"], "total timeout"),
    ],
)  # fmt: skip
def test_timeouts_end_streams_with_error_event(
    start: Start, mock_args: list[str], service_args: list[str], message: str
) -> None:
    mock = start("mock", "--ttft-ms", "10", "--itl-ms", "5", *mock_args)
    url = serve(start, mock.url, *service_args)
    resp = httpx.post(url + "/chat/stream", json=Q, timeout=10)
    kind, data = parse_sse(resp.text)[-1]
    assert kind == "error" and data["error"]["type"] == "timeout"
    assert message in data["error"]["message"]
    chat = httpx.post(url + "/chat", json=Q, timeout=10)
    assert chat.status_code == 504 and chat.json()["error"]["type"] == "timeout"
    assert metric(url, "surge_service_in_flight") == 0


@pytest.mark.anyio
async def test_after_disconnects_timeouts_and_failures_nothing_is_left(start: Start) -> None:
    mock = start("mock", "--ttft-ms", "50", "--itl-ms", "10", "--output-tokens", "30",
                 "--slow-first-token-prob", "0.3", "--slow-first-token-ms", "2000",
                 "--disconnect-prob", "0.2", "--fault-503-prob", "0.1", "--seed", "7")  # fmt: skip
    url = serve(start, mock.url, "--admission", "queue", "--max-concurrent", "4",
                "--queue-size", "16", "--ttft-timeout-s", "0.5")  # fmt: skip

    async def leave_early(client: httpx.AsyncClient) -> None:
        async with client.stream("POST", url + "/chat/stream", json=Q) as resp:
            async for line in resp.aiter_lines():
                if line.startswith("event: thinking"):
                    return  # disconnect while queued or waiting for the first token

    async with httpx.AsyncClient(timeout=15) as client:
        jobs = [leave_early(client) for _ in range(8)] + [stream(client, url) for _ in range(8)]
        await asyncio.gather(*jobs)
        mock.stop()  # upstream down: refused connections
        down = [await stream(client, url) for _ in range(3)]
    for _, text in down:
        kind, data = parse_sse(text)[-1]
        assert kind == "error" and data["error"]["type"] == "upstream"
    # The three sequential requests above ran after every earlier disconnect was handled.
    assert metric(url, "surge_service_in_flight") == 0
    assert metric(url, "surge_service_queue_depth") == 0
    assert metric(url, "surge_service_upstream_connections_in_use") == 0
    assert metric(url, "surge_service_cancelled_total", '{reason="client_disconnect"}') >= 1
    ok = metric(url, "surge_service_requests_total", '{endpoint="stream",outcome="ok"}')
    errors = metric(
        url, "surge_service_requests_total", '{endpoint="stream",outcome="upstream_error"}'
    )
    assert ok >= 1 and errors >= 3


def test_bad_bodies_and_headers_over_the_wire(start: Start) -> None:
    url = serve(start, "http://127.0.0.1:9", "--max-body-bytes", "1000")
    big = httpx.post(url + "/chat", content=b"x" * 100_000, timeout=10)
    assert big.status_code == 413 and big.json()["error"]["type"] == "too_large"
    bad = httpx.post(url + "/chat/stream", content=b"\xff{", timeout=10)
    assert bad.status_code == 400 and "error" in bad.json()
    typed = httpx.post(url + "/chat", json={"question": ["x"]}, timeout=10)
    assert typed.status_code == 422
    # A request id carrying a header injection attempt is replaced, never echoed.
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: a%0d%0aSet-Cookie:x\r\n"
                     b"Connection: close\r\n\r\n")  # fmt: skip
        raw = b""
        while chunk := sock.recv(4096):
            raw += chunk
    assert raw.startswith(b"HTTP/1.1 200") and b"set-cookie" not in raw.lower()
    assert b"x-request-id: r-" in raw


def test_graceful_shutdown_finishes_in_flight_stream(start: Start) -> None:
    mock = start("mock", "--ttft-ms", "300", "--itl-ms", "10", "--output-tokens", "10")
    service = start("serve", "--upstream-url", mock.url + "/v1", "--shutdown-grace-s", "5")
    with (
        httpx.Client(timeout=10) as client,
        client.stream("POST", service.url + "/chat/stream", json=Q) as resp,
    ):
        lines = resp.iter_lines()
        assert next(lines) == "event: thinking"
        service.process.send_signal(signal.SIGTERM)
        text = "\n".join(lines)
    assert "event: done" in text
    assert service.process.wait(10) == 0


def test_python_m_service_and_non_loopback_warning() -> None:
    import sys

    argv = [sys.executable, "-m", "service", "--port", "0", "--host", "0.0.0.0"]
    with ServerProcess(argv) as proc:
        assert proc.output.splitlines()[0].startswith("listening on http://0.0.0.0:")
        port = proc.url.rsplit(":", 1)[1]
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        assert proc.stop() == 0  # stop() also collects all output
    assert "warning: bound to 0.0.0.0" in proc.output


def test_slow_reader_gets_back_pressure_not_unbounded_buffering(start: Start) -> None:
    # The mock drops a client whose unread output passes --max-write-buffer-bytes (8 MB by
    # default); at 0 ms a token it got there before the service's 0.5 s idle deadline in 2 of
    # 12 runs on a busy machine, and the slow stream ended as an upstream error instead. The
    # deadline under test is the service's: the mock may buffer the whole answer (~15 MB).
    mock = start("mock", "--ttft-ms", "1", "--itl-ms", "0", "--output-tokens", "100000",
                 "--max-write-buffer-bytes", "1073741824")  # fmt: skip
    url = serve(start, mock.url, "--admission", "semaphore", "--max-concurrent", "1",
                "--queue-size", "1", "--idle-timeout-s", "0.5")  # fmt: skip
    host, port = url.removeprefix("http://").split(":")
    reader = socket.socket()
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader.connect((host, int(port)))
    body = b'{"question":"never read"}'
    reader.sendall(b"POST /chat/stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip
    seen = b""
    while b"event: token" not in seen:  # admitted and streaming; from now on, never read
        seen += reader.recv(256)
    try:
        # Queued behind the slow reader: it completes only once the slow stream let go of
        # the slot. Had the service buffered the whole answer, the slow stream would have
        # ended normally instead of by the idle deadline.
        resp = httpx.post(url + "/chat/stream", json={"question": "q", "max_tokens": 3}, timeout=30)
        assert parse_sse(resp.text)[-1][0] == "done"
        assert metric(url, "surge_service_timed_out_total", '{stage="idle"}') == 1
        assert metric(url, "surge_service_in_flight") == 0
    finally:
        reader.close()


def _sockets_to(port: int) -> int:
    """TCP sockets (any state) whose remote port is `port`, from /proc/net/tcp."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        remote = line.split()[2]
        if int(remote.split(":")[1], 16) == port:
            count += 1
    return count


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_upstream_connections_are_reused(start: Start, transport: str) -> None:
    mock = start("mock", "--ttft-ms", "0", "--itl-ms", "0", "--output-tokens", "3")
    url = serve(start, mock.url, "--upstream-transport", transport)
    with httpx.Client(timeout=10) as client:
        for _ in range(10):
            assert "event: done" in client.post(url + "/chat/stream", json=Q).text
    # One kept-alive connection, no TIME_WAIT trail of one connection per request.
    assert _sockets_to(int(mock.url.rsplit(":", 1)[1])) == 1


def test_upstream_429_retries_are_bounded_and_counted(start: Start) -> None:
    mock = start("mock", "--fault-429-prob", "1", "--ttft-ms", "5")
    url = serve(start, mock.url, "--upstream-retries", "2", "--upstream-retry-max-wait-s", "0.05")
    resp = httpx.post(url + "/chat/stream", json=Q, timeout=10)
    kind, data = parse_sse(resp.text)[-1]
    assert kind == "error" and data["error"]["type"] == "upstream"
    assert "429" in data["error"]["message"]
    assert metric(url, "surge_service_upstream_retries_total") == 2
    assert metric(url, "surge_service_upstream_errors_total", '{kind="status"}') == 3
    assert metric(url, "surge_service_in_flight") == 0


def test_agent_steps_per_request_and_drawn_tool_latency(start: Start) -> None:
    mock = start("mock", "--ttft-ms", "5", "--itl-ms", "1", "--output-tokens", "4")
    url = serve(start, mock.url, "--agent-steps", "3", "--agent-steps-limit", "4",
                "--tool-latency-ms", "20", "--tool-latency-sigma", "0.5",
                "--seed", "3")  # fmt: skip
    # the service's own mode: 3 LLM calls, 2 tool calls waiting the seeded draws
    resp = httpx.post(url + "/chat/stream", json=Q, timeout=10)
    events = parse_sse(resp.text)
    assert [d["step"] for e, d in events if e == "thinking"] == [
        "admitted",
        "plan",
        "tool",
        "answer",
    ]
    done = events[-1][1]
    assert done["usage"]["completion_tokens"] == 3 * 4
    t = done["timings_ms"]
    draws = ToolLatency(20.0, 0.5, seed=3)
    expected_ms = draws.draw_s() * 1000 + draws.draw_s() * 1000
    assert expected_ms * 0.99 <= t["tool"] <= expected_ms + 500  # slack: a busy machine
    assert t["ttft"] >= t["tool"] + t["upstream_ttft"]
    # the same service answers plainly when a request asks for one call
    resp = httpx.post(url + "/chat/stream", json={**Q, "agent_steps": 1}, timeout=10)
    events = parse_sse(resp.text)
    assert [e for e, _ in events] == ["thinking"] + ["token"] * 4 + ["done"]
    assert events[-1][1]["usage"]["completion_tokens"] == 4
    assert "tool" not in events[-1][1]["timings_ms"]
    answer = httpx.post(url + "/chat", json={"question": "q", "agent_steps": 2}, timeout=10)
    assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] == 2 * 4
    assert answer.json()["timings_ms"]["tool"] > 0
    # out of bounds or not an integer: a 422 JSON error before admission, for every endpoint
    for path, body in [("/chat/stream", Q), ("/chat", Q), ("/chat/batch", {"questions": ["a"]})]:
        for value in (0, 5, "3", 2.5, True):
            bad = httpx.post(url + path, json={**body, "agent_steps": value}, timeout=10)
            assert bad.status_code == 422, (path, value, bad.text)
            error = bad.json()["error"]
            assert error["type"] == "invalid_request" and error["message"].startswith("agent_steps")
    assert metric(url, "surge_service_requests_total", '{endpoint="stream",outcome="ok"}') == 2
