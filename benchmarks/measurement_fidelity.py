"""How truthfully does each load generator time a stream whose true timing is known?

The mock streams with TTFT exactly 100 ms and ITL exactly 20 ms (50 tokens, send stamps on),
pinned to CPU 0. Each generator runs closed-loop at N concurrent streams (50, 200, 500, 1000):

- ``ours``: surgebench's Locust scenario (DirectLLMUser) on its fast reader (raw gevent sockets,
  httptools framing), one process on CPU 1; ``ours-2p``: the same with ``--processes 2`` on
  CPUs 0-1 (both cores, sharing CPU 0 with the mock);
- ``fallback``: the same scenario forced onto its fallback reader (Locust's geventhttpclient
  client, one ``recv`` per segment), as it runs behind a proxy: the reader before the fast one;
- ``naive``: Locust FastHttpUser with Locust's own ``iter_lines`` (benchmarks/naive_locustfile.py);
- ``asyncio``: a raw uvloop client (asyncio streams, one connection per stream), CPU 1;
- ``floor``: the gevent floor (benchmarks/gevent_floor.py: raw gevent sockets, httptools, SSE
  lines split by hand, no Locust), CPU 1: the least a gevent reader can cost, run beside ours;
- ``guidellm``: listed when the ``guidellm`` command is installed; it is not run here (offline
  it needs a locally built tokenizer and ~35 s of start-up per point).

For each: measured minus true TTFT and ITL (p50, p99), client lag p50/p99 from the send stamps
(the arrival time a generator recorded minus the mock's send time: the error the generator adds;
``ours`` records the kernel's receive time where it can, the peers the time their read returned),
``ours``'s read lag (when its read returned minus the kernel's receive time: its own delay, which
bends a time only when a stream's next event arrives before the read), the generator's CPU in
cores over the measured window and per token event (us; token events counted by the mock over the
same window), and our validity verdict where there
is one. Each row also carries the machine's 1-minute load average when it finished: on a shared
machine other processes' load shows up as lag here.

Usage: python benchmarks/measurement_fidelity.py [--streams 50,200,500,1000] [--repeat 1]
       [--measure-s 6] [--generators ours,ours-2p,floor,fallback,naive,asyncio]
Prints a table and one JSON line (medians over repeats).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtests.settings import RunSettings, config_document  # noqa: E402
from loadtests.sse_reader import SSEParser  # noqa: E402
from loadtests.stream import OpenAIStreamTracker  # noqa: E402
from reports.results import LatencyStats, read_summary, write_config  # noqa: E402
from surgebench.process import (  # noqa: E402
    ServerProcess,
    child_popen_options,
    surgebench_argv,
)

TTFT_MS = 100.0
ITL_MS = 20.0
TOKENS = 50
WARMUP_S = 3.0
GENERATORS = ("ours", "ours-2p", "floor", "fallback", "naive", "asyncio")


def taskset(cpus: str) -> list[str]:
    return ["taskset", "-c", cpus] if os.cpu_count() and os.cpu_count() >= 2 else []  # type: ignore[operator]


def tree_cpu_s(proc: psutil.Process) -> float:
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def mock_tokens_sent(url: str) -> float:
    """The mock's ``vllm:generation_tokens_total``: tokens sent so far (counted per token)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith("vllm:generation_tokens_total "):
                return float(line.split()[1])
    raise RuntimeError("the mock's /metrics has no vllm:generation_tokens_total")


def sample_cpu(
    pid: int, start_after_s: float, window_s: float, mock_url: str
) -> tuple[float, float]:
    """(cores used by a process tree, token events per second the mock sent) over the same
    window, from ``start_after_s`` for ``window_s`` seconds."""
    proc = psutil.Process(pid)
    time.sleep(start_after_s)
    before, sent_before = tree_cpu_s(proc), mock_tokens_sent(mock_url)
    time.sleep(window_s)
    cores = (tree_cpu_s(proc) - before) / window_s
    return cores, (mock_tokens_sent(mock_url) - sent_before) / window_s


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = LatencyStats.from_values(values)
    return s.p50 if q == 50 else s.p99


