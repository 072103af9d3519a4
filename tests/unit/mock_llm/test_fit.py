"""`surgebench fit`: recovery of known coefficients, refusals, tables and sweep folders."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path

import pytest

from mock_llm.fit import (
    GENAI_PERF_STABILITY_PERCENTAGE,
    FitError,
    FitResult,
    Point,
    Predicted,
    _loss,
    check_identifiable,
    fit,
    predict,
    predict_all,
)
from mock_llm.fit_cli import main, parse_table, read_sweep, sweep_warmup_requests
from mock_llm.settings import MockSettings, resolve
from reports.results import LatencyStats, Summary, write_summary
from reports.sweeps import SweepCell, SweepManifest, write_manifest

pytestmark = pytest.mark.timeout(600)  # a fit is a few hundred replays; the machine may be busy

# A known engine: what the synthetic points are generated from and what the fit must recover.
TRUE = {
    "step_base_ms": 10.0,
    "step_per_seq_ms": 0.5,
    "step_per_prefill_token_ms": 0.05,
    "ttft_overhead_ms": 5.0,
}
KNOWN = replace(MockSettings(), mode="engine", max_batched_tokens=512, max_num_seqs=64, **TRUE)
HEADER = "concurrency,isl,osl,ttft_ms,itl_ms,tokens_per_s"


def synthetic(
    settings: MockSettings, isls: tuple[int, ...] = (100, 400), osl: int = 12
) -> list[Point]:
    points = []
    for isl in isls:
        for c in (1, 4, 16):
            q = predict(settings, c, isl, osl)
            points.append(Point(c, isl, osl, q.ttft_ms, q.itl_ms, q.tokens_per_s))
    return points


def csv_text(points: list[Point]) -> str:
    rows = [
        f"{p.concurrency},{p.prompt_tokens},{p.output_tokens},{p.ttft_ms},{p.itl_ms},"
        f"{p.tokens_per_s}"
        for p in points
    ]
    return "\n".join(["# made by the test from a known profile", HEADER, *rows]) + "\n"


def test_predict_is_the_closed_loop_law() -> None:
    """Throughput = C x OSL / (TTFT + (OSL - 1) x ITL) holds for the replayed closed loop."""
    q = predict(KNOWN, 8, 100, 20)
    implied = 8 * 20 / ((q.ttft_ms + 19 * q.itl_ms) / 1000.0)
    assert q.tokens_per_s == pytest.approx(implied, rel=0.05)
    # one user alone: TTFT = overhead + one step of base + 100 prefill tokens; ITL = base + 1 seq
    one = predict(KNOWN, 1, 100, 20)
    assert one.ttft_ms == pytest.approx(5.0 + 10.0 + 0.05 * 100, abs=0.01)
    assert one.itl_ms == pytest.approx(10.0 + 0.5, abs=0.01)


def test_predict_with_warmup_measures_the_steady_state_queue() -> None:
    """Past max_num_seqs N, a closed loop's steady-state TTFT is (C - N) / N generations (Little's
    law) plus the prefill step; without warm-up the burst's first wave is measured."""
    s = replace(MockSettings(), mode="engine", step_base_ms=10.0, max_num_seqs=4)
    steady = predict(s, 12, 1, 20, warmup_requests=2.0)
    assert steady.ttft_ms == pytest.approx((12 - 4) / 4 * 20 * 10.0 + 10.0, rel=0.01)
    assert steady.tokens_per_s == pytest.approx(4 * 1000.0 / 10.0, rel=0.01)
    burst = predict(s, 12, 1, 20)
    assert burst.ttft_ms < 0.6 * steady.ttft_ms


