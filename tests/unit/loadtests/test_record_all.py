"""`record_all_ns` (a stream's values in one loop) fills a histogram exactly as hdrh's
``record_value`` does, one value at a time, at both precisions the recorder uses."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loadtests.recorder import HIST_DIGITS, SERIES_DIGITS, _us, new_histogram, record_all_ns

VALUES_NS = st.lists(
    st.one_of(
        st.integers(min_value=-10_000, max_value=10_000),  # negatives and sub-microsecond
        st.integers(min_value=0, max_value=10**9),  # up to 1 s
        st.integers(min_value=0, max_value=10**16),  # beyond the histogram's highest value
    ),
    max_size=300,
)


@settings(max_examples=200)
@given(VALUES_NS, st.sampled_from([HIST_DIGITS, SERIES_DIGITS]))
def test_record_all_equals_one_record_value_per_value(values: list[int], digits: int) -> None:
    one_by_one, batched = new_histogram(digits), new_histogram(digits)
    batched.record_value(1234)  # existing min/max/count are kept
    one_by_one.record_value(1234)
    for value in values:
        one_by_one.record_value(_us(value))
    record_all_ns(batched, values)
    assert list(batched.counts) == list(one_by_one.counts)
    assert batched.get_total_count() == one_by_one.get_total_count()
    assert batched.get_min_value() == one_by_one.get_min_value()
    assert batched.get_max_value() == one_by_one.get_max_value()
    for q in (50, 99, 99.9):
        assert batched.get_value_at_percentile(q) == one_by_one.get_value_at_percentile(q)


@settings(max_examples=100)
@given(VALUES_NS, VALUES_NS, st.sampled_from([HIST_DIGITS, SERIES_DIGITS]))
def test_a_twin_gets_the_same_values_as_its_own_record_value_calls(
    before: list[int], values: list[int], digits: int
) -> None:
    """The twin (a phase's histogram) keeps its own earlier values, min and max."""
    main, twin, reference = new_histogram(digits), new_histogram(digits), new_histogram(digits)
    record_all_ns(main, [7_000_000_000])  # only in the main histogram
    for value in before:
        twin.record_value(_us(value))
        reference.record_value(_us(value))
    for value in values:
        reference.record_value(_us(value))
    record_all_ns(main, values, twin)
    assert list(twin.counts) == list(reference.counts)
    assert twin.get_total_count() == reference.get_total_count()
    assert twin.get_min_value() == reference.get_min_value()
    assert twin.get_max_value() == reference.get_max_value()
    assert main.get_total_count() == 1 + len(values)


def test_a_twin_of_another_layout_is_refused() -> None:
    with pytest.raises(ValueError, match="layout"):
        record_all_ns(new_histogram(HIST_DIGITS), [1_000_000], new_histogram(SERIES_DIGITS))
