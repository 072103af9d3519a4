"""The recorder keeps values in lists and records them in bulk (`Recorder.flush`): whatever
reads it (histograms, per-second points, phases, deltas) sees every value recorded so far, and
the counts are those of one hdrh ``record_value`` per value."""

from __future__ import annotations

import pytest
from hdrh.histogram import HdrHistogram

from loadtests import recorder as rec_mod
from loadtests.recorder import Recorder, RequestRecord, _us, new_histogram
from tests.unit.loadtests.test_recorder_and_summary import random_records


def reference_itl_and_lag(records: list[RequestRecord]) -> tuple[HdrHistogram, HdrHistogram]:
    itl, lag = new_histogram(), new_histogram()
    for r in records:
        if r.outcome == "ok":
            for v in r.itl_ns:
                itl.record_value(_us(v))
        for v in r.client_lag_ns:
            lag.record_value(_us(v))
    return itl, lag


@pytest.mark.parametrize("limit", ["PENDING_VALUES", "PENDING_PER_HISTOGRAM"])
def test_every_reader_sees_pending_values(monkeypatch: pytest.MonkeyPatch, limit: str) -> None:
    monkeypatch.setattr(rec_mod, limit, 1000 if limit == "PENDING_VALUES" else 60)
    records = random_records(300)  # some flushes on the way (all, or one list), a rest
    recorder = Recorder()
    for r in records:
        recorder.record_request(r)
    assert recorder._pending_n > 0  # the rest is still pending: the readers must flush
    assert recorder._pending_n == sum(len(v) for _h, v in recorder._pending.values())
    itl, lag = reference_itl_and_lag(records)
    assert list(recorder.hists["itl_ms"].counts) == list(itl.counts)
    assert list(recorder.hists["client_lag_ms"].counts) == list(lag.counts)
    assert recorder.hists["itl_ms"].get_max_value() == itl.get_max_value()
    ok = [r for r in records if r.outcome == "ok"]
    assert recorder.stats("ttft_ms").count == len(ok)
    assert sum(p.outcomes["ok"] for p in recorder.phase_measurements().values()) == len(ok)


def test_the_series_and_a_drained_delta_include_pending_values() -> None:
    records = random_records(120)
    recorder = Recorder()
    for r in records:
        recorder.record_request(r)
    per_second_itl = sum(
        s.itl.get_total_count() for s in recorder.seconds.values() if s.itl is not None
    )
    assert per_second_itl == sum(len(r.itl_ns) for r in records if r.outcome == "ok")
    again = Recorder()
    for r in records:
        again.record_request(r)
    merged = Recorder()
    merged.merge_dict(again.drain())
    assert again._pending_n == 0 and not again.hists
    assert list(merged.hists["itl_ms"].counts) == list(recorder.hists["itl_ms"].counts)
    assert merged.hists["e2e_ms"].get_total_count() == recorder.hists["e2e_ms"].get_total_count()
