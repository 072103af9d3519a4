"""A lean uvloop streaming client that measures a mock's TTFT and inter-chunk gaps.

Used by `benchmarks/mock_llm.py` and the integration tests. Each stream is one keep-alive
connection running requests back to back (closed loop). Times are taken in `data_received`, so
the figures include the client's own lag; keep it on its own core.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import orjson

EVENT = b"data: {"
DONE = b"[DONE]"
CONTENT = b'"content":'
EMPTY_CONTENT = (b'"content":""', b'"content": ""')


@dataclass
class ProbeResult:
    """What the streams measured inside the window [warmup_s, warmup_s + measure_s)."""

    ttft_s: list[float] = field(default_factory=list)
    gaps_s: list[float] = field(default_factory=list)
    events_in_window: int = 0
    chunks_in_window: int = 0  # events that carry non-empty content
    requests_done: int = 0
    errors: int = 0
    measure_s: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def events_per_s(self) -> float:
        return self.events_in_window / self.measure_s if self.measure_s else 0.0

    @property
    def chunks_per_s(self) -> float:
        return self.chunks_in_window / self.measure_s if self.measure_s else 0.0


class _Stream(asyncio.Protocol):
    def __init__(self, runner: _Runner) -> None:
        self.r = runner
        self.transport: asyncio.Transport | None = None
        self.sent_at = 0.0
        self.last_at = 0.0
        self.first = True
        self.tail = b""
        self.status_seen = False
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.send()

    def send(self) -> None:
        r = self.r
        if r.stopping or self.transport is None:
            if self.transport is not None:
                self.transport.close()
            return
        self.first = True
        self.status_seen = False
        self.tail = b""
        self.sent_at = time.monotonic()
        self.transport.write(r.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        r = self.r
        if not self.status_seen:
            at = data.find(b"HTTP/1.")
            if at < 0:
                return  # the tail of the previous response (e.g. the last chunk's terminator)
            self.status_seen = True
            status = int(data[at + 9 : at + 12])
            r.result.statuses[status] = r.result.statuses.get(status, 0) + 1
            if status != 200:
                r.result.errors += 1
                if self.transport is not None:
                    self.transport.close()
                return
        n = data.count(EVENT)
        if n:
            in_window = r.t_start <= now < r.t_end
            if self.first:
                self.first = False
                if in_window and self.sent_at >= r.t_start:
                    r.result.ttft_s.append(now - self.sent_at)
            elif in_window:
                r.result.gaps_s.append(now - self.last_at)
            if in_window:
                r.result.events_in_window += n
                r.result.chunks_in_window += (
                    data.count(CONTENT)
                    - data.count(EMPTY_CONTENT[0])
                    - data.count(EMPTY_CONTENT[1])
                )
            self.last_at = now
        chunk = self.tail + data
        if DONE in chunk:
            if r.t_start <= now < r.t_end:
                r.result.requests_done += 1
            self.send()
        else:
            self.tail = chunk[-8:]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


@dataclass
class _Runner:
    request: bytes
    t_start: float
    t_end: float
    stopping: bool = False
    result: ProbeResult = field(default_factory=ProbeResult)


def chat_request(
    host: str, port: int, *, max_tokens: int | None = None, prompt: str = "hi"
) -> bytes:
    """A streaming chat request as raw HTTP/1.1 bytes."""
    body: dict[str, object] = {
        "model": "mock",
        "messages": [{"role": "user", "content": prompt}],
        "stream": True,
    }
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    raw = orjson.dumps(body)
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}:{port}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(raw)}\r\n\r\n"
    ).encode() + raw


async def run_probe(
    host: str,
    port: int,
    streams: int,
    *,
    ramp_s: float = 1.0,
    warmup_s: float = 2.0,
    measure_s: float = 4.0,
    request: bytes | None = None,
) -> ProbeResult:
    """Open `streams` connections over `ramp_s`, measure in the window after `warmup_s`."""
    loop = asyncio.get_running_loop()
    t0 = time.monotonic()
    runner = _Runner(
        request or chat_request(host, port), t_start=t0 + warmup_s, t_end=t0 + warmup_s + measure_s
    )
    runner.result.measure_s = measure_s
    protos: list[_Stream] = []
    for i in range(streams):
        target = t0 + ramp_s * i / max(1, streams)
        delay = target - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if time.monotonic() > runner.t_start:  # a server that accepts this slowly is saturated
            runner.result.errors += streams - i
            break
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(lambda: _Stream(runner), host, port), timeout=5.0
            )
        except (OSError, TimeoutError):
            runner.result.errors += 1
            continue
        protos.append(proto)
    remaining = runner.t_end - time.monotonic()
    if remaining > 0:
        await asyncio.sleep(remaining)
    runner.stopping = True
    for p in protos:
        if p.transport is not None:
            p.transport.close()
    if protos:
        await asyncio.wait([p.closed for p in protos], timeout=5.0)
    return runner.result
