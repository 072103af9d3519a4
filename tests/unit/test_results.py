from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reports.results import (
    OUTCOMES,
    LatencyStats,
    ResultsError,
    Summary,
    TimePoint,
    find_run_dirs,
    new_run_dir,
    read_summary,
    write_summary,
)


def make_summary() -> Summary:
    return Summary(
        name="demo",
        started_at="2026-11-25T00:00:00Z",
        duration_s=12.0,
        measured_s=10.0,
        outcomes={"ok": 90, "rejected": 10},
        output_tokens=4500,
        latency={"ttft_ms": LatencyStats.from_values([100.0, 101.0, 250.0])},
        timeseries=[TimePoint(t_s=0.0, users=5, requests=10, ok=9, rejected=1)],
    )


def test_percentiles_are_nearest_rank() -> None:
    stats = LatencyStats.from_values(float(v) for v in range(1, 101))
    assert (stats.count, stats.p50, stats.p90, stats.p99, stats.max) == (100, 50, 90, 99, 100)
    assert stats.mean == pytest.approx(50.5)
    assert LatencyStats.from_values([]).p50 is None


def test_summary_round_trips_and_derives_rates(tmp_path: Path) -> None:
    path = write_summary(tmp_path, make_summary())
    data = json.loads(path.read_text())
    assert data["ttft_ms"]["p50"] == 101.0
    assert data["requests"] == 100
    assert data["rejection_rate"] == pytest.approx(0.1)
    assert data["requests_per_s"] == pytest.approx(10.0)
    assert data["output_tokens_per_s"] == pytest.approx(450.0)
    assert set(data["outcomes"]) == set(OUTCOMES)
    again = read_summary(tmp_path)
    assert again.to_dict() == data


def test_unsupported_schema_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(ResultsError, match="schema_version 99"):
        read_summary(tmp_path)
    with pytest.raises(ResultsError, match=r"no summary\.json"):
        read_summary(tmp_path / "missing")


def test_run_dirs_are_unique_and_found(tmp_path: Path) -> None:
    now = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
    first = new_run_dir(tmp_path, "my run!", now)
    second = new_run_dir(tmp_path, "my run!", now)
    assert first.name == "20261125T120000Z-my-run"
    assert second.name == "20261125T120000Z-my-run-1"
    write_summary(first, make_summary())
    assert find_run_dirs([tmp_path]) == [first]
