"""The live progress line describes the last window, not the run so far."""

from __future__ import annotations

from loadtests.progress import progress_line
from loadtests.recorder import SERIES_DIGITS, _Second, new_histogram


def second(
    ok: int = 0, rejected: int = 0, timeout: int = 0, ttft_ms: float | None = None
) -> _Second:
    point = _Second()
    point.ok, point.rejected, point.timeout = ok, rejected, timeout
    if ttft_ms is not None:
        point.ttft = new_histogram(SERIES_DIGITS)
        for _ in range(ok):
            point.ttft.record_value(int(ttft_ms * 1000))
    return point


def test_window_only_ok_and_rejected_apart_totals_for_context() -> None:
    seconds = {
        100: second(ok=10, rejected=30, ttft_ms=1000.0),  # the spike, long gone
        101: second(ok=10, rejected=30, ttft_ms=1000.0),
        110: second(ok=8, ttft_ms=100.0),  # the last 5 s: 110..114
        112: second(ok=12, timeout=1, ttft_ms=120.0),
        115: second(ok=99, ttft_ms=5000.0),  # the current second: not complete, not shown
    }
    line = progress_line(seconds, now_s=115, window_s=5.0, elapsed_s=45.2, users=8)
    assert line == (
        "[surgebench] t=   45s users=   8 ok/s=   4.0 rejected/s=   0.0 "
        "ttft p50/p95 (last 5s)=120/120 ms | total rejected=60 failed=1"
    )


def test_an_empty_window_says_so() -> None:
    line = progress_line({}, now_s=10, window_s=2.0, elapsed_s=10.0, users=0)
    assert "ok/s=   0.0 rejected/s=   0.0 ttft p50/p95 (last 2s)=-/- ms" in line


def test_the_totals_stop_where_the_window_stops() -> None:
    """The second still running is in neither: a line never says `rejected/s=0.0` beside a total
    that already counts this second's rejections (seen at the start of make run's spike)."""
    seconds = {110: second(ok=8), 115: second(ok=1, rejected=8, timeout=2)}
    line = progress_line(seconds, now_s=115, window_s=5.0, elapsed_s=25.0, users=24)
    assert line.endswith(
        "rejected/s=   0.0 ttft p50/p95 (last 5s)=-/- ms | total rejected=0 failed=0"
    )
