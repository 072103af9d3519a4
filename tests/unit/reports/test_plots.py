"""Figures that cannot mislead: aliasing-free rates, readable log ticks, phases, server panel."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from reports.hdr import encode_samples_ms
from reports.plots import (
    _binned,
    latency_cdf_figure,
    latency_over_time_figure,
    outcomes_over_time_figure,
    rate_bins,
    server_timeline_figure,
    throughput_over_time_figure,
    ttft_breakdown_figure,
)
from reports.results import LatencyStats, Phase, Summary, TimePoint
from reports.servermetrics import ServerSeries
from tests.unit.reports.synthetic import RunSpec, make_summary


def closed_loop_in_step(users: int = 8, request_s: float = 0.9, seconds: int = 60) -> Summary:
    """`users` closed-loop users in step, each finishing a request every `request_s`: the
    completions per 1 s bin alternate (8, 8, ..., 16), the sawtooth of the issue."""
    ends = np.arange(1, int(seconds / request_s) + 1) * request_s
    per_second = np.bincount(np.floor(ends).astype(int), minlength=seconds)[:seconds] * users
    points = [
        TimePoint(t_s=float(t), users=users, requests=int(n), ok=int(n), output_tokens=int(n) * 40)
        for t, n in enumerate(per_second)
    ]
    summary = make_summary(RunSpec(users=users, duration_s=seconds))
    e2e = LatencyStats.from_values([request_s * 1000.0] * 10)
    return replace(summary, timeseries=points, latency={**summary.latency, "e2e_ms": e2e})


def _window_rates(summary: Summary, width_s: int) -> np.ndarray:
    ok = np.asarray([p.ok for p in summary.timeseries], dtype=float)
    whole = len(ok) // width_s * width_s  # whole windows only
    return np.add.reduceat(ok[:whole], np.arange(0, whole, width_s)) / width_s


@pytest.mark.parametrize(
    ("request_s", "width_s", "note"),
    [
        (0.9, 9, "mean over 9 s windows of 10.0 request cycles (~0.9 s each)"),
        (0.89, 8, "mean over 8 s windows of 9.0 request cycles (~0.89 s each)"),
    ],
)  # fmt: skip
def test_rates_are_counted_over_windows_that_hold_whole_request_cycles(
    request_s: float, width_s: int, note: str
) -> None:
    """8 users in step, a request every 0.89 s: 5 s windows held 5 or 6 requests a user (40 vs
    48, +-10 %); a window of whole request cycles holds the same number every time."""
    summary = closed_loop_in_step(request_s=request_s)
    ok = np.asarray([p.ok for p in summary.timeseries], dtype=float)
    assert ok.max() / ok.min() >= 1.9  # the 1 s sawtooth: 8 vs 16 per second
    five = _window_rates(summary, 5)[1:]
    assert five.max() / five.min() >= 1.15  # the ripple of the report
    bins = rate_bins(summary)
    assert bins.width_s == width_s and bins.axis_note() == note
    rates = _window_rates(summary, bins.width_s)[1:]  # the first holds the start: one cycle less
    assert rates.max() / rates.min() <= 1.0 + 1e-9  # flat
    assert rates.mean() == pytest.approx(8 / request_s, rel=0.02)
    figure = throughput_over_time_figure(summary)
    assert figure is not None
    assert f"mean over {width_s} s windows" in figure.get_suptitle()  # type: ignore[attr-defined]
    labels = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert labels == ["ok/s"]  # rejected, timeout and errors are absent: no hidden zero lines


@pytest.mark.parametrize("seconds", range(50, 62))
def test_the_last_window_is_never_a_few_seconds_of_aliasing(seconds: int) -> None:
    """A run whose length is not a whole number of windows used to end with a window of 1 to
    7 s: with users in step, 1 s holds 8 or 16 completions, a spike at the end of the plot that
    is not in the service. A last window under half the width joins the one before it."""
    summary = closed_loop_in_step(request_s=0.89, seconds=seconds)
    bins = rate_bins(summary)
    ok = bins.rate(_binned(summary, bins, [p.ok for p in summary.timeseries]))
    assert bins.widths_s[-1] >= bins.width_s / 2
    assert bins.starts_s[-1] + bins.widths_s[-1] == seconds  # every second is in a window
    assert ok[1:] == pytest.approx(8 / 0.89, rel=0.15)  # the first holds the start


def test_short_requests_keep_one_second_bins_and_long_ones_keep_eight_windows() -> None:
    fast = closed_loop_in_step(request_s=0.1)
    assert rate_bins(fast).width_s == 1 and rate_bins(fast).axis_note() == "per 1 s"
    slow = closed_loop_in_step(request_s=30.0, seconds=60)
    assert rate_bins(slow).width_s == 60 // 6


def _x_ticks_in_view(summary: Summary, panel: int) -> list[float]:
    figure = latency_cdf_figure([summary])
    assert figure is not None
    figure.canvas.draw()  # type: ignore[attr-defined]
    ax = figure.axes[panel]
    low, high = ax.get_xlim()
    return [t for t in ax.get_xticks() if low <= t <= high]


@pytest.mark.parametrize(
    ("low_ms", "high_ms", "scale"), [(850, 1000, "linear"), (90, 1100, "log"), (0.05, 400, "log")]
)
def test_cdf_axes_have_at_least_three_readable_ticks(
    low_ms: float, high_ms: float, scale: str
) -> None:
    samples = np.geomspace(low_ms, high_ms, 500)
    summary = replace(make_summary(RunSpec()), histograms={"e2e_ms": encode_samples_ms(samples)})
    ticks = _x_ticks_in_view(summary, 0)
    assert len(ticks) >= 3, ticks
    figure = latency_cdf_figure([summary])
    assert figure is not None and figure.axes[0].get_xscale() == scale


def test_phases_are_named_on_every_time_plot_and_servers_get_their_panel() -> None:
    summary = closed_loop_in_step()
    phases = [
        Phase(index=0, kind="before_spike", label="8 users", start_s=0, end_s=25),
        Phase(index=1, kind="spike", label="spike to 24 users", start_s=25, end_s=40),
        Phase(index=2, kind="after_spike", label="back to 8 users", start_s=40, end_s=60),
    ]
    summary = replace(summary, phases=phases)
    assert server_timeline_figure(summary, {}) is None
    series = ServerSeries(
        times_s=[float(t) for t in range(60)],
        values=[
            {"surge_service_in_flight": 8.0, "surge_service_queue_depth": t % 3} for t in range(60)
        ],
    )
    kv = ServerSeries(
        times_s=[0.0, 1.0],
        values=[{"vllm:kv_cache_usage_perc": 0.25}, {"vllm:kv_cache_usage_perc": 0.5}],
    )
    figure = server_timeline_figure(summary, {"service": series, "upstream": kv})
    assert figure is not None
    ylabels = [ax.get_ylabel() for ax in figure.axes if ax.get_ylabel()]
    assert ylabels == [
        "client TTFT (ms)",
        "client\nrejections/s",
        "slots and queue",
        "KV-cache usage (%)",
    ]
    (kv_line,) = [x for x in figure.axes[3].get_lines() if "KV" in str(x.get_label())]
    assert list(kv_line.get_ydata()) == [25.0, 50.0]  # vLLM's fraction shown as a percentage
    for make in (throughput_over_time_figure, outcomes_over_time_figure, latency_over_time_figure):
        fig = make(summary)
        assert fig is not None
        fig.canvas.draw()  # type: ignore[attr-defined]
        tops = [child for ax in fig.axes for child in ax.child_axes]  # the phase-name axes
        top_labels = [t.get_text() for top in tops for t in top.get_xticklabels()]
        assert top_labels == ["8 users", "spike to 24 users", "back to 8 users"], make
    fig = server_timeline_figure(summary, {"service": series})
    assert fig is not None


def test_ttft_breakdown_labels_say_what_was_measured() -> None:
    """0.004 ms is 4 us (not "0.00 ms"); a part reported as 0 (under the service's 1 us
    resolution) is "< 1 us"; a part one run lacks is "n/a", not a zero."""
    base = make_summary(RunSpec())
    parts = {
        "queue_wait": LatencyStats.from_values([0.0] * 5),
        "relay_overhead": LatencyStats.from_values([0.004] * 5),
        "upstream_ttft": LatencyStats.from_values([102.0] * 5),
    }
    one = replace(base, name="one", breakdown_ms=parts)
    other = replace(base, name="other", breakdown_ms={"upstream_ttft": parts["upstream_ttft"]})
    figure = ttft_breakdown_figure([one, other])
    assert figure is not None
    labels = [text.get_text() for text in figure.axes[0].texts]
    assert "0.00 ms" not in labels
    assert labels.count("< 1 us") == 2 and labels.count("4 us") == 2  # p50 and p95 of "one"
    assert labels.count("n/a") == 4 and labels.count("102 ms") == 4  # "other" lacks two parts


def test_cdf_quantile_lines_are_drawn_dark_and_named() -> None:
    figure = latency_cdf_figure([make_summary(RunSpec())])
    assert figure is not None
    for ax in figure.axes:
        dotted = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
        assert sorted(line.get_ydata()[0] for line in dotted) == [0.5, 0.95, 0.99]
        assert all(float(line.get_color()) <= 0.3 for line in dotted)  # dark grey, not 0.7
        assert [t.get_text() for t in ax.texts] == ["p50", "p95", "p99"]


def test_server_gauges_with_labels_are_combined_not_lost() -> None:
    """A real vLLM labels its gauges (`model_name`, `engine`) and a server run with
    `--processes N` labels them by `replica`: the plotted series is the sum of the counts over
    the label sets and the mean of the cache percentages (the plain name only, before: the
    panels were missing against vLLM and against replicas)."""
    upstream = ServerSeries(
        times_s=[0.0, 1.0],
        values=[
            {
                'vllm:num_requests_running{engine="0",model_name="m"}': 3.0,
                'vllm:num_requests_running{engine="1",model_name="m"}': 4.0,
                'vllm:kv_cache_usage_perc{engine="0",model_name="m"}': 0.2,
                'vllm:kv_cache_usage_perc{engine="1",model_name="m"}': 0.4,
                "vllm:num_requests_running_total": 99.0,  # another metric sharing the prefix
            },
            {'vllm:num_requests_running{engine="0",model_name="m"}': 5.0},
        ],
    )
    assert upstream.series("vllm:num_requests_running") == ([0.0, 1.0], [7.0, 5.0])
    assert upstream.series("vllm:kv_cache_usage_perc", "mean") == ([0.0], [pytest.approx(0.3)])
    with pytest.raises(ValueError, match="combine 'max'"):
        upstream.series("vllm:kv_cache_usage_perc", "max")
    service = ServerSeries(
        times_s=[0.0],
        values=[
            {
                'surge_service_in_flight{replica="0"}': 2.0,
                'surge_service_in_flight{replica="1"}': 6.0,
            }
        ],
    )
    figure = server_timeline_figure(
        closed_loop_in_step(), {"service": service, "upstream": upstream}
    )
    assert figure is not None
    ylabels = [ax.get_ylabel() for ax in figure.axes if ax.get_ylabel()]
    assert ylabels[2:] == ["slots and queue", "sequences", "KV-cache usage (%)"]
    (slots,) = [x for x in figure.axes[2].get_lines() if "slot" in str(x.get_label())]
    assert list(slots.get_ydata()) == [8.0]
    (kv_line,) = [x for x in figure.axes[4].get_lines() if "KV" in str(x.get_label())]
    assert list(kv_line.get_ydata()) == [pytest.approx(30.0)]
