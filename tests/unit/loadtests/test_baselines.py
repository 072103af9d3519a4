"""`surgebench run --save-baseline/--compare-baseline`: the runner's wiring of reports.baseline."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests.cli import _baselines
from loadtests.settings import parse_run_args
from tests.unit.reports.synthetic import RunSpec, write_run


def test_save_then_compare_passes_unchanged_and_fails_a_regression(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results"
    base_run = write_run(out, RunSpec(name="base", seed=1))
    save = parse_run_args(["--out", str(out), "--save-baseline", "main"])
    assert _baselines(save, base_run) == 0
    assert (out / "baselines" / "main" / "summary.json").exists()

    gate = parse_run_args(["--out", str(out), "--compare-baseline", "main"])
    same = write_run(out, RunSpec(name="same", seed=2))  # same distribution, other noise
    assert _baselines(gate, same) == 0
    slower = write_run(out, RunSpec(name="slower", seed=3, ttft_ms=320.0))  # TTFT +60%
    assert _baselines(gate, slower) == 1
    assert "ttft" in capsys.readouterr().out.lower()

    missing = parse_run_args(["--out", str(out), "--compare-baseline", "nope"])
    assert _baselines(missing, same) == 2
