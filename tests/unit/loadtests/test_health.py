"""The generator-health sampler: /proc parsing, per-second figures, the merge, the advice."""

from __future__ import annotations

from hdrh.histogram import HdrHistogram

from loadtests.health import (
    HealthSampler,
    merge_points,
    p99_of_new_counts,
    proc_stat_jiffies,
    psi_some_avg10,
    schedstat_wait_ns,
    series,
)
from loadtests.recorder import Recorder, RequestRecord
from loadtests.summary import GuardSettings, RunInfo, build_summary
from reports.plots import generator_health_figure
from reports.verdict import guard_advice, transient_invalid

STAT = "cpu  {u} 0 {s} {i} 0 0 0 {st} 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n"
PSI = (
    "some avg10=31.50 avg60=12.00 avg300=3.00 total=123\nfull avg10=0.00 avg60=0 avg300=0 total=0\n"
)


def test_proc_files_parse_and_bad_ones_give_none() -> None:
    assert schedstat_wait_ns("123 456 7\n") == 456
    assert schedstat_wait_ns("") is None and schedstat_wait_ns(None) is None
    assert proc_stat_jiffies(STAT.format(u=10, s=5, i=80, st=5)) == (20, 5, 100)
    assert proc_stat_jiffies("cpu  1 2\n") is None and proc_stat_jiffies(None) is None
    assert psi_some_avg10(PSI) == 31.5
    assert psi_some_avg10("some avg10=x\n") is None and psi_some_avg10(None) is None


def test_p99_counts_only_what_was_recorded_since_the_last_sample() -> None:
    hist = HdrHistogram(1, 60_000_000, 3)
    for _ in range(1000):
        hist.record_value(100_000)  # 100 ms, before
    first, counts = p99_of_new_counts(hist, None)
    assert first is not None and 99.9 <= first <= 100.1
    for _ in range(100):
        hist.record_value(2_000)  # 2 ms, this second
    second, counts = p99_of_new_counts(hist, counts)
    assert second is not None and 1.99 <= second <= 2.01
    assert p99_of_new_counts(hist, counts)[0] is None  # nothing new


class FakeProc:
    def __init__(self) -> None:
        self.files: dict[str, str] = {}

    def set(self, wait_ns: int, user: int, idle: int, steal: int = 0) -> None:
        self.files["/proc/self/schedstat"] = f"5 {wait_ns} 9\n"
        self.files["/proc/stat"] = STAT.format(u=user, s=0, i=idle, st=steal)
        self.files["/proc/pressure/cpu"] = PSI

    def read(self, path: str) -> str | None:
        return self.files.get(path)


def test_a_second_of_contention_is_measured() -> None:
    proc = FakeProc()
    proc.set(wait_ns=0, user=0, idle=0)
    sampler = HealthSampler(cpu_percent=lambda: 40.0, read=proc.read, cores=2)
    hist = HdrHistogram(1, 60_000_000, 3)
    hist.record_value(16_000)
    sampler.loop_lag(3.0)
    sampler.loop_lag(7.5)
    # in one second: waited 0.3 s on the run queue; the machine 90 % busy, 10 % of it steal
    proc.set(wait_ns=300_000_000, user=80, idle=10, steal=10)
    sampler.sample(1000, 1.0, hist)
    point = sampler.points[1000]
    assert point["runqueue_wait_percent"] == 30.0
    assert point["machine_busy_percent"] == 90.0 and point["steal_percent"] == 10.0
    assert point["psi_cpu_some_avg10"] == 31.5 and point["loop_lag_max_ms"] == 7.5
    assert point["client_lag_p99_ms"] is not None and 15.9 < point["client_lag_p99_ms"] < 16.1
    (derived,) = series(sampler.points, 998.4)
    assert derived["t_s"] == 2.0
    assert derived["others_cpu_percent"] == 70.0  # 90 % busy - 40 % of one of 2 cores
    assert sampler.drain() == {"1000": point} and sampler.points == {}


def test_client_and_read_lag_are_per_second_from_cumulative_histograms() -> None:
    proc = FakeProc()
    proc.set(wait_ns=0, user=0, idle=0)
    sampler = HealthSampler(cpu_percent=lambda: 10.0, read=proc.read, cores=2)
    lag, read = HdrHistogram(1, 60_000_000, 3), HdrHistogram(1, 60_000_000, 3)
    lag.record_value(2_000)
    read.record_value(40_000)
    sampler.sample(1, 1.0, lag, read)
    read.record_value(3_000)  # the next second: one new read only, and no new client lag
    sampler.sample(2, 1.0, lag, read)
    first, second = sampler.points[1], sampler.points[2]
    assert first["read_lag_p99_ms"] is not None and 39.9 < first["read_lag_p99_ms"] < 40.1
    assert second["read_lag_p99_ms"] is not None and 2.9 < second["read_lag_p99_ms"] < 3.1
    assert second["client_lag_p99_ms"] is None
    sampler.sample(3, 1.0, lag, None)  # no kernel timestamps: no read lag
    assert sampler.points[3]["read_lag_p99_ms"] is None


