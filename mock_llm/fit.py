"""Fit an engine profile's coefficients to measured load points (pure numerics: no I/O, no clock).

A point is one closed-loop measurement: C concurrent users, each sending a request of ISL prompt
tokens and OSL output tokens as soon as its previous one ends, with mean TTFT, mean ITL and output
throughput. The model is the mock's own engine scheduler: `predict` replays a point on
`Scheduler` under a fake clock (all C users start at once, as AIPerf and `vllm bench` do; the
point's `warmup_requests` says whether that burst is measured or a steady state is, its
`window_s` that the requests completed in a time window from the start are, or its
`measurement_interval_ms` that perf_analyzer's own procedure measured it), so a fitted
profile predicts exactly what `surgebench mock --profile FILE` serves. `fit` searches the
free coefficients with Nelder-Mead on the log of each (the loss is a step function of integer
batch sizes, so no gradient), starting from a least-squares line through ITL(C), to minimise
the squared log errors or (objective "worst") the largest error.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from mock_llm.scheduler import Scheduler
from mock_llm.scheduler import Sequence as Seq
from mock_llm.settings import MockSettings

MAX_POINTS = 200
MAX_CONCURRENCY = 4096
MAX_OUTPUT_TOKENS = 20_000
MAX_PROMPT_TOKENS = 1_000_000
MAX_WARMUP_REQUESTS = 20.0
MAX_WINDOW_S = 3600.0
MAX_MEASUREMENT_INTERVAL_MS = 600_000.0
MAX_STABILITY_PERCENTAGE = 1e6
# scheduler events one replay may take (a step each, about 5 us): past it the replay gives no
# figure rather than a window cut short
MAX_REPLAY_EVENTS = 5_000_000

# perf_analyzer's time-windows mode, as genai-perf runs it (triton-inference-server/perf_analyzer,
# src/inference_profiler.cc, ProfileHelper and Measure, unchanged from 2024 to 2025): windows
# back to back from the moment the load starts, each of 1.2 x --measurement-interval (Measure
# sleeps `measurement_window * 1.2`); a window counts the requests whose last response fell in
# it; after each window from the third, stable when the last three all counted requests and
# their requests/s and mean latency are each within (1 + stability %/100) max/min; at most
# --max-trials (10) windows. Every window's requests are exported (CollectData), and genai-perf
# computes its figures over all of them.
PA_WINDOW_FACTOR = 1.2
PA_STABILITY_WINDOWS = 3
PA_MAX_TRIALS = 10
# genai-perf passes `--stability-percentage 999` to perf_analyzer unless told otherwise (its
# parser's default, 2024-03 to 2025); perf_analyzer's own default is 10.
GENAI_PERF_STABILITY_PERCENTAGE = 999.0

# Coefficients `fit` can search, with the box it searches them in.
BOUNDS: dict[str, tuple[float, float]] = {
    "step_base_ms": (0.05, 10_000.0),
    "step_per_seq_ms": (1e-5, 1_000.0),
    "step_per_prefill_token_ms": (1e-6, 100.0),
    "step_per_kv_token_ms": (1e-9, 10.0),
    "step_compute_per_token_ms": (1e-6, 100.0),
    "ttft_overhead_ms": (1e-3, 60_000.0),
    "max_batched_tokens": (16.0, 1_048_576.0),
    "max_num_seqs": (1.0, 65_536.0),
    "frontend_tokens_per_s": (10.0, 1e8),
}
INT_COEFFICIENTS = frozenset({"max_batched_tokens", "max_num_seqs"})
DEFAULT_FREE: tuple[str, ...] = (
    "step_base_ms",
    "step_per_seq_ms",
    "step_per_prefill_token_ms",
    "ttft_overhead_ms",
)
METRICS: tuple[str, ...] = ("ttft_ms", "itl_ms", "tokens_per_s")
# What `fit` minimises: the sum of squared log errors (the default), or the worst error (minimax:
# an SLO is written on the worst case, so a profile can be fitted to bound it).
OBJECTIVES: tuple[str, ...] = ("squares", "worst")
# The replayed benchmark: no warm-up, 3 request times measured (see `predict`).
WARMUP_REQUESTS = 0.0
MEASURE_REQUESTS = 3.0


class FitError(ValueError):
    """The data cannot determine what was asked; the message says which coefficient and why."""


@dataclass(frozen=True)
class Point:
    """One closed-loop measurement (a row of a published table, or one sweep cell)."""

    concurrency: int
    prompt_tokens: int
    output_tokens: int
    ttft_ms: float
    itl_ms: float
    tokens_per_s: float  # output tokens/s; NaN when not measured
    # how the point was measured: request times of the closed loop left out before measuring
    # (0: the burst of C users starting at once is measured, as AIPerf without warm-up)
    warmup_requests: float = WARMUP_REQUESTS
    # or (> 0) a time window from the start: the requests that completed within its first
    # window_s seconds; 0: not used
    window_s: float = 0.0
    # or (> 0) perf_analyzer's time-windows procedure with this --measurement-interval, as
    # genai-perf runs it (see PA_WINDOW_FACTOR); 0: not used
    measurement_interval_ms: float = 0.0
    stability_percentage: float = GENAI_PERF_STABILITY_PERCENTAGE

    def check(self, where: str) -> None:
        limits = (
            ("concurrency", self.concurrency, MAX_CONCURRENCY),
            ("isl", self.prompt_tokens, MAX_PROMPT_TOKENS),
            ("osl", self.output_tokens, MAX_OUTPUT_TOKENS),
        )
        for name, value, hi in limits:
            if not 1 <= value <= hi:
                raise FitError(f"{where}: {name} {value} out of range (allowed: 1 to {hi})")
        if self.output_tokens < 2:
            raise FitError(f"{where}: osl must be at least 2 (ITL needs two tokens)")
        for name, v in (("ttft_ms", self.ttft_ms), ("itl_ms", self.itl_ms)):
            if not (math.isfinite(v) and v > 0):
                raise FitError(f"{where}: {name} {v} must be a positive number")
        w = self.warmup_requests
        if not (w == 0.0 or 1.0 <= w <= MAX_WARMUP_REQUESTS):
            raise FitError(
                f"{where}: warmup_requests {w} out of range "
                f"(allowed: 0, or 1 to {MAX_WARMUP_REQUESTS:g} request times)"
            )
        if not (math.isfinite(self.window_s) and 0.0 <= self.window_s <= MAX_WINDOW_S):
            raise FitError(
                f"{where}: window_s {self.window_s} out of range "
                f"(allowed: 0 for none, or up to {MAX_WINDOW_S:g} seconds)"
            )
        request_s = (self.ttft_ms + (self.output_tokens - 1) * self.itl_ms) / 1000.0
        if 0 < self.window_s < request_s:
            raise FitError(
                f"{where}: window_s {self.window_s:g} is shorter than one request of this point "
                f"(TTFT + (OSL - 1) x ITL = {request_s:.3g} s): no request ends inside it"
            )
        if self.window_s > 0 and w > 0:
            raise FitError(
                f"{where}: window_s and warmup_requests both set; a time window is measured "
                "from the start (warmup_requests 0), a warm-up measures request times after it"
            )
        self._check_perf_analyzer(where)
        if not (math.isnan(self.tokens_per_s) or self.tokens_per_s > 0):
            raise FitError(f"{where}: tokens_per_s {self.tokens_per_s} must be positive or empty")

    def _check_perf_analyzer(self, where: str) -> None:
        interval = self.measurement_interval_ms
        if not (math.isfinite(interval) and 0.0 <= interval <= MAX_MEASUREMENT_INTERVAL_MS):
            raise FitError(
                f"{where}: measurement_interval_ms {interval} out of range "
                f"(allowed: 0 for none, or up to {MAX_MEASUREMENT_INTERVAL_MS:g} ms)"
            )
        stability = self.stability_percentage
        if not (math.isfinite(stability) and 0.0 < stability <= MAX_STABILITY_PERCENTAGE):
            raise FitError(
                f"{where}: stability_percentage {stability} out of range "
                f"(allowed: above 0, up to {MAX_STABILITY_PERCENTAGE:g})"
            )
        if interval > 0 and (self.window_s > 0 or self.warmup_requests > 0):
            raise FitError(
                f"{where}: measurement_interval_ms with window_s or warmup_requests; "
                "perf_analyzer's windows start with the load (no warm-up) and decide their own end"
            )


@dataclass(frozen=True)
class Predicted:
    ttft_ms: float
    itl_ms: float
    tokens_per_s: float

    def get(self, metric: str) -> float:
        value: float = getattr(self, metric)
        return value


@dataclass
class _Recorder:
    """The closed loop's clients: record first tokens, gaps and tokens, resubmit when done.

    A request's start is its `arrival` (set by `Scheduler.submit`)."""

    t0: float = math.inf
    t1: float = math.inf
    ttft_s: list[float] = field(default_factory=list)
    gap_sum_s: float = 0.0
    gaps: int = 0
    tokens: int = 0
    last: dict[Seq, float] = field(default_factory=dict)
    done_at: list[float] = field(default_factory=list)

    def emit(self, seq: Seq, n: int, now: float, done: bool) -> bool:
        inside = self.t0 <= now < self.t1
        if seq.sent == 0:
            if self.t0 <= seq.arrival < self.t1:
                self.ttft_s.append(now - seq.arrival)
            if inside:
                self.tokens += n
        elif inside:
            self.tokens += n
            self.gap_sum_s += now - self.last[seq]
            self.gaps += 1
        if done:
            self.last.pop(seq, None)
            self.done_at.append(now)
        else:
            self.last[seq] = now
        return True


