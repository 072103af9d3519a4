"""Our mock vs `guidellm mock-server` vs `mockllm`: chunks/s, server CPU, TTFT and ITL error.

Each server runs pinned to CPU 0; this script (the uvloop raw client of `mock_llm.probe`) pins
itself to CPU 1. Configured: TTFT 100 ms, ITL 20 ms, 50 tokens; closed loop of N streams
(one keep-alive connection each). Reports the median of `--runs` runs per cell, a table and a
JSON line. Peers live in their own virtual environments under `--peers-dir`
(`PEERS/guidellm/bin/guidellm`, `PEERS/mockllm/bin/uvicorn`); a missing one is reported as
unavailable with the reason.

    python benchmarks/mock_llm.py --streams 100,1000,2000 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import uvloop

# This file is named like the package it measures: keep its folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from mock_llm.probe import ProbeResult, run_probe  # noqa: E402
from surgebench.percentiles import percentile  # noqa: E402
from surgebench.process import ServerProcess, ServerStartError, surgebench_argv  # noqa: E402

SERVER_CPU = 0
CLIENT_CPU = 1
CLK_TCK = os.sysconf("SC_CLK_TCK")


def tree_pids(pid: int) -> list[int]:
    """A process and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def tree_cpu_s(pid: int) -> tuple[float, float]:
    """(CPU seconds used, seconds spent runnable but waiting for a CPU) of a process tree.

    The second figure shows contention from other work on the server's core."""
    used = waited = 0.0
    for p in tree_pids(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            used += (int(fields[11]) + int(fields[12])) / CLK_TCK
            for task in Path(f"/proc/{p}/task").iterdir():
                waited += int((task / "schedstat").read_text().split()[1]) / 1e9
        except OSError:
            pass
    return used, waited


# The peer dies with its shim however the shim dies (Linux parent-death signal; the shim itself
# gets one from ServerProcess, and its SIGTERM handler stops the peer).
PDEATH_SHIM = (
    "import ctypes\n"
    "def die_with_parent():\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, 15, 0, 0, 0)\n"
)

# The peer's own shutdown can hang with thousands of open connections: SIGKILL after 5 s.
STOP_SHIM = (
    "import signal\n"
    "def stop(*a):\n"
    "    p.terminate()\n"
    "    try: p.wait(5)\n"
    "    except subprocess.TimeoutExpired: p.kill(); p.wait()\n"
    "    sys.exit(0)\n"
    "signal.signal(signal.SIGINT,stop)\n"
    "signal.signal(signal.SIGTERM,stop)\n"
    "p.wait()\n"
)


def start_ours(port: int, args: argparse.Namespace, tmp: Path) -> ServerProcess:
    argv = surgebench_argv(
        "mock", "--port", str(port), "--ttft-ms", str(args.ttft_ms), "--itl-ms", str(args.itl_ms),
        "--output-tokens", str(args.tokens),
    )  # fmt: skip
    return ServerProcess(argv, cpu_affinity=[SERVER_CPU])


def start_guidellm(port: int, args: argparse.Namespace, tmp: Path) -> ServerProcess:
    exe = Path(args.peers_dir) / "guidellm" / "bin" / "guidellm"
    if not exe.exists():
        raise FileNotFoundError(f"{exe} not found (pip install guidellm into {exe.parent.parent})")
    # guidellm prints Sanic's log, not our 'listening on' line: a shim prints it once
    # /health answers.
    shim = (
        PDEATH_SHIM + "import subprocess,sys,time,urllib.request\n"
        f"p=subprocess.Popen([{str(exe)!r},'mock-server','--host','127.0.0.1','--port','{port}',"
        f"'--workers','1','--ttft-ms','{args.ttft_ms}','--itl-ms','{args.itl_ms}',"
        f"'--output-tokens','{args.tokens}'],stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL,"
        "preexec_fn=die_with_parent)\n"
        "for _ in range(600):\n"
        "    try:\n"
        f"        urllib.request.urlopen('http://127.0.0.1:{port}/health',timeout=1); break\n"
        "    except Exception: time.sleep(0.1)\n"
        f"print('listening on http://127.0.0.1:{port}',flush=True)\n" + STOP_SHIM
    )
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return ServerProcess(
        [sys.executable, "-c", shim], env=env, cpu_affinity=[SERVER_CPU], start_timeout_s=90
    )


def start_mockllm(port: int, args: argparse.Namespace, tmp: Path) -> ServerProcess:
    exe = Path(args.peers_dir) / "mockllm" / "bin" / "uvicorn"
    if not exe.exists():
        raise FileNotFoundError(f"{exe} not found (pip install mockllm uvicorn)")
    # mockllm has no TTFT or token knobs: 50 characters (one chunk each), per-character lag
    # 1/(10 x lag_factor) s +-50% uniform; lag_factor 5 = 20 ms mean.
    responses = tmp / "responses.yml"
    responses.write_text(
        "responses: {}\ndefaults:\n  unknown_response: '" + "x" * args.tokens + "'\n"
        f"settings:\n  lag_enabled: true\n  lag_factor: {1000.0 / (10 * args.itl_ms):g}\n"
    )
    shim = (
        PDEATH_SHIM + "import subprocess,sys,time,urllib.request,signal\n"
        f"p=subprocess.Popen([{str(exe)!r},'mockllm.server:app','--host','127.0.0.1','--port',"
        f"'{port}','--log-level','warning'],stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL,"
        "preexec_fn=die_with_parent)\n"
        "for _ in range(600):\n"
        "    try:\n"
        f"        urllib.request.urlopen('http://127.0.0.1:{port}/docs',timeout=1); break\n"
        "    except Exception: time.sleep(0.1)\n"
        f"print('listening on http://127.0.0.1:{port}',flush=True)\n" + STOP_SHIM
    )
    env = {"MOCKLLM_RESPONSES_FILE": str(responses)}
    return ServerProcess([sys.executable, "-c", shim], env=env, cpu_affinity=[SERVER_CPU])


SERVERS: dict[str, Callable[[int, argparse.Namespace, Path], ServerProcess]] = {
    "surgebench": start_ours,
    "guidellm": start_guidellm,
    "mockllm": start_mockllm,
}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def measure(
    url: str, server_pid: int, streams: int, args: argparse.Namespace
) -> tuple[ProbeResult, float, float]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    cpu: list[tuple[float, float]] = []

    async def sample() -> None:
        await asyncio.sleep(args.warmup_s)
        cpu.append(tree_cpu_s(server_pid))
        await asyncio.sleep(args.measure_s)
        cpu.append(tree_cpu_s(server_pid))

    sampler = asyncio.create_task(sample())
    result = await run_probe(
        parts.hostname,
        parts.port,
        streams,
        ramp_s=args.ramp_s,
        warmup_s=args.warmup_s,
        measure_s=args.measure_s,
    )
    await sampler
    used = (cpu[1][0] - cpu[0][0]) / args.measure_s
    waited = (cpu[1][1] - cpu[0][1]) / args.measure_s
    return result, used, waited


def one_run(name: str, streams: int, args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    proc = SERVERS[name](free_port(), args, tmp)
    try:
        res, cpu, cpu_wait = uvloop.run(measure(proc.url, proc.pid, streams, args))
    finally:
        proc.stop()
    ttft_err = [(t * 1000 - args.ttft_ms) for t in res.ttft_s]
    gap_err = [(g * 1000 - args.itl_ms) for g in res.gaps_s]
    return {
        "chunks_per_s": res.chunks_per_s,
        "server_cpu": cpu,
        "server_cpu_wait": cpu_wait,
        "ttft_p50_ms": percentile([t * 1000 for t in res.ttft_s], 50),
        "ttft_err_p50_ms": percentile(ttft_err, 50),
        "ttft_err_p99_ms": percentile(ttft_err, 99),
        "itl_err_p50_ms": percentile(gap_err, 50),
        "itl_err_p99_ms": percentile(gap_err, 99),
        "itl_mean_ms": statistics.fmean(res.gaps_s) * 1000 if res.gaps_s else float("nan"),
        "errors": float(res.errors),
    }


def hotpath_us_per_token(streams: int = 1000, tokens: int = 50) -> float:
    """CPU microseconds per token of the scheduler + sink path alone (a transport that drops
    the bytes, a fake clock advanced in 1 ms steps): the Python share of the per-chunk cost."""
    import random
    from dataclasses import replace

    from mock_llm.openai_api import GenRequest, StreamTemplate
    from mock_llm.scheduler import Sequence
    from mock_llm.server import MockApp, StreamSink
    from mock_llm.settings import MockSettings

    class DropTransport:
        def write(self, data: bytes) -> None:
            pass

        def get_write_buffer_size(self) -> int:
            return 0

    class FakeConn:
        closed = False
        paused = False
        transport = DropTransport()

        def write(self, data: bytes) -> None:
            pass

        def finished(self) -> None:
            pass

    loop = asyncio.new_event_loop()
    settings = replace(MockSettings(), ttft_ms=0.0, itl_ms=20.0, output_tokens=tokens)
    app = MockApp(settings, loop)
    req = GenRequest("chat", "m", 5, True, False, None, None, [])
    for i in range(streams):
        tpl = StreamTemplate(req, f"id{i}", 1)
        sink = StreamSink(app, FakeConn(), tpl, req, i, -1)  # type: ignore[arg-type]
        seq = Sequence(prompt_tokens=5, out_tokens=tokens, sink=sink, rng=random.Random(i))
        app.scheduler.submit(seq, i * 0.02 / streams)
    t0, now = time.process_time(), 0.0
    while app.scheduler.n_running:
        now += 0.001
        app.scheduler.advance(now)
    used = time.process_time() - t0
    loop.close()
    return used / app.stats.generation_tokens * 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--servers", default="surgebench,guidellm,mockllm")
    p.add_argument("--streams", default="100,1000,2000")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--ttft-ms", type=float, default=100.0)
    p.add_argument("--itl-ms", type=float, default=20.0)
    p.add_argument("--tokens", type=int, default=50)
    p.add_argument("--ramp-s", type=float, default=1.5)
    p.add_argument("--warmup-s", type=float, default=2.5)
    p.add_argument("--measure-s", type=float, default=4.0)
    p.add_argument("--peers-dir", default=os.environ.get("SURGE_PEERS_DIR", "/tmp/peers"))
    p.add_argument(
        "--hotpath", action="store_true", help="only time the Python per-token path (no sockets)"
    )
    args = p.parse_args(argv)
    os.sched_setaffinity(0, {CLIENT_CPU})
    if args.hotpath:
        costs = sorted(round(hotpath_us_per_token(), 2) for _ in range(max(1, args.runs)))
        print(f"python hot path: {statistics.median(costs):.2f} us/token (runs {costs})")
        print(json.dumps({"benchmark": "mock_llm_hotpath", "us_per_token": costs}))
        return 0
    streams_list = [int(x) for x in args.streams.split(",")]
    rows: list[dict[str, object]] = []
    unavailable: dict[str, str] = {}
    print(f"load average before: {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for name in args.servers.split(","):
            for streams in streams_list:
                runs: list[dict[str, float]] = []
                for _ in range(args.runs):
                    try:
                        runs.append(one_run(name, streams, args, tmp))
                    except (FileNotFoundError, ServerStartError) as exc:
                        unavailable[name] = str(exc).splitlines()[0]
                        break
                if name in unavailable:
                    break
                med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
                row: dict[str, object] = {"server": name, "streams": streams, "runs": len(runs)}
                row.update({k: round(v, 3) for k, v in med.items()})
                row["chunks_per_s_range"] = [
                    round(min(x["chunks_per_s"] for x in runs)),
                    round(max(x["chunks_per_s"] for x in runs)),
                ]
                rows.append(row)
                print(json.dumps(row), flush=True)
    request_ms = args.ttft_ms + (args.tokens - 1) * args.itl_ms
    offered = {
        s: s * 1000.0 / request_ms * args.tokens if request_ms > 0 else float("inf")
        for s in streams_list
    }
    print()
    print(
        f"Configured TTFT {args.ttft_ms:g} ms, ITL {args.itl_ms:g} ms, {args.tokens} tokens; "
        f"medians of {args.runs} runs; server on CPU {SERVER_CPU}, client on CPU {CLIENT_CPU}; "
        f"load average after: {os.getloadavg()}"
    )
    print(
        "| server | streams | chunks/s (offered) | server CPU | TTFT p50 ms "
        "| TTFT err p50 / p99 ms | ITL err p50 / p99 ms | mean ITL ms | errors "
        "| server waited for CPU |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['server']} | {r['streams']} | {r['chunks_per_s']:,.0f} "
            f"({offered[int(r['streams'])]:,.0f}) | {r['server_cpu']:.2f} | {r['ttft_p50_ms']:.1f} "  # type: ignore[call-overload]
            f"| {r['ttft_err_p50_ms']:+.1f} / {r['ttft_err_p99_ms']:+.1f} "
            f"| {r['itl_err_p50_ms']:+.2f} / {r['itl_err_p99_ms']:+.2f} | {r['itl_mean_ms']:.2f} "
            f"| {r['errors']:.0f} | {r['server_cpu_wait']:.2f} |"
        )
    for name, why in unavailable.items():
        print(f"| {name} | unavailable: {why} |")
    print(json.dumps({"benchmark": "mock_llm", "rows": rows, "unavailable": unavailable}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