def test_the_master_merges_the_worst_process_and_sums_cpu() -> None:
    merged: dict[int, dict[str, float | None]] = {}
    merge_points(
        merged, {"5": {"cpu_percent": 30.0, "cpu_sum_percent": 30.0, "loop_lag_max_ms": 9.0}}
    )
    merge_points(
        merged, {"5": {"cpu_percent": 50.0, "cpu_sum_percent": 50.0, "loop_lag_max_ms": 2.0}}
    )
    assert merged[5] == {"cpu_percent": 50.0, "cpu_sum_percent": 80.0, "loop_lag_max_ms": 9.0}


def test_the_advice_names_the_cause() -> None:
    busy = {"runqueue_wait_mean_percent": 35.0, "others_cpu_mean_percent": 62.0,
            "cpu_mean_percent": 14.0, "cpu_max_percent": 20.0}  # fmt: skip
    cause, advice = guard_advice(busy, 1, 85.0)
    assert cause == "delayed"
    assert advice.startswith("the machine was busy: other processes took 62 % of the CPU")
    assert "waited for a CPU 35 % of the time" in advice and "quieter machine" in advice
    own = {"runqueue_wait_mean_percent": 1.0, "cpu_mean_percent": 95.0, "cpu_max_percent": 99.0}
    cause, advice = guard_advice(own, 1, 85.0)
    assert cause == "saturated" and advice.endswith("use --processes 2")
    assert guard_advice({**own, "cpu_mean_percent": 160.0}, 2, 85.0)[1].endswith("--processes 7")
    both = guard_advice({**busy, "cpu_mean_percent": 90.0}, 1, 85.0)[1]
    assert "the machine was busy" in both and "use --processes 2 on a quieter machine" in both
    assert "more --processes or fewer --users" in guard_advice({}, 1, 85.0)[1]
    # a --master run's processes are workers the user starts: the advice names them
    remote = guard_advice({**own, "cpu_mean_percent": 160.0}, 2, 85.0, remote_workers=True)[1]
    assert remote.endswith("--expect-workers 7") and "--processes" not in remote
    assert "--expect-workers" in guard_advice({}, 2, 85.0, remote_workers=True)[1]
    assert "more workers won't help" in guard_advice(busy, 2, 85.0, remote_workers=True)[1]


def test_a_lagging_run_on_a_busy_machine_says_so_and_stays_transient() -> None:
    recorder = Recorder()
    for _ in range(100):
        recorder.hist("client_lag_ms").record_value(20_000)  # 20 ms
    recorder.record_cpu(15.0)
    points = {
        100 + t: {"cpu_percent": 15.0, "cpu_sum_percent": 15.0, "runqueue_wait_percent": 40.0,
                  "machine_busy_percent": 95.0, "cores": 2.0, "client_lag_p99_ms": 20.0}
        for t in range(5)
    }  # fmt: skip
    info = RunInfo(name="r", started_at="t", start_epoch_s=100.0, duration_s=5.0)
    summary = build_summary(recorder, info, measured_s=5.0, guard=GuardSettings(), health=points)
    assert not summary.valid and transient_invalid(summary)
    (reason,) = summary.invalid_reasons
    assert reason.startswith("load generator delayed: client lag p99 20.0 ms > 5 ms")
    assert "the machine was busy: other processes took 88 % of the CPU" in reason
    assert summary.saturation["runqueue_wait_mean_percent"] == 40.0
    assert [p["t_s"] for p in summary.health] == [0.0, 1.0, 2.0, 3.0, 4.0]
    figure = generator_health_figure(summary)
    assert figure is not None and len(figure.axes) == 2
    assert generator_health_figure(build_summary(recorder, info, measured_s=5.0)) is None


def test_the_health_figure_draws_the_read_lag_and_its_limit() -> None:
    recorder = Recorder()
    recorder.record_request(
        RequestRecord(
            10**18, 10**18 + 10**9, "ok", first_token_ns=10**18 + 10**8, output_tokens=3,
            itl_ns=[20_000_000, 20_000_000], read_lag_ns=[1_000_000] * 3,
        )
    )  # fmt: skip
    points = {
        100 + t: {"cpu_percent": 15.0, "cpu_sum_percent": 15.0, "read_lag_p99_ms": 2.0}
        for t in range(3)
    }
    info = RunInfo(name="r", started_at="t", start_epoch_s=100.0, duration_s=3.0)
    summary = build_summary(recorder, info, measured_s=3.0, health=points)
    summary.config["max_loop_lag_ms"] = 5.0
    figure = generator_health_figure(summary)
    assert figure is not None
    labels = figure.axes[0].get_legend_handles_labels()[1]
    assert "read lag p99" in labels and "read lag limit 10 ms" in labels, labels
