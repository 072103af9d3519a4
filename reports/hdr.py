"""Latency distributions from the HDR histograms stored in ``summary.json``.

``summary.histograms[metric]`` is the base64 ``encode()`` of an HDR histogram of microseconds with
the parameters `reports.results.HDR_*`. A `Distribution` keeps the recorded buckets as (value in
ms, count) arrays, so statistics and resampling work on counts and never expand millions of
samples.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from hdrh.histogram import HdrHistogram

from reports.metrics import PERCENTILES
from reports.results import (
    HDR_HIGHEST_US,
    HDR_LOWEST_US,
    HDR_SIGNIFICANT_FIGURES,
    ResultsError,
    Summary,
)
from surgebench.percentiles import nearest_rank


@dataclass(frozen=True)
class Distribution:
    """Recorded values (ms, ascending, unique) and how many samples fell on each."""

    values_ms: np.ndarray
    counts: np.ndarray

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def percentile(self, q: float) -> float | None:
        """Nearest-rank percentile `q` (0-100), or None when empty."""
        total = self.total
        if total == 0:
            return None
        rank = nearest_rank(q, total)
        index = int(np.searchsorted(np.cumsum(self.counts), rank, side="left"))
        return float(self.values_ms[min(index, len(self.values_ms) - 1)])

    def mean(self) -> float | None:
        total = self.total
        return float(np.dot(self.values_ms, self.counts) / total) if total else None

    def stat(self, name: str) -> float | None:
        """``p50``..``p999``, ``mean`` or ``max``."""
        if name == "mean":
            return self.mean()
        if name == "max":
            return float(self.values_ms[-1]) if self.total else None
        return self.percentile(PERCENTILES[name])

    def cdf(self) -> tuple[np.ndarray, np.ndarray]:
        """(values in ms, cumulative fraction) for plotting."""
        total = self.total
        if total == 0:
            return np.array([]), np.array([])
        return self.values_ms, np.cumsum(self.counts) / total


def from_samples_ms(samples: Iterable[float]) -> Distribution:
    """A distribution of raw samples in ms (exact values; tests and synthetic data)."""
    array = np.asarray(list(samples), dtype=float)
    values, counts = np.unique(array, return_counts=True)
    return Distribution(values.astype(float), counts.astype(np.int64))


def encode_samples_ms(samples: Iterable[float]) -> str:
    """Encode samples (ms) the way the runner does: HDR histogram of microseconds, base64."""
    histogram = HdrHistogram(HDR_LOWEST_US, HDR_HIGHEST_US, HDR_SIGNIFICANT_FIGURES)
    micros = np.clip(
        np.rint(np.asarray(list(samples), dtype=float) * 1000.0), HDR_LOWEST_US, HDR_HIGHEST_US
    )
    values, counts = np.unique(micros.astype(np.int64), return_counts=True)
    for value, count in zip(values.tolist(), counts.tolist(), strict=True):
        histogram.record_value(value, count)
    encoded = histogram.encode()
    return encoded.decode("ascii") if isinstance(encoded, bytes) else str(encoded)


def decode(encoded: str, *, source: str = "histogram") -> Distribution:
    """Decode one base64 HDR histogram (microseconds) into a `Distribution` in ms."""
    try:
        histogram = HdrHistogram.decode(encoded)
    except Exception as exc:  # hdrh raises bare Exceptions and zlib/base64 errors
        raise ResultsError(f"{source}: not a valid HDR histogram ({exc})") from exc
    return _recorded_buckets(histogram)


def _recorded_buckets(histogram: HdrHistogram) -> Distribution:
    """Non-empty buckets straight from the counts array (the iterator is 100x slower)."""
    counts_len = min(histogram.counts_len, histogram.encoder.payload.counts_len)
    raw = np.ctypeslib.as_array(histogram.counts)[:counts_len].astype(np.int64)
    indices = np.flatnonzero(raw)
    values = [
        histogram.get_highest_equivalent_value(histogram.get_value_from_index(int(i))) / 1000.0
        for i in indices
    ]
    return Distribution(np.asarray(values, dtype=float), raw[indices])


def decode_by_iteration(encoded: str) -> Distribution:
    """The slow reference decoder (hdrh's recorded iterator), kept to test the fast one."""
    histogram = HdrHistogram.decode(encoded)
    values: list[float] = []
    counts: list[int] = []
    for item in histogram.get_recorded_iterator():
        values.append(item.value_iterated_to / 1000.0)
        counts.append(item.count_added_in_this_iter_step)
    return Distribution(np.asarray(values, dtype=float), np.asarray(counts, dtype=np.int64))


def merge(distributions: Sequence[Distribution]) -> Distribution:
    """The pooled distribution of several runs (histograms add)."""
    if not distributions:
        return Distribution(np.array([], dtype=float), np.array([], dtype=np.int64))
    values = np.concatenate([d.values_ms for d in distributions])
    counts = np.concatenate([d.counts for d in distributions])
    unique, inverse = np.unique(values, return_inverse=True)
    summed = np.zeros(len(unique), dtype=np.int64)
    np.add.at(summed, inverse, counts)
    return Distribution(unique, summed)


def distribution_of(summaries: Sequence[Summary], field: str) -> Distribution | None:
    """The pooled distribution of `field` (``ttft_ms``...) over runs, or None if any lacks it."""
    parts: list[Distribution] = []
    for summary in summaries:
        encoded = summary.histograms.get(field)
        if not encoded:
            return None
        parts.append(decode(encoded, source=f"{summary.name}: histograms.{field}"))
    merged = merge(parts)
    return merged if merged.total else None
