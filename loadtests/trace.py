"""Production traces: read, validate, window and schedule them; account for their replay.

Locust-free. Two formats, told apart by the first line:

- Azure's LLM inference trace (CSV with the header ``TIMESTAMP,ContextTokens,GeneratedTokens``;
  ``TIMESTAMP`` a UTC date-time such as ``2023-11-16 18:15:46.6805900``, or a number of
  microseconds).
- Mooncake's JSONL: one ``{"timestamp": ms, "input_length": n, "output_length": m}`` object per
  line; other fields (``hash_ids``...) are ignored.

The file is streamed: only the rows of the replay window are kept (at most `MAX_WINDOW_ROWS`, in
compact arrays), and reading stops at the first row past the window. A bad row (wrong columns,
not a number, a negative length, a time before the previous row's) raises `TraceError` naming the
file and the line; so does an empty window.

Replay: a row recorded ``t`` seconds after the trace's first row is sent
``(t - start_s) / speedup`` seconds after the test starts, asking for its output length and
carrying a prompt of its length (`trace_prompt`). `TraceTally` counts what happened to each row
and becomes summary.json's ``trace`` block.
"""

from __future__ import annotations

import json
import math
import random
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from loadtests.recorder import (
    SERIES_DIGITS,
    encode_histogram,
    new_histogram,
    stats_from_histogram,
)

AZURE_HEADER = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
MOONCAKE_FIELDS = ("timestamp", "input_length", "output_length")
TRACE_FORMATS = ("azure", "mooncake")

MAX_WINDOW_ROWS = 1_000_000
"""Rows one replay keeps (about 28 bytes each); a longer window is refused, not truncated."""
MAX_LINE_BYTES = 1 << 20
"""Longest accepted line (Mooncake lines carry hash_ids lists of a few KB)."""
MAX_TOKENS_PER_ROW = 10_000_000
"""Sanity bound on one row's prompt or output length."""

CHAT_MESSAGE_OVERHEAD_TOKENS = 4
"""Prompt tokens a chat message costs beyond its text, as the mock counts them (and OpenAI's
rule of thumb): a one-message chat request of ``k`` text tokens reports ``k + 4``."""
PROMPT_WORDS = (
    "cat",
    "dog",
    "sun",
    "red",
    "map",
    "box",
    "cup",
    "pen",
    "hat",
    "key",
    "bus",
    "car",
    "fox",
    "owl",
    "ant",
    "bee",
    "egg",
    "ice",
    "oil",
    "tea",
    "sea",
    "sky",
    "day",
    "way",
    "art",
    "war",
    "law",
    "age",
    "end",
    "top",
    "low",
    "big",
    "new",
    "old",
    "hot",
    "raw",
    "dry",
    "wet",
    "fit",
    "mix",
)
"""Three-letter words: each is four characters with its separator (one token by the mock's
four-characters-per-token rule) and one token with a leading space in common BPE vocabularies."""


class TraceError(ValueError):
    """A trace file or window that cannot be replayed; the message names the file and line."""


@dataclass(frozen=True)
class TraceWindow:
    """Which part of the trace to replay, and how fast.

    ``start_s``: offset into the recorded trace (from its first row). ``duration_s``: replay
    length (the run's ``--duration``); it covers ``duration_s * speedup`` recorded seconds.
    ``None`` replays to the end of the file.
    """

    start_s: float = 0.0
    duration_s: float | None = None
    speedup: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start_s) and self.start_s >= 0):
            raise TraceError(f"trace start {self.start_s!r} must be a number >= 0 (seconds)")
        if not (math.isfinite(self.speedup) and self.speedup > 0):
            raise TraceError(f"trace speedup {self.speedup!r} must be a number > 0")
        if self.duration_s is not None and not (
            math.isfinite(self.duration_s) and self.duration_s > 0
        ):
            raise TraceError(f"trace duration {self.duration_s!r} must be a number > 0")

    @property
    def recorded_end_s(self) -> float:
        """End of the window in recorded (trace) seconds; infinite when open-ended."""
        if self.duration_s is None:
            return math.inf
        return self.start_s + self.duration_s * self.speedup


@dataclass(frozen=True, slots=True)
class TraceRow:
    """One request of the file: recorded time (seconds from the first row) and lengths."""

    line: int
    recorded_s: float
    prompt_tokens: int
    output_tokens: int


