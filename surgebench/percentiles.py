"""The nearest-rank percentile, defined once for reports, loadtests, the mock's probe and tests.

The q-th percentile (q in 0-100) of n ordered values is the value of rank ceil(q / 100 x n)
(1-based, at least 1): always one of the values, never an interpolation, so a p99 of latencies is a
latency that happened. q is taken as the decimal it is written as (99.9 is 999/10), so binary
rounding never moves a rank: p99.9 of 1,000 values is the 999th, not the largest.

Neutral on purpose (standard library only): the mock may not import `reports`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from fractions import Fraction


def nearest_rank(q: float, n: int) -> int:
    """1-based rank of the q-th percentile among `n` >= 1 ordered values."""
    if n < 1:
        raise ValueError(f"nearest_rank of {n} values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q!r} outside 0..100")
    return min(n, max(1, math.ceil(Fraction(str(q)) * n / 100)))


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th nearest-rank percentile of `values` (any order); NaN when there are none."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[nearest_rank(q, len(ordered)) - 1]
