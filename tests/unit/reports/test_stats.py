from __future__ import annotations

import math

import numpy as np
import pytest

from reports.hdr import decode, encode_samples_ms, from_samples_ms, merge
from reports.stats import bootstrap_mean, bootstrap_stat, mann_whitney, two_proportions


def test_hdr_round_trip_keeps_counts_and_precision() -> None:
    samples = [1.5, 2.0, 100.0, 100.0, 5000.0]
    distribution = decode(encode_samples_ms(samples))
    assert distribution.total == 5
    assert distribution.percentile(50) == pytest.approx(100.0, rel=1e-3)
    assert distribution.stat("max") == pytest.approx(5000.0, rel=1e-3)
    assert distribution.mean() == pytest.approx(sum(samples) / 5, rel=1e-3)


def test_merge_adds_histograms() -> None:
    merged = merge([from_samples_ms([1.0, 2.0]), from_samples_ms([2.0, 3.0])])
    assert merged.values_ms.tolist() == [1.0, 2.0, 3.0]
    assert merged.counts.tolist() == [1, 2, 1]


def test_nearest_rank_percentile_matches_definition() -> None:
    distribution = from_samples_ms(float(v) for v in range(1, 101))
    assert distribution.percentile(95) == 95.0
    assert distribution.percentile(99.9) == 100.0


def test_mann_whitney_matches_hand_computed_value() -> None:
    # U = 0 for fully separated samples of 3 and 3: z = -4.5 / sqrt(5.25), p = 0.0495.
    result = mann_whitney(from_samples_ms([1, 2, 3]), from_samples_ms([4, 5, 6]))
    z = 4.5 / math.sqrt(3 * 3 / 12 * 7)
    assert result.p_value == pytest.approx(math.erfc(z / math.sqrt(2)))
    assert result.p_value == pytest.approx(0.0495, abs=1e-3)


def test_mann_whitney_ties_give_no_signal() -> None:
    same = from_samples_ms([5.0] * 50)
    assert mann_whitney(same, same).p_value == 1.0


def test_bootstrap_interval_covers_the_true_shift() -> None:
    rng = np.random.default_rng(7)
    base = from_samples_ms(rng.lognormal(5, 0.4, 3000))
    shifted = from_samples_ms(rng.lognormal(5, 0.4, 3000) * 1.3)
    result = bootstrap_stat(base, shifted, "p95")
    true_shift = math.exp(5 + 0.4 * 1.6449) * 0.3
    assert result.ci_low is not None and result.ci_high is not None
    assert result.ci_low < true_shift < result.ci_high
    assert result.significant(0.05)


def test_bootstrap_same_distribution_is_not_significant() -> None:
    rng = np.random.default_rng(3)
    a = from_samples_ms(rng.lognormal(5, 0.4, 500))
    b = from_samples_ms(rng.lognormal(5, 0.4, 500))
    assert not bootstrap_stat(a, b, "p50").significant(0.05)
    assert not bootstrap_mean(rng.normal(10, 1, 30), rng.normal(10, 1, 30)).significant(0.05)


def test_two_proportions() -> None:
    assert two_proportions(0, 400, 40, 440).significant(0.05)
    assert not two_proportions(2, 400, 3, 400).significant(0.05)
    assert two_proportions(0, 0, 1, 10).p_value is None


def test_beta_shortcut_matches_brute_force_bootstrap() -> None:
    rng = np.random.default_rng(11)
    samples = np.sort(rng.lognormal(4, 0.6, 200))
    distribution = from_samples_ms(samples)
    rounds = 4000
    picks = rng.integers(0, 200, size=(rounds, 200))
    brute = np.sort(samples[picks], axis=1)[:, math.ceil(0.95 * 200) - 1]
    from reports.stats import _resample

    shortcut = _resample(distribution, "p95", rounds, np.random.default_rng(12))
    assert shortcut.mean() == pytest.approx(brute.mean(), rel=0.02)
    assert shortcut.std() == pytest.approx(brute.std(), rel=0.1)
