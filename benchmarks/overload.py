"""Overload: open-loop offers at a multiple of the service's capacity; how it sheds and recovers.

Setup: the mock (TTFT --ttft-ms, --tokens tokens --itl-ms apart) and the service (queue admission,
--slots workers, --queue places) pinned to CPU 0; this script's open-loop generator (asyncio +
aiohttp, fixed arrival spacing, one connection per request) pinned to CPU 1. Capacity is
slots / stream time; each run offers `multiple x capacity` streams/s for --offer-s seconds.

Reported per multiple (medians over --repeat runs): requests offered, done, rejected, other;
rejection latency p50/p99 (send to response head); admitted TTFT p50/p99 and the slowest admitted
stream's total time; the service's RSS before and at peak; recovery: seconds from the end of the
offer until in-flight and queue depth are both zero for good (sampled from /metrics every 50 ms).

Usage: python benchmarks/overload.py [--multiples 1,10] [--offer-s 10] [--repeat 3]
       [--slots 8] [--queue 8] [--ttft-ms 200] [--itl-ms 10] [--tokens 20]
Prints a table and one JSON line.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from surgebench.percentiles import percentile  # noqa: E402
from surgebench.process import ServerProcess, surgebench_argv  # noqa: E402
from tests.integration.reliability.load import open_loop  # noqa: E402
from tests.integration.reliability.sampling import Sampler, proc_rss_kib  # noqa: E402


def one_run(args: argparse.Namespace, multiple: float) -> dict[str, Any]:
    stream_s = (args.ttft_ms + args.itl_ms * (args.tokens - 1)) / 1000
    capacity_rps = args.slots / stream_s
    rate = multiple * capacity_rps
    count = max(1, int(rate * args.offer_s))
    mock = ServerProcess(
        surgebench_argv("mock", "--port", "0", "--ttft-ms", str(args.ttft_ms), "--itl-ms",
                        str(args.itl_ms), "--output-tokens", str(args.tokens)),
        cpu_affinity=[0],
    )  # fmt: skip
    service = ServerProcess(
        surgebench_argv("serve", "--port", "0", "--upstream-url", mock.url + "/v1",
                        "--admission", "queue", "--max-concurrent", str(args.slots),
                        "--queue-size", str(args.queue), "--timeout-s", str(args.timeout_s)),
        cpu_affinity=[0],
    )  # fmt: skip
    try:
        rss0 = proc_rss_kib(service.pid)
        sampler = Sampler(service.pid, service.url + "/metrics", period_s=0.05)
        report = asyncio.run(open_loop(service.url, rate, count))
        # open_loop returns once every response ended; recovery counts from the offer's end.
        offer_end_s = report.offer_end_monotonic - sampler.t0
        deadline = time.monotonic() + 30
        while sampler.drained_at_s(offer_end_s) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        sampler.stop()
        drained = sampler.drained_at_s(offer_end_s)
    finally:
        service.stop()
        mock.stop()
    done, rejected = report.by("done"), report.by("rejected")
    reject_ms = [r.head_ms for r in rejected] or [float("nan")]
    ttft_ms = [r.ttft_ms for r in done if r.ttft_ms is not None] or [float("nan")]
    return {
        "multiple": multiple,
        "offered_rps": round(rate, 1),
        "offered": count,
        "done": len(done),
        "rejected": len(rejected),
        "other": count - len(done) - len(rejected),
        "reject_p50_ms": percentile(reject_ms, 50),
        "reject_p99_ms": percentile(reject_ms, 99),
        "ttft_p50_ms": percentile(ttft_ms, 50),
        "ttft_p99_ms": percentile(ttft_ms, 99),
        "slowest_done_ms": max((r.total_ms for r in done), default=float("nan")),
        "rss_start_mib": rss0 / 1024,
        "rss_peak_mib": sampler.peak_rss_kib() / 1024,
        "recovery_s": (drained - offer_end_s) if drained is not None else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--multiples", default="1,10")
    p.add_argument("--offer-s", type=float, default=10.0)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--slots", type=int, default=8)
    p.add_argument("--queue", type=int, default=8)
    p.add_argument("--ttft-ms", type=float, default=200.0)
    p.add_argument("--itl-ms", type=float, default=10.0)
    p.add_argument("--tokens", type=int, default=20)
    p.add_argument("--timeout-s", type=float, default=30.0)
    args = p.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {1})
    rows = []
    for multiple in (float(m) for m in args.multiples.split(",")):
        runs = [one_run(args, multiple) for _ in range(args.repeat)]
        row = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        rows.append(row)
    cols = ["multiple", "offered_rps", "offered", "done", "rejected", "other", "reject_p50_ms",
            "reject_p99_ms", "ttft_p50_ms", "ttft_p99_ms", "slowest_done_ms", "rss_start_mib",
            "rss_peak_mib", "recovery_s"]  # fmt: skip
    print(" | ".join(cols))
    for row in rows:
        print(
            " | ".join(f"{row[c]:.1f}" if isinstance(row[c], float) else str(row[c]) for c in cols)
        )
    load = os.getloadavg()
    print(json.dumps({"benchmark": "overload", "args": vars(args), "loadavg": load, "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
