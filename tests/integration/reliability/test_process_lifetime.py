"""Children die with their parent, however it dies: `kill -9` of a process that started servers
(or of `surgebench run`) leaves no mock, service or Locust behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from surgebench.process import surgebench_argv

from .conftest import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

STARTER = """
import sys
import surgebench.process as process
if sys.argv[1] == "pipe-only":
    process._PRCTL = None  # no parent-death signal: only the watched pipe remains
mock = process.ServerProcess(process.surgebench_argv("mock", "--port", "0"))
service = process.ServerProcess(process.surgebench_argv(
    "serve", "--port", "0", "--upstream-url", mock.url + "/v1"))
print(mock.pid, service.pid, flush=True)
sys.stdin.read()  # until the test kills this parent (or ends: its end of the pipe closes)
"""


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its new parent to reap it counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in found:
                    found.add(child)
                    todo.append(child)
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
@pytest.mark.parametrize("mechanism", ["default", "pipe-only"])
def test_servers_die_when_their_parent_is_killed(mechanism: str) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", STARTER, mechanism],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert parent.stdout is not None
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(alive(p) for p in pids), pids
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        wait_until(lambda: not any(alive(p) for p in pids), 20, "servers gone after kill -9")
    finally:
        parent.kill()
        parent.wait()


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_kill_9_of_surgebench_run_leaves_nothing_running(tmp_path: Path) -> None:
    argv = surgebench_argv(
        "run", "--user", "direct", "--duration", "60s", "--users", "2", "--warmup", "0s",
        "--progress", "1s", "--no-report", "--out", str(tmp_path),
        "--mock-ttft-ms", "20", "--mock-itl-ms", "5", "--mock-output-tokens", "10",
    )  # fmt: skip
    run = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert run.stdout is not None
        for line in run.stdout:  # the first progress line: servers and Locust are running
            if line.startswith("[surgebench]"):
                break
        children = descendants(run.pid)
        assert len(children) >= 2, children  # the mock and Locust (direct: no service)
        os.kill(run.pid, signal.SIGKILL)
        run.wait(10)
        wait_until(
            lambda: not any(alive(p) for p in children), 30, "no child of the killed run left"
        )
    finally:
        run.kill()
        run.wait()
