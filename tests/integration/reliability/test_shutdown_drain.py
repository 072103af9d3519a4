"""SIGTERM with streams in flight: the listener stays open through the drain (`/readyz` 503, new
requests refused), streams past the grace end with `cancelled`, and no traceback is logged."""

from __future__ import annotations

import signal
import threading

import httpx
import pytest

from tests.integration.conftest import Start

from .conftest import metric, parse_sse, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
STREAMS = 6


def test_drain_keeps_readyz_answering_and_cancels_cleanly_after_the_grace(start: Start) -> None:
    mock = start("mock", "--ttft-ms", "10", "--itl-ms", "50", "--output-tokens", "400")  # ~20 s
    service = start("serve", "--upstream-url", mock.url + "/v1", "--shutdown-grace-s", "2")
    url = service.url
    bodies: list[str] = []

    def stream() -> None:
        with httpx.Client(timeout=30) as client:
            bodies.append(client.post(url + "/chat/stream", json={"question": "q"}).text)

    threads = [threading.Thread(target=stream) for _ in range(STREAMS)]
    for thread in threads:
        thread.start()
    wait_until(lambda: metric(url, "surge_service_in_flight") == STREAMS, what="streams admitted")
    service.process.send_signal(signal.SIGTERM)
    # During the drain the listener is open: readiness says 503, new work is refused.
    with httpx.Client(timeout=5) as client:
        wait_until(
            lambda: client.get(url + "/readyz").status_code == 503, 5, "readyz 503 while draining"
        )
        refused = client.post(url + "/chat/stream", json={"question": "late"})
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["type"] == "overloaded"
    for thread in threads:
        thread.join(30)
    assert service.process.wait(20) == 0
    assert len(bodies) == STREAMS
    for body in bodies:
        kind, data = parse_sse(body)[-1]
        assert kind == "error" and data["error"]["type"] == "cancelled", body[-300:]
    service.stop()  # collects the rest of its output
    assert "Exception in ASGI application" not in service.output, service.output[-3000:]
    assert "Traceback" not in service.output, service.output[-3000:]
