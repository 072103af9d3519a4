from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from reports.results import Summary, read_summary
from surgebench.process import surgebench_argv


@dataclass
class Run:
    code: int
    output: str
    run_dir: Path | None
    summary: Summary | None


RunCommand = Callable[..., Run]


@pytest.fixture
def surge_run(tmp_path: Path) -> RunCommand:
    """Run `surgebench run ARGS --out TMP --no-report` as a subprocess (bounded in time)."""

    def run(*args: str, timeout_s: float = 60.0) -> Run:
        proc = subprocess.run(
            surgebench_argv("run", *args, "--out", str(tmp_path), "--no-report"),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        output = proc.stdout + proc.stderr
        lines = proc.stdout.strip().splitlines()
        run_dir = None
        if lines and lines[-1].startswith("results: "):
            run_dir = Path(lines[-1].removeprefix("results: "))
        summary = read_summary(run_dir) if run_dir else None
        return Run(proc.returncode, output, run_dir, summary)

    return run
