"""The regression gate: compare a current run with a baseline, metric by metric.

A metric *regresses* only when it got worse by more than its threshold **and** the change is
larger than run noise: a bootstrap interval (or Mann-Whitney test) on the samples rebuilt from
the HDR histograms, a bootstrap on the per-second rates, a two-proportion test on outcome counts.
A change beyond the threshold that noise explains is reported as ``noise`` and does not fail.
Each side may be several runs (repeats); their histograms and counts are pooled.

The comparison opens with what differed in the servers' *effective* configuration (what the mock
and the service reported from ``GET /config``, recorded in each summary), e.g.
``service.max_concurrent 8 -> 32``, or says the two ran with the same one. What differs between
any two runs by construction is left out: the ports `surgebench run` picks (``port`` and the
port of a loopback URL such as the service's ``upstream_url``).
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from reports.hdr import distribution_of
from reports.metrics import METRICS, Metric, format_value
from reports.results import ERROR_OUTCOMES, Summary
from reports.stats import NoiseTest, bootstrap_mean, bootstrap_stat, mann_whitney, two_proportions
from reports.thresholds import CompareSettings, Threshold

Verdict = Literal["regressed", "improved", "unchanged", "noise", "n/a"]

VERDICT_TEXT: dict[str, str] = {
    "regressed": "❌ regressed",
    "improved": "✅ improved",
    "unchanged": "✅ ok",
    "noise": "➖ within noise",
    "n/a": "n/a",
}


@dataclass(frozen=True)
class MetricComparison:
    """One row of the comparison table."""

    metric: Metric
    baseline: float | None
    current: float | None
    threshold: Threshold | None
    noise: NoiseTest | None
    verdict: Verdict

    @property
    def change(self) -> float | None:
        if self.baseline is None or self.current is None:
            return None
        return self.current - self.baseline

    @property
    def relative(self) -> float | None:
        change = self.change
        if change is None or not self.baseline:
            return None
        return change / abs(self.baseline)


@dataclass(frozen=True)
class Comparison:
    """The whole comparison: rows, the runs on each side, warnings."""

    baseline_names: list[str]
    current_names: list[str]
    rows: list[MetricComparison]
    warnings: list[str]
    settings: CompareSettings
    effective: list[str] | None = field(default=None)
    """`effective_changes` of the two sides: None when not recorded, [] when the same."""
    unfinished: tuple[int, int] = (0, 0)
    """Requests still in flight at the stop on each side (baseline, current): shown, never gated."""

    @property
    def regressed(self) -> list[MetricComparison]:
        return [row for row in self.rows if row.verdict == "regressed"]


COMPONENTS = ("mock", "service")
PER_RUN_SETTINGS = frozenset({"port"})
"""Settings that differ between any two runs by construction (`surgebench run` binds port 0)."""
_LOOPBACK_PORT = re.compile(r"^(https?://(?:127\.0\.0\.1|localhost|\[::1\])):\d+")


def _comparable(value: Any) -> Any:
    """A setting's value with a loopback URL's port (chosen per run) left out."""
    return _LOOPBACK_PORT.sub(r"\1:PORT", value) if isinstance(value, str) else value


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def effective_changes(baseline: Summary, current: Summary) -> list[str] | None:
    """``component.setting OLD -> NEW`` for each effective setting that differs; [] when none
    does; None when neither run has any component's effective configuration recorded."""
    changes: list[str] = []
    reported = False
    for component in COMPONENTS:
        old, new = baseline.effective.get(component), current.effective.get(component)
        if not isinstance(old, Mapping) and not isinstance(new, Mapping):
            continue
        reported = True
        if not isinstance(old, Mapping) or not isinstance(new, Mapping):
            changes.append(
                f"{component}: {'reported' if isinstance(old, Mapping) else 'not reported'} -> "
                f"{'reported' if isinstance(new, Mapping) else 'not reported'}"
            )
            continue
        for key in sorted((set(old) | set(new)) - PER_RUN_SETTINGS):
            if _comparable(old.get(key)) != _comparable(new.get(key)):
                before = _show(old[key]) if key in old else "(absent)"
                after = _show(new[key]) if key in new else "(absent)"
                changes.append(f"{component}.{key} {before} -> {after}")
    return changes if reported else None


LOAD_SETTINGS = (
    "user_class", "users", "shape", "rate", "arrival", "spawn_rate", "think_s", "duration_s",
    "warmup_s", "prompt_words", "max_tokens", "prompts", "trace", "trace_speedup", "trace_start_s",
    "session_turns", "session_think_ms", "session_agent_share", "target",
)  # fmt: skip
"""The run settings (``config`` in summary.json) that shape the load: two runs that differ in
one of them are not like for like, whatever the servers ran with."""


