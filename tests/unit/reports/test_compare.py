from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from reports.cli import compare_main
from reports.compare import compare_runs, to_markdown
from reports.errors import ThresholdError
from reports.results import LatencyStats, read_summary, write_summary
from reports.thresholds import build_thresholds, load_settings, parse_threshold
from tests.unit.reports.synthetic import RunSpec, ttft_samples

MakeRun = Callable[..., Path]


def _verdicts(baseline: Path, current: Path, **settings: object) -> dict[str, str]:
    comparison = compare_runs(
        [read_summary(baseline)],
        [read_summary(current)],
        load_settings(None, **settings),  # type: ignore[arg-type]
    )
    return {row.metric.name: row.verdict for row in comparison.rows}


def _noisy_seed_pair(requests: int) -> tuple[int, int]:
    """Two seeds of the same distribution whose TTFT p95 differ by more than 10 %."""
    base = RunSpec(seed=1, requests=requests)
    base_p95 = LatencyStats.from_values(ttft_samples(base).tolist()).p95 or 0.0
    for seed in range(2, 200):
        p95 = (
            LatencyStats.from_values(
                ttft_samples(RunSpec(seed=seed, requests=requests)).tolist()
            ).p95
            or 0.0
        )
        if p95 / base_p95 - 1 > 0.10:
            return 1, seed
    raise AssertionError("no noisy pair found")


def test_identical_configuration_passes(
    make_run: MakeRun, capsys: pytest.CaptureFixture[str]
) -> None:
    base = make_run(name="base", seed=1)
    cur = make_run(name="cur", seed=1)
    assert compare_main([str(base), str(cur)]) == 0
    assert "no regression" in capsys.readouterr().out


def test_noisy_but_unchanged_pair_passes(make_run: MakeRun) -> None:
    base_seed, cur_seed = _noisy_seed_pair(requests=120)
    base = make_run(name="base", seed=base_seed, requests=120)
    cur = make_run(name="cur", seed=cur_seed, requests=120)
    # Precondition: a naive +10 % gate on TTFT p95 would fail this pair.
    base_p95 = read_summary(base).metric("ttft_ms").p95
    cur_p95 = read_summary(cur).metric("ttft_ms").p95
    assert base_p95 is not None and cur_p95 is not None
    assert cur_p95 / base_p95 - 1 > 0.10
    verdicts = _verdicts(base, cur)
    assert verdicts["ttft_p95"] == "noise"
    assert "regressed" not in verdicts.values()
    assert compare_main([str(base), str(cur)]) == 0
    assert compare_main([str(base), str(cur), "--method", "mann-whitney"]) == 0


def test_real_ttft_regression_fails(make_run: MakeRun, capsys: pytest.CaptureFixture[str]) -> None:
    base = make_run(name="base", seed=1, requests=800)
    cur = make_run(name="cur", seed=2, requests=800, ttft_ms=280.0)  # +40 %
    verdicts = _verdicts(base, cur)
    assert verdicts["ttft_p95"] == "regressed"
    assert verdicts["ttft_p50"] == "regressed"
    assert verdicts["itl_p95"] in {"unchanged", "noise"}
    assert compare_main([str(base), str(cur)]) == 1
    out = capsys.readouterr().out
    assert "regressed" in out and "ttft_p95" in out
    assert _verdicts(base, cur, method="mann-whitney")["ttft_p95"] == "regressed"


def test_improvement_is_not_a_regression(make_run: MakeRun) -> None:
    base = make_run(name="base", seed=1, requests=800, ttft_ms=280.0)
    cur = make_run(name="cur", seed=2, requests=800)
    assert _verdicts(base, cur)["ttft_p95"] == "improved"
    assert compare_main([str(base), str(cur)]) == 0


def test_throughput_drop_and_rejection_rise_regress(make_run: MakeRun) -> None:
    base = make_run(name="base", seed=1, requests=600)
    cur = make_run(name="cur", seed=2, requests=400, rejected=60)
    verdicts = _verdicts(base, cur)
    assert verdicts["ok_rps"] == "regressed"  # 30 -> 20 ok req/s
    assert verdicts["tokens_per_s"] == "regressed"
    assert verdicts["rejections"] == "regressed"  # 0 % -> 13 %


