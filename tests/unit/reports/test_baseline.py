from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from reports.baseline import compare_to_baseline, list_baselines, save_baseline
from reports.results import ResultsError

MakeRun = Callable[..., Path]


def test_save_then_compare(make_run: MakeRun, tmp_path: Path) -> None:
    root = tmp_path / "results"
    first = make_run(name="first", seed=1, requests=800)
    saved = save_baseline(first, "main", root)
    assert saved == root / "baselines" / "main"
    assert (saved / "summary.json").exists() and (saved / "config.json").exists()
    assert list_baselines(root) == ["main"]

    same = make_run(name="same", seed=1, requests=800)
    outcome = compare_to_baseline(same, "main", root)
    assert outcome.exit_code == 0
    assert outcome.report_path == same / "compare-main.md"
    assert "baseline 'main' (first)" in outcome.markdown

    slower = make_run(name="slower", seed=2, requests=800, ttft_ms=300.0)
    outcome = compare_to_baseline(slower, "main", root)
    assert outcome.exit_code == 1 and "ttft_p95" in outcome.markdown

    save_baseline(slower, "main", root)  # replaces the old one
    assert compare_to_baseline(slower, "main", root).exit_code == 0


def test_missing_baseline_and_bad_names(make_run: MakeRun, tmp_path: Path) -> None:
    run = make_run(name="run")
    outcome = compare_to_baseline(run, "nightly", tmp_path)
    assert outcome.exit_code == 2
    assert (
        "no baseline named 'nightly'" in outcome.markdown and "--save-baseline" in outcome.markdown
    )
    with pytest.raises(ResultsError, match="not valid"):
        save_baseline(run, "../escape", tmp_path)