@dataclass(frozen=True, slots=True)
class ReplayItem:
    """One request to send: ``offset_s`` after the replay starts."""

    index: int
    line: int
    offset_s: float
    prompt_tokens: int
    output_tokens: int


class Trace:
    """The rows of one replay window, in compact columns, with their replay schedule."""

    def __init__(self, path: Path, fmt: str, window: TraceWindow) -> None:
        self.path = path
        self.format = fmt
        self.window = window
        self.lines = array("q")
        self.recorded_s = array("d")
        self.prompt_tokens = array("q")
        self.output_tokens = array("q")

    def __len__(self) -> int:
        return len(self.lines)

    def item(self, index: int) -> ReplayItem:
        return ReplayItem(
            index=index,
            line=self.lines[index],
            offset_s=(self.recorded_s[index] - self.window.start_s) / self.window.speedup,
            prompt_tokens=self.prompt_tokens[index],
            output_tokens=self.output_tokens[index],
        )

    def schedule(self, share: int = 0, shares: int = 1) -> Iterator[ReplayItem]:
        """The replay in arrival order; ``share`` of ``shares`` takes every shares-th row (one
        Locust worker's part: together the workers send every row once)."""
        if not 0 <= share < shares:
            raise ValueError(f"share {share} of {shares}")
        for index in range(share, len(self), shares):
            yield self.item(index)

    def span_s(self) -> float:
        """Replay seconds from the window's start to its last arrival."""
        return self.item(len(self) - 1).offset_s if len(self) else 0.0


# ------------------------------------------------------------------------------------ reading
def detect_format(path: Path) -> str:
    """``azure`` or ``mooncake`` from the first line; `TraceError` otherwise."""
    with _open(path) as f:
        first = f.readline(MAX_LINE_BYTES + 1).lstrip("\ufeff").strip()
    if first.startswith("{"):
        return "mooncake"
    if first.split(",")[0].strip() == AZURE_HEADER[0]:
        return "azure"
    raise TraceError(
        f"{path} line 1: not a trace; expected the CSV header {','.join(AZURE_HEADER)} "
        f"or a JSON object with {', '.join(MOONCAKE_FIELDS)} (Mooncake JSONL)"
    )


def _open(path: Path) -> Any:
    try:
        return path.open("r", encoding="utf-8", newline="")
    except OSError as exc:
        raise TraceError(f"{path}: {exc.strerror or exc}") from None


def iter_rows(path: Path) -> Iterator[TraceRow]:
    """Every row of the file, validated, times relative to the first row (streamed)."""
    fmt = detect_format(path)
    parse = _azure_row if fmt == "azure" else _mooncake_row
    first_s: float | None = None
    previous_s = -math.inf
    with _open(path) as f:
        number = 0
        while True:
            try:
                line = f.readline(MAX_LINE_BYTES + 1)
            except UnicodeDecodeError:
                raise TraceError(f"{path} line {number + 1}: not UTF-8 text") from None
            if not line:
                return
            number += 1
            if len(line) > MAX_LINE_BYTES:
                raise TraceError(f"{path} line {number}: longer than {MAX_LINE_BYTES} bytes")
            text = line.strip()
            if not text:
                continue
            if number == 1 and fmt == "azure":
                _check_header(path, text)
                continue
            try:
                at_s, prompt, output = parse(text)
            except (ValueError, TypeError, OverflowError) as exc:
                raise TraceError(f"{path} line {number}: {exc}") from None
            if at_s < previous_s:
                raise TraceError(
                    f"{path} line {number}: time goes backwards (rows must be sorted by "
                    "arrival time)"
                )
            previous_s = at_s
            if first_s is None:
                first_s = at_s
            yield TraceRow(number, at_s - first_s, prompt, output)


def _check_header(path: Path, text: str) -> None:
    columns = tuple(c.strip() for c in text.lstrip("\ufeff").split(","))
    if columns != AZURE_HEADER:
        raise TraceError(
            f"{path} line 1: columns {','.join(columns)!r}; expected {','.join(AZURE_HEADER)}"
        )


