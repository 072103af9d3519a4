"""Noise tests for the regression gate, in numpy only (scipy is not a dependency).

All tests take histogram-shaped data (`Distribution`: values with counts), so a run with a
million inter-token gaps costs as much as its few thousand buckets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from reports.hdr import Distribution
from reports.metrics import PERCENTILES
from surgebench.percentiles import nearest_rank


@dataclass(frozen=True)
class NoiseTest:
    """Outcome of one noise test on `current - baseline` of a statistic."""

    method: str
    p_value: float | None = None  # two-sided, when the method gives one
    ci_low: float | None = None  # interval of the change (current - baseline)
    ci_high: float | None = None

    def significant(self, alpha: float) -> bool:
        """True when the change is unlikely to be noise alone."""
        if self.ci_low is not None and self.ci_high is not None:
            return self.ci_low > 0 or self.ci_high < 0
        return self.p_value is not None and self.p_value < alpha


def _normal_two_sided_p(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2.0))


def mann_whitney(baseline: Distribution, current: Distribution) -> NoiseTest:
    """Two-sided Mann-Whitney U test (normal approximation, tie-corrected) on weighted samples."""
    n1, n2 = baseline.total, current.total
    if n1 == 0 or n2 == 0:
        return NoiseTest("mann-whitney")
    values = np.union1d(baseline.values_ms, current.values_ms)
    c1 = np.zeros(len(values), dtype=float)
    c2 = np.zeros(len(values), dtype=float)
    c1[np.searchsorted(values, baseline.values_ms)] = baseline.counts
    c2[np.searchsorted(values, current.values_ms)] = current.counts
    below2 = np.cumsum(c2) - c2  # current samples strictly below each value
    u1 = float(np.sum(c1 * (below2 + 0.5 * c2)))  # pairs where baseline > current (+ ties/2)
    ties = c1 + c2
    n = n1 + n2
    tie_term = float(np.sum(ties**3 - ties)) / (n * (n - 1)) if n > 1 else 0.0
    variance = n1 * n2 / 12.0 * ((n + 1) - tie_term)
    if variance <= 0:
        return NoiseTest("mann-whitney", p_value=1.0)
    z = (u1 - n1 * n2 / 2.0) / math.sqrt(variance)
    return NoiseTest("mann-whitney", p_value=_normal_two_sided_p(z))


_EXPAND_LIMIT = 4_000_000
"""Bootstrap of a mean resamples the samples themselves up to this many (rounds x samples);
above it the mean's bootstrap distribution is its normal limit."""


def _resample(dist: Distribution, stat: str, rounds: int, rng: np.random.Generator) -> np.ndarray:
    """`rounds` bootstrap replicates of `stat` (p50..p999, max, mean) of `dist`.

    Percentiles use an exact shortcut: the r-th smallest of n draws from the sample is the
    sample's quantile function at U, with U ~ Beta(r, n - r + 1), so each replicate costs one
    beta draw and a binary search instead of n draws.
    """
    total = dist.total
    if stat == "mean":
        if total * rounds <= _EXPAND_LIMIT:
            expanded = np.repeat(dist.values_ms, dist.counts)
            means: np.ndarray = expanded[rng.integers(0, total, size=(rounds, total))].mean(axis=1)
            return means
        mean = float(np.dot(dist.values_ms, dist.counts) / total)
        variance = float(np.dot((dist.values_ms - mean) ** 2, dist.counts) / total)
        normal: np.ndarray = rng.normal(mean, math.sqrt(variance / total), size=rounds)
        return normal
    rank = total if stat == "max" else nearest_rank(PERCENTILES[stat], total)
    quantiles = rng.beta(rank, total - rank + 1, size=rounds)
    cdf = np.cumsum(dist.counts) / total
    index = np.minimum(np.searchsorted(cdf, quantiles, side="left"), len(dist.values_ms) - 1)
    picked: np.ndarray = dist.values_ms[index]
    return picked


def bootstrap_stat(
    baseline: Distribution,
    current: Distribution,
    stat: str,
    *,
    alpha: float = 0.05,
    rounds: int = 1000,
    seed: int = 0,
) -> NoiseTest:
    """Bootstrap interval of ``stat(current) - stat(baseline)`` (``p95``, ``mean``...)."""
    if baseline.total == 0 or current.total == 0:
        return NoiseTest("bootstrap")
    rng = np.random.default_rng(seed)
    base = _resample(baseline, stat, rounds, rng)
    cur = _resample(current, stat, rounds, rng)
    diff = cur - base
    low, high = np.quantile(diff, [alpha / 2.0, 1.0 - alpha / 2.0])
    return NoiseTest("bootstrap", ci_low=float(low), ci_high=float(high))


def bootstrap_mean(
    baseline: np.ndarray,
    current: np.ndarray,
    *,
    alpha: float = 0.05,
    rounds: int = 1000,
    seed: int = 0,
) -> NoiseTest:
    """Bootstrap interval of ``mean(current) - mean(baseline)`` of per-interval values."""
    if len(baseline) < 2 or len(current) < 2:
        return NoiseTest("bootstrap")
    rng = np.random.default_rng(seed)
    base = rng.choice(baseline, size=(rounds, len(baseline)), replace=True).mean(axis=1)
    cur = rng.choice(current, size=(rounds, len(current)), replace=True).mean(axis=1)
    low, high = np.quantile(cur - base, [alpha / 2.0, 1.0 - alpha / 2.0])
    return NoiseTest("bootstrap", ci_low=float(low), ci_high=float(high))


def two_proportions(base_hits: int, base_n: int, cur_hits: int, cur_n: int) -> NoiseTest:
    """Two-sided z-test that two proportions differ (pooled variance)."""
    if base_n == 0 or cur_n == 0:
        return NoiseTest("z-test")
    pooled = (base_hits + cur_hits) / (base_n + cur_n)
    variance = pooled * (1 - pooled) * (1 / base_n + 1 / cur_n)
    if variance <= 0:
        return NoiseTest("z-test", p_value=1.0)
    z = (cur_hits / cur_n - base_hits / base_n) / math.sqrt(variance)
    return NoiseTest("z-test", p_value=_normal_two_sided_p(z))