@dataclass
class _Completions:
    """The closed loop's clients for a time window: (start, first token, end) of each request
    that ended; `done_at` says when to send the next one."""

    first: dict[Seq, float] = field(default_factory=dict)
    ended: list[tuple[float, float, float]] = field(default_factory=list)
    done_at: list[float] = field(default_factory=list)

    def emit(self, seq: Seq, n: int, now: float, done: bool) -> bool:
        if seq.sent == 0:
            self.first[seq] = now
        if done:
            self.ended.append((seq.arrival, self.first.pop(seq), now))
            self.done_at.append(now)
        return True


def _burst(
    settings: MockSettings,
    concurrency: int,
    prompt_tokens: int,
    output_tokens: int,
    sink: _Recorder | _Completions,
) -> tuple[Scheduler, Callable[[float], None]]:
    """A closed loop's start: `concurrency` requests submitted at t = 0 on an engine scheduler,
    and the function that sends the next one (at the time a request ended)."""
    sched = Scheduler(replace(settings, mode="engine"))
    rng = random.Random(0)

    def start(now: float) -> None:
        sched.submit(
            Seq(prompt_tokens=prompt_tokens, out_tokens=output_tokens, sink=sink, rng=rng), now
        )

    for _ in range(concurrency):
        start(0.0)
    return sched, start


