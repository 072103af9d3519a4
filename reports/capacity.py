"""Capacity from a sweep: the largest load each configuration holds within an SLO, the knee of
each latency curve, a ranking, and the recommended configuration in one sentence.

"Holds load L" means every tested load up to and including L met every SLO term (and, unless
asked otherwise, the run was valid): a pass above a failure is treated as luck, not capacity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from reports.metrics import METRICS, format_value
from reports.plots import Curve
from reports.results import Summary
from reports.slo import Slo


@dataclass(frozen=True)
class PointCheck:
    """One (configuration, load) cell judged against the SLO."""

    load: float
    summary: Summary
    passed: bool
    reasons: list[str]  # why it failed: broken terms, invalid run
    in_flight: float | None  # Little's law: throughput x latency


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


def judge_point(load: float, summary: Summary, slo: Slo, include_invalid: bool) -> PointCheck:
    reasons = [term.describe(summary) for term in slo.broken(summary)]
    if not summary.valid and not include_invalid:
        why = "; ".join(summary.invalid_reasons) or "no reason given"
        reasons.append(f"run invalid ({why})")
    return PointCheck(load, summary, not reasons, reasons, littles_law_in_flight(summary))


def capacity_of(curve: Curve, slo: Slo, include_invalid: bool = False) -> ConfigurationCapacity:
    points = [
        judge_point(load, run, slo, include_invalid)
        for load, run in zip(curve.loads, curve.runs, strict=True)
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


def recommend(ranking: Sequence[ConfigurationCapacity], slo: Slo, unit: str) -> str:
    """One sentence with the numbers: which configuration, how much load, why."""
    if not ranking:
        return "No finished runs in this sweep: nothing to recommend."
    best = ranking[0]
    at = best.at_max
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
        if runner_up.max_load is None:
            parts.append(f", while {runner_up.configuration} fails the SLO at every tested load")
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
    if best.first_failure is not None:
        parts.append(
            f"; at {_num(best.first_failure.load)} {unit} it breaks the SLO: "
            + "; ".join(best.first_failure.reasons)
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
            f"{_num(failure.load)}: {'; '.join(failure.reasons)}" if failure else "none tested"
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
