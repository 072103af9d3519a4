"""Regression thresholds: the defaults and the TOML/JSON file that overrides them.

A threshold is written the way a reviewer would say it, signed in the direction that is worse:
``ttft_p95 = "+10%"`` (may grow 10 %), ``ok_rps = "-10%"`` (may fall 10 %),
``rejections = "+1pt"`` (may rise one percentage point), ``itl_p99 = "+5ms"`` (absolute),
``e2e_p50 = "off"`` (not gated). File layout::

    [compare]            # optional
    alpha = 0.05         # significance level of the noise test
    method = "bootstrap" # or "mann-whitney" (latency metrics)
    defaults = true      # false: gate only the metrics listed below
    [thresholds]
    ttft_p95 = "+10%"
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reports.metrics import METRICS, Metric, allowed_metrics_text

DEFAULT_THRESHOLDS: dict[str, str] = {
    "ttft_p50": "+10%",
    "ttft_p95": "+10%",
    "ttft_p99": "+15%",
    "itl_p50": "+10%",
    "itl_p95": "+10%",
    "e2e_p95": "+10%",
    "ok_rps": "-10%",
    "tokens_per_s": "-10%",
    "rejections": "+1pt",
    "errors": "+1pt",
}
"""Gated by default: the issue's examples (TTFT p95 +10 %, throughput -10 %, rejections +1 pt)."""

METHODS: tuple[str, ...] = ("bootstrap", "mann-whitney")

_UNITS_BY_KIND: dict[str, tuple[str, ...]] = {
    "latency": ("%", "ms", "s"),
    "rate": ("%", "req/s", "tok/s"),
    "fraction": ("%", "pt"),
}
_THRESHOLD_RE = re.compile(r"^\s*([+-])\s*(\d+(?:\.\d+)?)\s*(%|pt|ms|s|req/s|tok/s)\s*$")


class ThresholdError(ValueError):
    """A threshold or thresholds file that cannot be used; the message says what is allowed."""


@dataclass(frozen=True)
class Threshold:
    """How much worse a metric may get: relative (percent of baseline) or absolute."""

    metric: str
    amount: float  # percent when relative; else ms, req/s, tok/s, or points (fractions)
    relative: bool
    text: str

    def allowance(self, baseline: float) -> float:
        """The allowed worsening in the metric's own unit (fractions: 0-1)."""
        if self.relative:
            return abs(baseline) * self.amount / 100.0
        if METRICS[self.metric].kind == "fraction":
            return self.amount / 100.0
        return self.amount


@dataclass(frozen=True)
class CompareSettings:
    """Everything `compare_runs` needs besides the runs."""

    thresholds: dict[str, Threshold] = field(default_factory=dict)
    alpha: float = 0.05
    method: str = "bootstrap"
    rounds: int = 1000
    seed: int = 0


def parse_threshold(metric_name: str, text: str) -> Threshold | None:
    """``"+10%"`` for `metric_name` -> a `Threshold`; ``"off"`` -> None."""
    metric = METRICS.get(metric_name)
    if metric is None:
        raise ThresholdError(
            f"unknown metric {metric_name!r} in thresholds; allowed: {allowed_metrics_text()}"
        )
    if text.strip().lower() == "off":
        return None
    match = _THRESHOLD_RE.match(text)
    sign = "+" if metric.higher_is_worse else "-"
    units = _UNITS_BY_KIND[metric.kind]
    allowed = " or ".join(f'"{sign}N{u}"' for u in units) + ' or "off"'
    if match is None:
        raise ThresholdError(f"threshold {metric_name} = {text!r} is not valid; allowed: {allowed}")
    given_sign, number, unit = match.groups()
    if (
        given_sign != sign
        or unit not in units
        or (unit in {"req/s", "tok/s"} and not _fits(metric, unit))
    ):
        raise ThresholdError(
            f"threshold {metric_name} = {text!r}: {metric_name} gets worse when it "
            f"{'rises' if metric.higher_is_worse else 'falls'}; allowed: {allowed}"
        )
    amount = float(number)
    if unit == "s":
        amount *= 1000.0
    return Threshold(metric_name, amount, unit == "%", text.strip())


def _fits(metric: Metric, unit: str) -> bool:
    return metric.unit == unit


def build_thresholds(
    overrides: Mapping[str, str], *, defaults: bool = True
) -> dict[str, Threshold]:
    """Defaults (unless `defaults` is False) updated with `overrides`; "off" removes one."""
    texts = dict(DEFAULT_THRESHOLDS) if defaults else {}
    texts.update(overrides)
    result: dict[str, Threshold] = {}
    for name, text in texts.items():
        if not isinstance(text, str):
            raise ThresholdError(
                f'threshold {name} = {text!r} must be a string like "+10%" or "off"'
            )
        threshold = parse_threshold(name, text)
        if threshold is not None:
            result[name] = threshold
    return result


def load_settings(
    path: Path | None, *, method: str | None = None, alpha: float | None = None
) -> CompareSettings:
    """Settings from an optional TOML/JSON file; `method`/`alpha` (CLI flags) win over it."""
    data: dict[str, Any] = {}
    if path is not None:
        data = _read_file(path)
    section = data.get("compare", {})
    table = data.get("thresholds", {})
    if not isinstance(section, dict) or not isinstance(table, dict):
        raise ThresholdError(f"{path}: [compare] and [thresholds] must be tables")
    unknown = set(data) - {"compare", "thresholds"}
    if unknown:
        raise ThresholdError(
            f"{path}: unknown section(s) {sorted(unknown)}; allowed: compare, thresholds"
        )
    unknown = set(section) - {"alpha", "method", "defaults", "rounds", "seed"}
    if unknown:
        raise ThresholdError(
            f"{path}: unknown key(s) {sorted(unknown)} in [compare]; "
            "allowed: alpha, method, defaults, rounds, seed"
        )
    chosen_method = method or str(section.get("method", "bootstrap"))
    if chosen_method not in METHODS:
        raise ThresholdError(
            f"method {chosen_method!r} is not valid; allowed: {', '.join(METHODS)}"
        )
    chosen_alpha = alpha if alpha is not None else section.get("alpha", 0.05)
    if not isinstance(chosen_alpha, int | float) or not 0 < float(chosen_alpha) < 1:
        raise ThresholdError(f"alpha {chosen_alpha!r} is not valid; allowed: a number in (0, 1)")
    rounds = section.get("rounds", 1000)
    if not isinstance(rounds, int) or not 100 <= rounds <= 100_000:
        raise ThresholdError(f"rounds {rounds!r} is not valid; allowed: an integer 100..100000")
    seed = section.get("seed", 0)
    if not isinstance(seed, int):
        raise ThresholdError(f"seed {seed!r} is not valid; allowed: an integer")
    defaults = section.get("defaults", True)
    if not isinstance(defaults, bool):
        raise ThresholdError(f"defaults {defaults!r} is not valid; allowed: true or false")
    return CompareSettings(
        thresholds=build_thresholds(table, defaults=defaults),
        alpha=float(chosen_alpha),
        method=chosen_method,
        rounds=rounds,
        seed=seed,
    )


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ThresholdError(f"{path}: cannot read thresholds file ({exc.strerror})") from exc
    try:
        data: Any = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise ThresholdError(f"{path}: not valid {kind} ({exc})") from exc
    if not isinstance(data, dict):
        raise ThresholdError(f"{path}: expected a table/object at the top level")
    return data
