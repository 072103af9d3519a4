"""Soak: a steady load for a long time; does anything grow?

Setup: the mock and the service (queue admission, --slots workers, --queue places) pinned to CPU 0;
a closed-loop asyncio + aiohttp generator (--users concurrent streams, each user sending its next
request as soon as the last ended; every --disconnect-every-th stream is abandoned after its first
token, to exercise the cancellation path) pinned to CPU 1.

Every --sample-s seconds: the service's RSS and open file descriptors (/proc) and its in-flight and
queue-depth gauges (/metrics). Reported: a row per --report-s window (medians of its samples, and
the requests finished in it), and the verdict: RSS and descriptors at the end of the warm-up (the
first --warmup-s) vs at the end, and after the load stops: in flight, queue depth.

Usage: python benchmarks/soak.py [--duration 600] [--users 16] [--slots 8] [--queue 16]
       [--sample-s 2] [--report-s 30] [--warmup-s 60]
Not part of the test suite (10 minutes by default). Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from surgebench.process import ServerProcess, surgebench_argv  # noqa: E402
from tests.integration.reliability.sampling import Sampler  # noqa: E402


async def closed_loop(
    url: str,
    users: int,
    duration_s: float,
    disconnect_every: int,
    finished: list[tuple[float, str]],
) -> None:
    """`users` users streaming back to back until the deadline; record (end time, outcome)."""
    body = b'{"question":"soak"}'
    deadline = time.monotonic() + duration_s
    counter = 0
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def user() -> None:
            nonlocal counter
            while time.monotonic() < deadline:
                counter += 1
                leave = disconnect_every > 0 and counter % disconnect_every == 0
                outcome = "?"
                try:
                    async with session.post(
                        url + "/chat/stream",
                        data=body,
                        headers={"content-type": "application/json"},
                    ) as resp:
                        if resp.status != 200:
                            outcome = f"http_{resp.status}"
                            await resp.read()
                        else:
                            async for raw in resp.content:
                                line = raw.decode().strip()
                                if line.startswith("event: "):
                                    outcome = line[7:]
                                    if leave and outcome == "token":
                                        outcome = "left"
                                        break
                except (aiohttp.ClientError, TimeoutError) as exc:
                    outcome = type(exc).__name__
                finished.append((time.monotonic(), outcome))

        await asyncio.gather(*(user() for _ in range(users)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=600.0, help="seconds of load (default 600)")
    p.add_argument("--users", type=int, default=16)
    p.add_argument("--slots", type=int, default=8)
    p.add_argument("--queue", type=int, default=16)
    p.add_argument("--ttft-ms", type=float, default=100.0)
    p.add_argument("--itl-ms", type=float, default=10.0)
    p.add_argument("--tokens", type=int, default=30)
    p.add_argument("--disconnect-every", type=int, default=10)
    p.add_argument("--sample-s", type=float, default=2.0)
    p.add_argument("--report-s", type=float, default=30.0)
    p.add_argument("--warmup-s", type=float, default=60.0)
    args = p.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {1})
    mock = ServerProcess(
        surgebench_argv("mock", "--port", "0", "--ttft-ms", str(args.ttft_ms), "--itl-ms",
                        str(args.itl_ms), "--output-tokens", str(args.tokens)),
        cpu_affinity=[0],
    )  # fmt: skip
    service = ServerProcess(
        surgebench_argv("serve", "--port", "0", "--upstream-url", mock.url + "/v1",
                        "--admission", "queue", "--max-concurrent", str(args.slots),
                        "--queue-size", str(args.queue)),
        cpu_affinity=[0],
    )  # fmt: skip
    finished: list[tuple[float, str]] = []
    try:
        sampler = Sampler(service.pid, service.url + "/metrics", period_s=args.sample_s)
        asyncio.run(
            closed_loop(service.url, args.users, args.duration, args.disconnect_every, finished)
        )
        load_end = time.monotonic()
        deadline = load_end + 30
        while time.monotonic() < deadline:  # poll until drained (bounded)
            last = sampler.samples[-1] if sampler.samples else None
            if last is not None and last.t_s > load_end - sampler.t0 and last.in_flight == 0:
                break
            time.sleep(0.1)
        samples = sampler.stop()
    finally:
        service.stop()
        mock.stop()
    rows = []
    t = 0.0
    while t < args.duration:
        window = [s for s in samples if t <= s.t_s < t + args.report_s]
        done = [o for ts, o in finished if t <= ts - sampler.t0 < t + args.report_s]
        if window:
            rows.append({
                "t_s": t,
                "rss_mib": statistics.median(s.rss_kib for s in window) / 1024,
                "fds": statistics.median(s.fds for s in window),
                "in_flight": statistics.median(s.in_flight for s in window),
                "queue_depth": statistics.median(s.queue_depth for s in window),
                "finished": len(done),
                "done": done.count("done"),
                "left": done.count("left"),
                "other": len(done) - done.count("done") - done.count("left"),
            })  # fmt: skip
        t += args.report_s
    during = [s for s in samples if s.t_s <= load_end - sampler.t0]
    warm = [s for s in during if s.t_s >= args.warmup_s] or during
    tail = [s for s in during if s.t_s >= during[-1].t_s - args.report_s]
    after = samples[-1]
    verdict: dict[str, Any] = {
        "rss_mib_after_warmup": warm[0].rss_kib / 1024,
        "rss_mib_end": statistics.median(s.rss_kib for s in tail) / 1024,
        "rss_mib_max": max(s.rss_kib for s in during) / 1024,
        "fds_after_warmup": warm[0].fds,
        "fds_end": statistics.median(s.fds for s in tail),
        "fds_max": max(s.fds for s in during),
        "after_load_in_flight": after.in_flight,
        "after_load_queue_depth": after.queue_depth,
        "requests": len(finished),
        "outcomes": {o: sum(1 for _, x in finished if x == o) for o in {x for _, x in finished}},
    }
    cols = [
        "t_s",
        "rss_mib",
        "fds",
        "in_flight",
        "queue_depth",
        "finished",
        "done",
        "left",
        "other",
    ]
    print(" | ".join(cols))
    for row in rows:
        print(
            " | ".join(f"{row[c]:.1f}" if isinstance(row[c], float) else str(row[c]) for c in cols)
        )
    for key, value in verdict.items():
        print(f"{key}: {value}")
    load = os.getloadavg()
    print(json.dumps({"benchmark": "soak", "args": vars(args), "loadavg": load,
                      "verdict": verdict, "rows": rows}))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
