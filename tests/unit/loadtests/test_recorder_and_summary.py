from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram

from loadtests import outcomes as oc
from loadtests.recorder import Recorder, RequestRecord, Slo
from loadtests.settings import config_document, parse_run_args
from loadtests.summary import GuardSettings, RunInfo, Window, build_summary, summarize
from reports.results import read_summary, write_summary

MS = 1_000_000
T0 = 1_800_000_000 * 1_000_000_000  # an epoch instant in ns


def random_records(n: int, seed: int = 7) -> list[RequestRecord]:
    rng = random.Random(seed)
    records = []
    for i in range(n):
        start = T0 + i * 37 * MS
        outcome = rng.choice([oc.OK] * 6 + [oc.REJECTED, oc.TIMEOUT, oc.UPSTREAM_ERROR])
        if outcome == oc.OK:
            ttft = rng.randint(80, 400) * MS
            gaps = [rng.randint(15, 40) * MS for _ in range(rng.randint(0, 30))]
            records.append(
                RequestRecord(
                    start_ns=start,
                    end_ns=start + ttft + sum(gaps),
                    outcome=outcome,
                    intended_ns=start - rng.randint(0, 5) * MS,
                    thinking_ns=start + 2 * MS,
                    first_token_ns=start + ttft,
                    output_tokens=len(gaps) + 1,
                    itl_ns=gaps,
                    client_lag_ns=[rng.randint(0, 3000) * 1000 for _ in gaps],
                    first_token_lag_ns=rng.randint(0, 2000) * 1000,
                    timings_ms={"queue_wait": rng.random() * 50, "upstream_ttft": 100.0},
                )
            )
        else:
            records.append(RequestRecord(start, start + 3 * MS, outcome, error="x"))
    return records


def test_merged_deltas_equal_one_recorder_exactly() -> None:
    records = random_records(400)
    whole = Recorder(slo=Slo(ttft_ms=300))
    for r in records:
        whole.record_request(r)
    workers = [Recorder(slo=Slo(ttft_ms=300)) for _ in range(3)]
    master = Recorder(slo=Slo(ttft_ms=300))
    for i, r in enumerate(records):
        workers[i % 3].record_request(r)
        if i % 50 == 49:  # periodic delta reports, as report_to_master sends them
            master.merge_dict(workers[i % 3].drain())
    for w in workers:
        master.merge_dict(w.drain())
        assert w.drain()["outcomes"] == dict.fromkeys(w.outcomes, 0)  # drained
    assert master.outcomes == whole.outcomes
    assert master.output_tokens == whole.output_tokens
    assert master.good == whole.good
    assert set(master.hists) == set(whole.hists)
    for name, hist in whole.hists.items():
        merged = master.hists[name]
        assert merged.get_total_count() == hist.get_total_count(), name
        for q in (50, 90, 99, 99.9):
            assert merged.get_value_at_percentile(q) == hist.get_value_at_percentile(q), name
    assert whole.to_dict()["series"] == {k: v for k, v in master.to_dict()["series"].items()}
    assert master.first_ns == whole.first_ns and master.last_ns == whole.last_ns


def test_warmup_requests_count_in_the_series_only() -> None:
    rec = Recorder(measure_from_ns=T0 + 10 * MS)
    rec.record_request(RequestRecord(T0, T0 + 5 * MS, oc.OK, first_token_ns=T0 + 1 * MS))
    rec.record_request(RequestRecord(T0 + 20 * MS, T0 + 30 * MS, oc.REJECTED))
    assert rec.outcomes[oc.OK] == 0 and rec.outcomes[oc.REJECTED] == 1
    assert "ttft_ms" not in rec.hists
    assert rec.stats("rejected_ms").count == 1
    assert sum(s.requests for s in rec.seconds.values()) == 2


def test_tpot_goodput_and_latency_values() -> None:
    rec = Recorder(slo=Slo(ttft_ms=150, tpot_ms=25))
    # ttft 100 ms, 5 tokens, e2e 180 ms -> tpot (180-100)/4 = 20 ms: good
    rec.record_request(
        RequestRecord(
            T0,
            T0 + 180 * MS,
            oc.OK,
            first_token_ns=T0 + 100 * MS,
            output_tokens=5,
            itl_ns=[20 * MS] * 4,
        )
    )
    # ttft 200 ms: not good
    rec.record_request(
        RequestRecord(
            T0,
            T0 + 300 * MS,
            oc.OK,
            first_token_ns=T0 + 200 * MS,
            output_tokens=2,
            itl_ns=[100 * MS],
        )
    )
    assert rec.good == 1
    tpot = rec.stats("tpot_ms")
    assert tpot.count == 2 and abs(tpot.min - 20) < 0.05 and abs(tpot.max - 100) < 0.1
    ttft = rec.stats("ttft_ms")
    assert abs(ttft.p50 - 100) < 0.1 and abs(ttft.max - 200) < 0.2
    assert rec.stats("itl_ms").count == 5


