"""One copy of each shared piece: the nearest-rank percentile, the HDR parameters, the outcome
groups; every user agrees with the one definition."""

from __future__ import annotations

import math
import random

import pytest

from loadtests import outcomes as oc
from loadtests.recorder import (
    Recorder,
    RequestRecord,
    decode_histogram,
    new_histogram,
    stats_from_histogram,
)
from reports.hdr import encode_samples_ms, from_samples_ms
from reports.metrics import METRICS, PERCENTILES
from reports.render import SUMMARY_ROWS
from reports.results import (
    ERROR_OUTCOMES,
    HDR_HIGHEST_US,
    HDR_LOWEST_US,
    HDR_SIGNIFICANT_FIGURES,
    OTHER_ERROR_OUTCOMES,
    OUTCOMES,
    LatencyStats,
    Summary,
)
from surgebench.percentiles import nearest_rank, percentile

MS = 1_000_000
T0 = 1_800_000_000 * 1_000_000_000


def test_nearest_rank_is_exact_for_decimal_percentiles() -> None:
    """p99.9 of 1,000 values is the 999th: 99.9 / 100 x 1000 is 999.0000000000001 in floats,
    and the copies this replaced returned the largest value instead."""
    values = [float(v) for v in range(1, 1001)]
    assert nearest_rank(99.9, 1000) == 999
    assert percentile(values, 99.9) == 999.0
    assert LatencyStats.from_values(values).p999 == 999.0
    assert from_samples_ms(values).percentile(99.9) == 999.0


@pytest.mark.parametrize(
    ("q", "n", "rank"),
    [(50, 1, 1), (0, 10, 1), (50, 10, 5), (50, 11, 6), (90, 10, 9), (99, 100, 99), (100, 7, 7)],
)
def test_nearest_rank_table(q: float, n: int, rank: int) -> None:
    assert nearest_rank(q, n) == rank


def test_nearest_rank_refuses_nonsense() -> None:
    for q, n in ((50, 0), (-1, 5), (100.5, 5), (math.nan, 5)):
        with pytest.raises(ValueError):
            nearest_rank(q, n)
    assert math.isnan(percentile([], 50))


def test_every_percentile_user_agrees_on_random_samples() -> None:
    rng = random.Random(5)
    for n in (1, 2, 3, 10, 999, 1000, 1001, 4321):
        values = [round(rng.lognormvariate(4, 1), 3) for _ in range(n)]
        exact = LatencyStats.from_values(values)
        dist = from_samples_ms(values)
        for name, q in PERCENTILES.items():
            expected = percentile(values, q)
            assert getattr(exact, name) == expected, (n, name)
            assert dist.percentile(q) == expected, (n, name)


def test_one_set_of_hdr_parameters() -> None:
    assert (HDR_LOWEST_US, HDR_HIGHEST_US, HDR_SIGNIFICANT_FIGURES) == (1, 3_600_000_000, 3)
    recorder_hist = new_histogram()
    report_hist = decode_histogram(encode_samples_ms([1.0, 2.5, 40.0]))
    for hist in (recorder_hist, report_hist):
        assert hist.lowest_trackable_value == HDR_LOWEST_US
        assert hist.highest_trackable_value == HDR_HIGHEST_US
        assert hist.significant_figures == HDR_SIGNIFICANT_FIGURES
    assert stats_from_histogram(report_hist).count == 3


def test_outcome_groups_partition_the_failures() -> None:
    assert set(ERROR_OUTCOMES) <= set(OUTCOMES)
    assert set(OTHER_ERROR_OUTCOMES) == set(ERROR_OUTCOMES) - {"timeout"}
    assert not {"ok", "rejected", "cancelled"} & set(ERROR_OUTCOMES)


def record(outcome: str, i: int) -> RequestRecord:
    return RequestRecord(start_ns=T0 + i * MS, end_ns=T0 + (i + 1) * MS, outcome=outcome)


def test_every_errors_count_means_the_same_outcomes() -> None:
    """A cancelled request used to count as an error in each second of the time series (and so
    in the console's `errors=`), while the report and the gate left it out."""
    rec = Recorder()
    mix = [oc.OK, oc.REJECTED, oc.TIMEOUT, oc.UPSTREAM_ERROR, oc.CLIENT_ERROR, oc.CANCELLED]
    mix += [oc.ERROR, oc.CANCELLED]
    for i, outcome in enumerate(mix):
        rec.record_request(record(outcome, i))
    (point,) = rec.to_dict()["series"].values()
    assert (point["timeout"], point["errors"]) == (1, 3)  # no cancellation among the errors
    assert point["timeout"] + point["errors"] == sum(o in ERROR_OUTCOMES for o in mix)

    outcomes = dict.fromkeys(OUTCOMES, 0)
    for outcome in mix:
        outcomes[outcome] += 1
    summary = Summary(name="x", started_at="", duration_s=10.0, measured_s=10.0, outcomes=outcomes)
    assert summary.requests == len(mix)
    assert METRICS["errors"].read(summary) == pytest.approx(4 / len(mix))  # with the timeout
    row = dict(SUMMARY_ROWS)["errors"](summary)
    assert row == "3"  # beside its own timeout row
