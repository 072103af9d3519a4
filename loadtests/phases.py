"""Phases of the load: where they start and end, and their results from the recorder.

Locust-free. A run's phases follow from its schedule (`loadtests.schedules`): each level of a
``step`` or ``sweep`` shape, before/during/after a ``spike``, otherwise the whole run. Every load
process computes the same plan from the same settings; its `Recorder` files each measured request
under the phase in which the request *started*, and the master merges the per-phase histograms
by phase index, exactly like the whole-run ones.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from loadtests.schedules import Schedule, ShapeSpecError, parse_schedule
from loadtests.settings import RunSettings
from reports.results import Phase

MAX_PHASES = 100
"""A step ramp with more levels keeps its first 99 and folds the rest into the last phase."""


@dataclass(frozen=True)
class PhaseSpan:
    """When a phase runs, in seconds from the start of the test, and its load."""

    kind: str
    label: str
    start_s: float
    end_s: float  # math.inf: until the run ends
    users: int | None = None
    rate_per_s: float | None = None


def _step_spans(schedule: Schedule) -> list[PhaseSpan]:
    _start, step, cap = schedule.levels
    (every_s,) = schedule.times_s
    spans: list[PhaseSpan] = []
    t_s = 0.0
    while t_s < schedule.duration_s and len(spans) < MAX_PHASES:
        users = schedule.users_at(t_s) or 0
        last = users >= cap or step == 0 or len(spans) == MAX_PHASES - 1
        end_s = schedule.duration_s if last else min(t_s + every_s, schedule.duration_s)
        spans.append(PhaseSpan("step", f"step {len(spans) + 1}: {users} users", t_s, end_s, users))
        if last:
            break
        t_s = end_s
    return spans


def _spike_spans(schedule: Schedule) -> list[PhaseSpan]:
    base, peak = schedule.levels
    at_s, for_s = schedule.times_s
    end_s = schedule.duration_s
    spike_end_s = min(at_s + for_s, end_s)
    spans = [
        PhaseSpan("before_spike", f"{base} users", 0.0, min(at_s, end_s), base),
        PhaseSpan("spike", f"spike to {peak} users", min(at_s, end_s), spike_end_s, peak),
        PhaseSpan("after_spike", f"back to {base} users", spike_end_s, end_s, base),
    ]
    return [span for span in spans if span.end_s > span.start_s]


def _sweep_spans(schedule: Schedule) -> list[PhaseSpan]:
    (each_s,) = schedule.times_s
    spans = []
    for index, users in enumerate(schedule.levels[:MAX_PHASES]):
        start_s = index * each_s
        end_s = min((index + 1) * each_s, schedule.duration_s)
        if index == MAX_PHASES - 1:
            end_s = schedule.duration_s
        if end_s > start_s:
            spans.append(PhaseSpan("level", f"{users} users", start_s, end_s, users))
    return spans


def plan_phases(
    shape: str, duration_s: float, *, users: int, rate_per_s: float = 0.0, arrival: str = ""
) -> list[PhaseSpan]:
    """The phases of a run from its shape spec (empty: none), its duration, its user count and
    its open-loop rate (0: closed loop)."""
    if shape:
        try:
            schedule: Schedule | None = parse_schedule(shape, duration_s)
        except ShapeSpecError:
            schedule = None  # the settings refuse a bad spec; here: one whole phase
        if schedule is not None:
            make = {"step": _step_spans, "spike": _spike_spans, "sweep": _sweep_spans}
            spans = make[schedule.kind](schedule)
            if spans:
                return spans
    if rate_per_s > 0:
        label = f"{rate_per_s:g} requests/s offered" + (f" ({arrival})" if arrival else "")
        return [PhaseSpan("whole", label, 0.0, math.inf, None, rate_per_s)]
    return [PhaseSpan("whole", f"{users} users", 0.0, math.inf, users)]


def phase_plan(settings: RunSettings) -> list[PhaseSpan]:
    """The phases of a run's load, the same in every process (all rebuild the same settings)."""
    return plan_phases(
        settings.shape,
        settings.duration_s,
        users=settings.users,
        rate_per_s=settings.rate,
        arrival=settings.arrival,
    )


def phase_starts_ns(spans: Sequence[PhaseSpan], test_start_ns: int) -> tuple[int, ...]:
    """Absolute start instants of the phases, for `Recorder(phase_starts_ns=...)`."""
    return tuple(test_start_ns + int(span.start_s * 1e9) for span in spans)


def phase_index(starts_ns: Sequence[int], start_ns: int) -> int:
    """Index of the phase a request that started at `start_ns` belongs to (0 before the first)."""
    return max(0, bisect.bisect_right(starts_ns, start_ns) - 1)


def phase_results(
    spans: Sequence[PhaseSpan],
    measured: Mapping[int, Phase],
    *,
    warmup_s: float,
    end_s: float,
) -> list[Phase]:
    """The summary's phases: each span clipped to the measured window ``[warmup_s, end_s]``
    (a phase wholly in the warm-up is left out) with what the recorder measured in it
    (`Recorder.phase_measurements`)."""
    phases: list[Phase] = []
    for index, span in enumerate(spans):
        start, stop = max(span.start_s, warmup_s), min(span.end_s, end_s)
        data = measured.get(index)
        if stop <= start and (data is None or data.requests == 0):
            continue
        base = data or Phase(index=index, kind=span.kind, label=span.label, start_s=0, end_s=0)
        phases.append(
            Phase(
                index=index,
                kind=span.kind,
                label=span.label,
                start_s=round(start, 3),
                end_s=round(max(stop, start), 3),
                users=span.users,
                rate_per_s=span.rate_per_s,
                outcomes=dict(base.outcomes),
                output_tokens=base.output_tokens,
                latency=dict(base.latency),
                breakdown_ms=dict(base.breakdown_ms),
            )
        )
    return phases
