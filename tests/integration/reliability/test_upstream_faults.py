"""Upstream faults injected by the real mock: the client-facing answer, the counters, no leaks.

One service (4 slots, 2 retries, 4 s TTFT and 1 s idle limits) stays up for the whole module in
front of one loopback port; each test starts a mock with its faults on that port (and stops it),
so the service also lives through its upstream dying and coming back. Counters are compared as
deltas.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator

import httpx
import pytest

from surgebench.process import ServerProcess, surgebench_argv

from .conftest import Stack, assert_leak_free, metric, parse_sse

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
Q = {"question": "fault"}
SHORT = {"question": "short", "max_tokens": 2}
FAST = ("--ttft-ms", "20", "--itl-ms", "5", "--output-tokens", "8")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    first = ServerProcess(surgebench_argv("mock", "--port", "0", *FAST))
    port = first.url.rsplit(":", 1)[1]
    service = ServerProcess(surgebench_argv(
        "serve", "--port", "0", "--upstream-url", first.url + "/v1", "--max-concurrent", "4",
        "--queue-size", "8", "--upstream-retries", "2", "--upstream-retry-backoff-s", "0.05",
        "--ttft-timeout-s", "4", "--idle-timeout-s", "1"))  # fmt: skip
    s = Stack(port, service, first)
    yield s
    s.stop_mock()
    service.stop()


def delta(stack: Stack, before: str, name: str, labels: str = "") -> float:
    return metric(stack.url, name, labels) - metric(stack.url, name, labels, text=before)


async def streams(url: str, n: int, body: dict[str, object] = Q) -> list[str]:
    """n concurrent /chat/stream requests read whole (each must be a 200); their bodies."""
    async with httpx.AsyncClient(timeout=30) as client:

        async def one() -> str:
            resp = await client.post(url + "/chat/stream", json=body)
            assert resp.status_code == 200, resp.text
            return resp.text

        return list(await asyncio.gather(*(one() for _ in range(n))))


def stream_outcome(outcome: str) -> str:
    return f'{{endpoint="stream",outcome="{outcome}"}}'


@pytest.mark.parametrize(
    ("mock_args", "error_type", "tokens_before", "counter", "labels"),
    [
        (["--fault-500-prob", "1"], "upstream", 0,
         "surge_service_upstream_errors_total", '{kind="status"}'),
        (["--fault-503-prob", "1"], "upstream", 0,
         "surge_service_upstream_errors_total", '{kind="status"}'),
        (["--disconnect-prob", "1", "--disconnect-after-tokens", "3"], "upstream", 3,
         "surge_service_requests_total", stream_outcome("upstream_error")),
        (["--stall-prob", "1", "--stall-after-tokens", "2", "--stall-ms", "8000"], "timeout", 2,
         "surge_service_timed_out_total", '{stage="idle"}'),
        (["--slow-first-token-prob", "1", "--slow-first-token-ms", "8000"], "timeout", 0,
         "surge_service_timed_out_total", '{stage="ttft"}'),
    ],
    ids=["500", "503", "disconnect", "stall", "slow-first-token"],
)  # fmt: skip
def test_each_fault_gets_its_error_event_and_frees_every_slot(
    stack: Stack,
    mock_args: list[str],
    error_type: str,
    tokens_before: int,
    counter: str,
    labels: str,
) -> None:
    stack.mock(*FAST, *mock_args)
    before = stack.counters()
    bodies = asyncio.run(streams(stack.url, 4))
    for text in bodies:
        events = parse_sse(text)
        kinds = [e for e, _ in events]
        assert kinds == ["thinking"] + ["token"] * tokens_before + ["error"], kinds
        assert events[-1][1]["error"]["type"] == error_type
    status_fault = counter.endswith("errors_total")
    # A 5xx before the first token is retried (twice), a fault after it or a timeout is not.
    assert delta(stack, before, counter, labels) == (12 if status_fault else 4)
    assert delta(stack, before, "surge_service_upstream_retries_total") == (
        8 if status_fault else 0
    )
    outcome = "timeout" if error_type == "timeout" else "upstream_error"
    assert delta(stack, before, "surge_service_requests_total", stream_outcome(outcome)) == 4
    # The non-streaming endpoint answers the same fault with a JSON error and a 5xx status
    # (for a slow first token that is a 4 s wait, and tests/integration/service covers it).
    if "--slow-first-token-prob" in mock_args:
        assert_leak_free(stack.url)
        return
    chat = httpx.post(stack.url + "/chat", json=Q, timeout=30)
    assert chat.status_code == (504 if error_type == "timeout" else 502)
    assert chat.json()["error"]["type"] == error_type
    assert_leak_free(stack.url)


@pytest.mark.serial  # an upper bound on time: run alone (see the Makefile)
def test_429_retries_honour_retry_after_and_stop_after_the_limit(stack: Stack) -> None:
    # The mock's injected 429 carries Retry-After: 1, which replaces the 50 ms backoff: two
    # retries take about 2 s (within the 4 s TTFT limit); then the client gets the error.
    mock = stack.mock(*FAST, "--fault-429-prob", "1")
    before = stack.counters()
    t0 = time.monotonic()
    resp = httpx.post(stack.url + "/chat/stream", json=Q, timeout=30)
    elapsed_s = time.monotonic() - t0
    kind, data = parse_sse(resp.text)[-1]
    assert kind == "error" and data["error"]["type"] == "upstream"
    assert "429" in data["error"]["message"]
    assert 1.9 <= elapsed_s < 4.0, elapsed_s
    assert delta(stack, before, "surge_service_upstream_retries_total") == 2
    mock_text = httpx.get(mock.url + "/metrics", timeout=5).text
    assert 'mock_faults_injected_total{kind="429"} 3.0' in mock_text  # 1 try + 2 retries
    assert_leak_free(stack.url)


def test_mock_down_refused_then_killed_mid_stream_then_restarted(stack: Stack) -> None:
    stack.stop_mock()
    before = stack.counters()
    with httpx.Client(timeout=30) as client:
        # Upstream down: connection refused, retried twice, then an upstream error event.
        kind, data = parse_sse(client.post(stack.url + "/chat/stream", json=SHORT).text)[-1]
        assert kind == "error" and data["error"]["type"] == "upstream"
        assert "connection" in data["error"]["message"]
        assert delta(stack, before, "surge_service_upstream_errors_total", '{kind="connect"}') == 3
        # Upstream back, then SIGKILLed in the middle of a long stream.
        mock = stack.mock("--ttft-ms", "20", "--itl-ms", "20", "--output-tokens", "300")
        assert parse_sse(client.post(stack.url + "/chat/stream", json=SHORT).text)[-1][0] == "done"
        with client.stream("POST", stack.url + "/chat/stream", json=Q) as resp:
            lines = resp.iter_lines()
            for line in lines:
                if line == "event: token":
                    break
            mock.process.send_signal(signal.SIGKILL)
            rest = "\n".join(lines)
        assert mock.process.wait(10) == -signal.SIGKILL
        kind, data = parse_sse(rest)[-1]
        assert kind == "error" and data["error"]["type"] == "upstream"
        assert_leak_free(stack.url)
        # Restarted on the same port: the service recovers by itself (stale pooled
        # connections to the dead process must not fail the next requests).
        stack.mock(*FAST)
        ends = [parse_sse(client.post(stack.url + "/chat/stream", json=SHORT).text)[-1][0]
                for _ in range(5)]  # fmt: skip
        assert ends == ["done"] * 5, ends
    assert delta(stack, before, "surge_service_requests_total", stream_outcome("ok")) == 6
    assert (
        delta(stack, before, "surge_service_requests_total", stream_outcome("upstream_error")) == 2
    )
    assert_leak_free(stack.url)