def test_predict_in_a_time_window_measures_the_requests_completed_in_it() -> None:
    """perf_analyzer's time window: only requests that ended inside it count. Two slots, four
    users of 20 tokens at 10 ms a step (the first step starts with the first arrival, so the
    second user's prompt goes in the next one): the first two get their first token at 10 and
    20 ms and end at 0.20 and 0.21 s; the two that waited for a slot, at 210 and 220 ms, and end
    at 0.40 and 0.41 s."""
    s = replace(MockSettings(), mode="engine", step_base_ms=10.0, max_num_seqs=2)
    first_wave = predict(s, 4, 1, 20, window_s=0.3)
    assert first_wave.ttft_ms == pytest.approx(15.0)
    assert first_wave.itl_ms == pytest.approx(10.0)
    # throughput: 4 users in flight, each request 15 + 19 x 10 ms (the closed loop's law)
    assert first_wave.tokens_per_s == pytest.approx(4 * 20 / 0.205)
    two_waves = predict(s, 4, 1, 20, window_s=0.45)
    assert two_waves.ttft_ms == pytest.approx((10.0 + 20.0 + 210.0 + 220.0) / 4)
    assert two_waves.itl_ms == pytest.approx(10.0)
    assert two_waves.tokens_per_s == pytest.approx(4 * 20 / 0.305)
    nothing = predict(s, 4, 1, 20, window_s=0.1)  # no request ended: no figure
    assert math.isnan(nothing.ttft_ms)


@pytest.mark.parametrize(
    ("column", "value", "blank", "bad"),
    [
        ("warmup_requests", 2.0, 0.0, "0.5"),
        ("window_s", 10.0, 0.0, "-1"),
        ("measurement_interval_ms", 5000.0, 0.0, "-1"),
        ("stability_percentage", 10.0, GENAI_PERF_STABILITY_PERCENTAGE, "0"),
    ],
)
def test_table_protocol_columns(column: str, value: float, blank: float, bad: str) -> None:
    """Each optional column: its value reaches the point, an empty cell is its default, a value
    out of its range is refused naming the column."""
    text = f"{HEADER},{column}\n1,200,200,25,13,75,{value:g}\n5,200,200,60,13,380,\n"
    points, _ = parse_table(text, "t.csv")
    assert [getattr(p, column) for p in points] == [value, blank]
    with pytest.raises(FitError, match=rf"{column} {float(bad)} out of range"):
        parse_table(f"{HEADER},{column}\n1,200,200,25,13,75,{bad}\n", "t.csv")


def test_table_window_column(tmp_path: Path) -> None:
    with pytest.raises(FitError, match=r"window_s 2 is shorter than one request"):
        parse_table(f"{HEADER},window_s\n1,200,200,25,13,75,2\n", "t.csv")  # 25 + 199 x 13 ms
    both = f"{HEADER},warmup_requests,window_s\n1,200,200,25,13,75,2,10\n"
    with pytest.raises(FitError, match=r"window_s and warmup_requests both set"):
        parse_table(both, "t.csv")
    table = tmp_path / "t.csv"
    table.write_text(both, "utf-8")
    assert main(["--table", str(table), "--out", str(tmp_path / "p.toml")]) == 2


def test_worst_objective_is_the_largest_error() -> None:
    points = [Point(1, 100, 12, 20.0, 10.0, 100.0), Point(4, 100, 12, 40.0, 12.0, 300.0)]
    pred = [Predicted(22.0, 10.0, 100.0), Predicted(40.0, 12.0, 240.0)]
    worst = _loss(points, pred, "worst")
    assert worst == pytest.approx(0.2, rel=0.01)  # 240 for 300: the largest error, -20 %
    assert _loss(points, pred, "squares") > 100 * (worst - 0.2)
    with pytest.raises(FitError, match=r"objective 'best'; allowed: squares, worst"):
        fit(points, KNOWN, ["step_base_ms"], objective="best")


def test_worst_objective_bounds_the_worst_point() -> None:
    """A model that cannot follow the data (a context cost the fit does not have): fitted for
    the worst point, its largest error is no larger than the least-squares fit's."""
    truth = replace(KNOWN, step_per_kv_token_ms=0.004)
    points = synthetic(truth)
    free = ["step_base_ms", "step_per_seq_ms"]
    squares = fit(points, KNOWN, free, max_evals=80, restarts=1)
    worst = fit(points, KNOWN, free, max_evals=80, restarts=1, objective="worst")

    def largest(r: FitResult) -> float:
        return max(r.max_abs_error_pct(m) for m in ("ttft_ms", "itl_ms", "tokens_per_s"))

    print(f"largest error: squares {largest(squares):.2f} %, worst {largest(worst):.2f} %")
    assert largest(worst) < largest(squares)


