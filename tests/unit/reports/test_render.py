from __future__ import annotations

import json
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
    # The verdict in words comes first, right under the title.
    verdict = markdown.splitlines()[2:4]  # one sentence a line
    assert verdict[0].startswith("✅ 10 users: 6.2 % rejected after a median ")
    assert verdict[1] == "Run valid."
    html = (run_dir / "report.html").read_text()
    assert html.index("Run valid.") < html.index("<table>")
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
    assert lines[2].startswith("✅ **first.** 10 users: TTFT p95 ")
    assert lines[3] == "Run valid."
    assert lines[5].startswith("⚠️ **second.** 10 users: TTFT p95 ")
    assert lines[6].startswith("Run INVALID, do not trust these latencies: client lag p99 42.0 ms")
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


def test_only_what_applies(make_run: MakeRun) -> None:
    """No SLO: no goodput rows; closed loop: no rate/arrival settings; zero counts and metrics
    without samples: no rows; the generator's health in its own short section."""
    run_dir = make_run(name="plain", requests=100)
    (run_dir / "config.json").write_text(
        json.dumps(
            {
                "users": 10,
                "rate": 0.0,
                "arrival": "poisson",
                "slo_ttft_ms": 0.0,
                "shape": "",
                "service": {"max_concurrent": 8, "queue": None},
            }
        )
    )
    assert report_main([str(run_dir), "--no-svg"]) == 0
    markdown = (run_dir / "report.md").read_text()
    labels = [line.split("|")[1].strip() for line in markdown.splitlines() if line.startswith("| ")]
    for absent in (
        "goodput SLO",
        "rejected",
        "timeout",
        "errors",
        "rejection rate",
        "TTFT p95 from intended start",
        "rate",
        "arrival",
        "slo_ttft_ms",
        "shape",
        "service.queue",
    ):
        assert absent not in labels, absent
    assert not any(label.startswith(("generator:", "goodput:")) for label in labels)
    assert "n/a" not in markdown
    for present in ("users", "service.max_concurrent", "TTFT p95", "ok"):
        assert present in labels, present


def test_trace_and_session_settings_only_where_they_apply() -> None:
    from reports.render import applicable_config

    plain = {"user": "stream", "trace": "", "trace_speedup": 1.0, "session_turns": "uniform:2:6"}
    assert applicable_config(plain) == {"user": "stream"}
    replay = {"user": "direct", "trace": "conv.csv", "trace_speedup": 2.0, "session_turns": "2"}
    kept = {"user": "direct", "trace": "conv.csv", "trace_speedup": 2.0}
    assert applicable_config(replay) == kept
    sessions = {"user": "session", "trace_start_s": 5.0, "session_turns": "uniform:2:6"}
    assert applicable_config(sessions) == {"user": "session", "session_turns": "uniform:2:6"}


def test_config_table_shows_reported_highlights_and_names_what_it_leaves_out(
    make_run: MakeRun,
) -> None:
    from reports.render import MAX_CONFIG_ROWS, config_table
    from reports.results import read_summary

    run_dir = make_run(name="effective")
    mock = {"mode": "hosted", "ttft_ms": 100.0, "step_base_ms": 10.0, "port": 1, "seed": 0}
    config = {
        "users": 10,
        "effective": {"mock": mock, "service": None},
        "many": {f"k{i}": i + 1 for i in range(100)},
    }
    (run_dir / "config.json").write_text(json.dumps(config))
    table = config_table(run_dir, read_summary(run_dir))
    assert table is not None
    rows = {row[0]: row[1] for row in table.rows}
    assert len(table.rows) == MAX_CONFIG_ROWS
    assert rows["..."] == f"{1 + 100 + 5 - MAX_CONFIG_ROWS + 1} more settings in config.json"
    config["many"] = {}
    (run_dir / "config.json").write_text(json.dumps(config))
    table = config_table(run_dir, read_summary(run_dir))
    assert table is not None
    rows = {row[0]: row[1] for row in table.rows}
    assert rows["mock (reported).ttft_ms"] == "100.0"
    assert "mock (reported).step_base_ms" not in rows  # engine-only, hosted mode
    assert "mock (reported).port" not in rows
    assert rows["mock (reported)"] == "5 settings in config.json"
    assert rows["service (reported)"] == "not reported"


def test_goodput_rows_when_an_slo_was_set(make_run: MakeRun) -> None:
    run_dir = make_run(name="slo")
    data = json.loads((run_dir / "summary.json").read_text())
    data["goodput"] = {
        "slo": {"ttft_ms": 250.0},
        "requests": 300,
        "requests_per_s": 15.0,
        "fraction_of_ok": 0.75,
    }
    (run_dir / "summary.json").write_text(json.dumps(data))
    assert report_main([str(run_dir), "--no-svg"]) == 0
    markdown = (run_dir / "report.md").read_text()
    assert _table_row(markdown, "goodput SLO") == ["goodput SLO", "ttft <= 250 ms"]
    assert _table_row(markdown, "goodput share of ok") == ["goodput share of ok", "75.0 %"]


def test_phases_table_and_schema_1_summary(make_run: MakeRun) -> None:
    """A schema-1 summary (no phases) still reports; phases, when present, get their table."""
    run_dir = make_run(name="old")
    data = json.loads((run_dir / "summary.json").read_text())
    data["schema_version"] = 1
    data.pop("phases")
    (run_dir / "summary.json").write_text(json.dumps(data))
    assert report_main([str(run_dir), "--no-svg"]) == 0
    assert "## Phases" not in (run_dir / "report.md").read_text()
    data["schema_version"] = 2
    ok = {"ok": 10, "rejected": 0}
    data["phases"] = [
        {"index": 0, "kind": "step", "label": "step 1: 4 users", "start_s": 0, "end_s": 10,
         "users": 4, "outcomes": ok, "ttft_ms": {"count": 10, "p50": 90.0, "p95": 99.0}},
        {"index": 1, "kind": "step", "label": "step 2: 8 users", "start_s": 10, "end_s": 20,
         "users": 8, "outcomes": {"ok": 5, "rejected": 5}, "ttft_ms": {"count": 5, "p95": 400.0}},
    ]  # fmt: skip
    (run_dir / "summary.json").write_text(json.dumps(data))
    assert report_main([str(run_dir), "--no-svg"]) == 0
    markdown = (run_dir / "report.md").read_text()
    assert "## Phases" in markdown
    assert _table_row(markdown, "step 2: 8 users")[:6] == [
        "step 2: 8 users", "10-20 s", "8", "10", "0.5", "50 %",
    ]  # fmt: skip
    assert "Step 1: 4 users (0-10 s): TTFT p95 99 ms, nothing rejected." in markdown
