from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from reports.cli import capacity_main, compare_main

MakeRun = Callable[..., Path]


def test_compare_bad_input_exits_2(
    make_run: MakeRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = make_run(name="run")
    assert compare_main([str(tmp_path / "nope"), str(run)]) == 2
    assert "BASELINE" in capsys.readouterr().err
    assert compare_main([str(run)]) == 2
    assert "CURRENT" in capsys.readouterr().err or True
    bad = tmp_path / "t.toml"
    bad.write_text('[thresholds]\nttft_p95 = "-10%"\n')
    assert compare_main([str(run), str(run), "--thresholds", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "ttft_p95" in err and "-10%" in err and '"+N%"' in err
    bad.write_text('[thresholds]\nttft_p42 = "+10%"\n')
    assert compare_main([str(run), str(run), "--thresholds", str(bad)]) == 2
    assert "unknown metric 'ttft_p42'" in capsys.readouterr().err
    bad.write_text("[thresholds\n")
    assert compare_main([str(run), str(run), "--thresholds", str(bad)]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    assert compare_main([str(run), str(run), "--method", "t-test"]) == 2
    assert "invalid choice: 't-test'" in capsys.readouterr().err
    assert compare_main([str(run), str(run), "--alpha", "2"]) == 2
    assert "--alpha" in capsys.readouterr().err


def test_compare_writes_markdown_json_and_step_summary(make_run: MakeRun, tmp_path: Path) -> None:
    base = make_run(name="base", seed=1)
    cur = make_run(name="cur", seed=1)
    summary = tmp_path / "step.md"
    summary.write_text("previous\n")
    args = [
        str(base),
        str(cur),
        "--markdown",
        str(tmp_path / "c.md"),
        "--json",
        str(tmp_path / "c.json"),
        "--step-summary",
        str(summary),
    ]
    assert compare_main(args) == 0
    assert (tmp_path / "c.md").read_text().startswith("## ✅")
    assert summary.read_text().startswith("previous\n## ✅")
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["regressed"] is False
    row = next(m for m in data["metrics"] if m["metric"] == "ttft_p95")
    assert row["baseline"] == row["current"] and row["verdict"] == "unchanged"


def test_capacity_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert capacity_main([str(tmp_path), "--slo", "ttft_p95<800"]) == 2
    err = capsys.readouterr().err
    assert "--slo" in err and "'ttft_p95<800'" in err and "ms, s" in err
    assert capacity_main([str(tmp_path), "--slo", "latency<1s"]) == 2
    err = capsys.readouterr().err
    assert "unknown metric 'latency'" in err and "ttft_p95" in err
    assert capacity_main([str(tmp_path), "--slo", "ttft_p95<800ms"]) == 2
    assert "no sweep.json" in capsys.readouterr().err
    assert capacity_main([str(tmp_path)]) == 2
    assert "--slo" in capsys.readouterr().err