def _length(name: str, value: object) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ValueError(f"{name} must be a whole number, got {value!r}") from None
    if not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if not 0 <= value <= MAX_TOKENS_PER_ROW:
        raise ValueError(f"{name} must be between 0 and {MAX_TOKENS_PER_ROW}, got {value}")
    return value


def _azure_row(text: str) -> tuple[float, int, int]:
    parts = text.split(",")
    if len(parts) != 3:
        raise ValueError(f"expected 3 columns ({','.join(AZURE_HEADER)}), got {len(parts)}")
    return (
        _azure_time_s(parts[0].strip()),
        _length(AZURE_HEADER[1], parts[1]),
        _length(AZURE_HEADER[2], parts[2]),
    )


def _azure_time_s(text: str) -> float:
    """Seconds since the epoch: a UTC date-time (any number of fraction digits) or microseconds."""
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"TIMESTAMP must be >= 0, got {text!r}")
        return value / 1e6
    whole, _, fraction = text.partition(".")
    if fraction and not fraction.isdigit():
        raise ValueError(f"TIMESTAMP {text!r} is not a date-time (YYYY-MM-DD HH:MM:SS.ffffff)")
    try:
        moment = datetime.strptime(whole, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(
            f"TIMESTAMP {text!r} is not a date-time (YYYY-MM-DD HH:MM:SS.ffffff)"
        ) from None
    return moment.timestamp() + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)


def _mooncake_row(text: str) -> tuple[float, int, int]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    missing = [k for k in MOONCAKE_FIELDS if k not in data]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}; expected {', '.join(MOONCAKE_FIELDS)}")
    stamp = data["timestamp"]
    if isinstance(stamp, bool) or not isinstance(stamp, int | float) or not math.isfinite(stamp):
        raise ValueError(f"timestamp must be a number of milliseconds, got {stamp!r}")
    if stamp < 0:
        raise ValueError(f"timestamp must be >= 0, got {stamp!r}")
    return (
        float(stamp) / 1000.0,
        _length("input_length", data["input_length"]),
        _length("output_length", data["output_length"]),
    )


def load_trace(
    path: Path, window: TraceWindow | None = None, *, max_rows: int = MAX_WINDOW_ROWS
) -> Trace:
    """The rows of ``window`` (validated up to the window's end); `TraceError` on a bad file,
    an empty window or more than ``max_rows`` rows in it."""
    window = window or TraceWindow()
    trace = Trace(path, detect_format(path), window)
    end_s = window.recorded_end_s
    last_s = 0.0
    seen = 0
    for row in iter_rows(path):
        seen += 1
        last_s = row.recorded_s
        if row.recorded_s < window.start_s:
            continue
        if row.recorded_s >= end_s:
            break
        if len(trace) >= max_rows:
            raise TraceError(
                f"{path} line {row.line}: the window holds more than {max_rows} rows; "
                "replay a shorter window (--duration, --trace-start) or a higher speedup"
            )
        trace.lines.append(row.line)
        trace.recorded_s.append(row.recorded_s)
        trace.prompt_tokens.append(row.prompt_tokens)
        trace.output_tokens.append(row.output_tokens)
    if not len(trace):
        where = "holds no rows" if not seen else f"spans {last_s:.1f} s from its first row"
        raise TraceError(
            f"{path}: no rows in the window {window.start_s:g} s to {end_s:g} s of recorded time "
            f"(the file {where}); choose --trace-start inside the trace"
        )
    return trace


# ------------------------------------------------------------------------------------ prompts
def prompt_text_tokens(prompt_tokens: int) -> int:
    """How many text tokens a one-message chat prompt of ``prompt_tokens`` carries (>= 1)."""
    return max(1, prompt_tokens - CHAT_MESSAGE_OVERHEAD_TOKENS)


def trace_prompt(prompt_tokens: int, key: int) -> str:
    """A prompt that a one-message chat request reports as ``prompt_tokens`` (against the mock;
    at least 1 + the message overhead). ``key`` varies the words, so different rows do not
    share a cacheable prefix; the same key builds the same text."""
    n = prompt_text_tokens(prompt_tokens)
    rng = random.Random(key)
    return " ".join(rng.choices(PROMPT_WORDS, k=n))