def _replay_until(
    sched: Scheduler,
    start: Callable[[float], None],
    rec: _Completions,
    end_s: float,
    budget: list[int],
) -> bool:
    """Run a closed loop's scheduler up to `end_s`, each ended request's user sending its next
    one; False when the event budget (`budget[0]`, spent here) ran out first."""
    while budget[0] > 0:
        due = sched.next_deadline()
        if due is None or due > end_s:
            return True
        budget[0] -= 1
        sched.advance(due)
        for t in rec.done_at:
            start(t)
        rec.done_at.clear()
    return False


def _predict_window(
    settings: MockSettings,
    concurrency: int,
    prompt_tokens: int,
    output_tokens: int,
    window_s: float,
) -> Predicted:
    """A closed loop from a burst at t = 0, measured over one fixed window from the start: the
    requests that completed before `window_s` give mean TTFT and mean ITL ((end - first token) /
    (OSL - 1) per request, as genai-perf). Throughput is the closed loop's rate from those means,
    C x OSL / (TTFT + (OSL - 1) x ITL): C requests are always in flight, each taking that long.
    (Counting the tokens of the requests that ended in the window instead depends on where the
    window cuts the last wave, which the mock's waves, spread by their staggered prefill, make
    a large edge effect; the published tables meet the law within 2 %.)"""
    rec = _Completions()
    sched, start = _burst(settings, concurrency, prompt_tokens, output_tokens, rec)
    if not _replay_until(sched, start, rec, window_s, [MAX_REPLAY_EVENTS]) or not rec.ended:
        return Predicted(math.nan, math.nan, math.nan)
    n = len(rec.ended)
    ttft_s = sum(f - a for a, f, _ in rec.ended) / n
    itl_s = sum(e - f for _, f, e in rec.ended) / (n * (output_tokens - 1))
    request_s = ttft_s + (output_tokens - 1) * itl_s
    return Predicted(
        ttft_ms=1000.0 * ttft_s,
        itl_ms=1000.0 * itl_s,
        tokens_per_s=concurrency * output_tokens / request_s if request_s > 0 else math.nan,
    )


