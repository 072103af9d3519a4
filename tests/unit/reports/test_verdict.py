"""The verdict in words, on synthetic summaries whose numbers are known."""

from __future__ import annotations

from dataclasses import replace

import pytest

from reports.results import LatencyStats, Phase, Summary
from reports.verdict import duration_text, percent_text, verdict_sentences, verdict_text
from tests.unit.reports.synthetic import RunSpec, make_summary


def _phase(
    index: int,
    kind: str,
    label: str,
    span: tuple[float, float],
    outcomes: dict[str, int],
    ttft_ms: list[float],
    queue_ms: list[float] | None = None,
    rejected_ms: list[float] | None = None,
) -> Phase:
    latency = {"ttft_ms": LatencyStats.from_values(ttft_ms)}
    if rejected_ms:
        latency["rejected_ms"] = LatencyStats.from_values(rejected_ms)
    breakdown = {}
    if queue_ms is not None:
        breakdown = {
            "queue_wait": LatencyStats.from_values(queue_ms),
            "upstream_ttft": LatencyStats.from_values(
                [t - q for t, q in zip(ttft_ms, queue_ms, strict=True)]
            ),
        }
    return Phase(
        index=index,
        kind=kind,
        label=label,
        start_s=span[0],
        end_s=span[1],
        users=None,
        outcomes=outcomes,
        latency=latency,
        breakdown_ms=breakdown,
    )


def spike_summary(valid: bool = True) -> Summary:
    """8 users, a spike to 24 users at 25-40 s shedding a third, 8 users again."""
    steady = [100.0 + i for i in range(20)] + [125.0] * 1  # 21 samples, p95 = 120 (rank 20)
    before = _phase(0, "before_spike", "8 users", (5, 25), {"ok": 21}, steady)
    # 100 admitted: TTFT 1000 ms each, 950 ms of it in the queue; 50 rejected after 2 ms
    spike = _phase(
        1,
        "spike",
        "spike to 24 users",
        (25, 40),
        {"ok": 100, "rejected": 50},
        [1000.0] * 100,
        queue_ms=[950.0] * 100,
        rejected_ms=[1.0, 2.0, 3.0] * 16 + [2.0, 2.0],
    )
    after = _phase(2, "after_spike", "back to 8 users", (40, 60), {"ok": 20}, [130.0] * 20)
    summary = make_summary(RunSpec(valid=valid))
    return replace(summary, phases=[before, spike, after])


def test_spike_run_one_sentence_per_phase_then_valid() -> None:
    assert verdict_sentences(spike_summary()) == [
        "8 users (5-25 s): TTFT p95 119 ms, nothing rejected.",
        "Spike to 24 users (25-40 s): 33 % rejected after a median 2.0 ms; "
        "admitted TTFT p95 1.0 s, 95 % of it queue wait.",
        "Back to 8 users (40-60 s): TTFT p95 130 ms, nothing rejected.",
        "Run valid.",
    ]


def test_invalid_run_says_so_with_the_reason() -> None:
    sentences = verdict_sentences(spike_summary(valid=False))
    assert sentences[-1].startswith("Run INVALID, do not trust these latencies: client lag p99")
    assert "42.0 ms > budget 5.0 ms" in sentences[-1]


def test_advice_repeated_by_several_reasons_is_said_once_last() -> None:
    summary = replace(
        spike_summary(valid=False),
        invalid_reasons=[
            "client lag 9 ms; use more processes",
            "loop lag 7 ms; use more processes",
        ],
    )
    assert verdict_sentences(summary)[-1] == (
        "Run INVALID, do not trust these latencies: client lag 9 ms; loop lag 7 ms; use more "
        "processes. The load generator, not the service, was the bottleneck."
    )


@pytest.mark.parametrize(
    ("reasons", "ending"),
    [
        # other processes held the CPU: blaming the generator contradicts "more --processes
        # won't help" in the reason itself
        (
            ["load generator delayed: event-loop lag p99 5.9 ms > 5 ms; the machine was busy"],
            "the machine was busy. Other processes on this machine, not the service, delayed "
            "the load generator.",
        ),
        (
            ["load generator saturated: client lag p99 40 ms > 5 ms"],
            "> 5 ms. The load generator, not the service, was the bottleneck.",
        ),
        (
            ["load generator delayed: x", "load generator saturated: y"],
            "y. The load generator, not the service, was the bottleneck.",
        ),
        # nothing measured: there was no bottleneck to name
        (["the run ended before its warm-up of 5 s did: nothing was measured"], "measured."),
    ],
)
def test_the_invalid_sentence_names_who_distorted_the_figures(
    reasons: list[str], ending: str
) -> None:
    summary = replace(spike_summary(valid=False), invalid_reasons=reasons)
    assert verdict_sentences(summary)[-1].endswith(ending)


def test_run_without_phases_reads_as_one_whole_phase_with_timeouts() -> None:
    """A schema-1 summary (no phases): one sentence from the whole-run figures."""
    summary = make_summary(RunSpec(requests=396, timeouts=4, users=10))
    ttft_p95 = summary.metric("ttft_ms").p95
    assert ttft_p95 is not None
    first, last = verdict_sentences(summary)
    assert first == (
        f"10 users: TTFT p95 {duration_text(ttft_p95)}, 60 % of it the upstream LLM's own TTFT; "
        "4 timed out (1.0 %)."
    )
    assert last == "Run valid."


def test_errors_and_no_success_are_said() -> None:
    phase = _phase(0, "whole", "4 users", (0, 10), {"upstream_error": 3, "client_error": 1}, [])
    summary = replace(make_summary(RunSpec()), phases=[phase])
    assert verdict_sentences(summary)[0] == (
        "4 users: no request succeeded; 4 failed with errors (100 %)."
    )


def test_requests_in_flight_at_the_stop_are_said_and_are_not_errors() -> None:
    cut = _phase(0, "whole", "4 users", (0, 2), {"unfinished": 4}, [])
    summary = replace(make_summary(RunSpec()), phases=[cut])
    assert verdict_sentences(summary)[0] == (
        "4 users: no request ended; 4 requests were still in flight at the stop."
    )
    some = _phase(0, "whole", "4 users", (0, 10), {"ok": 9, "unfinished": 1}, [100.0] * 9)
    summary = replace(make_summary(RunSpec()), phases=[some])
    assert verdict_sentences(summary)[0] == (
        "4 users: TTFT p95 100 ms; 1 request was still in flight at the stop."
    )


def test_empty_phase_and_text_form() -> None:
    phase = _phase(0, "whole", "2 users", (0, 10), {}, [])
    summary = replace(make_summary(RunSpec()), phases=[phase])
    assert verdict_text(summary) == "2 users: no request was measured.\nRun valid."


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0.0, "0 ms"),
        (0.5, "0.50 ms"),
        (2.0, "2.0 ms"),
        (125.4, "125 ms"),
        (1000.0, "1.0 s"),
        (12_400, "12 s"),
    ],
)
def test_duration_text(ms: float, text: str) -> None:
    assert duration_text(ms) == text


@pytest.mark.parametrize(
    ("fraction", "text"), [(0.0, "0 %"), (1 / 3, "33 %"), (0.004, "0.4 %"), (0.0002, "0.02 %")]
)
def test_percent_text_never_rounds_a_share_to_zero(fraction: float, text: str) -> None:
    assert percent_text(fraction) == text
