"""Capacity from a sweep: the largest load each configuration holds within an SLO, the knee of
each latency curve, a ranking, and the recommended configuration in one sentence.

"Holds load L" means every tested load up to and including L met every SLO term (and, unless
asked otherwise, the run was valid): a pass above a failure is treated as luck, not capacity.
A cell invalid for a transient cause (the generator's lag or CPU; the sweep reruns such cells a
bounded number of times) is *untrusted*: it stops the chain like a failure, but the answer says
"holds at least L", claims no ratio from it, and names every such cell.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from reports.curves import Curve
from reports.metrics import METRICS, format_value
from reports.results import Summary
from reports.slo import Slo
from reports.verdict import short_invalid_text, transient_invalid


@dataclass(frozen=True)
class PointCheck:
    """One (configuration, load) cell judged against the SLO."""

    load: float
    summary: Summary
    passed: bool
    reasons: list[str]  # why it failed: broken terms, invalid run
    in_flight: float | None  # Little's law: throughput x latency
    untrusted: bool = False
    """Invalid for a transient cause (generator lag or CPU), even after its reruns: the cell
    says nothing about the service, so it is neither a pass nor an SLO failure."""


@dataclass(frozen=True)
class ConfigurationCapacity:
    """The answer for one configuration."""

    configuration: str
    points: list[PointCheck]
    max_load: float | None  # largest load held (every load up to it passed)
    knee_load: float | None
    first_failure: PointCheck | None  # the first tested load above max_load

    @property
    def at_max(self) -> PointCheck | None:
        if self.max_load is None:
            return None
        return next(p for p in self.points if p.load == self.max_load)

    @property
    def limit_untrusted(self) -> bool:
        """Its limit is where a cell could not be trusted, so it holds *at least* `max_load`."""
        return self.first_failure is not None and self.first_failure.untrusted

    @property
    def peak_ok_rps(self) -> float:
        return max((p.summary.ok_requests_per_s for p in self.points), default=0.0)


@dataclass(frozen=True)
class CapacityResult:
    """Per configuration capacities, best first, and the recommendation sentence."""

    slo: Slo
    load_unit: str
    ranking: list[ConfigurationCapacity]
    recommendation: str

    @property
    def best(self) -> ConfigurationCapacity | None:
        top = self.ranking[0] if self.ranking else None
        return top if top is not None and top.max_load is not None else None


def littles_law_in_flight(summary: Summary) -> float | None:
    """Mean requests in flight = ok req/s x mean e2e (s) + rejected/s x mean time to reject (s)."""
    e2e = summary.metric("e2e_ms").mean
    if e2e is None or summary.measured_s <= 0:
        return None
    in_flight = summary.ok_requests_per_s * e2e / 1000.0
    rejected_ms = summary.metric("rejected_ms").mean
    if rejected_ms is not None:
        in_flight += summary.outcomes.get("rejected", 0) / summary.measured_s * rejected_ms / 1000.0
    return in_flight


def knee(loads: Sequence[float], latencies: Sequence[float | None]) -> float | None:
    """Kneedle on a rising latency curve: the load farthest below the chord (>= 3 points)."""
    pairs = [(x, y) for x, y in zip(loads, latencies, strict=True) if y is not None]
    if len(pairs) < 3:
        return None
    xs = np.asarray([p[0] for p in pairs], dtype=float)
    ys = np.asarray([p[1] for p in pairs], dtype=float)
    if xs[-1] == xs[0] or ys.max() == ys.min():
        return None
    x_norm = (xs - xs[0]) / (xs[-1] - xs[0])
    y_norm = (ys - ys.min()) / (ys.max() - ys.min())
    gap = x_norm - y_norm
    index = int(np.argmax(gap))
    if gap[index] <= 0.05 or index in (0, len(xs) - 1):
        return None  # no bend worth naming: the curve is straight or concave
    return float(xs[index])


def judge_point(
    load: float, summary: Summary, slo: Slo, include_invalid: bool, attempts: int = 1
) -> PointCheck:
    in_flight = littles_law_in_flight(summary)
    if not include_invalid and transient_invalid(summary):
        reruns = attempts - 1
        after = f"after {reruns} rerun{'s' if reruns != 1 else ''}" if reruns else "(not rerun)"
        why = f"invalid {after} ({short_invalid_text(summary)})"
        return PointCheck(load, summary, False, [why], in_flight, untrusted=True)
    reasons = [term.describe(summary) for term in slo.broken(summary)]
    if not summary.valid and not include_invalid:
        why = "; ".join(summary.invalid_reasons) or "no reason given"
        reasons.append(f"run invalid ({why})")
    return PointCheck(load, summary, not reasons, reasons, in_flight)


def capacity_of(curve: Curve, slo: Slo, include_invalid: bool = False) -> ConfigurationCapacity:
    points = [
        judge_point(load, run, slo, include_invalid, curve.attempts_at(index))
        for index, (load, run) in enumerate(zip(curve.loads, curve.runs, strict=True))
    ]
    max_load: float | None = None
    first_failure: PointCheck | None = None
    for point in points:
        if not point.passed:
            first_failure = point
            break
        max_load = point.load
    knee_load = knee(curve.loads, [run.metric("ttft_ms").p95 for run in curve.runs])
    return ConfigurationCapacity(curve.configuration, points, max_load, knee_load, first_failure)


def _rank_key(capacity: ConfigurationCapacity) -> tuple[float, float, float]:
    at = capacity.at_max
    if at is None:
        return (-math.inf, capacity.peak_ok_rps, 0.0)
    ttft = at.summary.metric("ttft_ms").p95
    return (at.load, at.summary.ok_requests_per_s, -(ttft if ttft is not None else math.inf))


def _num(value: float) -> str:
    return f"{value:g}" if value == int(value) else f"{value:.2f}"


def bottleneck_hint(summary: Summary) -> str:
    """Where the time to first token went at a failing load, from the service's breakdown."""
    parts = {
        name: stats.p95
        for name, stats in summary.breakdown_ms.items()
        if stats.count and stats.p95 is not None
    }
    if not parts:
        return ""
    name, p95 = max(parts.items(), key=lambda item: item[1])
    meaning = {
        "queue_wait": "requests waited in the service's admission queue",
        "pool_wait": "requests waited for an upstream connection from the pool",
        "upstream_ttft": "the LLM itself was slow to answer",
        "relay_overhead": "the service spent the time relaying",
        "client_lag": "the load generator read late",
    }.get(name, name)
    return f" (largest TTFT part there: {name.replace('_', ' ')} p95 {p95:.0f} ms: {meaning})"