def _stable(per_s: Sequence[float], latency_s: Sequence[float], percentage: float) -> bool:
    """perf_analyzer's DetermineStability: the last three windows all counted requests, and their
    requests/s and their mean latencies each vary by at most the stability percentage
    (max / min <= 1 + percentage / 100)."""
    if len(per_s) < PA_STABILITY_WINDOWS:
        return False
    rates = per_s[-PA_STABILITY_WINDOWS:]
    latencies = latency_s[-PA_STABILITY_WINDOWS:]
    if min(rates) <= 0.0:
        return False
    limit = 1.0 + percentage / 100.0
    return max(rates) / min(rates) <= limit and max(latencies) / min(latencies) <= limit


def _predict_perf_analyzer(
    settings: MockSettings,
    concurrency: int,
    prompt_tokens: int,
    output_tokens: int,
    measurement_interval_ms: float,
    stability_percentage: float,
) -> Predicted:
    """A closed loop from a burst at t = 0, measured as genai-perf measures it: perf_analyzer's
    windows of 1.2 x the interval, back to back from the start, until the last three are stable
    (see PA_WINDOW_FACTOR); then genai-perf's figures over every request that ended in any of
    them: mean TTFT, mean ITL ((end - first token) / (OSL - 1) per request) and output tokens
    over (last end - first start). NaN when no stable three come within perf_analyzer's
    10 windows (it reports no figure then either)."""
    rec = _Completions()
    sched, start = _burst(settings, concurrency, prompt_tokens, output_tokens, rec)
    window_s = PA_WINDOW_FACTOR * measurement_interval_ms / 1000.0
    per_s: list[float] = []
    latency_s: list[float] = []
    counted = 0  # rec.ended is in end order: the windows take it in slices
    end_s = 0.0
    budget = [MAX_REPLAY_EVENTS]
    for _ in range(PA_MAX_TRIALS):
        end_s += window_s
        if not _replay_until(sched, start, rec, end_s, budget):
            return Predicted(math.nan, math.nan, math.nan)
        window = rec.ended[counted:]
        counted = len(rec.ended)
        per_s.append(len(window) / window_s)
        latency_s.append(sum(e - a for a, _, e in window) / len(window) if window else math.inf)
        if _stable(per_s, latency_s, stability_percentage):
            break
    else:
        return Predicted(math.nan, math.nan, math.nan)
    ended = rec.ended
    n = len(ended)
    duration_s = max(e for _, _, e in ended) - min(a for a, _, _ in ended)
    return Predicted(
        ttft_ms=1000.0 * sum(f - a for a, f, _ in ended) / n,
        itl_ms=1000.0 * sum(e - f for _, f, e in ended) / (n * (output_tokens - 1)),
        tokens_per_s=n * output_tokens / duration_s if duration_s > 0 else math.nan,
    )


