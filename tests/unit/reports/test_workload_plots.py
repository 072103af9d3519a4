"""Workload figures: drawn from a trace block built by the replay's own tally, none without."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from loadtests.trace import TraceTally, TraceWindow, load_trace, trace_source
from reports.plots import run_figures
from reports.results import Summary
from reports.workload_plots import (
    arrivals_figure,
    lengths_figure,
    ttft_vs_prompt_figure,
    workload_figures,
)
from tests.unit.reports.synthetic import RunSpec, make_summary

AZURE = Path(__file__).resolve().parents[2] / "data" / "azure_conv_head200.csv"


def trace_block() -> dict[str, object]:
    trace = load_trace(AZURE, TraceWindow(duration_s=30.0, speedup=2.0))
    tally = TraceTally()
    for item in trace.schedule():
        tally.record_scheduled(item)
        tally.record_sent(1_000_000, item.offset_s + 0.001)
        tally.record_completed(
            prompt_requested=item.prompt_tokens,
            prompt_reported=item.prompt_tokens,
            output_requested=item.output_tokens,
            output_received=item.output_tokens,
            ttft_ms=50.0 + item.prompt_tokens * 0.1,
        )
    return tally.block(trace_source(trace))


def test_figures_from_a_trace_block_survive_the_summary_round_trip(tmp_path: Path) -> None:
    summary = replace(make_summary(RunSpec()), trace=trace_block())
    again = Summary.from_dict(summary.to_dict())
    assert again.trace == summary.trace
    for make in (arrivals_figure, lengths_figure, ttft_vs_prompt_figure):
        assert make(again) is not None, make.__name__
    saved = workload_figures(again, tmp_path, "r-", svg=False)
    assert [s.stem for s in saved] == [
        "r-trace_arrivals",
        "r-trace_lengths",
        "r-trace_ttft_vs_prompt",
    ]
    assert all(s.png.stat().st_size > 1000 for s in saved)
    stems = [s.stem for s in run_figures(again, tmp_path / "all", svg=False)]
    assert "trace_arrivals" in stems  # hooked into every run's figures


def test_no_trace_no_figures(tmp_path: Path) -> None:
    summary = make_summary(RunSpec())
    assert summary.trace is None
    assert workload_figures(summary, tmp_path) == []
    assert not [s for s in run_figures(summary, tmp_path, svg=False) if "trace" in s.stem]


def test_summary_table_rows_for_trace_and_sessions() -> None:
    from loadtests.sessions import SessionTally
    from reports.render import summary_table
    from reports.workload_plots import workload_rows

    tally = SessionTally()
    tally.record_turn({"total": 100.0}, 40.0, 1, 30)
    tally.record_turn({"total": 300.0, "tool": 200.0}, 250.0, 2, 60, agent=True)
    tally.record_session(turns_planned=2, turns_completed=2, duration_s=0.5, final_ttft_ms=250.0)
    plain = make_summary(RunSpec())
    both = replace(plain, trace=trace_block(), sessions=tally.block())
    assert workload_rows([plain]) == []
    rows = {row[0]: row[1:] for row in workload_rows([plain, both])}
    assert rows["trace: sent / late / dropped"][0] == "n/a"
    sent = both.trace["sent"] if both.trace else 0
    assert rows["trace: sent / late / dropped"][1] == f"{sent} / 0 / 0"
    assert rows["sessions: completed / failed"] == ["n/a", "1 / 0"]
    assert rows["sessions: prompt tokens by turn"] == ["n/a", "{'1': 30.0, '2': 60.0}"]
    assert rows["sessions: agent turns"] == ["n/a", "1"]
    assert rows["sessions: agent-turn TTFT p50 / p99 (ms)"][1].startswith("250")
    labels = [row[0] for row in summary_table([plain, both]).rows]
    assert "trace: rows in window" in labels and "sessions: turns completed" in labels
