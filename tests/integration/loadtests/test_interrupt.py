"""Ctrl-C during `surgebench run`: Locust stops, the servers stop, what was measured is kept."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from reports.results import read_summary
from surgebench.process import surgebench_argv

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_ctrl_c_stops_everything_and_keeps_the_results(tmp_path: Path) -> None:
    argv = surgebench_argv(
        "run", "--user", "direct", "--duration", "60s", "--users", "4", "--warmup", "0s",
        "--progress", "1s", "--no-report", "--out", str(tmp_path),
        "--mock-ttft-ms", "20", "--mock-itl-ms", "5", "--mock-output-tokens", "10",
    )  # fmt: skip
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:  # wait for the first progress line: the test is running
        lines.append(line)
        if line.startswith("[surgebench]"):
            break
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=40)
    output = "".join(lines) + rest
    assert proc.returncode == 130, output
    last = output.strip().splitlines()[-1]
    assert last.startswith("results: "), output
    run_dir = Path(last.removeprefix("results: "))
    summary = read_summary(run_dir)
    assert summary.outcomes["ok"] > 0
    assert summary.interrupted and 0 < summary.measured_s < 30  # recorded, with what ran
    host = json.loads((run_dir / "config.json").read_text())["host"]
    address = host.removeprefix("http://").removesuffix("/v1").split(":")
    with pytest.raises(OSError):  # the mock is gone
        socket.create_connection((address[0], int(address[1])), timeout=2).close()