def predict(
    settings: MockSettings,
    concurrency: int,
    prompt_tokens: int,
    output_tokens: int,
    *,
    warmup_requests: float = WARMUP_REQUESTS,
    measure_requests: float = MEASURE_REQUESTS,
    window_s: float = 0.0,
    measurement_interval_ms: float = 0.0,
    stability_percentage: float = GENAI_PERF_STABILITY_PERCENTAGE,
) -> Predicted:
    """Mean TTFT, mean ITL and output tokens/s of a closed loop, replayed on the scheduler.

    All users start at t = 0 (a burst, as AIPerf does). The first request's end time R sets the
    window: requests started in [warmup_requests x R, (warmup_requests + measure_requests) x R)
    give TTFT; gaps and tokens inside it give ITL and throughput. With no warm-up (the default,
    as AIPerf/genai-perf without --warmup-request-count) the burst's first wave is measured;
    with 1 or more the window starts in the closed loop's steady state. With `window_s` > 0 the
    window is fixed in seconds instead: the requests completed in [0, window_s) (see
    `_predict_window`). With `measurement_interval_ms` > 0, perf_analyzer's procedure decides
    the windows (see `_predict_perf_analyzer`).
    """
    if measurement_interval_ms > 0.0:
        return _predict_perf_analyzer(
            settings,
            concurrency,
            prompt_tokens,
            output_tokens,
            measurement_interval_ms,
            stability_percentage,
        )
    if window_s > 0.0:
        return _predict_window(settings, concurrency, prompt_tokens, output_tokens, window_s)
    rec = _Recorder(t0=0.0 if warmup_requests <= 0.0 else math.inf)
    sched, start = _burst(settings, concurrency, prompt_tokens, output_tokens, rec)
    # bounded: the window ends after a few request times; a replay that would need more
    # events than MAX_REPLAY_EVENTS gives no figure
    for _ in range(MAX_REPLAY_EVENTS):
        due = sched.next_deadline()
        if due is None:
            break
        sched.advance(due)
        if rec.done_at:
            if rec.t1 == math.inf:
                first_s = max(rec.done_at[0], 1e-6)
                rec.t0 = warmup_requests * first_s
                rec.t1 = rec.t0 + measure_requests * first_s
            for t in rec.done_at:
                start(t)
            rec.done_at.clear()
        if due >= rec.t1:
            break
    else:
        return Predicted(math.nan, math.nan, math.nan)
    window_s = rec.t1 - rec.t0
    if not rec.ttft_s or rec.gaps == 0 or not math.isfinite(window_s):
        return Predicted(math.nan, math.nan, math.nan)
    return Predicted(
        ttft_ms=1000.0 * sum(rec.ttft_s) / len(rec.ttft_s),
        itl_ms=1000.0 * rec.gap_sum_s / rec.gaps,
        tokens_per_s=rec.tokens / window_s,
    )


@dataclass(frozen=True)
class FitResult:
    """The fitted coefficients, the predictions at every point and their errors."""

    coefficients: dict[str, float]
    points: list[Point]
    predicted: list[Predicted]
    loss: float
    evaluations: int
    replays: int = 0  # distinct models replayed (evaluations of an already-seen model are cached)

    def error_pct(self, i: int, metric: str) -> float:
        measured: float = getattr(self.points[i], metric)
        return 100.0 * (self.predicted[i].get(metric) - measured) / measured

    def mape(self, metric: str) -> float:
        """Mean absolute percentage error of one metric over the points that measured it."""
        errs = [
            abs(self.error_pct(i, metric))
            for i, p in enumerate(self.points)
            if not math.isnan(getattr(p, metric))
        ]
        return sum(errs) / len(errs) if errs else math.nan

    def max_abs_error_pct(self, metric: str) -> float:
        errs = [
            abs(self.error_pct(i, metric))
            for i, p in enumerate(self.points)
            if not math.isnan(getattr(p, metric))
        ]
        return max(errs) if errs else math.nan


