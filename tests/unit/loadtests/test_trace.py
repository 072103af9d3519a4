"""Trace files: parsing both formats, validation naming the line, windows, schedule, tally."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram

from loadtests.trace import (
    CHAT_MESSAGE_OVERHEAD_TOKENS,
    TraceError,
    TraceTally,
    TraceWindow,
    detect_format,
    iter_rows,
    load_trace,
    trace_prompt,
    trace_source,
)

DATA = Path(__file__).resolve().parents[2] / "data"
AZURE = DATA / "azure_conv_head200.csv"
MOONCAKE = DATA / "mooncake_sample.jsonl"


def write(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, "utf-8")
    return path


def test_azure_slice_reads_every_row_with_times_from_the_first() -> None:
    rows = list(iter_rows(AZURE))
    assert detect_format(AZURE) == "azure"
    assert len(rows) == 200
    assert rows[0].line == 2 and rows[0].recorded_s == 0.0
    assert (rows[0].prompt_tokens, rows[0].output_tokens) == (374, 44)
    # 18:15:50.9951690 - 18:15:46.6805900
    assert rows[1].recorded_s == pytest.approx(4.314579, abs=1e-6)
    assert all(b.recorded_s >= a.recorded_s for a, b in itertools.pairwise(rows))


def test_mooncake_reads_ms_and_ignores_extra_fields() -> None:
    rows = list(iter_rows(MOONCAKE))
    assert detect_format(MOONCAKE) == "mooncake"
    assert [r.recorded_s for r in rows] == [0.0, 0.25, 0.25, 1.5, 3.0]
    assert [(r.prompt_tokens, r.output_tokens) for r in rows][:2] == [(120, 12), (40, 5)]


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("TIMESTAMP,Context,Generated\n", 1, "columns"),
        ("hello\n", 1, "not a trace"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.1,10\n", 2, "3 columns"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.1,ten,5\n", 2, "whole"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,10,5\n", 2, "date-time"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.1,-1,5\n", 2, "between"),
        (
            "TIMESTAMP,ContextTokens,GeneratedTokens\n"
            "2023-11-16 18:15:47.0,10,5\n2023-11-16 18:15:46.0,10,5\n",
            3,
            "backwards",
        ),
    ],
)
def test_bad_azure_rows_name_the_line(tmp_path: Path, text: str, line: int, needle: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(TraceError, match=rf"line {line}: .*{needle}"):
        list(iter_rows(path))


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ('{"timestamp": 0, "input_length": 1, "output_length": 1}\n{"timestamp": 1}\n', 2, "miss"),
        ('{"timestamp": 0, "input_length": 1, "output_length": 1}\n{nope\n', 2, "JSON"),
        ('{"timestamp": "0", "input_length": 1, "output_length": 1}\n', 1, "milliseconds"),
        ('{"timestamp": 0, "input_length": 1.5, "output_length": 1}\n', 1, "whole"),
        ('{"timestamp": 0, "input_length": true, "output_length": 1}\n', 1, "whole"),
        (
            '{"timestamp": 9, "input_length": 1, "output_length": 1}\n'
            '{"timestamp": 3, "input_length": 1, "output_length": 1}\n',
            2,
            "backwards",
        ),
    ],
)
def test_bad_mooncake_rows_name_the_line(tmp_path: Path, text: str, line: int, needle: str) -> None:
    path = write(tmp_path, text, "t.jsonl")
    with pytest.raises(TraceError, match=rf"line {line}: .*{needle}"):
        list(iter_rows(path))


def test_missing_file_and_overlong_line(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="No such file"):
        load_trace(tmp_path / "absent.csv")
    path = write(tmp_path, '{"timestamp": 0, "input_length": 1, "output_length": 1, "x": "')
    with path.open("a") as f:
        f.write("a" * (1 << 20) + '"}\n')
    with pytest.raises(TraceError, match="line 1: longer than"):
        list(iter_rows(path))


def test_window_start_duration_and_speedup() -> None:
    # recorded seconds [1, 1 + 2 * 0.5) = [1, 2) hold the rows at 1.5 only
    trace = load_trace(MOONCAKE, TraceWindow(start_s=1.0, duration_s=0.5, speedup=2.0))
    assert len(trace) == 1
    (item,) = trace.schedule()
    assert item.line == 4 and item.offset_s == pytest.approx(0.25)  # (1.5 - 1) / 2
    assert (item.prompt_tokens, item.output_tokens) == (300, 20)
    whole = load_trace(MOONCAKE)
    assert [i.offset_s for i in whole.schedule()] == [0.0, 0.25, 0.25, 1.5, 3.0]
    assert whole.span_s() == 3.0
    fast = load_trace(MOONCAKE, TraceWindow(speedup=4.0))
    assert [i.offset_s for i in fast.schedule()] == [0.0, 0.0625, 0.0625, 0.375, 0.75]


def test_window_end_is_exclusive_and_reading_stops_there(tmp_path: Path) -> None:
    # a bad row after the window is never reached
    path = write(
        tmp_path,
        '{"timestamp": 0, "input_length": 1, "output_length": 1}\n'
        '{"timestamp": 1000, "input_length": 1, "output_length": 1}\n'
        "garbage\n",
        "t.jsonl",
    )
    trace = load_trace(path, TraceWindow(duration_s=1.0))
    assert len(trace) == 1
    with pytest.raises(TraceError, match="line 3"):
        load_trace(path)


def test_empty_window_and_row_limit() -> None:
    with pytest.raises(TraceError, match=r"no rows in the window 100 s .*spans 3\.0 s"):
        load_trace(MOONCAKE, TraceWindow(start_s=100.0, duration_s=10.0))
    with pytest.raises(TraceError, match="line 3: the window holds more than 2 rows"):
        load_trace(MOONCAKE, max_rows=2)


@pytest.mark.parametrize(
    "kwargs",
    [{"start_s": -1.0}, {"speedup": 0.0}, {"speedup": math.inf}, {"duration_s": 0.0}],
)
def test_bad_window(kwargs: dict[str, float]) -> None:
    with pytest.raises(TraceError):
        TraceWindow(**kwargs)


def test_shares_split_the_rows_once() -> None:
    trace = load_trace(AZURE)
    parts = [[i.index for i in trace.schedule(k, 3)] for k in range(3)]
    assert sorted(i for part in parts for i in part) == list(range(200))
    with pytest.raises(ValueError):
        list(trace.schedule(3, 3))


def test_trace_prompt_is_seeded_and_sized_for_the_mock_rule() -> None:
    text = trace_prompt(100, key=7)
    assert text == trace_prompt(100, key=7) != trace_prompt(100, key=8)
    words = 100 - CHAT_MESSAGE_OVERHEAD_TOKENS
    assert len(text.split(" ")) == words
    assert (len(text) + 3) // 4 == words  # four characters per token, as the mock counts
    assert trace_prompt(2, key=1).count(" ") == 0  # at least one word


def test_tally_block_and_merge() -> None:
    worker_a, worker_b, master = TraceTally(), TraceTally(), TraceTally()
    items = list(load_trace(MOONCAKE).schedule())  # offsets 0, .25, .25, 1.5, 3.0
    for item in items[:3]:
        worker_a.record_scheduled(item)
    worker_a.record_sent(2_000_000, 0.0)  # 2 ms: on time
    worker_a.record_sent(50_000_000, 0.3)  # 50 ms: late
    worker_a.record_dropped()
    worker_a.record_finished()
    worker_a.record_completed(
        prompt_requested=100, prompt_reported=100, output_requested=10, output_received=10,
        ttft_ms=40.0,
    )  # fmt: skip
    for item in items[3:]:
        worker_b.record_scheduled(item)
    worker_b.record_sent(0, 3.0)
    worker_b.record_completed(
        prompt_requested=3, prompt_reported=5, output_requested=7, output_received=6, ttft_ms=9.0
    )
    master.merge_dict(worker_a.drain())
    master.merge_dict(worker_b.drain())
    assert worker_a.drain()["counts"]["sent"] == 0  # drained
    block = master.block({"file": "x"})
    assert block["file"] == "x"
    assert (block["rows_in_window"], block["sent"], block["late"], block["dropped"]) == (5, 3, 1, 1)
    assert block["not_sent"] == 1 and block["completed"] == 2
    assert block["unfinished"] == 2  # three sent, one finished
    assert block["lateness_ms"]["count"] == 3
    assert block["lateness_ms"]["max"] == pytest.approx(50.0, rel=1e-3)
    assert block["output_tokens"] == {"requested": 17, "received": 16, "mismatched_requests": 1}
    assert block["prompt_tokens"] == {"requested": 103, "reported": 105, "mismatched_requests": 1}
    assert block["arrivals_per_s"] == {"scheduled": [3, 1, 0, 1], "sent": [2, 0, 0, 1]}
    bins = block["ttft_by_prompt_tokens"]
    assert [(b["prompt_tokens_from"], b["prompt_tokens_to"], b["count"]) for b in bins] == [
        (2, 3, 1),
        (64, 127, 1),
    ]
    assert bins[1]["p50"] == pytest.approx(40.0, rel=0.01)
    prompts = HdrHistogram.decode(block["length_histograms"]["prompt_tokens"].encode())
    assert prompts.get_total_count() == 5 and prompts.get_max_value() == 300


def test_trace_source() -> None:
    trace = load_trace(AZURE, TraceWindow(start_s=10.0, duration_s=20.0, speedup=2.0))
    source = trace_source(trace)
    assert source["format"] == "azure" and source["speedup"] == 2.0
    assert 0 < source["recorded_span_s"] < 40.0
