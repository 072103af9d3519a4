"""`--processes N` of the mock and of the service: real supervisors and workers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from reports.plots import server_timeline_figure
from reports.results import read_summary
from reports.servermetrics import epoch_of, read_server_metrics
from surgebench.process import ServerProcess, surgebench_argv
from surgebench.replicas import fetch_replica_metrics
from tests.integration.conftest import Start

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]
REPLICAS_LINE = re.compile(r"replicas: (\d+) processes \(pids ([\d, ]+)\).* sockets in (\S+)")
CHAT_BODY = orjson.dumps(
    {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
)
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def replicas_of(proc: ServerProcess) -> tuple[list[int], str]:
    """The worker pids and the per-replica metrics folder the supervisor printed."""
    if not proc.wait_for_output(lambda out: REPLICAS_LINE.search(out) is not None, 10):
        raise AssertionError(f"no replicas line in {proc.output!r}")
    match = REPLICAS_LINE.search(proc.output)
    assert match is not None
    return [int(p) for p in match.group(2).split(", ")], match.group(3)


def samples(text: str) -> tuple[Samples, set[str]]:
    """Every sample by (name, labels), and the names of the samples of gauge families."""
    out: Samples = {}
    gauges: set[str] = set()
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
            if fam.type == "gauge":
                gauges.add(s.name)
    return out, gauges


def local_texts(metrics_dir: str, count: int) -> list[str]:
    async def all_of() -> list[bytes | None]:
        return list(
            await asyncio.gather(*(fetch_replica_metrics(metrics_dir, i) for i in range(count)))
        )

    texts = asyncio.run(all_of())
    assert all(t is not None for t in texts)
    return [t.decode() for t in texts if t is not None]


def assert_merged_is_the_sum(merged_text: str, locals_: Iterable[str]) -> int:
    """Every summed sample of the merged text equals the sum over the replicas; the count."""
    merged, gauges = samples(merged_text)
    per_replica = [samples(t)[0] for t in locals_]
    checked = 0
    for (name, labels), value in merged.items():
        if name in gauges or name.startswith("surgebench_replica_"):
            continue
        assert not name.endswith("_created")
        total = sum(p.get((name, labels), 0.0) for p in per_replica)
        assert value == pytest.approx(total), (name, labels)
        checked += 1
    for p in per_replica:  # and nothing summable was left out
        for name, labels in p:
            if not name.endswith("_created") and not name.startswith("surgebench_replica_"):
                assert (name, labels) in merged or (name in gauges), (name, labels)
    return checked


def gone(pid: int) -> bool:
    """True once the process no longer exists (or is a zombie nobody has reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def wait_gone(pids: list[int], timeout_s: float = 20.0) -> list[int]:
    """The pids still running after `timeout_s`: each one's pidfd becomes readable when it
    exits (the workers are not our children, so there is no wait() to block on)."""
    deadline = time.monotonic() + timeout_s
    alive = []
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            if not poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
                alive.append(pid)
        finally:
            os.close(fd)
    return alive


async def _status_of_new_connection(
    host: str, port: int, request: bytes, hold: asyncio.Event
) -> int:
    """Open a fresh connection, send one request, return its status; keep it open until `hold`."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 20)
        await hold.wait()
        return int(status_line.split()[1])
    finally:
        writer.close()


def chat_request(port: int) -> bytes:
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:%d\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
        % (port, len(CHAT_BODY), CHAT_BODY)
    )


def test_mock_connections_spread_and_metrics_are_the_sum(start: Start) -> None:
    mock = start(
        "mock", "--processes", "2", "--ttft-ms", "1", "--itl-ms", "1", "--output-tokens", "5"
    )
    assert mock.output.splitlines()[0].startswith("listening on http://127.0.0.1:")
    pids, metrics_dir = replicas_of(mock)
    assert len(pids) == 2
    clients = 40
    with httpx.Client(headers={"connection": "close"}) as client:  # a new connection each
        for _ in range(clients):
            r = client.post(mock.url + "/v1/chat/completions", content=CHAT_BODY)
            assert r.status_code == 200 and r.text.endswith("data: [DONE]\n\n")
    merged_text = httpx.get(mock.url + "/metrics").text
    merged, _ = samples(merged_text)
    per_replica = [
        merged[("surgebench_replica_requests_total", (("replica", str(i)),))] for i in range(2)
    ]
    assert all(n > 0 for n in per_replica), per_replica  # both processes served clients
    assert sum(per_replica) == clients + 1  # + the scrape
    assert merged[("vllm:request_success_total", (("finished_reason", "stop"),))] == clients
    assert merged[("vllm:generation_tokens_total", ())] == clients * 5
    assert assert_merged_is_the_sum(merged_text, local_texts(metrics_dir, 2)) > 20
    assert mock.stop() == 0
    assert wait_gone(pids) == []


def test_service_replicas_tag_responses_and_merge_metrics(start: Start) -> None:
    mock = start("mock", "--ttft-ms", "1", "--itl-ms", "1", "--output-tokens", "5")
    service = start("serve", "--processes", "2", "--upstream-url", mock.url + "/v1")
    pids, metrics_dir = replicas_of(service)
    seen: list[str] = []
    clients = 40
    with httpx.Client(headers={"connection": "close"}) as client:  # a new connection each
        for _ in range(clients):
            r = client.post(service.url + "/chat", json={"question": "hi"})
            assert r.status_code == 200, r.text
            seen.append(r.headers["x-replica"])
    assert set(seen) == {"0", "1"}, seen
    merged_text = httpx.get(service.url + "/metrics").text
    merged, _ = samples(merged_text)
    ok = (("endpoint", "chat"), ("outcome", "ok"))
    assert merged[("surge_service_requests_total", ok)] == clients
    limits = {merged[("surge_service_concurrency_limit", (("replica", str(i)),))] for i in range(2)}
    assert limits == {64.0}  # the limit is per process
    config = httpx.get(service.url + "/config").json()
    assert config["settings"]["processes"] == 2 and config["limits"] == "per process"
    assert assert_merged_is_the_sum(merged_text, local_texts(metrics_dir, 2)) > 20
    assert service.stop() == 0
    assert wait_gone(pids) == []


def statuses_of_concurrent_clients(
    url: str, request: bytes, clients: int, settled: Callable[[str], bool]
) -> tuple[list[int], str]:
    """Open `clients` connections at once, each sending `request`; wait (bounded) until the
    merged /metrics says every request was admitted or refused; the statuses and that text."""
    host, port = url.removeprefix("http://").rsplit(":", 1)

    async def scenario() -> tuple[list[int], str]:
        hold = asyncio.Event()
        tasks = [
            asyncio.create_task(_status_of_new_connection(host, int(port), request, hold))
            for _ in range(clients)
        ]
        deadline = time.monotonic() + 20
        text = ""
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                text = (await client.get(url + "/metrics")).text
                if settled(text):
                    break
                await asyncio.sleep(0.05)
        hold.set()
        return list(await asyncio.gather(*tasks)), text

    return asyncio.run(scenario())


def test_service_limits_hold_per_process(start: Start) -> None:
    """--max-concurrent 1 --queue-size 0 with 2 processes: exactly 2 streams run, like 2 pods."""
    mock = start("mock", "--ttft-ms", "1", "--itl-ms", "100", "--output-tokens", "100")
    service = start(
        "serve", "--processes", "2", "--upstream-url", mock.url + "/v1",
        "--admission", "semaphore", "--max-concurrent", "1", "--queue-size", "0",
    )  # fmt: skip
    body = b'{"question":"hi"}'
    request = (
        b"POST /chat/stream HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )
    clients = 32

    def settled(text: str) -> bool:
        got, _ = samples(text)
        admitted = got.get(("surge_service_admitted_total", ()), 0)
        rejected = sum(v for (n, _), v in got.items() if n == "surge_service_rejected_total")
        return admitted + rejected >= clients

    statuses, text = statuses_of_concurrent_clients(service.url, request, clients, settled)
    assert sorted(statuses) == [200] * 2 + [503] * 30
    got, _ = samples(text)
    for i in range(2):
        assert got[("surge_service_in_flight", (("replica", str(i)),))] == 1


def test_engine_replicas_queue_independently(start: Start) -> None:
    """Each replica is one engine: 1 running + 2 waiting each, the rest refused at once."""
    mock = start(
        "mock", "--processes", "2", "--mode", "engine", "--max-num-seqs", "1",
        "--max-waiting", "2", "--step-base-ms", "20", "--output-tokens", "1000",
    )  # fmt: skip
    clients = 32  # P(a replica gets fewer than 3 of 32 hashed connections) ~ 2.5e-7

    def settled(text: str) -> bool:
        got, _ = samples(text)
        rejected = got.get(("mock_requests_rejected_total", (("reason", "queue_full"),)), 0)
        queued = sum(
            got[(f"vllm:num_requests_{k}", (("replica", str(i)),))]
            for i in range(2)
            for k in ("running", "waiting")
        )
        return rejected + queued >= clients

    port = int(mock.url.rsplit(":", 1)[1])
    statuses, text = statuses_of_concurrent_clients(mock.url, chat_request(port), clients, settled)
    assert sorted(statuses) == [200] * 6 + [503] * 26
    got, _ = samples(text)
    for i in range(2):
        assert got[("vllm:num_requests_running", (("replica", str(i)),))] == 1
        assert got[("vllm:num_requests_waiting", (("replica", str(i)),))] == 2


@pytest.mark.parametrize("command", ["mock", "serve"])
def test_killing_the_supervisor_leaves_no_worker(start: Start, command: str) -> None:
    proc = start(command, "--processes", "2")
    pids, _ = replicas_of(proc)
    assert all(not gone(p) for p in pids)
    os.kill(proc.pid, signal.SIGKILL)
    assert wait_gone(pids) == []


def test_service_replicas_drain_in_flight_streams_on_sigterm(start: Start) -> None:
    mock = start("mock", "--ttft-ms", "1", "--itl-ms", "50", "--output-tokens", "30")
    service = start("serve", "--processes", "2", "--upstream-url", mock.url + "/v1")

    async def scenario() -> list[str]:
        all_streaming = asyncio.Event()
        streaming: set[int] = set()
        async with httpx.AsyncClient(timeout=20) as client:

            async def one(i: int) -> str:
                body = ""
                async with client.stream(
                    "POST", service.url + "/chat/stream", json={"question": "hi"}
                ) as r:
                    async for chunk in r.aiter_text():
                        body += chunk
                        if "event: token" in body:
                            streaming.add(i)
                            if len(streaming) == 8:
                                all_streaming.set()
                return body

            streams = [asyncio.create_task(one(i)) for i in range(8)]
            # every stream in flight before the signal: one not yet admitted would rightly
            # get 503 during the drain (seen on a busy machine)
            await asyncio.wait_for(all_streaming.wait(), 10)
            service.process.send_signal(signal.SIGTERM)  # the supervisor: it tells every worker
            return list(await asyncio.gather(*streams))

    bodies = asyncio.run(scenario())
    assert all("event: done" in b for b in bodies), [b[-200:] for b in bodies]
    assert service.process.wait(20) == 0


def test_a_dead_worker_stops_the_others_and_exits_1(start: Start) -> None:
    proc = start("mock", "--processes", "2")
    pids, _ = replicas_of(proc)
    os.kill(pids[0], signal.SIGKILL)
    assert proc.process.wait(20) == 1
    assert "replica 0" in proc.output and "exited" in proc.output
    assert wait_gone(pids) == []


def test_a_second_server_cannot_join_the_port(start: Start) -> None:
    """SO_REUSEPORT lets any socket of the same user join the port: the supervisor refuses a
    port that is already bound instead of silently sharing it with another server."""
    first = start("mock", "--processes", "2")
    port = first.url.rsplit(":", 1)[1]
    second = subprocess.run(
        surgebench_argv("mock", "--processes", "2", "--port", port),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode == 2
    assert f"--port {port}" in second.stderr and "in use" in second.stderr


@pytest.mark.parametrize("command", ["mock", "serve"])
def test_replicas_keep_the_request_head_limits(start: Start, command: str) -> None:
    """Every worker serves with the single-process server's HTTP protocol and its limits: a
    request target past 8 KiB gets 414, on whichever process the connection lands."""
    proc = start(command, "--processes", "2")
    host, port = proc.url.removeprefix("http://").rsplit(":", 1)
    statuses = set()
    for _ in range(8):  # new connections: both processes answer some
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"GET /health?" + b"q" * 20_000 + b" HTTP/1.1\r\nhost: x\r\n\r\n")
            statuses.add(sock.recv(64).split(b" ", 2)[1])
    assert statuses == {b"414"}


@pytest.mark.timeout(150)
def test_a_load_test_runs_against_replicas_of_both_servers(tmp_path: Path) -> None:
    """`surgebench run --mock-processes 2 --service-processes 2`: the flags reach the servers,
    the runner waits for both supervisors, and every request succeeds."""
    proc = subprocess.run(
        surgebench_argv(
            "run", "--duration", "4s", "--users", "6", "--warmup", "1s", "--no-report",
            "--out", str(tmp_path), "--mock-ttft-ms", "50", "--mock-itl-ms", "10",
            "--mock-output-tokens", "10", "--mock-processes", "2", "--service-processes", "2",
        ),
        capture_output=True, text=True, timeout=130, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = Path(proc.stdout.strip().splitlines()[-1].removeprefix("results: "))
    summary = read_summary(run_dir)
    assert summary.outcomes["ok"] > 0 and summary.requests == summary.outcomes["ok"]
    config = json.loads((run_dir / "config.json").read_text())
    for args in (config["mock_args"], config["service_args"]):
        assert args[args.index("--processes") + 1] == "2"
    # the servers' gauges come per replica (replica="i"); the report's server figure sums them
    start = epoch_of(summary.started_at)
    assert start is not None
    servers = read_server_metrics(run_dir, start)
    figure = server_timeline_figure(summary, servers)
    assert figure is not None
    labels = [ax.get_ylabel() for ax in figure.axes]
    assert "slots and queue" in labels and "sequences" in labels