def run_info(**kw: object) -> RunInfo:
    base: dict[str, object] = dict(
        name="t",
        started_at="2027-01-15T08:00:00Z",
        start_epoch_s=T0 / 1e9,
        duration_s=20.0,
        warmup_s=2.0,
        target="http://x",
        processes=1,
        workers_reported=1,
    )
    base.update(kw)
    return RunInfo(**base)  # type: ignore[arg-type]


def test_summary_round_trips_and_histograms_decode(tmp_path: Path) -> None:
    rec = Recorder()
    for r in random_records(200):
        rec.record_request(r)
    rec.record_users(T0 // 1_000_000_000, 10)
    rec.record_cpu(20.0)
    rec.record_loop_lag_ns(200_000)
    summary = build_summary(rec, run_info(), measured_s=18.0)
    assert summary.valid, summary.invalid_reasons
    path = write_summary(tmp_path, summary)
    back = read_summary(path)
    assert back.outcomes == rec.outcomes
    assert back.requests == 200
    assert back.metric("ttft_ms").p99 == rec.stats("ttft_ms").p99
    hist = HdrHistogram.decode(back.histograms["ttft_ms"].encode("ascii"))
    assert hist.get_total_count() == rec.outcomes[oc.OK]
    assert set(back.breakdown_ms) == {"queue_wait", "upstream_ttft", "client_lag"}
    # one point per second, consecutive
    ts = [p.t_s for p in back.timeseries]
    assert ts == [ts[0] + i for i in range(len(ts))]
    assert sum(p.requests for p in back.timeseries) == 200
    assert back.timeseries[0].users == 10
    assert back.saturation["cpu_max_percent"] == 20.0


def test_saturation_guard_marks_the_run_invalid_with_advice() -> None:
    rec = Recorder()
    rec.record_request(
        RequestRecord(
            T0, T0 + 9 * MS, oc.OK, first_token_ns=T0 + 5 * MS, client_lag_ns=[12 * MS] * 10
        )
    )
    rec.record_cpu(97.0)
    rec.count_open_loop("intended", 100)
    rec.count_open_loop("dropped", 3)
    summary = build_summary(
        rec, run_info(processes=2, workers_reported=1), measured_s=1.0, guard=GuardSettings()
    )
    assert not summary.valid
    text = " | ".join(summary.invalid_reasons)
    assert "client lag p99" in text and "--processes" in text
    assert "CPU" in text and "1 of 2 load processes" in text and "3 of 100 arrivals" in text
    assert summary.open_loop == {"intended": 100, "sent": 0, "late": 0, "dropped": 3}


def with_reads(itl_ms: float, read_lag_ms: float, loop_lag_ms: float) -> Recorder:
    """A recorder of one stream read with kernel timestamps (read lags) and a loop lag."""
    rec = Recorder()
    itl = [int(itl_ms * MS)] * 20
    rec.record_request(
        RequestRecord(
            T0, T0 + 500 * MS, oc.OK, first_token_ns=T0 + 5 * MS, output_tokens=21,
            itl_ns=itl, read_lag_ns=[int(read_lag_ms * MS)] * 21,
        )
    )  # fmt: skip
    rec.record_loop_lag_ns(int(loop_lag_ms * MS))
    return rec


def test_with_kernel_timestamps_the_guard_judges_read_lag_against_the_token_gaps() -> None:
    """Read 8 ms late with 20 ms between tokens: no token waits for a read past the next one,
    so the times are right although the loop lagged 8 ms (the loop-lag limit is for read-time
    timestamps). 12 ms late at 20 ms ITL is past half the gap; at 8 ms ITL the floor is the
    event-loop limit (5 ms)."""

    def reasons(rec: Recorder) -> list[str]:
        return build_summary(rec, run_info(), measured_s=1.0, guard=GuardSettings()).invalid_reasons

    assert reasons(with_reads(itl_ms=20, read_lag_ms=8, loop_lag_ms=8)) == []
    (late,) = reasons(with_reads(itl_ms=20, read_lag_ms=12, loop_lag_ms=8))
    assert "read lag p99 12.0 ms > 10 ms (half the median ITL" in late
    (fast,) = reasons(with_reads(itl_ms=8, read_lag_ms=8, loop_lag_ms=8))
    assert "read lag p99 8.0 ms > 5 ms (--max-loop-lag-ms" in fast
    read_time_only = Recorder()  # no read lag recorded: the event-loop limit as before
    read_time_only.record_loop_lag_ns(8 * MS)
    (loop,) = reasons(read_time_only)
    assert "event-loop lag p99 8.0 ms > 5 ms" in loop


def test_a_run_that_ends_inside_its_warm_up_says_nothing_was_measured() -> None:
    """A plain `locust -f` run with `-t 3s` under the default 5 s warm-up measured nothing: the
    summary must say so instead of reading as a valid run with no requests."""
    rec = Recorder()
    summary = build_summary(rec, run_info(warmup_s=5.0, duration_s=3.0), measured_s=0.0)
    assert not summary.valid
    assert summary.invalid_reasons[0].startswith("the run ended before its warm-up of 5 s did")
    assert build_summary(Recorder(), run_info(), measured_s=1.0).valid


def test_console_table_shows_the_figures_and_a_loud_verdict() -> None:
    from loadtests.cli import console_table

    rec = Recorder()
    for r in random_records(50):
        rec.record_request(r)
    rec.record_cpu(99.0)
    text = console_table(build_summary(rec, run_info(), measured_s=10.0))
    assert "TTFT ms" in text and "ITL ms" in text and "rejection rate" in text
    assert "VALID: NO" in text and "CPU of one process reached 99%" in text
    assert "read lag" not in text  # read-time stamps: no read lag
    kernel = console_table(
        build_summary(
            with_reads(itl_ms=20, read_lag_ms=3, loop_lag_ms=1), run_info(), measured_s=1.0
        )
    )
    (row,) = [line for line in kernel.splitlines() if line.startswith("read lag ms")]
    assert row.split()[3:] == ["3.0", "-", "3.0", "-"], row  # p50, p99 (no p90, no mean)


def test_summarize_is_a_function_of_the_recording_and_the_run_settings() -> None:
    """The summary comes from (recorder, settings, window, ...) alone: same inputs, same dict."""
    settings = replace(
        parse_run_args(["--users", "4", "--duration", "20s", "--warmup", "2s", "--name", "pure",
                        "--max-cpu-percent", "10", "--processes", "2"]),
        host="http://127.0.0.1:1",
    )  # fmt: skip
    rec = Recorder()
    rec.measure_from_ns = T0 + 2_000 * MS
    for r in random_records(100):
        rec.record_request(r)
    rec.record_cpu(20.0)
    effective = {"mock": {"ttft_ms": 100.0}, "service": {"max_concurrent": 8}}
    config = config_document(settings, effective)
    window = Window(start_ns=T0, stop_ns=T0 + 20_000 * MS, started_at="2027-01-15T08:00:00Z")

    def once(distributed: bool) -> dict[str, object]:
        return summarize(
            rec, settings, window, distributed=distributed, workers_reported=2,
            config=config, versions={"surgebench": "x"},
        ).to_dict()  # fmt: skip

    first = once(True)
    assert first == once(True)
    assert first["name"] == "pure" and first["target"] == "http://127.0.0.1:1"
    assert first["measured_s"] == 18.0 and first["duration_s"] == 20.0 and first["warmup_s"] == 2
    assert first["load_model"] == "closed"
    assert first["effective"] == effective
    assert {**first["config"], "error_samples": None} == {**config, "error_samples": None}  # type: ignore[dict-item]
    # the run's own guard settings (--max-cpu-percent 10) judge it, not the defaults
    assert any("CPU of one process reached 20%" in r for r in first["invalid_reasons"])  # type: ignore[attr-defined]
    assert first["saturation"]["processes"] == 2.0  # type: ignore[index]
    assert once(False)["saturation"]["processes"] == 1.0  # type: ignore[index]


def test_unfinished_requests_make_the_outcomes_add_up_to_the_requests_sent(tmp_path: Path) -> None:
    """Requests cut off at the stop are an outcome of their own: counted (measured ones, in their
    phase, merged across processes), in no latency, in no second, not in the ended rate."""
    settings = replace(
        parse_run_args(["--users", "4", "--duration", "10s", "--warmup", "1s", "--name", "cut"]),
        host="http://127.0.0.1:1",
    )
    ok = RequestRecord(
        T0 + 2_000 * MS, T0 + 3_000 * MS, oc.OK, first_token_ns=T0 + 2_100 * MS, output_tokens=1
    )
    cut = [
        RequestRecord(T0 + t * MS, T0 + 10_000 * MS, oc.UNFINISHED, first_token_ns=None)
        for t in (500, 8_000, 9_000, 9_500)  # the first one started in the warm-up
    ]
    workers = [Recorder(measure_from_ns=T0 + 1_000 * MS) for _ in range(2)]
    workers[0].record_request(ok)
    for i, record in enumerate(cut):
        workers[i % 2].record_unfinished(record)
    master = Recorder(measure_from_ns=T0 + 1_000 * MS, phase_starts_ns=(T0,))
    for worker in workers:
        master.merge_dict(worker.drain())
    assert master.outcomes[oc.UNFINISHED] == 3 and master.outcomes[oc.OK] == 1
    assert master.stats("e2e_ms").count == 1 and master.stats("ttft_ms").count == 1
    assert sum(s.requests for s in master.seconds.values()) == 1  # only the one that ended
    window = Window(start_ns=T0, stop_ns=T0 + 10_000 * MS, started_at="2027-01-15T08:00:00Z")
    summary = summarize(
        master, settings, window, distributed=True, workers_reported=2, config={},
        versions={},
    )  # fmt: skip
    assert summary.outcomes["unfinished"] == 3
    assert summary.requests == sum(summary.outcomes.values()) == 4
    assert summary.ended == 1 and summary.unfinished == 3
    assert summary.requests_per_s == pytest.approx(1 / 9.0)  # ended requests over 9 s measured
    assert summary.rejection_rate == 0.0
    (phase,) = summary.phases
    assert phase.outcomes["unfinished"] == 3 and phase.requests == 4
    again = read_summary(write_summary(tmp_path, summary).parent)
    assert again.outcomes == summary.outcomes