def run_ours(
    url: str, streams: int, measure_s: float, processes: int, reader: str = "fast"
) -> dict[str, Any]:
    env = dict(os.environ)
    if reader == "fallback":  # what a proxy variable does (geventhttpclient ignores it)
        env.update(http_proxy="http://127.0.0.1:9", no_proxy="*")
    with tempfile.TemporaryDirectory() as out:
        duration = WARMUP_S + measure_s
        settings = RunSettings(
            name="fidelity", duration_s=duration, users=streams, warmup_s=WARMUP_S,
            processes=processes, user="direct", prompt_words="4", host=f"{url}/v1",
            progress_s=0.0,
        )  # fmt: skip
        config = write_config(Path(out), config_document(settings, {"mock": None, "service": None}))
        argv = [
            *taskset("0,1" if processes > 1 else "1"),
            sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests/locustfile.py"),
            "DirectLLMUser", "--headless", "--only-summary", "-u", str(streams),
            "-r", str(streams), "-t", f"{duration:g}s", "-H", f"{url}/v1",
            "--stop-timeout", "3", "--sb-config", str(config),
        ]  # fmt: skip
        if processes > 1:
            argv += ["--processes", str(processes)]
        proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            **child_popen_options(),
        )  # fmt: skip
        cpu, events_per_s = sample_cpu(proc.pid, 1.0 + WARMUP_S, measure_s - 1.0, url)
        proc.wait(timeout=duration + 60)
        s = read_summary(Path(out))
    assert s.config["generator"]["reader"] == reader, s.config.get("generator")
    ttft, itl, lag = s.metric("ttft_ms"), s.metric("itl_ms"), s.metric("client_lag_ms")
    return {
        "ttft_p50": ttft.p50, "ttft_p99": ttft.p99, "itl_p50": itl.p50, "itl_p99": itl.p99,
        "lag_p50": lag.p50, "lag_p99": lag.p99, "cpu": cpu, "requests": s.requests,
        "read_p50": s.saturation.get("read_lag_p50_ms"),
        "read_p99": s.saturation.get("read_lag_p99_ms"),
        "events_per_s": events_per_s,
        "valid": s.valid,
    }  # fmt: skip


def samples_row(data: dict[str, Any], cpu: float, events_per_s: float) -> dict[str, Any]:
    """A table row from a peer's raw samples (``ttft_ms``, ``itl_ms``, ``lag_ms`` lists)."""
    return {
        "ttft_p50": pct(data["ttft_ms"], 50), "ttft_p99": pct(data["ttft_ms"], 99),
        "itl_p50": pct(data["itl_ms"], 50), "itl_p99": pct(data["itl_ms"], 99),
        "lag_p50": pct(data["lag_ms"], 50), "lag_p99": pct(data["lag_ms"], 99),
        "read_p50": None, "read_p99": None, "cpu": cpu, "requests": len(data["ttft_ms"]),
        "events_per_s": events_per_s, "valid": None,
    }  # fmt: skip


def run_naive(url: str, streams: int, measure_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as out:
        duration = WARMUP_S + measure_s
        env = dict(os.environ, NAIVE_OUT=f"{out}/naive.json", NAIVE_WARMUP_S=f"{WARMUP_S:g}")
        argv = [
            *taskset("1"), sys.executable, "-m", "locust",
            "-f", str(ROOT / "benchmarks/naive_locustfile.py"), "--headless", "--only-summary",
            "-u", str(streams), "-r", str(streams), "-t", f"{duration:g}s", "-H", f"{url}/v1",
            "--stop-timeout", "3",
        ]  # fmt: skip
        proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            **child_popen_options(),
        )  # fmt: skip
        cpu, events_per_s = sample_cpu(proc.pid, 1.0 + WARMUP_S, measure_s - 1.0, url)
        proc.wait(timeout=duration + 60)
        data = json.loads(Path(f"{out}/naive.json").read_text())
    return samples_row(data, cpu, events_per_s)


