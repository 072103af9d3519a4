"""Replicas: chunks/s and CPU per process for 1 and 2 processes of each server, and engine scaling.

Part 1 (CPU): paced closed-loop streams (TTFT 100 ms, ITL 20 ms, 50 tokens; one keep-alive
connection each) from this process (uvloop raw client) to
  - the mock: `surgebench mock --processes N`;
  - the service: `surgebench serve --processes N` in front of one mock process.
Each layout pins every worker to a core (taskset-style, `sched_setaffinity` on each thread); the
generator (and the upstream mock of the service rows) sits on `--client-cpu`. Chunks/s are the
servers' own counters (`vllm:generation_tokens_total`, `surge_service_tokens_relayed_total`,
merged over the replicas) over the measured window; CPU is each worker's /proc time over it.

Part 2 (engine): the mock in engine mode (`--max-num-seqs 8`, `--step-base-ms 20`: one replica
decodes at most 8 tokens per 20 ms step = 400 tokens/s) under a closed loop far past saturation
(`--engine-clients-per-replica` streams per replica). N replicas must give N times the plateau
throughput of one within 10 %.

    .venv/bin/python benchmarks/replicas.py                       # both parts, ~2 min
    .venv/bin/python benchmarks/replicas.py --streams 300 --measure-s 5 --skip-engine
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import uvloop

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from surgebench.process import ServerProcess, surgebench_argv  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
PIDS_RE = re.compile(r"replicas: \d+ processes \(pids ([\d, ]+)\)")
SUPERVISE_WITH_BALANCE = (
    "import sys; from mock_llm.settings import resolve; from mock_llm.replicas import supervise; "
    "sys.exit(supervise(resolve(sys.argv[2:]), sys.argv[1]))"
)
MOCK_LATENCY = ("--ttft-ms", "100", "--itl-ms", "20", "--output-tokens", "50")


# ---------------------------------------------------------------- processes


def worker_pids(proc: ServerProcess) -> list[int]:
    """The serving processes: the workers of a supervisor, or the server itself."""
    deadline = time.monotonic() + 10
    while "--processes" in proc.argv and time.monotonic() < deadline:
        match = PIDS_RE.search(proc.output)
        if match:
            return [int(p) for p in match.group(1).split(", ")]
        time.sleep(0.05)
    return [proc.pid]


def pin(pid: int, cpu: int) -> None:
    """Pin every thread of a process to one CPU."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that just ended
            os.sched_setaffinity(int(task.name), {cpu})


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def counter(url: str, name: str) -> tuple[float, list[float]]:
    """A merged counter of a server (summed over its label sets), and the requests each replica
    received (empty for one process)."""
    text = httpx.get(url + "/metrics", timeout=30).text
    total = 0.0
    per_replica: dict[int, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name:
                total += s.value
            elif s.name == "surgebench_replica_requests_total":
                per_replica[int(s.labels["replica"])] = s.value
    return total, [per_replica[i] for i in sorted(per_replica)]


def start(
    command: str, *args: str, cpus: Sequence[int], balance: str = ""
) -> tuple[ServerProcess, list[int]]:
    """Start a server (with --processes len(cpus) when > 1) and pin worker i to cpus[i].

    `balance` "shared" starts the mock's supervisor with one shared listening socket instead of
    SO_REUSEPORT (not a user setting: only this comparison uses it)."""
    extra = ("--processes", str(len(cpus))) if len(cpus) > 1 else ()
    argv = surgebench_argv(command, "--port", "0", *extra, *args)
    if balance:
        assert command == "mock"
        argv = [sys.executable, "-c", SUPERVISE_WITH_BALANCE, balance, *argv[4:]]
    proc = ServerProcess(argv, cpu_affinity=sorted(set(cpus)))
    pids = worker_pids(proc)
    for pid, cpu in zip(pids, cpus, strict=True):
        pin(pid, cpu)
    return proc, pids


# ---------------------------------------------------------------- load generator


@dataclass
class _Loop:
    request: bytes
    end: bytes  # a response is over once this was read
    stopping: bool = False
    done: int = 0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


class _Stream(asyncio.Protocol):
    """One keep-alive connection sending a request as soon as the previous response ended."""

    def __init__(self, loop: _Loop) -> None:
        self.l = loop
        self.transport: asyncio.Transport | None = None
        self.tail = b""
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.send()

    def send(self) -> None:
        assert self.transport is not None
        if self.l.stopping:
            self.transport.close()
            return
        self.tail = b""
        self.transport.write(self.l.request)

    def data_received(self, data: bytes) -> None:
        chunk = self.tail + data
        at = chunk.find(b"HTTP/1.1 ")
        if at >= 0 and chunk[at + 9 : at + 12] != b"200":
            status = int(chunk[at + 9 : at + 12])
            self.l.statuses[status] = self.l.statuses.get(status, 0) + 1
            self.l.errors += 1
            assert self.transport is not None
            self.transport.close()
            return
        if self.l.end in chunk:
            self.l.done += 1
            self.send()
        else:
            self.tail = chunk[-32:]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


def http_post(host: str, port: int, path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body


async def closed_loop(
    url: str, service: bool, streams: int, ramp_s: float
) -> tuple[_Loop, list[_Stream]]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    if service:
        request = http_post(host, port, "/chat/stream", b'{"question":"hi"}')
        end = b"event: done"
    else:
        body = orjson.dumps(
            {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        )
        request, end = http_post(host, port, "/v1/chat/completions", body), b"[DONE]"
    state = _Loop(request, end)
    loop = asyncio.get_running_loop()
    conns: list[_Stream] = []
    t0 = time.monotonic()
    for i in range(streams):
        await asyncio.sleep(max(0.0, t0 + ramp_s * i / streams - time.monotonic()))
        try:
            _, proto = await loop.create_connection(lambda: _Stream(state), host, port)
        except OSError:
            state.errors += 1
            continue
        conns.append(proto)
    return state, conns


async def measure(
    url: str, service: bool, streams: int, pids: list[int], args: argparse.Namespace
) -> dict[str, Any]:
    """Closed loop; chunks/s from the server's counter and CPU per worker over the window."""
    name = "surge_service_tokens_relayed_total" if service else "vllm:generation_tokens_total"
    t0 = time.monotonic()
    state, conns = await closed_loop(url, service, streams, args.ramp_s)
    await asyncio.sleep(max(0.0, t0 + args.ramp_s + args.warmup_s - time.monotonic()))
    tokens0, requests0 = await asyncio.to_thread(counter, url, name)
    cpu0 = [cpu_s(p) for p in pids]
    w0 = time.monotonic()
    await asyncio.sleep(args.measure_s)
    tokens1, requests1 = await asyncio.to_thread(counter, url, name)
    cpu1 = [cpu_s(p) for p in pids]
    window = time.monotonic() - w0
    state.stopping = True
    for c in conns:
        if c.transport is not None:
            c.transport.close()
    if conns:
        await asyncio.wait([c.closed for c in conns], timeout=5)
    return {
        "chunks_per_s": (tokens1 - tokens0) / window,
        "cpu_per_process": [round((b - a) / window, 3) for a, b in zip(cpu0, cpu1, strict=True)],
        "requests_per_replica": [b - a for a, b in zip(requests0, requests1, strict=True)],
        "errors": state.errors,
        "statuses": state.statuses,
    }


# ---------------------------------------------------------------- the two parts


def cpu_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    layouts: list[tuple[str, list[int]]] = [
        ("1 process", [args.server_cpu]),
        ("2 processes, same core", [args.server_cpu, args.server_cpu]),
        ("2 processes, 2 cores*", [args.server_cpu, args.client_cpu]),
    ]
    rows = []
    os.sched_setaffinity(0, {args.client_cpu})
    for server in ("mock", "service"):
        streams = args.streams if server == "mock" else args.service_streams
        for label, cpus in layouts:
            upstream: ServerProcess | None = None
            try:
                if server == "mock":
                    proc, pids = start("mock", *MOCK_LATENCY, cpus=cpus)
                else:
                    upstream, _ = start("mock", *MOCK_LATENCY, cpus=[args.client_cpu])
                    proc, pids = start(
                        "serve", "--upstream-url", upstream.url + "/v1", "--admission", "none",
                        cpus=cpus,
                    )  # fmt: skip
                try:
                    result = uvloop.run(measure(proc.url, server == "service", streams, pids, args))
                finally:
                    proc.stop()
            finally:
                if upstream is not None:
                    upstream.stop()
            cpu_total = sum(result["cpu_per_process"])
            rows.append(
                {
                    "server": server,
                    "layout": label,
                    "cpus": cpus,
                    "streams": streams,
                    "offered_chunks_per_s": streams * 50 / (0.1 + 49 * 0.02),
                    **result,
                    "us_cpu_per_chunk": (
                        cpu_total / result["chunks_per_s"] * 1e6 if result["chunks_per_s"] else 0
                    ),
                }
            )
            print_row(rows[-1])
    return rows


def print_row(row: dict[str, Any]) -> None:
    cpus = "+".join(f"{c:.2f}" for c in row["cpu_per_process"])
    spread = "/".join(f"{n:.0f}" for n in row["requests_per_replica"]) or "-"
    print(
        f"{row['server']:<8} {row['layout']:<24} {row['streams']:>7} "
        f"{row['offered_chunks_per_s']:>9.0f} {row['chunks_per_s']:>9.0f} {cpus:>11} "
        f"{row['us_cpu_per_chunk']:>8.1f} {spread:>11} {row['errors']:>6}",
        flush=True,
    )


def spread_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """How connections spread over 2 mock processes: SO_REUSEPORT vs one shared socket."""
    rows = []
    os.sched_setaffinity(0, {args.client_cpu})
    for balance in ("reuseport", "shared"):
        for ramp_s in (args.ramp_s, 0.0):
            proc, pids = start(
                "mock", *MOCK_LATENCY, cpus=[args.server_cpu, args.client_cpu], balance=balance
            )
            try:
                run_args = argparse.Namespace(**{**vars(args), "ramp_s": ramp_s})
                result = uvloop.run(measure(proc.url, False, args.streams, pids, run_args))
            finally:
                proc.stop()
            row = {"balance": balance, "ramp_s": ramp_s, "streams": args.streams, **result}
            rows.append(row)
            spread = "/".join(f"{n:.0f}" for n in row["requests_per_replica"])
            cpus = "+".join(f"{c:.2f}" for c in row["cpu_per_process"])
            print(
                f"spread   {balance:<10} connections over {ramp_s:.1f}s: {args.streams} streams, "
                f"{row['chunks_per_s']:.0f} chunks/s, requests per replica {spread}, "
                f"CPU {cpus}",
                flush=True,
            )
    return rows


def engine_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    engine = (
        "--mode", "engine", "--max-num-seqs", "8", "--step-base-ms", "20",
        "--output-tokens", "50", "--keepalive-timeout-s", "600",
    )  # fmt: skip
    plateau_1 = 8 / 0.020
    for n in args.engine_replicas:
        cpus = [args.server_cpu if i % 2 == 0 else args.client_cpu for i in range(n)]
        proc, pids = start("mock", *engine, cpus=cpus)
        try:
            clients = args.engine_clients_per_replica * n
            result = uvloop.run(measure(proc.url, False, clients, pids, args))
        finally:
            proc.stop()
        rows.append(
            {
                "replicas": n,
                "clients": clients,
                "tokens_per_s": result["chunks_per_s"],
                "ideal_tokens_per_s": n * plateau_1,
                "cpu_per_process": result["cpu_per_process"],
                "requests_per_replica": result["requests_per_replica"],
                "errors": result["errors"],
            }
        )
    base = rows[0]["tokens_per_s"] / rows[0]["replicas"] if rows else 0.0
    for row in rows:
        row["ratio_to_n_times_one"] = row["tokens_per_s"] / (base * row["replicas"])
        row["within_10_percent"] = abs(row["ratio_to_n_times_one"] - 1) <= 0.10
        print(
            f"engine   {row['replicas']:>2} replicas {row['clients']:>5} clients "
            f"{row['tokens_per_s']:>8.0f} tok/s (ideal {row['ideal_tokens_per_s']:.0f}) "
            f"x{row['ratio_to_n_times_one']:.3f} of N x one "
            f"{'ok' if row['within_10_percent'] else 'OFF BY >10%'}",
            flush=True,
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=600, help="mock rows: concurrent streams")
    parser.add_argument("--service-streams", type=int, default=150, help="service rows: streams")
    parser.add_argument("--ramp-s", type=float, default=1.0)
    parser.add_argument("--warmup-s", type=float, default=2.0)
    parser.add_argument("--measure-s", type=float, default=5.0)
    parser.add_argument("--server-cpu", type=int, default=1)
    parser.add_argument("--client-cpu", type=int, default=0)
    parser.add_argument(
        "--engine-replicas", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4]
    )
    parser.add_argument("--engine-clients-per-replica", type=int, default=48)
    parser.add_argument("--skip-cpu", action="store_true")
    parser.add_argument("--skip-engine", action="store_true")
    parser.add_argument("--skip-spread", action="store_true")
    args = parser.parse_args(argv)
    load = os.getloadavg()
    print(f"cores {os.cpu_count()}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    out: dict[str, Any] = {"load_average": load}
    if not args.skip_cpu:
        print(
            f"{'server':<8} {'layout':<24} {'streams':>7} {'offered':>9} {'chunks/s':>9} "
            f"{'cpu/proc':>11} {'us/chunk':>8} {'req/replica':>11} {'errors':>6}"
        )
        out["cpu"] = cpu_rows(args)
    if not args.skip_spread:
        out["spread"] = spread_rows(args)
    if not args.skip_engine:
        out["engine"] = engine_rows(args)
    load = os.getloadavg()
    print(f"load average after {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    out["load_average_after"] = load
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