def test_table_numbers_equal_inputs(make_run: MakeRun) -> None:
    base = make_run(name="base", seed=1, requests=400)
    cur = make_run(name="cur", seed=2, requests=300, rejected=100)
    b, c = read_summary(base), read_summary(cur)
    markdown = to_markdown(compare_runs([b], [c], load_settings(None)))
    row = next(line for line in markdown.splitlines() if line.startswith("| ttft_p95 "))
    assert f"{b.metric('ttft_ms').p95:.1f} ms" in row
    assert f"{c.metric('ttft_ms').p95:.1f} ms" in row
    row = next(line for line in markdown.splitlines() if line.startswith("| rejections "))
    assert "0.00 %" in row and "25.00 %" in row and "+25.00 pt" in row
    row = next(line for line in markdown.splitlines() if line.startswith("| ok_rps "))
    assert "20.00 req/s" in row and "15.00 req/s" in row and "-25.0 %" in row


def test_thresholds_file_relaxes_and_disables(make_run: MakeRun, tmp_path: Path) -> None:
    base = make_run(name="base", seed=1, requests=800)
    cur = make_run(name="cur", seed=2, requests=800, ttft_ms=280.0)
    relaxed = tmp_path / "t.toml"
    relaxed.write_text(
        '[thresholds]\nttft_p95 = "+50%"\nttft_p50 = "off"\nttft_p99 = "+60%"\ne2e_p95 = "+50%"\n'
    )
    assert compare_main([str(base), str(cur), "--thresholds", str(relaxed)]) == 0
    as_json = tmp_path / "t.json"
    as_json.write_text('{"thresholds": {"ttft_p95": "+20ms"}, "compare": {"defaults": false}}')
    assert compare_main([str(base), str(cur), "--thresholds", str(as_json)]) == 1