async def _client(
    host: str, port: int, deadline: float, measure_from: float, out: dict[str, list[float]]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    body = json.dumps(
        {"model": "mock", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    ).encode()
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    try:
        while time.time() < deadline:
            start = time.time_ns()
            writer.write(request)
            while (await reader.readline()) not in (b"\r\n", b""):
                pass  # status line and headers
            tracker = OpenAIStreamTracker(start)
            parser = SSEParser()
            while True:  # chunked body: size line, data, CRLF
                size = int((await reader.readline()).split(b";")[0], 16)
                if size == 0:
                    await reader.readline()
                    break
                data = await reader.readexactly(size + 2)
                for event in parser.feed(data[:-2], time.time_ns()):
                    tracker.on_event(event)
            record = tracker.finish(time.time_ns())
            if start / 1e9 >= measure_from and record.ttft_ns is not None:
                out["ttft_ms"].append(record.ttft_ns / 1e6)
                out["itl_ms"].extend(g / 1e6 for g in record.itl_ns)
                out["lag_ms"].extend(lag / 1e6 for lag in record.client_lag_ns)
    finally:
        writer.close()


def asyncio_worker(url: str, streams: int, measure_s: float, result_path: str) -> None:
    import uvloop

    host, port = url.removeprefix("http://").split(":")
    out: dict[str, list[float]] = {"ttft_ms": [], "itl_ms": [], "lag_ms": []}
    now = time.time()

    async def main() -> None:
        await asyncio.gather(
            *(
                _client(host, int(port), now + WARMUP_S + measure_s, now + WARMUP_S, out)
                for _ in range(streams)
            )
        )

    uvloop.run(main())
    Path(result_path).write_text(json.dumps(out))


def run_peer(url: str, measure_s: float, argv_with_result: list[str]) -> dict[str, Any]:
    """Run a peer generator on CPU 1 (its argv ends with the path of its JSON samples, appended
    here) and make its table row: its CPU and the mock's token rate over the measured window."""
    with tempfile.TemporaryDirectory() as out:
        path = f"{out}/samples.json"
        argv = [*taskset("1"), *argv_with_result, path]
        proc = subprocess.Popen(argv, **child_popen_options())
        cpu, events_per_s = sample_cpu(proc.pid, WARMUP_S + 0.5, measure_s - 1.0, url)
        proc.wait(timeout=WARMUP_S + measure_s + 60)
        data = json.loads(Path(path).read_text())
    return samples_row(data, cpu, events_per_s)


def run_asyncio(url: str, streams: int, measure_s: float) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--asyncio-worker", url, str(streams), f"{measure_s:g}"]
    return run_peer(url, measure_s, argv)


def run_floor(url: str, streams: int, measure_s: float) -> dict[str, Any]:
    argv = [sys.executable, str(ROOT / "benchmarks/gevent_floor.py"), url.removeprefix("http://"),
            str(streams), str(TOKENS), f"{WARMUP_S:g}", f"{measure_s:g}"]  # fmt: skip
    return run_peer(url, measure_s, argv)


def us_per_event(row: dict[str, Any]) -> float | None:
    """Generator CPU per token event, in microseconds."""
    cpu, rate = row.get("cpu"), row.get("events_per_s")
    return cpu / rate * 1e6 if cpu is not None and rate else None


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for key in runs[0]:
        values = [r[key] for r in runs if isinstance(r[key], int | float) and r[key] is not None]
        if key == "valid":
            merged[key] = None if runs[0][key] is None else all(bool(r[key]) for r in runs)
        else:
            merged[key] = statistics.median(values) if values else None
    return merged


SATURATED_SHARE = 0.95
"""A generator using this share of its CPUs or more is saturated: it reads several events per
``recv``, which makes its CPU per event look lower (compare that column between unsaturated
rows only)."""


def saturated(row: dict[str, Any]) -> str:
    cpus = 2 if row["generator"] == "ours-2p" else 1
    cpu = row.get("cpu")
    return " (saturated)" if cpu is not None and cpu >= SATURATED_SHARE * cpus else ""


def fmt(value: float | None, minus: float = 0.0) -> str:
    return "-" if value is None else f"{value - minus:+.1f}" if minus else f"{value:.1f}"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--asyncio-worker":
        asyncio_worker(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--streams", default="50,200,500,1000")
    p.add_argument("--generators", default="ours,ours-2p,floor,fallback,naive,asyncio")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--measure-s", type=float, default=6.0)
    args = p.parse_args()
    levels = [int(x) for x in args.streams.split(",")]
    generators = args.generators.split(",")
    unknown = [g for g in generators if g not in GENERATORS]
    if unknown:
        p.error(f"--generators: unknown {unknown[0]!r} (allowed: {', '.join(GENERATORS)})")
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    mock_argv = [
        *taskset("0"), *surgebench_argv(
            "mock", "--port", "0", "--stamp", "--ttft-ms", f"{TTFT_MS:g}", "--itl-ms",
            f"{ITL_MS:g}", "--output-tokens", str(TOKENS), "--keepalive-timeout-s", "600",
        ),
    ]  # fmt: skip
    with ServerProcess(mock_argv) as mock:
        for streams in levels:
            for gen in generators:
                runs = []
                for _ in range(args.repeat):
                    if gen == "ours":
                        runs.append(run_ours(mock.url, streams, args.measure_s, 1))
                    elif gen == "ours-2p":
                        runs.append(run_ours(mock.url, streams, args.measure_s, 2))
                    elif gen == "fallback":
                        runs.append(run_ours(mock.url, streams, args.measure_s, 1, "fallback"))
                    elif gen == "naive":
                        runs.append(run_naive(mock.url, streams, args.measure_s))
                    elif gen == "asyncio":
                        runs.append(run_asyncio(mock.url, streams, args.measure_s))
                    elif gen == "floor":
                        runs.append(run_floor(mock.url, streams, args.measure_s))
                    runs[-1]["us_per_event"] = us_per_event(runs[-1])
                    runs[-1]["loadavg_1m"] = os.getloadavg()[0]
                row = {"streams": streams, "generator": gen, **median_of(runs)}
                rows.append(row)
                print(f"  done: {streams} streams, {gen}: {row}", file=sys.stderr, flush=True)
    header = (
        "| streams | generator | TTFT err p50 / p99 ms | ITL err p50 / p99 ms | "
        "client lag p50 / p99 ms | read lag p50 / p99 ms | generator CPU (cores) | "
        "CPU per token event (us) | requests | valid | load avg 1 min |"
    )
    print(header)
    print("|" + "---|" * 11)
    for r in rows:
        print(
            f"| {r['streams']} | {r['generator']} | {fmt(r['ttft_p50'], TTFT_MS)} / "
            f"{fmt(r['ttft_p99'], TTFT_MS)} | {fmt(r['itl_p50'], ITL_MS)} / "
            f"{fmt(r['itl_p99'], ITL_MS)} | {fmt(r['lag_p50'])} / {fmt(r['lag_p99'])} | "
            f"{fmt(r['read_p50'])} / {fmt(r['read_p99'])} | "
            f"{fmt(r['cpu'])} | {fmt(r['us_per_event'])}{saturated(r)} | {fmt(r['requests'])} | "
            f"{'-' if r['valid'] is None else 'yes' if r['valid'] else 'NO'} | "
            f"{fmt(r['loadavg_1m'])} |"
        )
    guidellm = shutil.which("guidellm")
    print(
        f"guidellm: installed at {guidellm}, not run by this script"
        if guidellm
        else "guidellm: not installed here, not measured"
    )
    print(
        json.dumps(
            {
                "benchmark": "measurement_fidelity",
                "true_ttft_ms": TTFT_MS,
                "true_itl_ms": ITL_MS,
                "repeat": args.repeat,
                "measure_s": args.measure_s,
                "loadavg_before": load_before,
                "loadavg_after": os.getloadavg(),
                "rows": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
