"""What the service adds to TTFT and ITL, per upstream transport, and its relay cost per core.

Starts the mock (CPU 1), then for each transport the service (CPU 0, `--admission none`), and
drives N concurrent closed-loop streams from this process (CPU 1, asyncio + aiohttp) straight to
the mock and through the service, alternating in each repetition so that both see the same
machine state. Added TTFT = service TTFT - direct TTFT of the same repetition. Relayed chunks/s per
core = token events/s divided by the service's CPU share (from /proc) over the same window. A
burst run (ITL 0) gives the relay's ceiling. Prints a table and one JSON line.

    .venv/bin/python benchmarks/service_overhead.py                  # 10,100,500 streams, 3 reps
    .venv/bin/python benchmarks/service_overhead.py --streams 100 --reps 1 --duration-s 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from surgebench.process import ServerProcess, surgebench_argv

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Sample:
    ttft_ms: list[float] = field(default_factory=list)
    gaps_ms: list[float] = field(default_factory=list)
    tokens: int = 0
    errors: int = 0


def is_token(line: bytes, direct: bool) -> bool:
    if direct:
        if not line.startswith(b"data: {"):
            return False
        obj = orjson.loads(line[6:])
        choices = obj.get("choices") or [{}]
        return bool((choices[0].get("delta") or {}).get("content"))
    return line.startswith(b'data: {"type":"token"')


async def one_stream(
    session: aiohttp.ClientSession, url: str, body: bytes, direct: bool, out: Sample, record: bool
) -> None:
    t0 = time.perf_counter()
    last = None
    try:
        async with session.post(url, data=body, headers={"content-type": "application/json"}) as r:
            if r.status != 200:
                out.errors += 1
                await r.read()
                return
            while True:
                line = await r.content.readline()
                if not line:
                    break
                if not is_token(line, direct):
                    continue
                now = time.perf_counter()
                if record:
                    if last is None:
                        out.ttft_ms.append((now - t0) * 1000)
                    else:
                        out.gaps_ms.append((now - last) * 1000)
                    out.tokens += 1
                last = now
    except aiohttp.ClientError:
        out.errors += 1


async def drive(
    url: str, direct: bool, streams: int, duration_s: float, warmup_s: float, pid: int | None
) -> dict[str, Any]:
    """Closed loop: `streams` workers, each streaming back to back, for warmup + duration."""
    if direct:
        body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                             "stream": True})  # fmt: skip
        target = url + "/v1/chat/completions"
    else:
        body, target = b'{"question":"hi"}', url + "/chat/stream"
    sample = Sample()
    t_start = time.perf_counter()
    t_measure = t_start + warmup_s
    t_stop = t_measure + duration_s
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    cpu0 = 0.0

    async def worker() -> None:
        while time.perf_counter() < t_stop:
            record = time.perf_counter() >= t_measure
            await one_stream(session, target, body, direct, sample, record)

    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = [asyncio.create_task(worker()) for _ in range(streams)]
        await asyncio.sleep(warmup_s)
        cpu0 = cpu_seconds(pid) if pid else 0.0
        w0 = time.perf_counter()
        await asyncio.sleep(duration_s)
        cpu = (cpu_seconds(pid) - cpu0) / (time.perf_counter() - w0) if pid else float("nan")
        tokens_window = sample.tokens
        await asyncio.gather(*tasks)
    return {
        "ttft_p50": pct(sample.ttft_ms, 0.5),
        "ttft_p99": pct(sample.ttft_ms, 0.99),
        "itl_p50": pct(sample.gaps_ms, 0.5),
        "itl_p99": pct(sample.gaps_ms, 0.99),
        "chunks_per_s": tokens_window / duration_s,
        "cpu": cpu,
        "errors": sample.errors,
        "requests": len(sample.ttft_ms),
    }


def med(rows: list[dict[str, Any]], key: str) -> float:
    values = [r[key] for r in rows if r[key] == r[key]]
    return statistics.median(values) if values else float("nan")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--streams", default="10,100,500")
    p.add_argument("--transports", default="aiohttp,httpx")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--duration-s", type=float, default=4.0)
    p.add_argument("--warmup-s", type=float, default=1.5)
    p.add_argument("--ttft-ms", default="100")
    p.add_argument("--itl-ms", default="20")
    p.add_argument("--tokens", default="50")
    p.add_argument("--burst-streams", type=int, default=100)
    p.add_argument("--no-burst", action="store_true")
    args = p.parse_args()
    os.sched_setaffinity(0, {1})
    levels = [int(x) for x in args.streams.split(",")]
    transports = args.transports.split(",")
    print(f"load average before: {os.getloadavg()}", flush=True)

    mock_args = ["mock", "--port", "0", "--ttft-ms", args.ttft_ms, "--itl-ms", args.itl_ms,
                 "--output-tokens", args.tokens]  # fmt: skip
    results: dict[str, Any] = {"config": vars(args), "rows": [], "burst": []}
    with ServerProcess(surgebench_argv(*mock_args), cpu_affinity=[1]) as mock:
        services = {
            t: ServerProcess(
                surgebench_argv(
                    "serve",
                    "--port",
                    "0",
                    "--upstream-url",
                    mock.url + "/v1",
                    "--admission",
                    "none",
                    "--upstream-transport",
                    t,
                    "--upstream-max-connections",
                    "1000",
                ),
                cpu_affinity=[0],
            )
            for t in transports
        }
        try:
            for n in levels:
                per: dict[str, list[dict[str, Any]]] = {"direct": [], **{t: [] for t in transports}}
                for rep in range(args.reps):
                    d = uvloop.run(drive(mock.url, True, n, args.duration_s, args.warmup_s, None))
                    per["direct"].append(d)
                    for t, svc in services.items():
                        r = uvloop.run(
                            drive(svc.url, False, n, args.duration_s, args.warmup_s, svc.pid)
                        )
                        r["added_p50"] = r["ttft_p50"] - d["ttft_p50"]
                        r["added_p99"] = r["ttft_p99"] - d["ttft_p99"]
                        per[t].append(r)
                        print(f"  n={n} rep={rep} {t}: {json.dumps(r)}", flush=True)
                for path, rows in per.items():
                    row: dict[str, Any] = {"path": path, "streams": n, "runs": len(rows)}
                    for key in ("ttft_p50", "ttft_p99", "itl_p50", "itl_p99", "chunks_per_s",
                                "cpu", "errors", "requests", "added_p50", "added_p99"):  # fmt: skip
                        if key in rows[0]:
                            row[key] = med(rows, key)
                            row[key + "_range"] = [
                                min(r[key] for r in rows),
                                max(r[key] for r in rows),
                            ]
                    if path != "direct" and row["cpu"] > 0:
                        row["chunks_per_core_s"] = row["chunks_per_s"] / row["cpu"]
                    results["rows"].append(row)
        finally:
            for svc in services.values():
                svc.stop()
    if not args.no_burst:
        burst_mock = ["mock", "--port", "0", "--ttft-ms", "0", "--itl-ms", "0",
                      "--output-tokens", "200"]  # fmt: skip
        with ServerProcess(surgebench_argv(*burst_mock), cpu_affinity=[1]) as mock:
            for t in transports:
                with ServerProcess(
                    surgebench_argv(
                        "serve",
                        "--port",
                        "0",
                        "--upstream-url",
                        mock.url + "/v1",
                        "--admission",
                        "none",
                        "--upstream-transport",
                        t,
                    ),
                    cpu_affinity=[0],
                ) as svc:
                    rows = [
                        uvloop.run(
                            drive(svc.url, False, args.burst_streams, args.duration_s, 1.0, svc.pid)
                        )
                        for _ in range(args.reps)
                    ]
                    cps = [r["chunks_per_s"] / r["cpu"] for r in rows if r["cpu"] > 0]
                    results["burst"].append({
                        "transport": t, "streams": args.burst_streams,
                        "chunks_per_s": med(rows, "chunks_per_s"), "cpu": med(rows, "cpu"),
                        "chunks_per_core_s": statistics.median(cps) if cps else float("nan"),
                    })  # fmt: skip
    results["load_average_after"] = os.getloadavg()

    print()
    print("| path | streams | TTFT p50 / p99 ms | added TTFT p50 / p99 ms | ITL p50 / p99 ms "
          "| chunks/s | service CPU | chunks/s per core | errors |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results["rows"]:
        added = f"{r['added_p50']:+.1f} / {r['added_p99']:+.1f}" if "added_p50" in r else "-"
        cpu = f"{r['cpu']:.2f}" if r["path"] != "direct" else "-"
        per_core = f"{r['chunks_per_core_s']:.0f}" if "chunks_per_core_s" in r else "-"
        print(f"| {r['path']} | {r['streams']} | {r['ttft_p50']:.1f} / {r['ttft_p99']:.1f} | "
              f"{added} | {r['itl_p50']:.1f} / {r['itl_p99']:.1f} | {r['chunks_per_s']:.0f} | "
              f"{cpu} | {per_core} | {r['errors']:.0f} |")  # fmt: skip
    for b in results["burst"]:
        print(f"burst ({b['streams']} streams x 200 tokens, ITL 0) {b['transport']}: "
              f"{b['chunks_per_s']:.0f} chunks/s at CPU {b['cpu']:.2f} -> "
              f"{b['chunks_per_core_s']:.0f} chunks/s per core")  # fmt: skip
    print(f"load average after: {results['load_average_after']}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
