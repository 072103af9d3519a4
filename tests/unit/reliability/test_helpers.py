"""The pure parts of the reliability helpers that the benchmarks' figures rest on."""

from __future__ import annotations

from surgebench.percentiles import percentile
from tests.integration.reliability.load import LoadReport, Result
from tests.integration.reliability.sampling import Sample, Sampler, gauge


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([3.0, 1.0, 2.0], 0) == 1.0


def test_report_sorts_results_by_how_they_ended() -> None:
    report = LoadReport(
        results=[
            Result(status=503, error_type="overloaded"),
            Result(status=429),
            Result(status=200, last_event="done"),
            Result(status=200, last_event="error", error_type="timeout"),
        ]
    )
    assert len(report.by("rejected")) == 2
    assert len(report.by("done")) == 1
    assert [r.error_type for r in report.by("error")] == ["timeout"]


def test_gauge_reads_one_sample_and_nan_when_absent() -> None:
    text = "# HELP x\nsurge_service_in_flight 3.0\nsurge_service_in_flight_other 9\n"
    assert gauge(text, "surge_service_in_flight") == 3.0
    assert gauge(text, "surge_service_queue_depth") != gauge(text, "surge_service_queue_depth")


def test_drained_at_is_the_start_of_the_final_all_zero_run() -> None:
    sampler = Sampler.__new__(Sampler)  # no thread: only the samples matter here
    sampler.samples = [
        Sample(0.0, 1, 1, 4, 2),
        Sample(1.0, 1, 1, 0, 0),  # zero, but not for good
        Sample(2.0, 1, 1, 1, 0),
        Sample(3.0, 1, 1, 0, 0),
        Sample(4.0, 1, 1, 0, 0),
    ]
    assert sampler.drained_at_s(0.5) == 3.0
    assert sampler.drained_at_s(3.5) == 4.0
    sampler.samples.append(Sample(5.0, 1, 1, 0, 1))
    assert sampler.drained_at_s(0.0) is None