def untrusted_sentence(ranking: Sequence[ConfigurationCapacity], unit: str) -> str:
    """Every cell the answer could not trust, named: `` Could not trust 1 cell: C @ 8 users:
    invalid after 2 reruns (client lag p99 16.2 ms). ...``; empty when there is none."""
    cells = [
        f"{c.configuration} @ {_num(p.load)} {unit}: {'; '.join(p.reasons)}"
        for c in ranking
        for p in c.points
        if p.untrusted
    ]
    if not cells:
        return ""
    return (
        f" Could not trust {len(cells)} cell{'s' if len(cells) != 1 else ''} (the load "
        f"generator, not the service, was the bottleneck there): {'; '.join(cells)}. Rerun "
        "them on a quieter machine or with more --processes before relying on these limits."
    )


def recommend(ranking: Sequence[ConfigurationCapacity], slo: Slo, unit: str) -> str:
    """One sentence with the numbers: which configuration, how much load, why; then every cell
    that could not be trusted."""
    if not ranking:
        return "No finished runs in this sweep: nothing to recommend."
    return _recommend(ranking, slo, unit) + untrusted_sentence(ranking, unit)


def _recommend(ranking: Sequence[ConfigurationCapacity], slo: Slo, unit: str) -> str:
    best = ranking[0]
    at = best.at_max
    if at is None and all(c.limit_untrusted for c in ranking):
        return (
            "No answer: at the lowest tested load every configuration's cell could not be trusted."
        )
    if at is None:
        lowest = min((p.load for c in ranking for p in c.points), default=0.0)
        closest = min(ranking, key=lambda c: len(c.points[0].reasons) if c.points else 99)
        why = "; ".join(closest.points[0].reasons) if closest.points else "no data"
        return (
            f"No configuration meets the SLO {slo.text} even at the lowest tested load "
            f"({_num(lowest)} {unit}); the closest is {closest.configuration} ({why}). "
            "Test lower loads or relax the SLO."
        )
    ttft = METRICS["ttft_p95"]
    parts = [
        f"Use {best.configuration}: it holds {_num(at.load)} {unit} within {slo.text} "
        f"(TTFT p95 {format_value(ttft, ttft.read(at.summary))}, "
        f"rejections {at.summary.rejection_rate * 100:.2f} %, "
        f"{at.summary.ok_requests_per_s:.1f} ok req/s at that load)"
    ]
    runner_up = ranking[1] if len(ranking) > 1 else None
    if runner_up is not None:
        if runner_up.max_load is None and runner_up.limit_untrusted:
            parts.append(
                f", while {runner_up.configuration} could not be judged (its lowest cell could "
                "not be trusted)"
            )
        elif runner_up.max_load is None:
            parts.append(f", while {runner_up.configuration} fails the SLO at every tested load")
        elif runner_up.max_load < at.load and runner_up.limit_untrusted:
            parts.append(
                f", while the next best, {runner_up.configuration}, holds at least "
                f"{_num(runner_up.max_load)} {unit} (its next cell could not be trusted, so "
                "no ratio is claimed)"
            )
        elif runner_up.max_load < at.load:
            parts.append(
                f", {at.load / runner_up.max_load:.1f}x the {_num(runner_up.max_load)} {unit} "
                f"of the next best, {runner_up.configuration}"
            )
        else:
            runner_at = runner_up.at_max
            assert runner_at is not None
            parts.append(
                f", as much load as {runner_up.configuration} but with more ok throughput "
                f"({at.summary.ok_requests_per_s:.1f} vs "
                f"{runner_at.summary.ok_requests_per_s:.1f} req/s) or lower TTFT p95"
            )
    if best.first_failure is not None and best.first_failure.untrusted:
        parts.append(
            f"; at {_num(best.first_failure.load)} {unit} its cell could not be trusted "
            f"({'; '.join(best.first_failure.reasons)}), so it holds at least "
            f"{_num(at.load)} {unit}"
        )
    elif best.first_failure is not None:
        parts.append(
            f"; at {_num(best.first_failure.load)} {unit} it breaks the SLO: "
            + "; ".join(best.first_failure.reasons)
            + bottleneck_hint(best.first_failure.summary)
        )
    else:
        parts.append("; it held every tested load, so its true limit is higher")
    return "".join(parts) + "."