def test_repeats_are_pooled(make_run: MakeRun, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for index in (1, 2):
        make_run(name=f"base-{index}", seed=index, requests=200)
    baseline_folder = tmp_path / "baseline"
    baseline_folder.mkdir()
    for index in (1, 2):
        (runs / f"base-{index}").rename(baseline_folder / f"base-{index}")
    cur = make_run(name="cur", seed=9, requests=200)
    assert compare_main([str(baseline_folder), str(cur)]) == 0


@pytest.mark.parametrize(
    ("metric", "text", "message"),
    [
        ("ttft_p95", "-10%", "rises"),
        ("ok_rps", "+10%", "falls"),
        ("rejections", "+1ms", "allowed"),
        ("ttft_p95", "10", "not valid"),
        ("nope_p95", "+10%", "unknown metric"),
    ],
)
def test_bad_thresholds_name_the_problem(metric: str, text: str, message: str) -> None:
    with pytest.raises(ThresholdError, match=message):
        parse_threshold(metric, text)


def test_threshold_units() -> None:
    assert parse_threshold("ttft_p95", "+1s") is not None
    seconds = parse_threshold("ttft_p95", "+1s")
    assert seconds is not None and seconds.allowance(500.0) == 1000.0
    points = parse_threshold("rejections", "+1pt")
    assert points is not None and points.allowance(0.0) == pytest.approx(0.01)
    assert "ttft_p50" not in build_thresholds({"ttft_p50": "off"})


def _with_effective(path: Path, effective: dict[str, object]) -> Path:
    summary = read_summary(path)
    summary.effective = effective
    write_summary(path, summary)
    return path


def test_compare_opens_with_the_effective_difference(
    make_run: MakeRun, capsys: pytest.CaptureFixture[str]
) -> None:
    mock = {"ttft_ms": 100.0, "seed": 1}
    base = _with_effective(
        make_run(name="base", seed=1),
        {"mock": mock, "service": {"admission": "queue", "max_concurrent": 8, "auth_token": "***"}},
    )
    cur = _with_effective(
        make_run(name="cur", seed=1),
        {
            "mock": mock,
            "service": {"admission": "queue", "max_concurrent": 32, "auth_token": "***"},
        },
    )
    assert compare_main([str(base), str(cur)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == "- effective configuration: service.max_concurrent 8 -> 32"
    assert compare_main([str(base), str(base)]) == 0
    assert capsys.readouterr().out.splitlines()[2] == (
        "- effective configuration: same on both sides"
    )
    as_json = base.parent / "compare.json"
    assert compare_main([str(base), str(cur), "--json", str(as_json)]) == 0
    payload = json.loads(as_json.read_text("utf-8"))
    assert payload["effective"] == {
        "recorded": True,
        "changes": ["service.max_concurrent 8 -> 32"],
        "text": "effective configuration: service.max_concurrent 8 -> 32",
    }
    assert compare_main([str(base), str(base), "--json", str(as_json)]) == 0
    assert json.loads(as_json.read_text("utf-8"))["effective"]["changes"] == []
    bare = make_run(name="bare", seed=1)
    assert compare_main([str(bare), str(bare), "--json", str(as_json)]) == 0
    assert json.loads(as_json.read_text("utf-8"))["effective"] == {
        "recorded": False,
        "changes": [],
        "text": "effective configuration: not recorded (the servers did not report it)",
    }


def test_effective_changes_name_every_difference() -> None:
    from reports.compare import effective_changes
    from reports.results import Summary

    def run(effective: dict[str, object]) -> Summary:
        return Summary("r", "t", 1.0, 1.0, effective=effective)

    old = run({"mock": {"a": 1, "b": "x", "port": 1}, "service": None})
    new = run({"mock": {"a": 2, "c": True, "port": 2}, "service": {"max_concurrent": 8}})
    assert effective_changes(old, new) == [
        "mock.a 1 -> 2",
        "mock.b x -> (absent)",
        "mock.c (absent) -> true",
        "service: not reported -> reported",
    ]
    assert effective_changes(run({}), run({"mock": None, "service": None})) is None
    # the ports a run picks are no difference; another upstream host is
    url = {"upstream_url": "http://127.0.0.1:4001/v1", "port": 4002}
    moved = {"upstream_url": "http://127.0.0.1:5001/v1", "port": 5002}
    assert effective_changes(run({"service": url}), run({"service": moved})) == []
    remote = {"upstream_url": "http://llm.example.invalid:4001/v1"}
    assert effective_changes(run({"service": url}), run({"service": remote})) == [
        "service.upstream_url http://127.0.0.1:4001/v1 -> http://llm.example.invalid:4001/v1"
    ]


def test_requests_in_flight_at_the_stop_are_shown_never_gated(
    make_run: MakeRun, capsys: pytest.CaptureFixture[str]
) -> None:
    base = make_run(name="base", seed=1)
    cur = make_run(name="cur", seed=1)
    summary = read_summary(cur)
    summary.outcomes["unfinished"] = 40  # as many as a tenth of the requests: still no regression
    write_summary(cur, summary)
    as_json = cur.parent / "compare.json"
    assert compare_main([str(base), str(cur), "--json", str(as_json)]) == 0
    out = capsys.readouterr().out
    assert "- requests still in flight at the stop: baseline 0, current 40 (" in out
    assert json.loads(as_json.read_text("utf-8"))["unfinished"] == {"baseline": 0, "current": 40}
    assert compare_main([str(base), str(base)]) == 0
    assert "in flight at the stop" not in capsys.readouterr().out


def _with_config(path: Path, config: dict[str, object]) -> Path:
    summary = read_summary(path)
    summary.config = config
    write_summary(path, summary)
    return path


def test_compare_warns_when_the_loads_differ(
    make_run: MakeRun, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 60 s demo against a 12 s one: same servers, but the second never reached the spike; the
    header said only "effective configuration: same on both sides"."""
    load = {"users": 24, "shape": "spike:8:24:25:15", "duration_s": 60.0, "name": "a", "seed": 1}
    base = _with_config(make_run(name="base", seed=1), load)
    same = _with_config(make_run(name="same", seed=1), {**load, "name": "b", "seed": 2})
    short = _with_config(make_run(name="short", seed=1), {**load, "duration_s": 12.0})
    assert compare_main([str(base), str(short)]) == 0
    out = capsys.readouterr().out
    assert (
        "- ⚠️ the two sides ran different loads (run.duration_s 60.0 -> 12.0): not like for like"
    ) in out.splitlines()
    assert compare_main([str(base), str(same)]) == 0  # name and seed are not the load
    assert "different loads" not in capsys.readouterr().out
    bare = make_run(name="bare", seed=1)  # no recorded settings: nothing to say
    assert compare_main([str(base), str(bare)]) == 0
    assert "different loads" not in capsys.readouterr().out
