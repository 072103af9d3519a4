"""`report` and `compare` on a corrupt or interrupted summary: exit 2 with one line, never a
traceback, never compare's "regressed" exit 1, never "within noise" for NaN."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reports.cli import compare_main, report_main
from reports.results import ResultsError, read_summary

MakeRun = Callable[..., Path]


def edit(run: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = run / "summary.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))  # allow_nan: writes NaN / Infinity as Python's json does


def set_key(key: str, value: object) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        data[key] = value

    return change


def drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda data: data.pop(key)


def set_stat(metric: str, stat: str, value: object) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        data[metric][stat] = value

    return change


CORRUPTIONS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "outcomes-list": (set_key("outcomes", [1, 2, 3]), "outcomes"),
    "outcomes-string-count": (set_key("outcomes", {"ok": "many"}), "outcomes.ok"),
    "outcomes-negative": (set_key("outcomes", {"ok": -4}), "outcomes.ok"),
    "missing-name": (drop("name"), "name"),
    "missing-measured": (drop("measured_s"), "measured_s"),
    "measured-string": (set_key("measured_s", "ten"), "measured_s"),
    "latency-list": (set_key("ttft_ms", [1, 2]), "ttft_ms"),
    "latency-string": (set_stat("ttft_ms", "p95", "fast"), "ttft_ms.p95"),
    "nan-p95": (set_stat("ttft_ms", "p95", float("nan")), "ttft_ms.p95"),
    "inf-p50": (set_stat("e2e_ms", "p50", float("inf")), "e2e_ms.p50"),
    "nan-measured": (set_key("measured_s", float("nan")), "measured_s"),
    "nan-deep": (set_key("saturation", {"cpu_percent": float("-inf")}), "saturation.cpu_percent"),
    "timeseries-dict": (set_key("timeseries", {"t_s": 1}), "timeseries"),
    "valid-string": (set_key("valid", "false"), "valid"),
    "breakdown-list": (set_key("breakdown_ms", []), "breakdown_ms"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_malformed_summary_exits_2_with_one_line(
    make_run: MakeRun, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    change, field = CORRUPTIONS[case]
    good = make_run(name="good", seed=1)
    bad = make_run(name="bad", seed=1)
    edit(bad, change)
    with pytest.raises(ResultsError, match=rf"malformed summary: {field}\b"):
        read_summary(bad)
    for main, argv in (
        (report_main, [str(bad), "--out", str(tmp_path / "report"), "--no-svg"]),
        (compare_main, [str(good), str(bad)]),
        (compare_main, [str(bad), str(good)]),
    ):
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2, err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert field in err and "summary.json" in err, err


def test_nan_everywhere_is_not_within_noise(make_run: MakeRun) -> None:
    base = make_run(name="base", seed=1)
    cur = make_run(name="cur", seed=1)

    def poison(data: dict[str, Any]) -> None:
        for metric in ("ttft_ms", "itl_ms", "e2e_ms", "tpot_ms"):
            for stat in ("mean", "p50", "p90", "p95", "p99", "p999"):
                data[metric][stat] = float("nan")

    edit(cur, poison)
    assert compare_main([str(base), str(cur)]) == 2


def test_compare_refuses_an_interrupted_run_unless_allowed(
    make_run: MakeRun, capsys: pytest.CaptureFixture[str]
) -> None:
    base = make_run(name="base", seed=1)
    cur = make_run(name="cur", seed=1)
    edit(cur, set_key("interrupted", True))
    assert read_summary(cur).interrupted and not read_summary(base).interrupted
    assert compare_main([str(base), str(cur)]) == 2
    err = capsys.readouterr().err
    assert "interrupted" in err and "--allow-interrupted" in err and len(err.splitlines()) == 1
    assert compare_main([str(cur), str(base)]) == 2
    capsys.readouterr()
    assert compare_main([str(base), str(cur), "--allow-interrupted"]) == 0
