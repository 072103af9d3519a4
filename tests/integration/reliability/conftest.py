"""Fixtures for the reliability tests: real mock and service processes on 127.0.0.1 port 0.

Every wait is a condition polled until a deadline (`wait_until`), never a fixed sleep. `leak_free`
is the end state every test asserts: nothing in flight, nothing queued, no pooled upstream
connection held.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from surgebench.process import ServerProcess, surgebench_argv
from tests.integration.conftest import Start


def serve(start: Start, mock_url: str, *args: str, env: dict[str, str] | None = None) -> str:
    """A service in front of `mock_url`; its base URL."""
    return start("serve", "--upstream-url", mock_url + "/v1", *args, env=env).url


def metrics_text(base_url: str) -> str:
    return httpx.get(base_url + "/metrics", timeout=10).text


def metric(base_url: str, name: str, labels: str = "", text: str | None = None) -> float:
    """One sample of the service's /metrics (0 when a labelled counter was never touched)."""
    text = metrics_text(base_url) if text is None else text
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
    if match is None:
        assert labels, f"{name} not in /metrics"
        return 0.0
    return float(match.group(1))


def wait_until(
    condition: Callable[[], bool], timeout_s: float = 15.0, what: str = "condition"
) -> float:
    """Poll `condition` until it holds; return the seconds it took, fail at the deadline."""
    t0 = time.monotonic()
    while not condition():
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"{what} still false after {timeout_s:g}s")
        time.sleep(0.02)  # a poll period, not a wait for a server
    return time.monotonic() - t0


LEAK_GAUGES = (
    "surge_service_in_flight",
    "surge_service_queue_depth",
    "surge_service_upstream_connections_in_use",
)


def gauges(base_url: str) -> dict[str, float]:
    text = metrics_text(base_url)
    return {name: metric(base_url, name, text=text) for name in LEAK_GAUGES}


def assert_leak_free(base_url: str, timeout_s: float = 15.0) -> float:
    """Wait until every slot, queue place and upstream connection is back; return the seconds."""
    last: dict[str, float] = {}

    def zero() -> bool:
        last.update(gauges(base_url))
        return all(v == 0 for v in last.values())

    try:
        return wait_until(zero, timeout_s, "zero in flight / queued / connections in use")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {last}") from None


def parse_sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    """(event, data) pairs of an SSE body (comments skipped)."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name, data = "message", None
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
        if data is not None:
            events.append((name, data))
    return events


def host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def raw_request(url: str, data: bytes, timeout_s: float = 10.0) -> bytes:
    """Send raw bytes; return the response: up to its Content-Length, or until the server closes
    (or the timeout passes)."""
    with socket.create_connection(host_port(url), timeout=timeout_s) as sock:
        sock.sendall(data)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
                head, sep, body = out.partition(b"\r\n\r\n")
                length = re.search(rb"(?im)^content-length: *(\d+)", head)
                if sep and length and len(body) >= int(length.group(1)):
                    break
        except (TimeoutError, ConnectionResetError):
            pass
        return out


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


@dataclass
class Stack:
    """A long-lived service in front of a port where mocks come and go."""

    port: str
    service: ServerProcess
    mock_proc: ServerProcess | None = None

    @property
    def url(self) -> str:
        return self.service.url

    def mock(self, *args: str) -> ServerProcess:
        """(Re)start the mock on the fixed port with these flags."""
        self.stop_mock()
        self.mock_proc = ServerProcess(surgebench_argv("mock", "--port", self.port, *args))
        return self.mock_proc

    def stop_mock(self) -> None:
        if self.mock_proc is not None:
            self.mock_proc.stop()
            self.mock_proc = None

    def counters(self) -> str:
        return metrics_text(self.url)