def load_changes(baseline: Summary, current: Summary) -> list[str]:
    """``run.setting OLD -> NEW`` for each `LOAD_SETTINGS` entry that differs between the two
    runs' recorded settings; [] when they agree or either run recorded none."""
    old, new = baseline.config, current.config
    if not old or not new:
        return []
    return [
        f"run.{key} {_show(old.get(key))} -> {_show(new.get(key))}"
        for key in LOAD_SETTINGS
        if (key in old or key in new) and old.get(key) != new.get(key)
    ]


def effective_text(changes: list[str] | None) -> str:
    if changes is None:
        return "effective configuration: not recorded (the servers did not report it)"
    if not changes:
        return "effective configuration: same on both sides"
    return "effective configuration: " + "; ".join(changes)


def side_value(metric: Metric, runs: Sequence[Summary]) -> float | None:
    """The metric for one side: the run's own figure, or pooled over repeats."""
    if len(runs) == 1:
        return metric.read(runs[0])
    if metric.kind == "latency" and metric.histogram and metric.stat:
        pooled = distribution_of(runs, metric.histogram)
        if pooled is not None:
            return pooled.stat(metric.stat)
    if metric.kind == "fraction":
        hits, total = _fraction_counts(metric, runs)
        return hits / total if total else 0.0
    values = [v for v in (metric.read(run) for run in runs) if v is not None]
    return statistics.median(values) if values else None


def _fraction_counts(metric: Metric, runs: Sequence[Summary]) -> tuple[int, int]:
    keys = {"rejections": ("rejected",), "timeouts": ("timeout",), "errors": ERROR_OUTCOMES}
    outcome_keys = keys[metric.name]
    hits = sum(run.outcomes.get(k, 0) for run in runs for k in outcome_keys)
    return hits, sum(run.requests for run in runs)


_RATE_FIELDS: dict[str, str] = {"ok_rps": "ok", "rps": "requests", "tokens_per_s": "output_tokens"}


def per_interval_rates(metric: Metric, runs: Sequence[Summary]) -> np.ndarray:
    """Per-interval rates of a rate metric from the runs' time series (warm-up excluded)."""
    field = _RATE_FIELDS[metric.name]
    values: list[float] = []
    for run in runs:
        points = [p for p in run.timeseries if p.t_s >= run.warmup_s] or list(run.timeseries)
        if len(points) > 3:
            points = points[:-1]  # the last interval is usually partial
        times = [p.t_s for p in points]
        width = statistics.median(np.diff(times).tolist()) if len(times) > 1 else 1.0
        width = width if width > 0 else 1.0
        values.extend(float(getattr(p, field)) / width for p in points)
    return np.asarray(values, dtype=float)


def noise_test(
    metric: Metric,
    baseline: Sequence[Summary],
    current: Sequence[Summary],
    settings: CompareSettings,
) -> NoiseTest | None:
    """The noise test that fits the metric, or None when the runs carry no samples for it."""
    if metric.kind == "latency" and metric.histogram and metric.stat:
        base = distribution_of(baseline, metric.histogram)
        cur = distribution_of(current, metric.histogram)
        if base is None or cur is None:
            return None
        if settings.method == "mann-whitney":
            return mann_whitney(base, cur)
        return bootstrap_stat(
            base, cur, metric.stat, alpha=settings.alpha, rounds=settings.rounds, seed=settings.seed
        )
    if metric.kind == "rate":
        base_rates = per_interval_rates(metric, baseline)
        cur_rates = per_interval_rates(metric, current)
        if len(base_rates) < 2 or len(cur_rates) < 2:
            return None
        return bootstrap_mean(
            base_rates, cur_rates, alpha=settings.alpha, rounds=settings.rounds, seed=settings.seed
        )
    base_hits, base_n = _fraction_counts(metric, baseline)
    cur_hits, cur_n = _fraction_counts(metric, current)
    return two_proportions(base_hits, base_n, cur_hits, cur_n)


def judge(
    metric: Metric,
    baseline: float | None,
    current: float | None,
    threshold: Threshold | None,
    noise: NoiseTest | None,
    alpha: float,
) -> Verdict:
    """Regressed / improved only when beyond the threshold and beyond noise."""
    if baseline is None or current is None:
        return "n/a"
    if threshold is None:
        return "unchanged"
    worse_by = current - baseline if metric.higher_is_worse else baseline - current
    allowance = threshold.allowance(baseline)
    if abs(worse_by) <= allowance:
        return "unchanged"
    significant = True if noise is None else noise.significant(alpha)
    if not significant:
        return "noise"
    return "regressed" if worse_by > 0 else "improved"