# ----------------------------------------------------------------------------------- accounting
MAX_SERIES_S = 86_400
"""Per-second arrival counts kept (a day of replay); later seconds count into the last one."""
LENGTH_HIGHEST = 10_000_000
LENGTH_DIGITS = 3


def _length_histogram() -> HdrHistogram:
    return HdrHistogram(1, LENGTH_HIGHEST, LENGTH_DIGITS)


def prompt_bin(prompt_tokens: int) -> int:
    """The power-of-two bin of a prompt length: bin k holds [2**k, 2**(k+1))."""
    return max(1, prompt_tokens).bit_length() - 1


class TraceTally:
    """What happened to the rows of a replay; mergeable across Locust workers.

    sent: rows whose request started; late: started more than ``late_after_ms`` after their
    time (the lateness of every sent row goes into a histogram); dropped: rows that found every
    user busy and the backlog full; unfinished: sent but still in flight when the run stopped
    (no outcome). Tokens: what the rows asked for vs what the server reported
    (usage) and streamed, for the rows whose request completed. For the report's workload
    figures: arrivals per second as scheduled (the recording) and as sent, the requested
    length distributions, and TTFT by prompt-length bin.
    """

    COUNTERS = (
        "rows",
        "sent",
        "late",
        "dropped",
        "finished",
        "completed",
        "prompt_tokens_requested",
        "prompt_tokens_reported",
        "prompt_length_mismatches",
        "output_tokens_requested",
        "output_tokens_received",
        "output_length_mismatches",
    )

    def __init__(self, late_after_ms: float = 10.0) -> None:
        self.late_after_ns = int(late_after_ms * 1e6)
        self._reset()

    def _reset(self) -> None:
        self.counts: dict[str, int] = dict.fromkeys(self.COUNTERS, 0)
        self.lateness = new_histogram()
        self.scheduled_per_s: dict[int, int] = {}
        self.sent_per_s: dict[int, int] = {}
        self.prompt_lengths = _length_histogram()
        self.output_lengths = _length_histogram()
        self.ttft_by_bin: dict[int, HdrHistogram] = {}

    @staticmethod
    def _count_second(series: dict[int, int], offset_s: float) -> None:
        second = min(MAX_SERIES_S, max(0, int(offset_s)))
        series[second] = series.get(second, 0) + 1

    def record_scheduled(self, item: ReplayItem) -> None:
        """A row of the window (counted whether or not it is ever sent)."""
        self.counts["rows"] += 1
        self._count_second(self.scheduled_per_s, item.offset_s)
        self.prompt_lengths.record_value(min(max(1, item.prompt_tokens), LENGTH_HIGHEST))
        self.output_lengths.record_value(min(max(1, item.output_tokens), LENGTH_HIGHEST))

    def record_sent(self, lateness_ns: int, sent_offset_s: float) -> None:
        self.counts["sent"] += 1
        self._count_second(self.sent_per_s, sent_offset_s)
        self.lateness.record_value(min(max(1, lateness_ns // 1000), 3_600_000_000))
        if lateness_ns > self.late_after_ns:
            self.counts["late"] += 1

    def record_dropped(self) -> None:
        self.counts["dropped"] += 1

    def record_finished(self) -> None:
        """A sent row's request ended, whatever its outcome."""
        self.counts["finished"] += 1

    def record_completed(
        self,
        *,
        prompt_requested: int,
        prompt_reported: int | None,
        output_requested: int,
        output_received: int,
        ttft_ms: float | None = None,
    ) -> None:
        """A row's request that finished ok (its lengths can be compared)."""
        c = self.counts
        c["completed"] += 1
        c["prompt_tokens_requested"] += prompt_requested
        c["prompt_tokens_reported"] += prompt_reported or 0
        c["prompt_length_mismatches"] += prompt_reported != prompt_requested
        c["output_tokens_requested"] += output_requested
        c["output_tokens_received"] += output_received
        c["output_length_mismatches"] += output_received != output_requested
        if ttft_ms is not None:
            key = prompt_bin(prompt_requested)
            hist = self.ttft_by_bin.get(key)
            if hist is None:
                hist = self.ttft_by_bin[key] = new_histogram(SERIES_DIGITS)
            hist.record_value(min(max(1, int(ttft_ms * 1000)), 3_600_000_000))

    def drain(self) -> dict[str, Any]:
        """Everything since the last drain, as plain data; then start from zero."""
        data: dict[str, Any] = {
            "counts": dict(self.counts),
            "scheduled_per_s": {str(k): v for k, v in self.scheduled_per_s.items()},
            "sent_per_s": {str(k): v for k, v in self.sent_per_s.items()},
            "ttft_by_bin": {str(k): encode_histogram(h) for k, h in self.ttft_by_bin.items()},
        }
        for name, hist in (
            ("lateness", self.lateness),
            ("prompt_lengths", self.prompt_lengths),
            ("output_lengths", self.output_lengths),
        ):
            if hist.get_total_count():
                data[name] = encode_histogram(hist)
        self._reset()
        return data

    def merge_dict(self, data: Mapping[str, Any]) -> None:
        for key, n in data.get("counts", {}).items():
            if key in self.counts:
                self.counts[key] += int(n)
        for name, series in (
            ("scheduled_per_s", self.scheduled_per_s),
            ("sent_per_s", self.sent_per_s),
        ):
            for key, n in data.get(name, {}).items():
                second = min(MAX_SERIES_S, max(0, int(key)))
                series[second] = series.get(second, 0) + int(n)
        for key, text in data.get("ttft_by_bin", {}).items():
            hist = self.ttft_by_bin.get(int(key))
            if hist is None:
                hist = self.ttft_by_bin[int(key)] = new_histogram(SERIES_DIGITS)
            hist.decode_and_add(str(text).encode("ascii"))
        for name in ("lateness", "prompt_lengths", "output_lengths"):
            text = data.get(name)
            if text:
                getattr(self, name).decode_and_add(str(text).encode("ascii"))

    def block(self, source: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """summary.json's ``trace`` block; ``source`` describes the file and window."""
        c = self.counts
        late_ms = stats_from_histogram(self.lateness)
        ttft_by_prompt: list[dict[str, Any]] = []
        for key in sorted(self.ttft_by_bin):
            s = stats_from_histogram(self.ttft_by_bin[key])
            ttft_by_prompt.append(
                {"prompt_tokens_from": 2**key, "prompt_tokens_to": 2 ** (key + 1) - 1,
                 "count": s.count, "p50": s.p50, "p95": s.p95}
            )  # fmt: skip
        return {
            **(dict(source) if source else {}),
            "rows_in_window": c["rows"],
            "sent": c["sent"],
            "late": c["late"],
            "dropped": c["dropped"],
            "not_sent": max(0, c["rows"] - c["sent"] - c["dropped"]),
            "unfinished": max(0, c["sent"] - c["finished"]),
            "completed": c["completed"],
            "lateness_ms": {
                "count": late_ms.count,
                "mean": late_ms.mean,
                "p50": late_ms.p50,
                "p90": late_ms.p90,
                "p99": late_ms.p99,
                "max": late_ms.max,
            },
            "output_tokens": {
                "requested": c["output_tokens_requested"],
                "received": c["output_tokens_received"],
                "mismatched_requests": c["output_length_mismatches"],
            },
            "prompt_tokens": {
                "requested": c["prompt_tokens_requested"],
                "reported": c["prompt_tokens_reported"],
                "mismatched_requests": c["prompt_length_mismatches"],
            },
            "arrivals_per_s": {
                "scheduled": _series(self.scheduled_per_s),
                "sent": _series(self.sent_per_s),
            },
            "length_histograms": {
                "prompt_tokens": encode_histogram(self.prompt_lengths),
                "output_tokens": encode_histogram(self.output_lengths),
            },
            "ttft_by_prompt_tokens": ttft_by_prompt,
        }


def _series(counts: Mapping[int, int]) -> list[int]:
    """Counts per second from 0 to the last second with any (zeros filled in)."""
    if not counts:
        return []
    last = max(counts)
    return [counts.get(second, 0) for second in range(last + 1)]


def trace_source(trace: Trace) -> dict[str, Any]:
    """The file and window part of the ``trace`` block."""
    w = trace.window
    return {
        "file": str(trace.path),
        "format": trace.format,
        "start_s": w.start_s,
        "duration_s": w.duration_s,
        "speedup": w.speedup,
        "recorded_span_s": round(trace.span_s() * w.speedup, 3),
    }