def check_identifiable(points: Sequence[Point], free: Sequence[str]) -> None:
    """Raise FitError naming a free coefficient the points cannot determine."""
    if not points:
        raise FitError("no points to fit")
    if len(points) > MAX_POINTS:
        raise FitError(f"{len(points)} points; at most {MAX_POINTS} are fitted")
    unknown = [n for n in free if n not in BOUNDS]
    if unknown:
        raise FitError(f"cannot fit {unknown}; fittable coefficients: {', '.join(BOUNDS)}")
    concurrencies = {p.concurrency for p in points}
    prompts = {p.prompt_tokens for p in points}
    # each point gives two independent figures (throughput follows from TTFT and ITL)
    if 2 * len(points) < len(free) + 1:
        raise FitError(
            f"too few points: {len(points)} point(s) give {2 * len(points)} independent figures "
            f"(TTFT, ITL) for {len(free)} free coefficients ({', '.join(free)}); "
            f"add points or fix coefficients with --fix NAME=VALUE"
        )
    if "step_per_seq_ms" in free and len(concurrencies) < 3:
        raise FitError(
            f"step_per_seq_ms (the step cost per running sequence) needs at least 3 distinct "
            f"concurrencies; the data has {sorted(concurrencies)}"
        )
    if "step_per_kv_token_ms" in free and len(concurrencies) < 3:
        raise FitError(
            f"step_per_kv_token_ms (the step cost per context token) needs at least 3 distinct "
            f"concurrencies; the data has {sorted(concurrencies)}"
        )
    contexts = {p.prompt_tokens + p.output_tokens / 2.0 for p in points}
    if "step_per_kv_token_ms" in free and "step_per_seq_ms" in free and len(contexts) < 2:
        raise FitError(
            "step_per_kv_token_ms (cost per context token) cannot be told apart from "
            "step_per_seq_ms (cost per sequence): every point has the same prompt and output "
            "length, so each decoding sequence holds the same context; add points with another "
            "ISL or OSL, or fix one with --fix step_per_kv_token_ms=VALUE or "
            "--fix step_per_seq_ms=VALUE"
        )
    if "step_compute_per_token_ms" in free and len(concurrencies) < 3:
        raise FitError(
            f"step_compute_per_token_ms (the compute-bound step cost per token) needs at least 3 "
            f"distinct concurrencies; the data has {sorted(concurrencies)}"
        )
    with_tps = {p.concurrency for p in points if not math.isnan(p.tokens_per_s)}
    if "frontend_tokens_per_s" in free and len(with_tps) < 3:
        raise FitError(
            f"frontend_tokens_per_s (the frontend's token rate) shows only in measured "
            f"throughput levelling off: it needs tokens_per_s at 3 or more distinct "
            f"concurrencies; the data has it at {sorted(with_tps)}"
        )
    if "max_num_seqs" in free and len(concurrencies) < 4:
        raise FitError(
            f"max_num_seqs needs at least 4 distinct concurrencies (some past the plateau); "
            f"the data has {sorted(concurrencies)}"
        )
    constants = [n for n in ("ttft_overhead_ms",) if n in free]
    if "step_per_prefill_token_ms" in free and constants and len(prompts) < 2:
        raise FitError(
            f"step_per_prefill_token_ms (prefill cost per prompt token) cannot be told apart from "
            f"{' and '.join(constants)}: every point has the same prompt length "
            f"({prompts.pop()} tokens); add points with another ISL, or fix one with "
            f"--fix step_per_prefill_token_ms=VALUE or --fix {constants[0]}=VALUE"
        )


def _initial(points: Sequence[Point], base: MockSettings) -> dict[str, float]:
    """A start: ITL(C) = base + per_seq x C by least squares, TTFT(1) split over prefill."""
    c = np.array([float(p.concurrency) for p in points])
    itl = np.array([p.itl_ms for p in points])
    a = np.vstack([np.ones_like(c), c]).T
    (icpt, slope), *_ = np.linalg.lstsq(a, itl, rcond=None)
    low = min(points, key=lambda p: (p.concurrency, p.prompt_tokens))
    step0 = max(float(icpt), 0.5 * min(p.itl_ms for p in points))
    prefill = max(low.ttft_ms - step0, 0.1 * low.ttft_ms)
    context = sum(p.prompt_tokens + p.output_tokens / 2.0 for p in points) / len(points)
    busiest = max(points, key=lambda p: (p.concurrency, p.itl_ms))
    measured_tps = [p.tokens_per_s for p in points if not math.isnan(p.tokens_per_s)]
    return {
        "step_base_ms": step0,
        "step_per_seq_ms": max(float(slope), 1e-3),
        "step_per_kv_token_ms": max(float(slope), 1e-3) / (2.0 * context),
        # the roofline starts where the busiest point's step would be compute-bound
        "step_compute_per_token_ms": busiest.itl_ms
        / (busiest.concurrency * (1.0 + busiest.prompt_tokens / busiest.output_tokens)),
        "step_per_prefill_token_ms": 0.5 * prefill / low.prompt_tokens,
        "ttft_overhead_ms": 0.5 * prefill,
        "max_batched_tokens": float(base.max_batched_tokens),
        "max_num_seqs": float(base.max_num_seqs or max(p.concurrency for p in points)),
        # the frontend starts a little above the highest throughput measured
        "frontend_tokens_per_s": 1.1 * max(measured_tps, default=1000.0),
    }


