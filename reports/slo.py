"""SLO expressions: ``"ttft_p95<800ms,rejections<1%"``, parsed strictly.

Grammar: terms separated by commas; each term ``METRIC OP NUMBER UNIT`` with OP one of
``< <= > >=`` and the unit that fits the metric: ``ms`` or ``s`` for latencies, ``%`` for
rejections/errors/timeouts, ``req/s`` for ok_rps/rps, ``tok/s`` for tokens_per_s.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

from reports.metrics import METRICS, Metric, allowed_metrics_text, format_value
from reports.results import Summary

_TERM_RE = re.compile(r"^\s*([a-z0-9_]+)\s*(<=|>=|<|>)\s*(\d+(?:\.\d+)?)\s*([a-z%/]*)\s*$")
_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
ALLOWED_UNITS: dict[str, tuple[str, ...]] = {
    "latency": ("ms", "s"),
    "fraction": ("%",),
}
ALLOWED_TEXT = (
    "terms like ttft_p95<800ms joined by commas; operators < <= > >=; units: ms or s for "
    "latencies, % for rejections/errors/timeouts, req/s for ok_rps/rps, tok/s for tokens_per_s; "
    f"metrics: {allowed_metrics_text()}"
)


class SloError(ValueError):
    """An SLO expression that cannot be parsed; the message names the term and what is allowed."""


@dataclass(frozen=True)
class SloTerm:
    """One condition: ``metric op limit`` (limit in the metric's own unit: ms, req/s, 0-1)."""

    metric: Metric
    op: str
    limit: float
    text: str

    def holds(self, summary: Summary) -> bool:
        value = self.metric.read(summary)
        return value is not None and _OPERATORS[self.op](value, self.limit)

    def describe(self, summary: Summary) -> str:
        """``TTFT p95 1203.0 ms (limit < 800.0 ms)``."""
        value = self.metric.read(summary)
        return (
            f"{self.metric.name} {format_value(self.metric, value)} "
            f"(limit {self.op} {format_value(self.metric, self.limit)})"
        )


@dataclass(frozen=True)
class Slo:
    """All terms must hold."""

    terms: tuple[SloTerm, ...]
    text: str

    def holds(self, summary: Summary) -> bool:
        return all(term.holds(summary) for term in self.terms)

    def broken(self, summary: Summary) -> list[SloTerm]:
        return [term for term in self.terms if not term.holds(summary)]

    def limit_of(self, metric_name: str) -> float | None:
        """The upper limit on a metric, if a ``<``/``<=`` term sets one (for figures)."""
        for term in self.terms:
            if term.metric.name == metric_name and term.op in {"<", "<="}:
                return term.limit
        return None


def _unit_allowed(metric: Metric) -> tuple[str, ...]:
    if metric.kind == "rate":
        return (metric.unit,)
    return ALLOWED_UNITS[metric.kind]


def parse_slo(text: str) -> Slo:
    """Parse an SLO expression or raise `SloError` naming the bad term."""
    if not text or not text.strip():
        raise SloError(f"empty SLO; allowed: {ALLOWED_TEXT}")
    terms: list[SloTerm] = []
    for raw in text.split(","):
        term_text = raw.strip()
        if not term_text:
            raise SloError(f"empty term in SLO {text!r}; allowed: {ALLOWED_TEXT}")
        match = _TERM_RE.match(term_text)
        if match is None:
            raise SloError(f"SLO term {term_text!r} is not valid; allowed: {ALLOWED_TEXT}")
        name, op, number, unit = match.groups()
        metric = METRICS.get(name)
        if metric is None:
            raise SloError(
                f"SLO term {term_text!r}: unknown metric {name!r}; allowed metrics: "
                f"{allowed_metrics_text()}"
            )
        units = _unit_allowed(metric)
        if unit not in units:
            raise SloError(
                f"SLO term {term_text!r}: unit {unit or '(none)'!r} does not fit {name}; "
                f"allowed units for {name}: {', '.join(units)}"
            )
        limit = float(number)
        if unit == "s":
            limit *= 1000.0
        elif unit == "%":
            limit /= 100.0
        terms.append(SloTerm(metric, op, limit, term_text))
    return Slo(tuple(terms), text.strip())
