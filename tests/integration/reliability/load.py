"""A small open-loop load generator for the reliability tests and benchmarks (asyncio + aiohttp).

Arrivals follow a fixed schedule (`rate_rps`, `count`), independent of responses, so an overloaded
service cannot slow the offered load down (no coordinated omission). Each request is recorded with
its status, the time to the response head, the time to the first token and how its stream ended.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp
import orjson


@dataclass
class Result:
    status: int = 0
    head_ms: float = 0.0  # send to response head (a rejection's whole latency)
    ttft_ms: float | None = None  # send to first token event
    total_ms: float = 0.0
    last_event: str = ""
    error_type: str = ""  # error.type of a JSON error body or an `error` event
    exception: str = ""


@dataclass
class LoadReport:
    results: list[Result] = field(default_factory=list)
    offered_s: float = 0.0
    offer_end_monotonic: float = 0.0  # time.monotonic() just after the last arrival

    def by(self, kind: str) -> list[Result]:
        if kind == "rejected":
            return [r for r in self.results if r.status in (429, 503)]
        if kind == "done":
            return [r for r in self.results if r.status == 200 and r.last_event == "done"]
        return [r for r in self.results if r.status == 200 and r.last_event == kind]


async def one_stream(session: aiohttp.ClientSession, url: str, body: bytes) -> Result:
    result = Result()
    t0 = time.perf_counter()
    try:
        async with session.post(
            url + "/chat/stream", data=body, headers={"content-type": "application/json"}
        ) as resp:
            result.status = resp.status
            result.head_ms = (time.perf_counter() - t0) * 1000
            if resp.status != 200:
                raw = await resp.read()
                try:
                    result.error_type = str(orjson.loads(raw)["error"]["type"])
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    result.error_type = "?"
            else:
                async for raw_line in resp.content:
                    line = raw_line.decode("utf-8").rstrip("\r\n")
                    if line.startswith("event: "):
                        result.last_event = line[7:]
                        if result.last_event == "token" and result.ttft_ms is None:
                            result.ttft_ms = (time.perf_counter() - t0) * 1000
                    elif line.startswith("data: ") and result.last_event == "error":
                        result.error_type = str(orjson.loads(line[6:])["error"]["type"])
    except (aiohttp.ClientError, TimeoutError) as exc:
        result.exception = type(exc).__name__
    result.total_ms = (time.perf_counter() - t0) * 1000
    return result


async def open_loop(
    url: str, rate_rps: float, count: int, question: str = "overload", max_tokens: int = 0
) -> LoadReport:
    """Offer `count` streams at `rate_rps` (fixed spacing) and wait for all of them."""
    body = {"question": question} | ({"max_tokens": max_tokens} if max_tokens else {})
    raw = orjson.dumps(body)
    report = LoadReport()
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        t0 = time.perf_counter()
        tasks = []
        for i in range(count):
            delay = t0 + i / rate_rps - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # the arrival schedule, not a wait for the server
            tasks.append(asyncio.create_task(one_stream(session, url, raw)))
        report.offered_s = time.perf_counter() - t0
        report.offer_end_monotonic = time.monotonic()
        report.results = list(await asyncio.gather(*tasks))
    return report
