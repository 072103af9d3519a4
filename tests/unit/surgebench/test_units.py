from __future__ import annotations

import pytest

from surgebench.units import DurationError, format_duration_s, parse_duration_s


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("2m", 120.0), ("250ms", 0.25), ("1.5h", 5400.0), ("10", 10.0), (" 3s ", 3.0),
     (0, 0.0), (2.5, 2.5)],
)  # fmt: skip
def test_durations_in_every_unit(text: str | float, seconds: float) -> None:
    assert parse_duration_s(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "-1s", "1d", "1e3s", "s", "nan", True, -1.0])
def test_bad_durations_raise_and_say_what_is_allowed(text: object) -> None:
    with pytest.raises(DurationError, match="allowed: a number with an optional unit"):
        parse_duration_s(text)  # type: ignore[arg-type]


def test_format_reads_back() -> None:
    for seconds in (0.0, 0.5, 30.0, 125.25):
        assert parse_duration_s(format_duration_s(seconds)) == seconds
