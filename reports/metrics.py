"""The named metrics that `compare` gates on and `capacity` SLOs test, read from a `Summary`.

One registry so that ``ttft_p95`` means the same number in a thresholds file, an SLO expression,
a report table and a figure. Latency metrics are ``<base>_<stat>`` (``ttft_p95``, ``itl_p50``,
``e2e_mean``) in milliseconds; ``ok_rps``/``rps``/``tokens_per_s`` are rates (higher is better);
``rejections``/``errors``/``timeouts`` are fractions of all requests (lower is better).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from reports.results import ERROR_OUTCOMES, Summary

LATENCY_BASES: dict[str, str] = {
    "ttft": "ttft_ms",
    "itl": "itl_ms",
    "tpot": "tpot_ms",
    "e2e": "e2e_ms",
    "rejected": "rejected_ms",
    "client_lag": "client_lag_ms",
    "ttft_from_intended": "ttft_from_intended_ms",
    "e2e_from_intended": "e2e_from_intended_ms",
}
"""Short metric base -> the summary's latency field (and histogram key)."""

LATENCY_STATS: tuple[str, ...] = ("p50", "p90", "p95", "p99", "p999", "mean", "max")
PERCENTILES: dict[str, float] = {"p50": 50, "p90": 90, "p95": 95, "p99": 99, "p999": 99.9}


Kind = Literal["latency", "rate", "fraction"]


@dataclass(frozen=True)
class Metric:
    """One named figure of a run, how to read it and which way is worse."""

    name: str
    label: str
    unit: str  # "ms", "req/s", "tok/s" or "%" (fractions are shown in percent)
    kind: Kind
    higher_is_worse: bool
    read: Callable[[Summary], float | None]
    histogram: str | None = None  # summary.histograms key holding this metric's samples
    stat: str | None = None  # p95, mean, ... for latency metrics


def _latency_reader(field: str, stat: str) -> Callable[[Summary], float | None]:
    def read(summary: Summary) -> float | None:
        stats = summary.metric(field)
        return stats.get(stat) if stats.count else None

    return read


def _errors(summary: Summary) -> float:
    total = summary.requests
    return sum(summary.outcomes.get(k, 0) for k in ERROR_OUTCOMES) / total if total else 0.0


def _timeouts(summary: Summary) -> float:
    total = summary.requests
    return summary.outcomes.get("timeout", 0) / total if total else 0.0


def _build() -> dict[str, Metric]:
    metrics: dict[str, Metric] = {}
    for base, field in LATENCY_BASES.items():
        for stat in LATENCY_STATS:
            name = f"{base}_{stat}"
            metrics[name] = Metric(
                name=name,
                label=f"{base.upper() if len(base) <= 4 else base} {stat}",
                unit="ms",
                kind="latency",
                higher_is_worse=True,
                read=_latency_reader(field, stat),
                histogram=field,
                stat=stat,
            )
    metrics["ok_rps"] = Metric(
        "ok_rps", "ok requests/s", "req/s", "rate", False, lambda s: s.ok_requests_per_s
    )
    metrics["rps"] = Metric("rps", "requests/s", "req/s", "rate", False, lambda s: s.requests_per_s)
    metrics["tokens_per_s"] = Metric(
        "tokens_per_s", "output tokens/s", "tok/s", "rate", False, lambda s: s.output_tokens_per_s
    )
    metrics["rejections"] = Metric(
        "rejections", "rejection rate", "%", "fraction", True, lambda s: s.rejection_rate
    )
    metrics["errors"] = Metric("errors", "error rate", "%", "fraction", True, _errors)
    metrics["timeouts"] = Metric("timeouts", "timeout rate", "%", "fraction", True, _timeouts)
    return metrics


METRICS: dict[str, Metric] = _build()
"""Every metric by name. Read-only by convention: built once at import, never mutated."""


def get_metric(name: str) -> Metric:
    """The metric called `name`, or a KeyError listing the allowed names."""
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; allowed: {allowed_metrics_text()}") from None


def allowed_metrics_text() -> str:
    """A short description of the allowed metric names, for error messages."""
    bases = "|".join(LATENCY_BASES)
    stats = "|".join(LATENCY_STATS)
    return (
        f"<{bases}>_<{stats}> in ms (e.g. ttft_p95, itl_p99, e2e_mean); ok_rps, rps "
        "(req/s); tokens_per_s (tok/s); rejections, errors, timeouts (% of requests)"
    )


def format_value(metric: Metric, value: float | None) -> str:
    """A value in the metric's display unit: ``812.3 ms``, ``41.20 req/s``, ``0.50 %``."""
    if value is None:
        return "n/a"
    if metric.kind == "fraction":
        return f"{value * 100:.2f} %"
    if metric.kind == "rate":
        return f"{value:.2f} {metric.unit}"
    return f"{value:.1f} ms"