def test_fit_reports_progress_within_its_bound() -> None:
    """A long fit says how far it is: every `progress_every` evaluations, the count so far, the
    most it can take (never passed) and the best loss so far (never rising)."""
    seen: list[tuple[int, int, float]] = []
    free = ["step_base_ms", "step_per_seq_ms"]
    result = fit(
        synthetic(KNOWN),
        KNOWN,
        free,
        max_evals=30,
        restarts=1,
        progress=lambda n, at_most, best: seen.append((n, at_most, best)),
        progress_every=5,
    )
    counts = [n for n, _, _ in seen]
    assert counts == list(range(5, 5 * len(seen) + 1, 5)) and len(seen) >= 4
    at_most = seen[0][1]
    assert at_most == 2 * (30 + len(free)) and counts[-1] <= at_most
    assert result.evaluations <= at_most
    best = [b for _, _, b in seen]
    assert best == sorted(best, reverse=True) and best[-1] >= result.loss


def test_fit_recovers_the_context_cost(tmp_path: Path) -> None:
    truth = replace(KNOWN, step_per_kv_token_ms=0.002)
    points = synthetic(truth)
    free = ["step_base_ms", "step_per_seq_ms", "step_per_prefill_token_ms", "step_per_kv_token_ms"]
    start = replace(truth, **dict.fromkeys(free, 1e-3))
    result = fit(points, start, free, max_evals=200, restarts=2)
    for name in free:
        assert result.coefficients[name] == pytest.approx(getattr(truth, name), rel=0.05), name