def find_capacity(
    curves: Sequence[Curve], slo: Slo, load_unit: str, include_invalid: bool = False
) -> CapacityResult:
    """Judge every configuration against the SLO, rank them, and phrase the recommendation."""
    capacities = [capacity_of(curve, slo, include_invalid) for curve in curves]
    ranking = sorted(capacities, key=_rank_key, reverse=True)
    return CapacityResult(slo, load_unit, ranking, recommend(ranking, slo, load_unit))


Rows = tuple[list[str], list[list[str]]]


def rows_to_markdown(rows: Rows) -> str:
    """A (header, rows) pair as a Markdown table (first two columns left-aligned)."""
    header, body = rows
    aligns = ["---" if i < 2 else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(aligns) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def ranking_rows(result: CapacityResult) -> Rows:
    """The ranking table, best first."""
    unit = result.load_unit
    header = [
        "rank",
        "configuration",
        f"max load within SLO ({unit})",
        f"knee ({unit})",
        "TTFT p95 at max",
        "ok req/s at max",
        "rejections at max",
        "peak ok req/s",
        "first failure",
    ]
    ttft = METRICS["ttft_p95"]
    body: list[list[str]] = []
    for index, capacity in enumerate(result.ranking, start=1):
        at = capacity.at_max
        failure = capacity.first_failure
        failure_text = (
            f"{_num(failure.load)}: {'untrusted: ' if failure.untrusted else ''}"
            f"{'; '.join(failure.reasons)}"
            if failure
            else "none tested"
        )
        body.append(
            [
                str(index),
                capacity.configuration,
                _num(capacity.max_load) if capacity.max_load is not None else "none",
                _num(capacity.knee_load) if capacity.knee_load is not None else "-",
                format_value(ttft, ttft.read(at.summary)) if at else "-",
                f"{at.summary.ok_requests_per_s:.2f}" if at else "-",
                f"{at.summary.rejection_rate * 100:.2f} %" if at else "-",
                f"{capacity.peak_ok_rps:.2f}",
                failure_text,
            ]
        )
    return header, body


def littles_law_rows(result: CapacityResult, load_kind: str) -> Rows:
    """Little's law per cell: in flight (throughput x latency) against the offered users."""
    closed = load_kind == "users"
    header = ["configuration", "load", "ok req/s", "e2e mean", "in flight = λ·W"]
    if closed:
        header.append("in flight / users")
    body: list[list[str]] = []
    for capacity in result.ranking:
        for point in capacity.points:
            e2e = point.summary.metric("e2e_ms").mean
            in_flight = point.in_flight
            row = [
                capacity.configuration,
                _num(point.load),
                f"{point.summary.ok_requests_per_s:.2f}",
                "n/a" if e2e is None else f"{e2e:.0f} ms",
                "n/a" if in_flight is None else f"{in_flight:.1f}",
            ]
            if closed:
                ratio = in_flight / point.load if in_flight is not None and point.load else None
                row.append("n/a" if ratio is None else f"{ratio:.2f}")
            body.append(row)
    return header, body


def capacity_markdown(result: CapacityResult, load_kind: str) -> str:
    """The `surgebench capacity` answer: sentence, ranking, Little's law check."""
    lines = [
        "## Recommendation",
        "",
        result.recommendation,
        "",
        f"## Ranking (SLO: `{result.slo.text}`)",
        "",
        rows_to_markdown(ranking_rows(result)),
        "## Little's law check",
        "",
        "Mean requests in flight = throughput x mean latency (ok req/s x e2e mean, plus "
        "rejected/s x time to reject). "
        + (
            "In a closed loop it should be close to the number of users (ratio near 1); a much "
            "lower ratio means users spent time outside requests (think time, client lag)."
            if load_kind == "users"
            else "In an open loop it shows how many requests the service held at once: above "
            "its concurrency limit, requests were queuing."
        ),
        "",
        rows_to_markdown(littles_law_rows(result, load_kind)),
    ]
    return "\n".join(lines)
