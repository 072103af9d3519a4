"""Across machines, on 127.0.0.1: `surgebench run --master` and two `surgebench worker`
processes. The counts add up, the workers run the master's settings, and a master that waits
for workers that never come says how many did."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from loadtests.distributed import MASTER_READY
from loadtests.summary import histogram_of
from reports.results import read_summary
from surgebench.process import surgebench_argv
from tests.integration.reliability.conftest import wait_until
from tests.integration.reliability.test_process_lifetime import alive, descendants

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

LISTENING_RE = re.compile(r"master: workers connect to 127\.0\.0\.1:(\d+)")
TOTALS_PREFIX = "[surgebench] worker totals: "


class Proc:
    """A child whose output lines are collected as they come (readiness without sleeps)."""

    def __init__(self, argv: list[str]) -> None:
        env = {**os.environ, "PYTHONFAULTHANDLER": "1"}  # SIGABRT prints every thread's stack
        self.popen = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert self.popen.stdout is not None
        self.reader = threading.Thread(target=self._read, args=(self.popen.stdout,), daemon=True)
        self.reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line)

    def wait_for(self, pattern: re.Pattern[str], timeout_s: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if match := pattern.search(line):
                return match
        raise AssertionError(f"no {pattern.pattern!r} within {timeout_s}s:\n{self.output()}")

    def finish(self, timeout_s: float) -> int:
        """The exit code; a child still running after `timeout_s` is made to print where each
        of its threads is (faulthandler, on SIGABRT), and the test fails with that output."""
        try:
            return self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.popen.send_signal(signal.SIGABRT)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
            self.reader.join(10)  # to the end of its output: the stack dump
            raise AssertionError(
                f"still running after {timeout_s}s; its threads:\n{self.output()}"
            ) from None

    def output(self) -> str:
        while True:
            try:
                self.seen.append(self.lines.get_nowait())
            except queue.Empty:
                return "".join(self.seen)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=10)


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for proc in started:  # every child stops, whatever the test did
        proc.stop()


def start(procs: list[Proc], *args: str) -> Proc:
    proc = Proc(surgebench_argv(*args))
    procs.append(proc)
    return proc


def master_and_workers(
    procs: list[Proc], run_dir: Path, workers: int, *args: str, expect: int = 2
) -> tuple[Proc, list[Proc]]:
    master = start(
        procs, "run", "--master", "--expect-workers", str(expect), "--master-port", "0",
        "--run-dir", str(run_dir), "--no-report", *args,
    )  # fmt: skip
    port = master.wait_for(LISTENING_RE, 60).group(1)
    started = [
        start(procs, "worker", "--master-host", "127.0.0.1", "--master-port", port)
        for _ in range(workers)
    ]
    return master, started


def worker_totals(worker: Proc) -> dict[str, Any]:
    lines = [ln for ln in worker.output().splitlines() if ln.startswith(TOTALS_PREFIX)]
    assert len(lines) == 1, worker.output()
    totals: dict[str, Any] = json.loads(lines[0].removeprefix(TOTALS_PREFIX))
    return totals


def test_master_and_two_workers_add_up_and_run_the_masters_settings(
    tmp_path: Path, procs: list[Proc]
) -> None:
    run_dir = tmp_path / "run"
    # non-default settings the workers can only know from the master: 7 tokens per answer
    # (--max-tokens, sent by the users; the mock answers max_tokens tokens)
    master, workers = master_and_workers(
        procs, run_dir, 2,
        "--user", "direct", "--users", "4", "--duration", "5s", "--warmup", "0s",
        "--stop-timeout", "5s", "--max-tokens", "7", "--mock-output-tokens-dist", "max_tokens",
        "--mock-ttft-ms", "20", "--mock-itl-ms", "5",
    )  # fmt: skip
    assert master.finish(120) == 0, master.output()
    for worker in workers:
        assert worker.finish(60) == 0, worker.output()
    out = master.output()
    assert "master: 2 of 2 workers connected" in out, out
    summary = read_summary(run_dir / "summary.json")
    shares = [worker_totals(w) for w in workers]
    # the counts add up: summary.json's outcomes are the sum of the workers' own accounts
    assert all(sum(s["outcomes"].values()) > 0 for s in shares), shares
    total = {k: sum(s["outcomes"].get(k, 0) for s in shares) for k in summary.outcomes}
    assert summary.outcomes == total
    assert summary.requests == sum(total.values())
    # the users were split across the workers
    assert sorted(s["users"] for s in shares) == [2, 2]
    assert summary.saturation["workers_reported"] == 2
    # HDR histograms merged exactly: one TTFT and one end-to-end value per ok request
    ok = summary.outcomes["ok"]
    assert ok > 0
    assert histogram_of(summary, "ttft_ms").get_total_count() == ok
    assert histogram_of(summary, "e2e_ms").get_total_count() == ok
    # the workers ran the master's --max-tokens 7 (the defaults send no max_tokens: 40 tokens)
    assert summary.output_tokens == 7 * ok
    assert histogram_of(summary, "itl_ms").get_total_count() == 6 * ok
    # a worker writes nothing into the run folder
    assert not (run_dir / "workers").exists()
    # each worker measured its clock against the master's (one host: in sync, no correction)
    for worker in workers:
        assert "clock offset from the master's" in worker.output()
        assert "off the master's" not in worker.output()


def test_master_gives_up_naming_how_many_workers_connected(
    tmp_path: Path, procs: list[Proc]
) -> None:
    # the worker starts first (it retries until the master listens), so that on a busy machine
    # its start-up is not counted against the master's wait (4 s was too short at load 5)
    run_dir, port = tmp_path / "run", free_port()
    worker = start(procs, "worker", "--master-host", "127.0.0.1", "--master-port", port)
    master = start(
        procs, "run", "--master", "--expect-workers", "2", "--master-port", port,
        "--run-dir", str(run_dir), "--no-report",
        "--user", "direct", "--users", "2", "--duration", "5s", "--warmup", "0s",
        "--expect-workers-timeout", "10s", "--mock-ttft-ms", "20", "--mock-itl-ms", "5",
    )  # fmt: skip
    assert master.finish(90) == 1, master.output()
    out = master.output()
    assert "--expect-workers 2: only 1 of 2 workers connected within 10s" in out, out
    assert "Traceback" not in out
    assert not (run_dir / "summary.json").exists()
    # the worker that came is told to quit by the master, and does
    worker.finish(60)


def test_a_worker_that_cannot_run_the_masters_configuration_exits_2_saying_why(
    tmp_path: Path, procs: list[Proc]
) -> None:
    # --prompts names a file on the master's host; this worker's host lacks it (deleted once
    # the master's Locust has read it: it then says it is listening for workers)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"question": "hi"}\n')
    run_dir = tmp_path / "run"
    master = start(
        procs, "run", "--master", "--expect-workers", "1", "--master-port", "0",
        "--run-dir", str(run_dir), "--no-report", "--prompts", str(prompts),
        "--user", "direct", "--users", "2", "--duration", "3s", "--warmup", "0s",
        "--mock-ttft-ms", "20", "--mock-itl-ms", "5",
    )  # fmt: skip
    port = master.wait_for(LISTENING_RE, 60).group(1)
    master.wait_for(re.compile(re.escape(MASTER_READY) + r" \(expecting 1\)"), 60)
    prompts.unlink()
    worker = start(procs, "worker", "--master-host", "127.0.0.1", "--master-port", port)
    assert worker.finish(60) == 2, worker.output()
    out = worker.output()
    assert "[surgebench] worker: cannot use the master's configuration here: prompt file" in out
    assert "worker totals" not in out and "Traceback" not in out
    # the master ends its test and says the worker sent nothing
    assert master.finish(90) == 0, master.output()
    summary = read_summary(run_dir / "summary.json")
    assert summary.requests == 0 and not summary.valid
    assert any("only 0 of 1 load processes" in r for r in summary.invalid_reasons)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_the_locust_worker_dies_with_surgebench_worker(procs: list[Proc], sig: int) -> None:
    # no master: the Locust worker keeps trying to connect, until its parent is gone
    worker = start(procs, "worker", "--master-host", "127.0.0.1", "--master-port", free_port())
    worker.wait_for(re.compile(r"Starting Locust"), 60)
    children = descendants(worker.popen.pid)
    assert children, worker.output()
    os.kill(worker.popen.pid, sig)
    code = worker.finish(40)
    assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 130), worker.output()
    wait_until(lambda: not any(alive(p) for p in children), 30, "no Locust worker left")


def free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def test_a_master_stopped_while_waiting_for_workers_exits_130(
    tmp_path: Path, procs: list[Proc]
) -> None:
    run_dir = tmp_path / "run"
    master = start(
        procs, "run", "--master", "--expect-workers", "1", "--master-port", "0",
        "--run-dir", str(run_dir), "--no-report", "--user", "direct", "--users", "2",
    )  # fmt: skip
    master.wait_for(LISTENING_RE, 60)
    children = descendants(master.popen.pid)
    master.popen.send_signal(signal.SIGTERM)
    assert master.finish(60) == 130, master.output()
    assert "interrupted before anything was measured" in master.output()
    wait_until(lambda: not any(alive(p) for p in children), 30, "no mock or Locust left")


def test_a_looping_worker_serves_one_master_after_another(
    tmp_path: Path, procs: list[Proc]
) -> None:
    port = free_port()
    worker = start(procs, "worker", "--master-host", "127.0.0.1", "--master-port", port, "--loop")
    for name in ("first", "second"):
        master = start(
            procs, "run", "--master", "--expect-workers", "1", "--master-port", port,
            "--run-dir", str(tmp_path / name), "--no-report", "--user", "direct",
            "--users", "2", "--duration", "3s", "--warmup", "0s",
            "--mock-ttft-ms", "20", "--mock-itl-ms", "5",
        )  # fmt: skip
        assert master.finish(90) == 0, master.output()
        assert read_summary(tmp_path / name / "summary.json").outcomes["ok"] > 0
        worker.wait_for(re.compile(r"waiting for the next master"), 30)
    assert worker.output().count(TOTALS_PREFIX) == 2, worker.output()
    worker.popen.send_signal(signal.SIGTERM)
    assert worker.finish(40) == 130, worker.output()


def test_a_worker_lost_during_the_test_makes_the_run_invalid(
    tmp_path: Path, procs: list[Proc]
) -> None:
    run_dir = tmp_path / "run"
    master, workers = master_and_workers(
        procs, run_dir, 2,
        "--user", "direct", "--users", "4", "--duration", "10s", "--warmup", "0s",
        "--stop-timeout", "1s", "--progress", "1s", "--mock-ttft-ms", "20", "--mock-itl-ms", "5",
    )  # fmt: skip
    # both workers have sent reports (every 3 s): the lost one counted among those that reported
    master.wait_for(re.compile(r"^\[surgebench\] t=\s*[5-9]s"), 60)
    locust_worker = descendants(workers[0].popen.pid)
    assert locust_worker, workers[0].output()
    for pid in locust_worker:  # the worker's host is gone: no goodbye, no final report
        os.kill(pid, signal.SIGKILL)
    assert master.finish(120) == 0, master.output()
    out = master.output()
    assert "failed to send heartbeat, setting state to missing" in out, out
    summary = read_summary(run_dir / "summary.json")
    assert not summary.valid
    assert any("only 1 of 2 load processes" in r for r in summary.invalid_reasons), summary


def test_a_worker_with_no_master_gives_up_after_its_connect_timeout(procs: list[Proc]) -> None:
    """`--connect-timeout 5s`: one of Locust's 5 s tries, then exit 1 naming the flag (before:
    Locust's 5 minutes, always)."""
    worker = start(
        procs, "worker", "--master-host", "127.0.0.1", "--master-port", free_port(),
        "--connect-timeout", "5s",
    )  # fmt: skip
    assert worker.finish(60) == 1, worker.output()
    assert "within 5s (--connect-timeout)" in worker.output()
