from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from reports.cli import report_main
from reports.results import read_summary

MakeRun = Callable[..., Path]


def _table_row(markdown: str, label: str) -> list[str]:
    line = next(x for x in markdown.splitlines() if x.startswith(f"| {label} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_single_run_report_files_and_numbers(
    make_run: MakeRun, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = make_run(name="demo", requests=300, rejected=20, timeouts=4, warmup_s=2)
    assert report_main([str(run_dir)]) == 0
    assert f"report: {run_dir / 'report.html'}" in capsys.readouterr().out
    for stem in (
        "latency_over_time",
        "throughput_over_time",
        "outcomes_over_time",
        "latency_cdf",
        "ttft_breakdown",
    ):
        for suffix in ("png", "svg"):
            path = run_dir / "figures" / f"{stem}.{suffix}"
            assert path.stat().st_size > 1000, path
    summary = read_summary(run_dir)
    markdown = (run_dir / "report.md").read_text()
    assert _table_row(markdown, "requests") == ["requests", "324"]
    assert _table_row(markdown, "rejected") == ["rejected", "20"]
    assert _table_row(markdown, "timeout") == ["timeout", "4"]
    assert _table_row(markdown, "TTFT p95") == [
        "TTFT p95",
        f"{summary.metric('ttft_ms').p95:.1f} ms",
    ]
    assert _table_row(markdown, "ITL p99") == ["ITL p99", f"{summary.metric('itl_ms').p99:.1f} ms"]
    assert _table_row(markdown, "rejection rate") == ["rejection rate", f"{20 / 324 * 100:.2f} %"]
    assert _table_row(markdown, "ok requests/s") == ["ok requests/s", "15.00"]
    # The verdict comes first, right under the title.
    assert markdown.splitlines()[2].startswith("✅ **demo: valid run.**")
    html = (run_dir / "report.html").read_text()
    assert html.index("valid run") < html.index("<table>")
    images = re.findall(r'<img [^>]*src="([^"]+)"', html)
    assert len(images) == 5 and all(src.startswith("data:image/png;base64,") for src in images)
    assert "figures/latency_cdf.png" in markdown


def test_runs_side_by_side(make_run: MakeRun, tmp_path: Path) -> None:
    first = make_run(name="first", seed=1)
    second = make_run(name="second", seed=2, ttft_ms=300.0, breakdown=False, valid=False)
    out = tmp_path / "side"
    assert report_main([str(first), str(second), "--out", str(out), "--no-svg"]) == 0
    markdown = (out / "report.md").read_text()
    lines = markdown.splitlines()
    # One verdict per run, first thing under the title; the invalid run says why.
    assert lines[2].startswith("✅ **first: valid run.**")
    assert lines[4].startswith("⚠️ **second: INVALID run, do not trust these numbers.**")
    assert "client lag p99 42.0 ms" in lines[4]
    assert _table_row(markdown, "metric") == ["metric", "first", "second"]
    assert _table_row(markdown, "valid") == ["valid", "yes", "NO"]
    assert (out / "figures" / "run1_ttft_breakdown.png").exists()
    assert not (out / "figures" / "run2_ttft_breakdown.png").exists()
    assert (out / "figures" / "compare_latency_cdf.png").exists()
    assert (out / "figures" / "run2_latency_over_time.png").exists()
    assert not (out / "figures" / "run2_latency_over_time.svg").exists()
    assert "## Run: second" in markdown


def test_report_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert report_main([str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert report_main([str(tmp_path)]) == 2
    assert "no run folders" in capsys.readouterr().err
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "summary.json").write_text("{not json")
    assert report_main([str(tmp_path / "broken")]) == 2
    assert "not readable as JSON" in capsys.readouterr().err
    assert report_main([]) == 2
    assert report_main(["--help"]) == 0