def test_refuses_context_cost_with_one_context_length(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    points = synthetic(KNOWN, isls=(200,))
    with pytest.raises(FitError, match=r"step_per_kv_token_ms .* cannot be told apart"):
        check_identifiable(points, ["step_per_seq_ms", "step_per_kv_token_ms"])
    check_identifiable(points, ["step_per_kv_token_ms"])  # per-sequence cost fixed: determined
    check_identifiable(synthetic(KNOWN), ["step_per_seq_ms", "step_per_kv_token_ms"])
    with pytest.raises(FitError, match=r"step_per_kv_token_ms .* 3 distinct concurrencies"):
        check_identifiable([p for p in points if p.concurrency < 16], ["step_per_kv_token_ms"])
    table = tmp_path / "t.csv"
    table.write_text(csv_text(points), "utf-8")
    out = str(tmp_path / "p.toml")
    free = "step_base_ms,step_per_seq_ms,step_per_kv_token_ms"
    assert main(["--table", str(table), "--out", out, "--free", free]) == 2
    assert "step_per_kv_token_ms" in capsys.readouterr().err


@pytest.mark.parametrize("policy", ["mixed", "prefill_first"])
def test_fit_recovers_the_coefficients_of_synthetic_data(policy: str) -> None:
    truth = replace(KNOWN, prefill_policy=policy)
    points = synthetic(truth)
    start = replace(truth, **dict.fromkeys(TRUE, 1.0))  # the fit must not see the answer
    result = fit(points, start, max_evals=150, restarts=2)
    for name, value in TRUE.items():
        assert result.coefficients[name] == pytest.approx(value, rel=0.05), name
    assert result.max_abs_error_pct("ttft_ms") < 2.0
    assert result.max_abs_error_pct("itl_ms") < 2.0


def test_refuses_one_concurrency() -> None:
    points = [p for p in synthetic(KNOWN) if p.concurrency == 4]
    with pytest.raises(FitError, match=r"step_per_seq_ms .* at least 3 distinct concurrencies"):
        check_identifiable(points, ["step_per_seq_ms"])


def test_refuses_prefill_cost_with_constant_prompt_length() -> None:
    points = synthetic(KNOWN, isls=(200,))
    with pytest.raises(FitError, match=r"step_per_prefill_token_ms .* same prompt length"):
        check_identifiable(
            points, ["step_base_ms", "step_per_prefill_token_ms", "ttft_overhead_ms"]
        )
    # with the overhead fixed, the per-token cost is what the prompt costs: no refusal
    check_identifiable(points, ["step_base_ms", "step_per_prefill_token_ms"])


def test_refuses_roofline_and_frontend_rate_without_enough_concurrencies() -> None:
    points = [p for p in synthetic(KNOWN) if p.concurrency < 16]
    with pytest.raises(FitError, match=r"step_compute_per_token_ms .* 3 distinct concurrencies"):
        check_identifiable(points, ["step_compute_per_token_ms"])
    no_tps = [
        replace(p, tokens_per_s=math.nan) if p.concurrency == 16 else p for p in synthetic(KNOWN)
    ]
    with pytest.raises(FitError, match=r"frontend_tokens_per_s .* tokens_per_s at 3 or more"):
        check_identifiable(no_tps, ["frontend_tokens_per_s"])
    check_identifiable(synthetic(KNOWN), ["step_compute_per_token_ms", "frontend_tokens_per_s"])


def test_fit_recovers_the_frontend_rate_and_the_roofline() -> None:
    """A known engine whose frontend sends at most 2,000 tokens/s and whose busy steps are
    compute-bound (0.04 ms per token): both come back within 5 % from 6 points."""
    truth = replace(KNOWN, frontend_tokens_per_s=2000.0, step_compute_per_token_ms=0.04)
    points = synthetic(truth, osl=24)
    free = ["step_base_ms", "step_per_seq_ms", "frontend_tokens_per_s", "step_compute_per_token_ms"]
    start = replace(truth, frontend_tokens_per_s=3000.0, step_compute_per_token_ms=0.02)
    result = fit(points, start, free, max_evals=150, restarts=2)
    for name in free:
        assert result.coefficients[name] == pytest.approx(getattr(truth, name), rel=0.05), name


def test_refuses_too_few_points() -> None:
    points = synthetic(KNOWN)[:1]
    with pytest.raises(FitError, match="too few points"):
        check_identifiable(points, ["step_base_ms", "ttft_overhead_ms"])


def test_cli_refusal_exits_2_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = tmp_path / "t.csv"
    points = [p for p in synthetic(KNOWN, isls=(100, 200, 400)) if p.concurrency == 4]
    table.write_text(csv_text(points), "utf-8")
    assert main(["--table", str(table), "--out", str(tmp_path / "p.toml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("surgebench fit: step_per_seq_ms") and "3 distinct concurrencies" in err
    assert not (tmp_path / "p.toml").exists()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("concurrency,isl\n1,2\n", "missing column"),
        (f"{HEADER}\n1,200,200,abc,13,75\n", "'abc' is not a number"),
        (f"{HEADER}\n1.5,200,200,25,13,75\n", "concurrency must be a whole number"),
        (f"{HEADER}\n0,200,200,25,13,75\n", "concurrency 0 out of range"),
        (f"{HEADER}\n1,200,200,-4,13,75\n", "ttft_ms -4.0 must be a positive number"),
        (f"{HEADER}\n1,200,200,25,13\n", "5 fields, header has 6"),
    ],
)
def test_bad_table_is_refused_with_the_row(text: str, needle: str, tmp_path: Path) -> None:
    with pytest.raises(FitError, match=needle):
        parse_table(text, "t.csv")
    table = tmp_path / "t.csv"
    table.write_text(text, "utf-8")
    assert main(["--table", str(table), "--out", str(tmp_path / "p.toml")]) == 2


def test_bad_flags_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = tmp_path / "t.csv"
    table.write_text(csv_text(synthetic(KNOWN)), "utf-8")
    out = str(tmp_path / "p.toml")
    assert main(["--table", str(table), "--out", str(tmp_path / "p.json")]) == 2
    assert main(["--table", str(table), "--out", out, "--fix", "nope=1"]) == 2
    assert main(["--table", str(table), "--out", out, "--free", "ttft_ms"]) == 2
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["--table", str(table), "--out", out, "--objective", "best"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--objective" in err and "'squares', 'worst'" in err
    assert main(["--table", str(tmp_path / "missing.csv"), "--out", out]) == 2
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["--out", out])
    assert exc.value.code == 2
    assert "surgebench fit:" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--table", str(table), "--out", out, "--max-evals", "abc"])
    assert exc.value.code == 2  # one line naming the flag, no usage block
    assert capsys.readouterr().err == (
        "surgebench fit: --max-evals: invalid value 'abc' (allowed: an integer)\n"
    )


def _write_sweep(sweep_dir: Path, points: list[Point], warmup_s: float = 0.0) -> None:
    """A users sweep folder as `surgebench sweep` writes it, one cell per point."""
    cells = []
    for i, p in enumerate(points):
        run_dir = sweep_dir / "runs" / f"c00-l{i:02d}" / "run"
        measured_s = 30.0
        requests = round(p.tokens_per_s * measured_s / p.output_tokens)
        summary = Summary(
            name=f"cell{i}",
            started_at="2026-01-01T00:00:00Z",
            duration_s=measured_s,
            measured_s=measured_s,
            warmup_s=warmup_s,
            outcomes={"ok": requests},
            output_tokens=requests * p.output_tokens,
            latency={
                "ttft_ms": LatencyStats(count=requests, mean=p.ttft_ms),
                "itl_ms": LatencyStats(count=requests, mean=p.itl_ms),
            },
        )
        write_summary(run_dir, summary)
        cells.append(
            SweepCell(
                id=f"c00-l{i:02d}",
                configuration="mock",
                load=p.concurrency,
                status="done",
                run_dir=str(run_dir.relative_to(sweep_dir)),
            )
        )
    manifest = SweepManifest(
        name="roundtrip",
        load_kind="users",
        loads=[float(p.concurrency) for p in points],
        configurations=[{"name": "mock", "settings": {}}],
        cells=cells,
    )
    write_manifest(sweep_dir, manifest)


def test_sweep_round_trip_recovers_the_profile_within_5_percent(tmp_path: Path) -> None:
    """A sweep of the mock (replayed on its scheduler) fitted back gives the profile again."""
    osl = 12
    points = synthetic(KNOWN, isls=(100,), osl=osl)
    _write_sweep(tmp_path / "sweep", points)
    out = tmp_path / "fitted.toml"
    code = main(
        [
            "--sweep", str(tmp_path / "sweep"), "--isl", "100", "--out", str(out),
            "--fix", "ttft_overhead_ms=5", "--fix", "max_batched_tokens=512",
            "--fix", "max_num_seqs=64", "--prefill-policy", "mixed", "--max-evals", "150",
            "--rounds", "1",
        ]
    )  # fmt: skip
    assert code == 0
    s = resolve(["--profile", str(out)])
    assert s.mode == "engine" and s.output_tokens == osl
    for name in ("step_base_ms", "step_per_seq_ms", "step_per_prefill_token_ms"):
        assert getattr(s, name) == pytest.approx(TRUE[name], rel=0.05), name


def test_sweep_warmup_becomes_the_replay_protocol(tmp_path: Path) -> None:
    assert sweep_warmup_requests(0.04, 100.0) == 0.0  # under half a request: the burst counts
    assert sweep_warmup_requests(0.08, 100.0) == 1.0
    assert sweep_warmup_requests(0.25, 100.0) == 2.5
    assert sweep_warmup_requests(3600.0, 100.0) == 20.0
    assert sweep_warmup_requests(None, 100.0) == 0.0
    points = synthetic(KNOWN, isls=(100,))
    _write_sweep(tmp_path / "burst", points)
    _write_sweep(tmp_path / "steady", points, warmup_s=5.0)
    burst, _ = read_sweep(tmp_path / "burst", "", 100, 0)
    steady, _ = read_sweep(tmp_path / "steady", "", 100, 0)
    assert [p.warmup_requests for p in burst] == [0.0, 0.0, 0.0]
    for p in steady:  # 5 s of warm-up over a request time of TTFT + 11 ITLs
        request_s = (p.ttft_ms + 11 * p.itl_ms) / 1000.0
        assert p.warmup_requests == pytest.approx(min(20.0, 5.0 / request_s), rel=0.01)


def test_sweep_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    points = synthetic(KNOWN, isls=(100,))
    _write_sweep(tmp_path / "sweep", points)
    out = str(tmp_path / "p.toml")
    # summary.json does not record prompt tokens: --isl is required
    assert main(["--sweep", str(tmp_path / "sweep"), "--out", out]) == 2
    assert "--isl" in capsys.readouterr().err
    assert main(["--sweep", str(tmp_path / "nowhere"), "--isl", "100", "--out", out]) == 2
    args = ["--sweep", str(tmp_path / "sweep"), "--isl", "100", "--out", out]
    assert main([*args, "--configuration", "other"]) == 2
    assert "not in the sweep" in capsys.readouterr().err


def test_table_file_keeps_its_source_and_loads_as_a_profile(tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    table.write_text(csv_text(synthetic(KNOWN)), "utf-8")
    out = tmp_path / "p.toml"
    args = ["--table", str(table), "--out", str(out), "--prefill-policy", "mixed"]
    args += ["--max-evals", "60", "--rounds", "1"]
    assert main([*args, "--fix", "max_batched_tokens=512", "--fix", "max_num_seqs=64"]) == 0
    text = out.read_text("utf-8")
    assert text.startswith("# made by the test from a known profile\n")
    assert "# Written by: surgebench fit --table" in text and "MAPE:" in text
    s = resolve(["--profile", str(out)])
    assert s.max_batched_tokens == 512 and s.prefill_policy == "mixed"
    assert not math.isnan(s.step_base_ms)


def test_shipped_70b_profile_meets_its_table_at_every_point() -> None:
    """The Llama-3.1-70B profile replayed with its table's protocol (the 17 s window in the CSV):
    TTFT within 15 %, ITL and throughput within 10 %, at every concurrency (issue 15)."""
    from mock_llm.profiles import FITTED_DIR

    name = "nim-llama3.1-70b"
    points, _ = parse_table((FITTED_DIR / "data" / f"{name}.csv").read_text("utf-8"), name)
    assert {p.window_s for p in points} == {17.0}
    result = FitResult({}, points, predict_all(resolve(["--profile", name], env={}), points), 0, 0)
    assert result.max_abs_error_pct("ttft_ms") < 15.0
    assert result.max_abs_error_pct("itl_ms") < 10.0
    assert result.max_abs_error_pct("tokens_per_s") < 10.0


def test_cli_objective_worst_writes_a_profile(tmp_path: Path) -> None:
    """Through the CLI, `--objective worst` reaches the fit: on data the model cannot follow (a
    context cost it does not have) its profile's largest error is below the default's."""
    table = tmp_path / "t.csv"
    table.write_text(csv_text(synthetic(replace(KNOWN, step_per_kv_token_ms=0.004))), "utf-8")

    def largest_error_pct(objective: str) -> float:
        out = tmp_path / f"{objective}.toml"
        args = ["--table", str(table), "--out", str(out), "--prefill-policy", "mixed"]
        args += ["--objective", objective, "--max-evals", "80", "--rounds", "1"]
        args += ["--free", "step_base_ms,step_per_seq_ms"]
        assert main([*args, "--fix", "max_batched_tokens=512", "--fix", "max_num_seqs=64"]) == 0
        text = out.read_text("utf-8")
        assert f"--objective {objective}" in text
        (line,) = [ln for ln in text.splitlines() if "max |error|:" in ln]
        return max(float(v) for v in re.findall(r"([\d.]+)%", line.split("max |error|:")[1]))

    assert largest_error_pct("worst") < largest_error_pct("squares")


def test_predict_as_perf_analyzer_measures() -> None:
    """genai-perf's perf_analyzer: windows of 1.2 x the interval, back to back from the start,
    until the last three are stable; every request that ended in any of them counts. The loop of
    the time-window test above: requests end in pairs at 0.20/0.21, 0.40/0.41, 0.60/0.61,
    0.80/0.81 s, with TTFT 10, 20, then 210, 220, then 210 ms each."""
    s = replace(MockSettings(), mode="engine", step_base_ms=10.0, max_num_seqs=2)
    # 150 ms: windows of 0.18 s; the first holds no end (0 requests/s is never stable), so a
    # fourth window is measured: six requests, the last ending at 0.61 s
    q = predict(s, 4, 1, 20, measurement_interval_ms=150)
    assert q.ttft_ms == pytest.approx((10 + 20 + 210 + 220 + 210 + 210) / 6)
    assert q.itl_ms == pytest.approx(10.0)
    # genai-perf's throughput: the tokens of those requests over last end - first start
    assert q.tokens_per_s == pytest.approx(6 * 20 / 0.61)
    # with perf_analyzer's own 10 %, windows 2 to 4 are not stable (mean latency 0.205 s, then
    # 0.405 and 0.40): a fifth window, eight requests
    strict = predict(s, 4, 1, 20, measurement_interval_ms=150, stability_percentage=10)
    assert strict.ttft_ms == pytest.approx((10 + 20 + 210 + 220 + 4 * 210) / 8)
    # 50 ms: windows of 0.06 s, and one in three holds an end: never three in a row, no figure
    # within perf_analyzer's 10 windows
    assert math.isnan(predict(s, 4, 1, 20, measurement_interval_ms=50).ttft_ms)


def test_table_perf_analyzer_columns_exclude_the_other_protocols() -> None:
    both = f"{HEADER},window_s,measurement_interval_ms\n1,200,200,25,13,75,10,5000\n"
    with pytest.raises(FitError, match=r"measurement_interval_ms with window_s or warmup_requests"):
        parse_table(both, "t")


def test_a_long_window_is_replayed_to_its_end() -> None:
    """Two users, one slot, 2 tokens at 10 ms a step: the first request's TTFT is 10 ms, every
    later one waits for the other user's request (30 ms). Over 600 s (30,000 requests) the mean
    is 30 - 20 / 30,000 ms; a replay cut short after a fixed number of events per token (2,112
    here, about 21 s) gave 29.98."""
    s = replace(MockSettings(), mode="engine", step_base_ms=10.0, max_num_seqs=1)
    q = predict(s, 2, 1, 2, window_s=600.0)
    assert q.ttft_ms == pytest.approx(30.0 - 20.0 / 30_000, abs=2e-4)


def test_a_replay_past_its_event_budget_gives_no_figure(monkeypatch: pytest.MonkeyPatch) -> None:
    import mock_llm.fit as fit_module

    s = replace(MockSettings(), mode="engine", step_base_ms=10.0, max_num_seqs=1)
    monkeypatch.setattr(fit_module, "MAX_REPLAY_EVENTS", 100)  # 1 s of this loop
    assert math.isnan(predict(s, 2, 1, 2, window_s=2.0).ttft_ms)
    assert math.isnan(predict(s, 2, 1, 2, measurement_interval_ms=1000).ttft_ms)
    assert math.isnan(predict(s, 2, 1, 200).ttft_ms)  # 3 request times of 200 steps
    assert not math.isnan(predict(s, 2, 1, 2, window_s=0.5).ttft_ms)


def test_a_fit_whose_replay_gives_no_figure_is_refused(tmp_path: Path) -> None:
    """Windows of 60 ms (interval 50 ms) against requests of ~0.7 s: perf_analyzer never gets
    three windows in a row with completions, so no model has a figure; the fit says so (exit 2)
    instead of writing a profile of NaN errors."""
    text = f"{HEADER},measurement_interval_ms\n1,200,50,25,13,75,50\n4,200,50,30,14,280,50\n"
    points, _ = parse_table(text, "t.csv")
    with pytest.raises(FitError, match=r"point 1 \(C = 1\): perf_analyzer's procedure gives no"):
        fit(points, KNOWN, ["step_base_ms"], max_evals=10, restarts=0)
    table = tmp_path / "t.csv"
    table.write_text(text, "utf-8")
    out = tmp_path / "p.toml"
    args = ["--table", str(table), "--out", str(out), "--free", "step_base_ms"]
    assert main([*args, "--max-evals", "10", "--rounds", "1"]) == 2
    assert not out.exists()
