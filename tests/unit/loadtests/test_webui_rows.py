"""The web UI tab's rows: the same verdict and advice the summary will give, said plainly."""

from __future__ import annotations

from loadtests import outcomes as oc
from loadtests.health import series
from loadtests.recorder import Recorder, RequestRecord
from loadtests.summary import GuardSettings, RunInfo
from loadtests.webui import NO_STAMPS_NOTE, live_rows

MS = 1_000_000
T0 = 1_800_000_000 * 1_000_000_000
INFO = RunInfo(name="r", started_at="t", start_epoch_s=T0 / 1e9, duration_s=0.0)


def rows_by_metric(rows: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    return {row["metric"]: row for row in rows}


def test_before_any_request_ends_the_tab_says_nothing_is_measured_yet() -> None:
    rows = rows_by_metric(live_rows(Recorder(), GuardSettings(), INFO))
    assert rows["verdict"]["note"] == "nothing measured yet (warm-up, or no request has ended)"


def test_a_server_without_stamps_is_named_in_the_client_lag_row() -> None:
    recorder = Recorder()
    recorder.record_request(RequestRecord(T0, T0 + 50 * MS, oc.OK, first_token_ns=T0 + 9 * MS))
    rows = rows_by_metric(live_rows(recorder, GuardSettings(), INFO))
    assert rows["client lag"]["count"] == "0" and rows["client lag"]["note"] == NO_STAMPS_NOTE
    assert rows["verdict"]["note"] == "valid so far"


def test_a_busy_machine_gets_the_advice_the_summary_gives() -> None:
    recorder = Recorder()
    record = RequestRecord(T0, T0 + 50 * MS, oc.OK, first_token_ns=T0 + 9 * MS)
    record.client_lag_ns = [20 * MS] * 50
    recorder.record_request(record)
    points = {
        int(T0 / 1e9) + t: {"cpu_percent": 15.0, "cpu_sum_percent": 15.0, "cores": 2.0,
                            "runqueue_wait_percent": 40.0, "machine_busy_percent": 95.0}
        for t in range(3)
    }  # fmt: skip
    without = rows_by_metric(live_rows(recorder, GuardSettings(), INFO))["verdict"]["note"]
    with_health = rows_by_metric(
        live_rows(recorder, GuardSettings(), INFO, series(points, INFO.start_epoch_s))
    )["verdict"]["note"]
    assert with_health.startswith("INVALID: load generator delayed: client lag p99 20.0 ms")
    assert "the machine was busy" in with_health and "more --processes won't help" in with_health
    assert "the machine was busy" not in without  # (what the tab said before it had the series)