def with_coefficients(base: MockSettings, values: Mapping[str, float]) -> MockSettings:
    """`base` in engine mode with the coefficients set (the integer ones rounded)."""
    kw: dict[str, object] = {}
    for name, v in values.items():
        kw[name] = max(1, round(v)) if name in INT_COEFFICIENTS else float(v)
    return replace(base, mode="engine", **kw)  # type: ignore[arg-type]


def predict_all(settings: MockSettings, points: Sequence[Point]) -> list[Predicted]:
    return [
        predict(
            settings,
            p.concurrency,
            p.prompt_tokens,
            p.output_tokens,
            warmup_requests=p.warmup_requests,
            window_s=p.window_s,
            measurement_interval_ms=p.measurement_interval_ms,
            stability_percentage=p.stability_percentage,
        )
        for p in points
    ]


def _loss(points: Sequence[Point], pred: Sequence[Predicted], objective: str = "squares") -> float:
    """How far the predictions are from the points, by `objective` (see OBJECTIVES).

    squares: squared log errors of TTFT, ITL (weight 2) and throughput, plus the worst TTFT error
    squared. worst: the largest relative error |model / measured - 1| of any metric at any point
    (minimax), plus the squares / 1000 so that among models with the same worst point the closer
    one wins."""
    total = 0.0
    worst_ttft = 0.0
    worst = 0.0
    for p, q in zip(points, pred, strict=True):
        for metric, weight in (("ttft_ms", 1.0), ("itl_ms", 2.0), ("tokens_per_s", 1.0)):
            measured, got = getattr(p, metric), q.get(metric)
            if math.isnan(measured):
                continue
            if not (got > 0 and math.isfinite(got)):
                return math.inf
            e = math.log(got / measured)
            total += weight * e * e
            worst = max(worst, abs(got / measured - 1.0))  # as the error table prints it
            if metric == "ttft_ms":
                worst_ttft = max(worst_ttft, abs(e))
    squares = total + len(points) * worst_ttft * worst_ttft / 4.0
    if objective == "worst":
        return worst + squares / 1000.0
    return squares


def _check_figures(points: Sequence[Point], predicted: Sequence[Predicted]) -> None:
    """Raise FitError when the fitted model's replay of a point gives no figure (the fit then
    had nothing to fit there), saying why for the point's protocol."""
    for i, (p, q) in enumerate(zip(points, predicted, strict=True)):
        if all(math.isfinite(q.get(m)) for m in METRICS):
            continue
        where = f"point {i + 1} (C = {p.concurrency})"
        if p.measurement_interval_ms > 0:
            window_ms = PA_WINDOW_FACTOR * p.measurement_interval_ms
            raise FitError(
                f"{where}: perf_analyzer's procedure gives no figure: in {PA_MAX_TRIALS} windows "
                f"of {window_ms:g} ms no {PA_STABILITY_WINDOWS} in a row all held completed "
                f"requests within stability_percentage {p.stability_percentage:g} (perf_analyzer "
                "reports nothing then either); check measurement_interval_ms is the one used"
            )
        if p.window_s > 0:
            raise FitError(f"{where}: no request ended within window_s {p.window_s:g} s")
        raise FitError(f"{where}: the replay gave no figure (more than {MAX_REPLAY_EVENTS} events)")


def nelder_mead(
    f: Callable[[np.ndarray], float],
    x0: np.ndarray,
    step: float,
    max_evals: int,
    tol: float = 1e-4,
) -> tuple[np.ndarray, float, int]:
    """Minimise f from x0 (a simplex of side `step`); return (x, f(x), evaluations)."""
    n = len(x0)
    simplex = [x0.astype(float)] + [x0 + step * np.eye(n)[i] for i in range(n)]
    values = [f(x) for x in simplex]
    evals = n + 1
    while evals < max_evals:
        order = np.argsort(values)
        simplex = [simplex[i] for i in order]
        values = [values[i] for i in order]
        if abs(values[-1] - values[0]) <= tol * (abs(values[0]) + tol):
            break
        centroid = np.mean(simplex[:-1], axis=0)
        worst = simplex[-1]
        xr = centroid + (centroid - worst)
        fr = f(xr)
        evals += 1
        if fr < values[0]:
            xe = centroid + 2.0 * (centroid - worst)
            fe = f(xe)
            evals += 1
            simplex[-1], values[-1] = (xe, fe) if fe < fr else (xr, fr)
        elif fr < values[-2]:
            simplex[-1], values[-1] = xr, fr
        else:
            xc = centroid + 0.5 * (worst - centroid)
            fc = f(xc)
            evals += 1
            if fc < values[-1]:
                simplex[-1], values[-1] = xc, fc
            else:
                for i in range(1, n + 1):
                    simplex[i] = simplex[0] + 0.5 * (simplex[i] - simplex[0])
                    values[i] = f(simplex[i])
                evals += n
    best = int(np.argmin(values))
    return simplex[best], values[best], evals


