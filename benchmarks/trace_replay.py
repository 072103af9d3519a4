"""Replay a production trace at its recorded arrival times: directly against an engine-mode mock
and through the service in front of it. The capacity answer under a real arrival pattern.

Setup: the mock with the `nim-llama3.1-70b` engine profile (batched decode fitted to NVIDIA's
NIM benchmark of Llama-3.1-70B) and ``--output-tokens-dist max_tokens``, so every request gets
exactly its recorded output length; for the service run, the service in front of it with
semaphore admission (--permits, default 64, --queue wait places). `surgebench run --trace`
replays the window open-loop (`--user direct`, then `--user stream`). A sampler reads the
queue depth every second from /metrics: the mock's ``vllm:num_requests_waiting`` (direct) or the
service's ``surge_service_queue_depth`` (through the service).

Reported per run: rows in the window, sent, late (> 10 ms after their time), dropped, unfinished
(still in flight when the run stopped), outcomes
and rejection rate, TTFT and ITL percentiles, prompt/output tokens requested vs reported, queue
depth (max, at the end of the window, growth per minute by a least-squares fit).

Usage: python benchmarks/trace_replay.py [--trace FILE] [--window 10m] [--start 0s]
       [--speedup 1] [--permits 64] [--queue 256] [--users N] [--modes direct,service]
Prints a table and one JSON line. The full 10-minute window takes about 2 x 11 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from surgebench.process import ServerProcess, child_popen_options, surgebench_argv  # noqa: E402

TRACE = Path("../shared/data/azure-llm-inference-2023/conv.csv")
PROFILE = "nim-llama3.1-70b"


@dataclass
class QueueSampler:
    """Polls a queue-depth and an in-flight gauge of a /metrics page every second."""

    url: str
    gauge: str
    running_gauge: str
    samples: list[tuple[float, float]] = field(default_factory=list)
    running: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self.t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        pattern = re.compile(rf"^{re.escape(self.gauge)} (\S+)$", re.M)
        running = re.compile(rf"^{re.escape(self.running_gauge)} (\S+)$", re.M)
        with httpx.Client(timeout=5) as client:
            while not self._stop.wait(1.0):
                try:
                    text = client.get(self.url).text
                except httpx.HTTPError:
                    continue
                match, busy = pattern.search(text), running.search(text)
                if match:
                    self.samples.append((time.monotonic() - self.t0, float(match.group(1))))
                if busy:
                    self.running.append(float(busy.group(1)))

    def stop(self) -> list[tuple[float, float]]:
        self._stop.set()
        self._thread.join(10)
        return self.samples


def growth_per_min(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of the queue depth, per minute."""
    if len(samples) < 3:
        return None
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_q = sum(q for _, q in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    if var == 0:
        return None
    cov = sum((t - mean_t) * (q - mean_q) for t, q in samples)
    return round(cov / var * 60.0, 2)


def one_run(args: argparse.Namespace, mode: str, out: Path) -> dict[str, Any]:
    mock = ServerProcess(
        surgebench_argv("mock", "--port", "0", "--profile", PROFILE,
                        "--output-tokens-dist", "max_tokens", "--stamp")
    )  # fmt: skip
    service: ServerProcess | None = None
    try:
        if mode == "service":
            service = ServerProcess(
                surgebench_argv("serve", "--port", "0", "--upstream-url", mock.url + "/v1",
                                "--admission", "semaphore", "--max-concurrent", str(args.permits),
                                "--queue-size", str(args.queue), "--max-question-chars",
                                "1000000", "--max-tokens-limit", "100000", "--stamp")
            )  # fmt: skip
            target, user = service.url, "stream"
            sampler = QueueSampler(
                service.url + "/metrics", "surge_service_queue_depth", "surge_service_in_flight"
            )
        else:
            target, user = mock.url + "/v1", "direct"
            sampler = QueueSampler(
                mock.url + "/metrics", "vllm:num_requests_waiting", "vllm:num_requests_running"
            )
        argv = surgebench_argv(
            "run", "--name", f"trace-{mode}", "--out", str(out), "--target", target,
            "--user", user, "--trace", str(args.trace), "--trace-start", args.start,
            "--trace-speedup", f"{args.speedup:g}", "--duration", args.window,
            "--warmup", "0s", "--no-report", *(["--users", str(args.users)] if args.users else []),
        )  # fmt: skip
        t0 = time.monotonic()
        proc = subprocess.run(  # (the run dies with this script, even on kill -9)
            argv, capture_output=True, text=True, cwd=ROOT, check=False, **child_popen_options()
        )
        wall_s = time.monotonic() - t0
        samples = sampler.stop()
        if proc.returncode != 0:
            raise SystemExit(f"{mode}: surgebench run exited {proc.returncode}:\n{proc.stderr}")
        last = proc.stdout.strip().splitlines()[-1]
        run_dir = Path(last.removeprefix("results: ").strip())
        summary = json.loads((run_dir / "summary.json").read_text("utf-8"))
    finally:
        if service is not None:
            service.stop()
        mock.stop()
    trace = summary.get("trace") or {}
    depth = [q for _, q in samples]
    return {
        "mode": mode,
        "run_dir": str(run_dir),
        "wall_s": round(wall_s, 1),
        "rows": trace.get("rows_in_window"),
        "sent": trace.get("sent"),
        "late": trace.get("late"),
        "dropped": trace.get("dropped"),
        "unfinished": trace.get("unfinished"),
        "lateness_p99_ms": (trace.get("lateness_ms") or {}).get("p99"),
        "outcomes": summary["outcomes"],
        "rejection_rate": summary["rejection_rate"],
        "ttft_ms": {k: summary["ttft_ms"].get(k) for k in ("p50", "p90", "p99")},
        "itl_ms": {k: summary["itl_ms"].get(k) for k in ("p50", "p90", "p99")},
        "output_tokens": trace.get("output_tokens"),
        "prompt_tokens": trace.get("prompt_tokens"),
        "in_flight_max": max(sampler.running, default=None),
        "queue_depth_max": max(depth, default=None),
        "queue_depth_end": depth[-1] if depth else None,
        "queue_growth_per_min": growth_per_min(samples),
        "valid": summary["valid"],
        "invalid_reasons": summary["invalid_reasons"],
    }


def fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trace", type=Path, default=TRACE, help="Azure CSV or Mooncake JSONL")
    p.add_argument("--window", default="10m", help="replay length (default 10m)")
    p.add_argument("--start", default="0s", help="offset into the trace (default 0s)")
    p.add_argument("--speedup", type=float, default=1.0)
    p.add_argument("--permits", type=int, default=64, help="service semaphore permits")
    p.add_argument("--queue", type=int, default=256, help="service wait places")
    p.add_argument("--users", type=int, default=0, help="most requests in flight (default: "
                   "surgebench's, a minute of the window's busiest second)")  # fmt: skip
    p.add_argument("--modes", default="direct,service")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "bench-trace")
    args = p.parse_args()
    rows = [one_run(args, mode.strip(), args.out) for mode in args.modes.split(",")]
    load = os.getloadavg()
    head = (
        f"{'mode':8} {'rows':>5} {'sent':>5} {'late':>5} {'drop':>4} {'unfin':>5} {'ok':>5} "
        f"{'rej%':>5} "
        f"{'TTFT p50/p90/p99 ms':>22} {'ITL p50/p90/p99 ms':>20} {'busy max':>8} "
        f"{'queue max/end':>13} {'growth/min':>10}"
    )
    print(head)
    for r in rows:
        ttft = "/".join(fmt(r["ttft_ms"][k]) for k in ("p50", "p90", "p99"))
        itl = "/".join(fmt(r["itl_ms"][k]) for k in ("p50", "p90", "p99"))
        queue = f"{fmt(r['queue_depth_max'])}/{fmt(r['queue_depth_end'])}"
        print(
            f"{r['mode']:8} {fmt(r['rows']):>5} {fmt(r['sent']):>5} {fmt(r['late']):>5} "
            f"{fmt(r['dropped']):>4} {fmt(r['unfinished']):>5} {r['outcomes'].get('ok', 0):>5} "
            f"{100 * r['rejection_rate']:>5.1f} {ttft:>22} {itl:>20} "
            f"{fmt(r['in_flight_max']):>8} {queue:>13} "
            f"{fmt(r['queue_growth_per_min']):>10}"
        )
    print(f"load average (1/5/15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(json.dumps({"benchmark": "trace_replay", "window": args.window,
                      "speedup": args.speedup, "loadavg": load, "runs": rows}))  # fmt: skip


if __name__ == "__main__":
    main()
