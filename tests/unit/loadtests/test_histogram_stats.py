"""`stats_from_histogram` (numpy over the counts array) gives hdrh's own figures exactly."""

from __future__ import annotations

import random

import pytest
from hdrh.histogram import HdrHistogram

from loadtests.recorder import LatencyStats, new_histogram, stats_from_histogram


def hdrh_stats(hist: HdrHistogram) -> LatencyStats:
    """The reference: hdrh's pure-Python figures, as the recorder computed them before."""

    def ms(value: float) -> float:
        return round(value / 1000.0, 4)

    return LatencyStats(
        count=int(hist.get_total_count()),
        mean=ms(hist.get_mean_value()),
        min=ms(hist.get_min_value()),
        max=ms(hist.get_max_value()),
        p50=ms(hist.get_value_at_percentile(50)),
        p90=ms(hist.get_value_at_percentile(90)),
        p95=ms(hist.get_value_at_percentile(95)),
        p99=ms(hist.get_value_at_percentile(99)),
        p999=ms(hist.get_value_at_percentile(99.9)),
    )


@pytest.mark.parametrize("seed", range(12))
def test_the_same_figures_as_hdrh(seed: int) -> None:
    rng = random.Random(seed)
    hist = new_histogram()
    n = rng.choice([1, 2, 3, 10, 999, 5000])
    for _ in range(n):
        shape = rng.random()
        if shape < 0.3:
            value = rng.randint(1, 50)  # sub-ms values in the first buckets
        elif shape < 0.9:
            value = int(rng.lognormvariate(11, 1.2))
        else:
            value = rng.randint(10**6, 3 * 10**9)  # seconds-long tails
        hist.record_value(max(1, value), rng.choice([1, 1, 1, 7]))
    assert stats_from_histogram(hist) == hdrh_stats(hist)


def test_one_value_and_an_empty_histogram() -> None:
    hist = new_histogram()
    assert stats_from_histogram(hist) == LatencyStats()
    hist.record_value(123_456)
    assert stats_from_histogram(hist) == hdrh_stats(hist)
    assert stats_from_histogram(hist).p50 == stats_from_histogram(hist).p999 > 123.0
