"""Phases of the load: plans from shapes, per-phase histograms merged exactly, the summary."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from loadtests import outcomes as oc
from loadtests.phases import MAX_PHASES, phase_index, phase_starts_ns, plan_phases
from loadtests.recorder import Recorder, RequestRecord, stats_from_histogram
from loadtests.summary import RunInfo, build_summary
from reports.results import read_summary, write_summary
from tests.unit.loadtests.test_recorder_and_summary import MS, T0, random_records


def test_spike_plan_before_during_after() -> None:
    spans = plan_phases("spike:8:24:25:15", 60, users=24)
    assert [(s.kind, s.label, s.start_s, s.end_s, s.users) for s in spans] == [
        ("before_spike", "8 users", 0.0, 25.0, 8),
        ("spike", "spike to 24 users", 25.0, 40.0, 24),
        ("after_spike", "back to 8 users", 40.0, 60.0, 8),
    ]
    # a spike that runs past the end has no "after"; one at 0 s has no "before"
    assert [s.kind for s in plan_phases("spike:8:24:50:30", 60, users=1)] == [
        "before_spike",
        "spike",
    ]
    assert [s.kind for s in plan_phases("spike:8:24:0:10", 60, users=1)] == [
        "spike",
        "after_spike",
    ]


def test_step_plan_stops_at_the_cap_and_sweep_has_one_phase_per_level() -> None:
    spans = plan_phases("step:4:4:10:12", 60, users=12)
    assert [(s.label, s.start_s, s.end_s) for s in spans] == [
        ("step 1: 4 users", 0.0, 10.0),
        ("step 2: 8 users", 10.0, 20.0),
        ("step 3: 12 users", 20.0, 60.0),
    ]
    sweep = plan_phases("sweep:2,4,8:20", 100, users=8)
    assert [(s.kind, s.users, s.start_s, s.end_s) for s in sweep] == [
        ("level", 2, 0.0, 20.0),
        ("level", 4, 20.0, 40.0),
        ("level", 8, 40.0, 60.0),
    ]
    many = plan_phases("step:1:1:1:100000", 100000, users=1)
    assert len(many) == MAX_PHASES and many[-1].end_s == 100000


def test_plans_without_a_shape_and_with_a_bad_one() -> None:
    (closed,) = plan_phases("", 60, users=16)
    assert (closed.kind, closed.label, closed.users, closed.end_s) == (
        "whole",
        "16 users",
        16,
        math.inf,
    )
    (open_loop,) = plan_phases("", 60, users=64, rate_per_s=2.5, arrival="poisson")
    assert (open_loop.label, open_loop.users, open_loop.rate_per_s) == (
        "2.5 requests/s offered (poisson)",
        None,
        2.5,
    )
    assert plan_phases("spike:x", 60, users=3)[0].label == "3 users"


@pytest.mark.parametrize(
    ("start_ns", "index"), [(T0 - 1, 0), (T0, 0), (T0 + 9_999 * MS, 0), (T0 + 10_000 * MS, 1)]
)
def test_a_request_belongs_to_the_phase_in_which_it_started(start_ns: int, index: int) -> None:
    starts = phase_starts_ns(plan_phases("step:1:1:10:2", 60, users=2), T0)
    assert phase_index(starts, start_ns) == index


def test_phase_histograms_merge_exactly_and_reach_the_summary(tmp_path: Path) -> None:
    """Three processes file requests under two phases; the master's per-phase percentiles equal
    one recorder's over the same requests, and each phase equals the filter of its requests."""
    spans = plan_phases("step:2:2:5:4", 30, users=4)  # 0-5 s: 2 users, 5-30 s: 4 users
    starts = phase_starts_ns(spans, T0)
    records = random_records(400)  # starts at T0 + i * 37 ms: 0-14.8 s
    whole = Recorder(phase_starts_ns=starts)
    workers = [Recorder(phase_starts_ns=starts) for _ in range(3)]
    master = Recorder()
    for i, record in enumerate(records):
        whole.record_request(record)
        workers[i % 3].record_request(record)
        if i % 50 == 49:
            master.merge_dict(workers[i % 3].drain())
    for worker in workers:
        master.merge_dict(worker.drain())
    merged, single = master.phase_measurements(), whole.phase_measurements()
    assert merged == single and sorted(merged) == [0, 1]
    first = [r for r in records if r.start_ns < T0 + 5_000 * MS]
    assert merged[0].requests == len(first)
    ok_first = [r for r in first if r.outcome == oc.OK]
    assert merged[0].outcomes["ok"] == len(ok_first)
    expected_ttft = Recorder()
    for r in ok_first:
        expected_ttft.record_ns("ttft_ms", r.first_token_ns - r.start_ns)  # type: ignore[operator]
    assert merged[0].metric("ttft_ms") == stats_from_histogram(expected_ttft.hists["ttft_ms"])
    assert merged[0].breakdown_ms["upstream_ttft"].p50 == pytest.approx(100.0, rel=1e-3)
    assert merged[0].requests + merged[1].requests == sum(master.outcomes.values())

    info = RunInfo(
        name="p", started_at="x", start_epoch_s=T0 / 1e9, duration_s=16.0, warmup_s=1.0,
        phases=tuple(spans),
    )  # fmt: skip
    summary = build_summary(master, info, measured_s=15.0)
    assert [(p.label, p.start_s, p.end_s, p.users) for p in summary.phases] == [
        ("step 1: 2 users", 1.0, 5.0, 2),
        ("step 2: 4 users", 5.0, 16.0, 4),
    ]
    assert summary.phases[1].metric("itl_ms") == merged[1].metric("itl_ms")
    again = read_summary(write_summary(tmp_path, summary))
    assert again.phases == summary.phases
    assert again.phases[0].metric("ttft_ms").count == len(ok_first)


def test_warm_up_requests_stay_out_of_the_phases() -> None:
    spans = plan_phases("", 60, users=2)
    recorder = Recorder(measure_from_ns=T0 + 1_000 * MS, phase_starts_ns=phase_starts_ns(spans, T0))
    recorder.record_request(RequestRecord(T0, T0 + 5 * MS, oc.REJECTED))
    recorder.record_request(RequestRecord(T0 + 2_000 * MS, T0 + 2_003 * MS, oc.REJECTED))
    (phase,) = recorder.phase_measurements().values()
    assert phase.outcomes["rejected"] == 1
    rejected = phase.metric("rejected_ms")
    assert rejected.count == 1 and rejected.p50 == pytest.approx(3.0, rel=1e-3)
