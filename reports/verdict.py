"""How did the service do? A few sentences computed from a summary: one per phase, then validity.

Pure (no I/O): the report (HTML and Markdown) and the console end of ``surgebench run`` both open
with `verdict_sentences`, so the two never say different things. Example::

    8 users (5-25 s): TTFT p95 125 ms, nothing rejected.
    Spike to 24 users (25-40 s): 33 % rejected after a median 2 ms; admitted TTFT p95 1.0 s,
    95 % of it queue wait.
    Run valid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from reports.results import OTHER_ERROR_OUTCOMES, Phase, Summary, phases_or_whole_run

PART_NAMES: dict[str, str] = {
    "queue_wait": "queue wait",
    "pool_wait": "waiting for an upstream connection",
    "upstream_ttft": "the upstream LLM's own TTFT",
    "relay_overhead": "relay overhead in the service",
}
"""TTFT parts a sentence may name (client lag is the generator's, not the service's)."""

DOMINANT_SHARE = 0.5
"""Name the part of the TTFT that takes at least this share of its mean."""


def duration_text(ms: float) -> str:
    """``125 ms``, ``1.0 s``, ``12 s``: three significant figures at most, unit that reads."""
    if ms == 0:
        return "0 ms"
    if ms < 1:
        return f"{ms:.2f} ms"
    if ms < 10:
        return f"{ms:.1f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 10_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms / 1000:.0f} s"


def percent_text(fraction: float) -> str:
    """``33 %``, ``0.4 %``, ``0.02 %``: never rounds a nonzero share to 0."""
    value = fraction * 100.0
    if value == 0 or value >= 10:
        return f"{value:.0f} %"
    if value >= 0.1:
        return f"{value:.1f} %"
    return f"{value:.2g} %"


def _span(phase: Phase) -> str:
    return f"{phase.start_s:g}-{phase.end_s:g} s"


def _dominant_part(phase: Phase) -> str:
    """``, 95 % of it queue wait`` when one part dominates the mean TTFT, else empty."""
    ttft_mean = phase.metric("ttft_ms").mean
    if not ttft_mean or not phase.breakdown_ms:
        return ""
    best, best_mean = "", 0.0
    for part, stats in phase.breakdown_ms.items():
        if part in PART_NAMES and stats.mean is not None and stats.mean > best_mean:
            best, best_mean = part, stats.mean
    share = best_mean / ttft_mean
    if not best or share < DOMINANT_SHARE:
        return ""
    return f", {percent_text(min(share, 1.0))} of it {PART_NAMES[best]}"


def unfinished_text(count: int) -> str:
    """``3 requests were still in flight at the stop`` (cut off after the stop timeout), or ""."""
    if not count:
        return ""
    if count == 1:
        return "1 request was still in flight at the stop"
    return f"{count} requests were still in flight at the stop"


def phase_sentence(phase: Phase, *, with_span: bool) -> str:
    """One sentence on one phase, e.g. ``8 users: TTFT p95 125 ms, nothing rejected.``"""
    head = phase.label[:1].upper() + phase.label[1:]
    if with_span:
        head += f" ({_span(phase)})"
    requests = phase.requests
    if requests == 0:
        return f"{head}: no request was measured."
    cut_off = unfinished_text(phase.unfinished)
    if phase.ended == 0:
        return f"{head}: no request ended; {cut_off}."
    ok = phase.outcomes.get("ok", 0)
    rejected = phase.outcomes.get("rejected", 0)
    timeouts = phase.outcomes.get("timeout", 0)
    errors = sum(phase.outcomes.get(k, 0) for k in OTHER_ERROR_OUTCOMES)
    clauses: list[str] = []
    if rejected:
        to_reject = phase.metric("rejected_ms").p50
        after = f" after a median {duration_text(to_reject)}" if to_reject is not None else ""
        clauses.append(f"{percent_text(rejected / requests)} rejected{after}")
    if timeouts:
        clauses.append(f"{timeouts} timed out ({percent_text(timeouts / requests)})")
    if errors:
        clauses.append(f"{errors} failed with errors ({percent_text(errors / requests)})")
    if cut_off:
        clauses.append(cut_off)
    ttft = phase.metric("ttft_ms")
    if ok == 0:
        latency = "no request succeeded"
    elif ttft.p95 is None:
        latency = f"{ok} ok, no TTFT measured"
    else:
        admitted = "admitted " if rejected else ""
        latency = f"{admitted}TTFT p95 {duration_text(ttft.p95)}{_dominant_part(phase)}"
    if not clauses:
        return f"{head}: {latency}, nothing rejected."
    if rejected:  # the shedding first, then what the admitted requests saw
        return f"{head}: {', '.join(clauses)}; {latency}."
    return f"{head}: {latency}; {', '.join(clauses)}."


def _reasons_text(reasons: list[str]) -> str:
    """The reasons joined; advice repeated by several (``run with more --processes``) once, last."""
    parts = [part.strip() for reason in reasons for part in reason.split("; ") if part.strip()]
    repeated = [p for i, p in enumerate(parts) if parts.count(p) > 1 and parts.index(p) == i]
    once = [p for p in parts if parts.count(p) == 1]
    return "; ".join(once + repeated) or "no reason recorded"


def validity_sentence(summary: Summary) -> str:
    if summary.valid:
        return "Run valid."
    reasons = _reasons_text(summary.invalid_reasons)
    return f"Run INVALID, do not trust these latencies: {reasons}.{_culprit(summary)}"


def _culprit(summary: Summary) -> str:
    """Who distorted the figures, as the reasons tell it: the generator's own CPU, or other
    processes on its machine (then more --processes won't help), or neither (nothing measured)."""
    reasons = summary.invalid_reasons
    if reasons and all(r.startswith(NOTHING_MEASURED_PREFIX) for r in reasons):
        return ""
    if reasons and all(r.startswith("load generator delayed:") for r in reasons):
        return " Other processes on this machine, not the service, delayed the load generator."
    return " The load generator, not the service, was the bottleneck."


GENERIC_ADVICE = "run with more --processes or fewer --users (or a lower --rate)"
GENERIC_ADVICE_REMOTE = (
    "run with more workers (--expect-workers) or fewer --users (or a lower --rate)"
)
BUSY_RUNQUEUE_PERCENT = 10.0
"""The generator waited for a CPU at least this share of the time: another process had it."""
BUSY_STEAL_PERCENT = 5.0
BUSY_PSI_PERCENT = 20.0
SATURATED_CPU_MEAN_PERCENT = 60.0
"""A process's mean CPU (of one core) from which its lag grows (docs/loadtests.md)."""
TARGET_CPU_PERCENT = 50.0
"""`--processes N` advice: enough processes for each to run at about this CPU."""


def guard_advice(
    figures: Mapping[str, float | None],
    processes: int,
    max_cpu_percent: float,
    *,
    remote_workers: bool = False,
) -> tuple[str, str]:
    """Why the generator lagged, and what to do: ``("delayed", "the machine was busy: ...")``
    when other processes held the CPU (its run-queue wait, steal, CPU pressure), ``("saturated",
    "the generator saturated ...: use --processes N")`` when its own CPU ran out, both when both;
    the generic advice when the figures cannot tell (no /proc, or neither). `remote_workers`
    (a ``--master`` run): the advice names workers (``--expect-workers N``), not ``--processes``.
    """

    def num(name: str) -> float:
        value = figures.get(name)
        return float(value) if value is not None else 0.0

    wait, steal, psi = (
        num("runqueue_wait_mean_percent"),
        num("steal_mean_percent"),
        num("psi_cpu_some_avg10_max"),
    )
    cpu_mean, cpu_max = num("cpu_mean_percent"), num("cpu_max_percent")
    busy = wait >= BUSY_RUNQUEUE_PERCENT or steal >= BUSY_STEAL_PERCENT or psi >= BUSY_PSI_PERCENT
    saturated = cpu_mean >= SATURATED_CPU_MEAN_PERCENT or cpu_max > max_cpu_percent
    needed = max(processes + 1, math.ceil(processes * cpu_mean / TARGET_CPU_PERCENT))
    scale = f"--expect-workers {needed}" if remote_workers else f"--processes {needed}"
    more = "more workers" if remote_workers else "more --processes"
    evidence = [f"it waited for a CPU {wait:.0f} % of the time"]
    if steal >= 1:
        evidence.append(f"steal {steal:.0f} %")
    if psi:
        evidence.append(f"CPU pressure (PSI some avg10) up to {psi:.0f} %")
    busy_text = (
        f"the machine was busy: other processes took {num('others_cpu_mean_percent'):.0f} % of "
        f"the CPU while the generator used {cpu_mean:.0f} % of a core ({', '.join(evidence)})"
    )
    if busy and saturated:
        return (
            "saturated",
            f"{busy_text}, and the generator saturated: use {scale} on a quieter machine",
        )
    if busy:
        return "delayed", f"{busy_text}; rerun on a quieter machine ({more} won't help)"
    if saturated:
        return (
            "saturated",
            f"the generator saturated (CPU {cpu_mean:.0f} % of a core on average, "
            f"{cpu_max:.0f} % at most): use {scale}",
        )
    return "saturated", GENERIC_ADVICE_REMOTE if remote_workers else GENERIC_ADVICE


def read_lag_limit_ms(max_loop_lag_ms: float, itl_p50_ms: float | None) -> tuple[float, str]:
    """The read-lag p99 past which a run with kernel timestamps is not trusted, and why.

    With kernel receive timestamps a late read no longer delays the time an event is given;
    it bends a time only when the stream's next event arrives before the read (both then get
    the later one's time). So the limit is half the median gap between tokens, and never below
    the event-loop limit (``--max-loop-lag-ms``), which is also the limit where there is no ITL.
    """
    if itl_p50_ms is None or itl_p50_ms / 2 <= max_loop_lag_ms:
        return max_loop_lag_ms, "--max-loop-lag-ms"
    return itl_p50_ms / 2, "half the median ITL"


NOTHING_MEASURED_PREFIX = "the run ended before its warm-up"
"""How `loadtests.summary` opens the reason of a run that measured nothing."""

TRANSIENT_PREFIXES = ("load generator saturated:", "load generator delayed:", "Locust reported")
"""Invalid reasons a stall can cause and a rerun can clear (client lag, event-loop lag, the CPU
guard); a missing worker report or open-loop drops are not in this list."""


def transient_invalid(summary: Summary) -> bool:
    """Invalid only for reasons a rerun may clear (see `TRANSIENT_PREFIXES`)."""
    reasons = summary.invalid_reasons
    return (
        not summary.valid
        and bool(reasons)
        and all(reason.startswith(TRANSIENT_PREFIXES) for reason in reasons)
    )


def short_invalid_text(summary: Summary) -> str:
    """The invalid reasons' figures, short: ``client lag p99 16.2 ms, CPU of one process ...``."""
    parts: list[str] = []
    for reason in summary.invalid_reasons:
        text = reason
        for prefix in TRANSIENT_PREFIXES[:2]:
            text = text.removeprefix(prefix).strip()
        parts.append(text.split(" > ")[0].split("; ")[0].strip())
    return ", ".join(p for p in parts if p) or "no reason recorded"


def verdict_sentences(summary: Summary) -> list[str]:
    """One sentence per phase of the load, then whether the run is valid."""
    phases = phases_or_whole_run(summary)
    with_span = len(phases) > 1
    sentences = [phase_sentence(phase, with_span=with_span) for phase in phases]
    return [*sentences, validity_sentence(summary)]


def verdict_text(summary: Summary) -> str:
    """The sentences, one a line (the console's first lines)."""
    return "\n".join(verdict_sentences(summary))