def compare_runs(
    baseline: Sequence[Summary], current: Sequence[Summary], settings: CompareSettings
) -> Comparison:
    """Compare every gated metric (plus a few shown for context) of two sides."""
    if not baseline or not current:
        raise ValueError("compare_runs needs at least one run on each side")
    shown = list(settings.thresholds)
    for extra in ("ttft_p50", "ttft_p95", "itl_p95", "e2e_p95", "ok_rps", "rejections"):
        if extra not in shown:
            shown.append(extra)
    rows: list[MetricComparison] = []
    for name in shown:
        metric = METRICS[name]
        base_value = side_value(metric, baseline)
        cur_value = side_value(metric, current)
        threshold = settings.thresholds.get(name)
        noise = noise_test(metric, baseline, current, settings) if threshold else None
        verdict = judge(metric, base_value, cur_value, threshold, noise, settings.alpha)
        rows.append(MetricComparison(metric, base_value, cur_value, threshold, noise, verdict))
    warnings = [
        f"{side} run {run.name!r} is marked invalid: "
        f"{'; '.join(run.invalid_reasons) or 'no reason given'}"
        for side, runs in (("baseline", baseline), ("current", current))
        for run in runs
        if not run.valid
    ]
    for side, runs in (("baseline", baseline), ("current", current)):
        if any(effective_changes(runs[0], run) for run in runs[1:]):
            warnings.append(f"the {side} runs ran with different effective configurations")
    if load := load_changes(baseline[0], current[0]):
        warnings.append(f"the two sides ran different loads ({'; '.join(load)}): not like for like")
    return Comparison(
        [r.name for r in baseline],
        [r.name for r in current],
        rows,
        warnings,
        settings,
        effective_changes(baseline[0], current[0]),
        (sum(r.unfinished for r in baseline), sum(r.unfinished for r in current)),
    )


def unfinished_line(comparison: Comparison) -> str:
    """``requests still in flight at the stop: baseline 0, current 4 (...)``, or "" when none."""
    base, cur = comparison.unfinished
    if not base and not cur:
        return ""
    return (
        f"requests still in flight at the stop: baseline {base}, current {cur} (counted among "
        "the requests sent, in no latency; not a regression by itself)"
    )


def _change_text(row: MetricComparison) -> tuple[str, str]:
    change = row.change
    if change is None:
        return "n/a", "n/a"
    if row.metric.kind == "fraction":
        absolute = f"{change * 100:+.2f} pt"
    elif row.metric.kind == "rate":
        absolute = f"{change:+.2f} {row.metric.unit}"
    else:
        absolute = f"{change:+.1f} ms"
    relative = row.relative
    return absolute, ("n/a" if relative is None else f"{relative * 100:+.1f} %")


def _noise_text(row: MetricComparison, alpha: float) -> str:
    noise = row.noise
    if row.threshold is None:
        return "not gated"
    if noise is None:
        return "no samples"
    if noise.ci_low is not None and noise.ci_high is not None:
        scale = 100.0 if row.metric.kind == "fraction" else 1.0
        level = f"{(1 - alpha) * 100:g}%"
        return f"{level} CI [{noise.ci_low * scale:+.2f}, {noise.ci_high * scale:+.2f}]"
    if noise.p_value is not None:
        return f"{noise.method} p={noise.p_value:.3g}"
    return "too few samples"


def to_markdown(
    comparison: Comparison, *, baseline_label: str = "", current_label: str = ""
) -> str:
    """Markdown for a terminal or a CI job summary: verdict first, then the table."""
    regressed = comparison.regressed
    gated = sum(1 for row in comparison.rows if row.threshold is not None)
    if regressed:
        names = ", ".join(row.metric.name for row in regressed)
        head = (
            f"## ❌ surgebench compare: {len(regressed)} of {gated} gated metrics "
            f"regressed ({names})"
        )
    else:
        head = f"## ✅ surgebench compare: no regression ({gated} gated metrics)"
    lines = [
        head,
        "",
        f"- {effective_text(comparison.effective)}",
        f"- baseline: {baseline_label or ', '.join(comparison.baseline_names)}",
        f"- current: {current_label or ', '.join(comparison.current_names)}",
        f"- a metric regresses when it is worse by more than its threshold and the noise test "
        f"({comparison.settings.method}, alpha {comparison.settings.alpha:g}) says the change "
        "is not noise",
    ]
    lines += [f"- ⚠️ {warning}" for warning in comparison.warnings]
    if unfinished := unfinished_line(comparison):
        lines.append(f"- {unfinished}")
    lines += [
        "",
        "| metric | baseline | current | change | change % | threshold | noise test | verdict |",
        "|---|---:|---:|---:|---:|---|---|---|",
    ]
    for row in comparison.rows:
        absolute, relative = _change_text(row)
        lines.append(
            f"| {row.metric.name} | {format_value(row.metric, row.baseline)} | "
            f"{format_value(row.metric, row.current)} | {absolute} | {relative} | "
            f"{row.threshold.text if row.threshold else '-'} | "
            f"{_noise_text(row, comparison.settings.alpha)} | "
            f"{VERDICT_TEXT[row.verdict]} |"
        )
    return "\n".join(lines) + "\n"