def fit(
    points: Sequence[Point],
    base: MockSettings,
    free: Sequence[str] = DEFAULT_FREE,
    *,
    max_evals: int = 300,
    restarts: int = 2,
    start: Mapping[str, float] | None = None,
    objective: str = "squares",
    progress: Callable[[int, int, float], None] | None = None,
    progress_every: int = 20,
) -> FitResult:
    """Fit the `free` coefficients of `base` (an engine profile) to `points`.

    `progress(evaluations, at_most, best_loss)` is called every `progress_every` evaluations
    (a fit of a large table takes minutes).

    `objective` "worst" (minimax) starts from the least-squares fit: its rounds run first, then
    as many rounds on the worst error (a max is flat almost everywhere, so Nelder-Mead alone
    stalls where it starts; from the least-squares answer the worst error can only go down).
    Raises FitError when the points cannot determine one of them (see `check_identifiable`).
    """
    if objective not in OBJECTIVES:
        raise FitError(f"objective {objective!r}; allowed: {', '.join(OBJECTIVES)}")
    for i, p in enumerate(points):
        p.check(f"point {i + 1}")
    check_identifiable(points, free)
    init = _initial(points, base)
    if start:
        init.update(start)
    names = list(free)
    lo = np.log([BOUNDS[n][0] for n in names])
    hi = np.log([BOUNDS[n][1] for n in names])
    cache: dict[tuple[float, ...], list[Predicted]] = {}
    phases = ["squares"] if objective == "squares" else ["squares", objective]
    phase = ["squares"]
    # Nelder-Mead can pass max_evals by one shrink of the simplex (n evaluations) per round
    at_most = len(phases) * (restarts + 1) * (max_evals + len(free))
    evaluated = 0
    best_seen = math.inf

    def values_of(x: np.ndarray) -> dict[str, float]:
        return {n: float(math.exp(v)) for n, v in zip(names, np.clip(x, lo, hi), strict=True)}

    def evaluate(x: np.ndarray) -> float:
        nonlocal evaluated, best_seen
        values = values_of(x)
        # one replay per distinct model: integer coefficients are rounded before they are used
        key = tuple(
            float(max(1, round(v))) if n in INT_COEFFICIENTS else float(f"{v:.6g}")
            for n, v in values.items()
        )
        if key not in cache:
            cache[key] = predict_all(with_coefficients(base, values), points)
        penalty = float(np.sum(np.maximum(lo - x, 0.0) + np.maximum(x - hi, 0.0)))
        loss = _loss(points, cache[key], phase[0]) + 10.0 * penalty
        evaluated += 1
        best_seen = min(best_seen, loss)
        if progress is not None and evaluated % progress_every == 0:
            progress(evaluated, at_most, best_seen)
        return loss

    x = np.log([min(max(init[n], BOUNDS[n][0]), BOUNDS[n][1]) for n in names])
    best_loss = math.inf
    evals = 0
    for phase[0] in phases:
        best_seen = math.inf  # the loss changes meaning with the phase
        step = 0.5
        for _ in range(restarts + 1):
            x, best_loss, used = nelder_mead(evaluate, x, step, max_evals)
            evals += used
            step /= 2.0
    # what a profile file holds: 4 significant digits, integers rounded
    coefficients = {
        n: float(max(1, round(v))) if n in INT_COEFFICIENTS else float(f"{v:.4g}")
        for n, v in values_of(x).items()
    }
    final = with_coefficients(base, coefficients)
    predicted = predict_all(final, points)
    _check_figures(points, predicted)
    return FitResult(
        coefficients=coefficients,
        points=list(points),
        predicted=predicted,
        loss=best_loss,
        evaluations=evals,
        replays=len(cache),
    )
