"""The run-result schema: `summary.json` is written and read only through this module.

One load-test run writes one folder, ``results/<UTC time>-<name>/``, holding ``config.json``
(every resolved setting), Locust's CSV/HTML, ``summary.json`` (this schema) and the report.
Everything in `reports/` reads only such folders; `loadtests/` writes them with `write_summary`.

Layout of ``summary.json`` (``schema_version`` 2; version 1, the same without ``phases``, still
reads). Latency metrics sit at the top level so that ``summary["ttft_ms"]["p50"]`` works from any
language::

    schema_version, name, started_at, duration_s, measured_s, warmup_s, target, load_model,
    valid, invalid_reasons, interrupted, saturation{...},
    requests, outcomes{ok, rejected, timeout, upstream_error, client_error, cancelled, error},
    rejection_rate, requests_per_s, ok_requests_per_s, output_tokens_per_s, goodput{...},
    ttft_ms{count, mean, min, max, p50, p90, p95, p99, p999}, itl_ms{...}, tpot_ms{...},
    e2e_ms{...}, thinking_ms{...}, rejected_ms{...}, client_lag_ms{...},
    ttft_from_intended_ms{...}, e2e_from_intended_ms{...},
    breakdown_ms{queue_wait{...}, pool_wait{...}, upstream_ttft{...}, relay_overhead{...},
                 client_lag{...}},
    open_loop{intended, sent, late, dropped} | null,
    trace{rows_in_window, sent, late, dropped, lateness_ms{...}, output_tokens{...},
          prompt_tokens{...}, ...} | null (trace replay; loadtests/trace.py),
    sessions{started, completed, failed, failed_at_turn{...}, ...} | null (agent sessions;
             loadtests/sessions.py),
    histograms{metric: base64 HDR histogram in microseconds},
    timeseries[{t_s, users, requests, ok, rejected, timeout, errors, output_tokens,
                ttft_p50_ms, ttft_p95_ms, itl_p50_ms, itl_p95_ms}],
    health[{t_s, client_lag_p99_ms, read_lag_p99_ms, loop_lag_max_ms, cpu_percent, cpu_sum_percent,
            runqueue_wait_percent, machine_busy_percent, others_cpu_percent, steal_percent,
            psi_cpu_some_avg10, cores}] (the load generator per second; loadtests/health.py),
    phases[{index, kind, label, start_s, end_s, users, rate_per_s, requests, outcomes{...},
            rejection_rate, requests_per_s, ok_requests_per_s, output_tokens,
            ttft_ms{...}, itl_ms{...}, e2e_ms{...}, rejected_ms{...},
            breakdown_ms{queue_wait{...}, pool_wait{...}, upstream_ttft{...},
                         relay_overhead{...}}}],
    versions{surgebench, python, locust}

``phases``: one entry per phase of the load, in time order: each level of a ``step`` or ``sweep``
shape, ``before_spike``/``spike``/``after_spike`` of a ``spike`` shape, else one ``whole`` phase.
``start_s``/``end_s`` count seconds from the start of the test, clipped to the measured window
(after the warm-up). A request belongs to the phase in which it *started*; each phase's
percentiles come from its own HDR histograms (merged exactly across load processes). ``users`` is
the phase's scheduled concurrency (closed loop), ``rate_per_s`` its offered rate (open loop);
the other is null.

The servers' side of the timeline, when it was scraped, is kept next to ``summary.json`` in
``server_metrics.jsonl`` (see `reports.servermetrics`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from surgebench.percentiles import nearest_rank

SCHEMA_VERSION = 2
READABLE_SCHEMA_VERSIONS: tuple[int, ...] = (1, 2)
"""Versions `Summary.from_dict` reads (1: no ``phases``)."""
SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.json"

OUTCOMES: tuple[str, ...] = (
    "ok",
    "rejected",
    "timeout",
    "upstream_error",
    "client_error",
    "cancelled",
    "error",
    "unfinished",
)
"""Outcome classes of a request, each counted apart (rejections are not failures). Their sum is
the number of requests sent, always: a request still in flight when the run stopped (after the
stop timeout) is ``unfinished`` (see `UNFINISHED`)."""

UNFINISHED = "unfinished"
"""Sent, but still in flight when the run stopped and its stop timeout ran out: neither ok nor
an error (how it would have ended is unknown). Counted in ``requests`` (the requests sent) and
in the rates' denominators, in no latency, not in ``requests_per_s`` (requests that ended), never
a regression by itself (``compare`` shows it)."""

ERROR_OUTCOMES: tuple[str, ...] = ("timeout", "upstream_error", "client_error", "error")
"""What "errors" means everywhere: the requests that failed. The error rate, the regression gate's
``errors`` metric and the console's ``errors=`` count these. Rejections (refused at once by
admission) and cancellations (the client gave up, or the run ended) are never errors."""

OTHER_ERROR_OUTCOMES: tuple[str, ...] = ERROR_OUTCOMES[1:]
"""The errors besides timeouts: a report's ``errors`` row and each ``timeseries`` point's
``errors``, shown next to their own ``timeout`` count."""

HDR_LOWEST_US = 1
HDR_HIGHEST_US = 3_600_000_000
HDR_SIGNIFICANT_FIGURES = 3
"""Every latency histogram in ``summary.histograms`` (and every recorder's) is
``HdrHistogram(HDR_LOWEST_US, HDR_HIGHEST_US, HDR_SIGNIFICANT_FIGURES)`` of microseconds: 1 us
to one hour, 3 significant digits. Longer values are recorded as one hour."""

LATENCY_METRICS: tuple[str, ...] = (
    "ttft_ms",
    "itl_ms",
    "tpot_ms",
    "e2e_ms",
    "thinking_ms",
    "rejected_ms",
    "client_lag_ms",
    "ttft_from_intended_ms",
    "e2e_from_intended_ms",
)
"""Latency distributions kept per run, named as in vLLM's benchmark where a name exists."""

BREAKDOWN_PARTS: tuple[str, ...] = (
    "queue_wait",
    "pool_wait",
    "upstream_ttft",
    "relay_overhead",
    "client_lag",
)
"""Where the time to first token went, from the service's `done` event and the client's lag."""


PHASE_METRICS: tuple[str, ...] = ("ttft_ms", "itl_ms", "e2e_ms", "rejected_ms")
"""Latency distributions kept per phase."""

PHASE_KINDS: tuple[str, ...] = ("whole", "step", "level", "before_spike", "spike", "after_spike")


class ResultsError(ValueError):
    """A results folder or summary that cannot be read; the message says which file and why."""


EFFECTIVE_SHOWN: dict[str, tuple[str, ...]] = {
    "service": ("admission", "max_concurrent", "workers", "queue_size", "queue_timeout_s",
                "timeout_s", "upstream_max_connections", "agent_steps", "processes"),
    "mock": ("mode", "ttft_ms", "itl_ms", "output_tokens", "max_num_seqs", "step_base_ms",
             "step_per_seq_ms", "seed", "processes"),
}  # fmt: skip
"""Of each server's effective settings (``effective`` in config.json and summary.json, as the
server's ``GET /config`` reported them), the ones the console and the report show; all of them
stay in config.json."""


def effective_highlights(component: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The shown subset of one server's effective settings; the mock's engine-step settings only
    in engine mode."""
    keys = EFFECTIVE_SHOWN.get(component, ())
    if component == "mock" and settings.get("mode") != "engine":
        keys = tuple(k for k in keys if not k.startswith(("step_", "max_num_seqs")))
    return {k: settings[k] for k in keys if k in settings}


@dataclass(frozen=True)
class LatencyStats:
    """Distribution of one latency metric, in milliseconds."""

    count: int = 0
    mean: float | None = None
    min: float | None = None
    max: float | None = None
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    p999: float | None = None

    @classmethod
    def from_values(cls, values: Iterable[float]) -> LatencyStats:
        """Exact statistics of raw samples (nearest-rank percentiles)."""
        ordered = sorted(values)
        if not ordered:
            return cls()

        def rank(q: float) -> float:
            return ordered[nearest_rank(q, len(ordered)) - 1]

        return cls(
            count=len(ordered),
            mean=sum(ordered) / len(ordered),
            min=ordered[0],
            max=ordered[-1],
            p50=rank(50),
            p90=rank(90),
            p95=rank(95),
            p99=rank(99),
            p999=rank(99.9),
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatencyStats:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)

    def get(self, stat: str) -> float | None:
        """A statistic by name (``p95``, ``mean``, ...), or None when there were no samples."""
        if stat not in self.__dataclass_fields__ or stat == "count":
            raise KeyError(f"unknown statistic {stat!r}")
        value: float | None = getattr(self, stat)
        return value


@dataclass(frozen=True)
class TimePoint:
    """One second (or one bucket) of a run."""

    t_s: float
    users: int = 0
    requests: int = 0
    ok: int = 0
    rejected: int = 0
    timeout: int = 0
    errors: int = 0
    """`OTHER_ERROR_OUTCOMES` (the errors besides timeouts; cancellations are in no count here)."""
    output_tokens: int = 0
    ttft_p50_ms: float | None = None
    ttft_p95_ms: float | None = None
    itl_p50_ms: float | None = None
    itl_p95_ms: float | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TimePoint:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


class OutcomeFigures:
    """Figures derived from a span's outcome counts (a run, a phase): computed, never stored
    separately, so they cannot disagree. Subclasses give ``outcomes`` and ``rate_span_s``."""

    outcomes: dict[str, int]

    @property
    def rate_span_s(self) -> float:
        raise NotImplementedError

    @property
    def requests(self) -> int:
        """The requests sent: every outcome, `UNFINISHED` included."""
        return sum(self.outcomes.values())

    @property
    def unfinished(self) -> int:
        return self.outcomes.get(UNFINISHED, 0)

    @property
    def ended(self) -> int:
        """The requests that ended (any outcome but `UNFINISHED`)."""
        return self.requests - self.unfinished

    @property
    def rejection_rate(self) -> float:
        return self.outcomes.get("rejected", 0) / self.requests if self.requests else 0.0

    @property
    def requests_per_s(self) -> float:
        """Requests that ended per second (a request cut off at the stop did not)."""
        span_s = self.rate_span_s
        return self.ended / span_s if span_s > 0 else 0.0

    @property
    def ok_requests_per_s(self) -> float:
        span_s = self.rate_span_s
        return self.outcomes.get("ok", 0) / span_s if span_s > 0 else 0.0


@dataclass(frozen=True)
class Phase(OutcomeFigures):
    """One phase of the load: a level of a step or sweep, a part of a spike, or the whole run."""

    index: int
    kind: str
    label: str
    start_s: float
    end_s: float
    users: int | None = None
    rate_per_s: float | None = None
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    output_tokens: int = 0
    latency: dict[str, LatencyStats] = field(default_factory=dict)
    breakdown_ms: dict[str, LatencyStats] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return max(0.0, self.end_s - self.start_s)

    @property
    def rate_span_s(self) -> float:
        return self.duration_s

    def metric(self, name: str) -> LatencyStats:
        return self.latency.get(name, LatencyStats())

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "index": self.index,
            "kind": self.kind,
            "label": self.label,
            "start_s": self.start_s,
            "end_s": self.end_s,
            "users": self.users,
            "rate_per_s": self.rate_per_s,
            "requests": self.requests,
            "outcomes": {k: int(self.outcomes.get(k, 0)) for k in OUTCOMES},
            "rejection_rate": self.rejection_rate,
            "requests_per_s": self.requests_per_s,
            "ok_requests_per_s": self.ok_requests_per_s,
            "output_tokens": self.output_tokens,
        }
        for metric in PHASE_METRICS:
            data[metric] = asdict(self.latency.get(metric, LatencyStats()))
        data["breakdown_ms"] = {k: asdict(v) for k, v in self.breakdown_ms.items()}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Phase:
        users, rate = data.get("users"), data.get("rate_per_s")
        return cls(
            index=int(data["index"]),
            kind=str(data["kind"]),
            label=str(data["label"]),
            start_s=float(data["start_s"]),
            end_s=float(data["end_s"]),
            users=None if users is None else int(users),
            rate_per_s=None if rate is None else float(rate),
            outcomes={k: int(data.get("outcomes", {}).get(k, 0)) for k in OUTCOMES},
            output_tokens=int(data.get("output_tokens", 0)),
            latency={
                m: LatencyStats.from_dict(data[m])
                for m in PHASE_METRICS
                if isinstance(data.get(m), Mapping)
            },
            breakdown_ms={
                k: LatencyStats.from_dict(v) for k, v in data.get("breakdown_ms", {}).items()
            },
        )


@dataclass
class Summary(OutcomeFigures):
    """Everything a report, a comparison or a capacity search needs from one run."""

    name: str
    started_at: str
    duration_s: float
    measured_s: float
    target: str = ""
    load_model: str = "closed"
    warmup_s: float = 0.0
    valid: bool = True
    invalid_reasons: list[str] = field(default_factory=list)
    interrupted: bool = False
    """The run was stopped early (Ctrl-C, SIGTERM); `measured_s` is what ran."""
    saturation: dict[str, float | None] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    output_tokens: int = 0
    goodput: dict[str, Any] = field(default_factory=dict)
    latency: dict[str, LatencyStats] = field(default_factory=dict)
    breakdown_ms: dict[str, LatencyStats] = field(default_factory=dict)
    open_loop: dict[str, int] | None = None
    trace: dict[str, Any] | None = None
    sessions: dict[str, Any] | None = None
    histograms: dict[str, str] = field(default_factory=dict)
    timeseries: list[TimePoint] = field(default_factory=list)
    phases: list[Phase] = field(default_factory=list)
    health: list[dict[str, float | None]] = field(default_factory=list)
    """The load generator's health per second (`loadtests.health`): lag, CPU, contention."""
    config: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    effective: dict[str, Any] = field(default_factory=dict)
    """What the mock and the service said they ran with (``GET /config``): ``{"mock": {...} |
    None, "service": {...} | None}``; empty for runs recorded before it existed."""
    schema_version: int = SCHEMA_VERSION

    @property
    def rate_span_s(self) -> float:
        return self.measured_s

    @property
    def output_tokens_per_s(self) -> float:
        return self.output_tokens / self.measured_s if self.measured_s > 0 else 0.0

    def metric(self, name: str) -> LatencyStats:
        """A latency metric (``ttft_ms``...); empty stats when the run has none."""
        return self.latency.get(name, LatencyStats())

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "schema_version": self.schema_version,
            "name": self.name,
            "started_at": self.started_at,
            "duration_s": self.duration_s,
            "measured_s": self.measured_s,
            "warmup_s": self.warmup_s,
            "target": self.target,
            "load_model": self.load_model,
            "valid": self.valid,
            "invalid_reasons": list(self.invalid_reasons),
            "interrupted": self.interrupted,
            "saturation": dict(self.saturation),
            "requests": self.requests,
            "outcomes": {k: int(self.outcomes.get(k, 0)) for k in OUTCOMES},
            "rejection_rate": self.rejection_rate,
            "requests_per_s": self.requests_per_s,
            "ok_requests_per_s": self.ok_requests_per_s,
            "output_tokens": self.output_tokens,
            "output_tokens_per_s": self.output_tokens_per_s,
            "goodput": dict(self.goodput),
        }
        for metric in LATENCY_METRICS:
            data[metric] = asdict(self.latency.get(metric, LatencyStats()))
        data["breakdown_ms"] = {k: asdict(v) for k, v in self.breakdown_ms.items()}
        data["open_loop"] = self.open_loop
        data["trace"] = self.trace
        data["sessions"] = self.sessions
        data["histograms"] = dict(self.histograms)
        data["timeseries"] = [asdict(p) for p in self.timeseries]
        data["phases"] = [p.to_dict() for p in self.phases]
        data["health"] = [dict(p) for p in self.health]
        data["config"] = self.config
        data["versions"] = dict(self.versions)
        data["effective"] = dict(self.effective)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "summary") -> Summary:
        version = data.get("schema_version")
        if version not in READABLE_SCHEMA_VERSIONS:
            raise ResultsError(
                f"{source}: schema_version {version!r} is not supported (this surgebench reads "
                f"{', '.join(map(str, READABLE_SCHEMA_VERSIONS))}); re-run the test or use the "
                "surgebench that wrote it"
            )
        validate_summary_data(data, source)
        try:
            outcomes = {k: int(data.get("outcomes", {}).get(k, 0)) for k in OUTCOMES}
            return cls(
                name=str(data["name"]),
                started_at=str(data["started_at"]),
                duration_s=float(data["duration_s"]),
                measured_s=float(data["measured_s"]),
                warmup_s=float(data.get("warmup_s", 0.0)),
                target=str(data.get("target", "")),
                load_model=str(data.get("load_model", "closed")),
                valid=bool(data.get("valid", True)),
                invalid_reasons=list(data.get("invalid_reasons", [])),
                interrupted=bool(data.get("interrupted", False)),
                saturation=dict(data.get("saturation", {})),
                outcomes=outcomes,
                output_tokens=int(data.get("output_tokens", 0)),
                goodput=dict(data.get("goodput", {})),
                latency={
                    m: LatencyStats.from_dict(data[m])
                    for m in LATENCY_METRICS
                    if isinstance(data.get(m), Mapping)
                },
                breakdown_ms={
                    k: LatencyStats.from_dict(v) for k, v in data.get("breakdown_ms", {}).items()
                },
                open_loop=data.get("open_loop"),
                trace=data.get("trace"),
                sessions=data.get("sessions"),
                histograms=dict(data.get("histograms", {})),
                timeseries=[TimePoint.from_dict(p) for p in data.get("timeseries", [])],
                phases=[Phase.from_dict(p) for p in data.get("phases", [])],
                health=[dict(p) for p in data.get("health", []) if isinstance(p, Mapping)],
                config=dict(data.get("config", {})),
                versions=dict(data.get("versions", {})),
                effective=dict(data.get("effective") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ResultsError(f"{source}: malformed summary ({exc!r})") from exc


def phases_or_whole_run(summary: Summary) -> list[Phase]:
    """The run's phases; a summary without any (schema 1) reads as one ``whole`` phase."""
    if summary.phases:
        return list(summary.phases)
    users = max((p.users for p in summary.timeseries), default=0) or None
    return [
        Phase(
            index=0,
            kind="whole",
            label=f"{users} users" if users and summary.load_model == "closed" else "whole run",
            start_s=summary.warmup_s,
            end_s=summary.warmup_s + summary.measured_s,
            users=users if summary.load_model == "closed" else None,
            outcomes=dict(summary.outcomes),
            output_tokens=summary.output_tokens,
            latency={m: summary.metric(m) for m in PHASE_METRICS if summary.metric(m).count},
            breakdown_ms=dict(summary.breakdown_ms),
        )
    ]


_REQUIRED_NUMBERS = ("duration_s", "measured_s")
_MAPPINGS = (
    "outcomes",
    "saturation",
    "goodput",
    "breakdown_ms",
    "histograms",
    "config",
    "versions",
)
_LISTS = ("invalid_reasons", "timeseries", "phases", "health")


def validate_summary_data(data: Mapping[str, Any], source: str = "summary") -> None:
    """Refuse a summary that a report or a comparison cannot trust, naming the first bad field:
    missing keys, wrong shapes (`outcomes` not an object of counts, a latency block not an
    object...), and any NaN or infinite number anywhere (JSON readers accept `NaN` and `1e999`)."""

    def bad(where: str, why: str) -> ResultsError:
        return ResultsError(f"{source}: malformed summary: {where} {why}")

    def finite(value: Any, where: str) -> None:
        if isinstance(value, float) and not math.isfinite(value):
            raise bad(where, f"is {value!r}; figures must be finite numbers")
        if isinstance(value, Mapping):
            for key, item in value.items():
                finite(item, f"{where}.{key}")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                finite(item, f"{where}[{index}]")

    def number(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    for key in ("name", "started_at", *_REQUIRED_NUMBERS):
        if key not in data:
            raise bad(key, "is missing")
    for key in _REQUIRED_NUMBERS:
        if not number(data[key]) or data[key] < 0:
            raise bad(key, f"is {data[key]!r}; expected a number >= 0")
    for key in _MAPPINGS:
        if key in data and not isinstance(data[key], Mapping):
            raise bad(key, f"is a {type(data[key]).__name__}; expected an object")
    for key in _LISTS:
        if key in data and not isinstance(data[key], list):
            raise bad(key, f"is a {type(data[key]).__name__}; expected a list")
    for outcome, count in data.get("outcomes", {}).items():
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise bad(f"outcomes.{outcome}", f"is {count!r}; expected a count >= 0")
    for key in ("valid", "interrupted"):
        if key in data and not isinstance(data[key], bool):
            raise bad(key, f"is {data[key]!r}; expected true or false")
    blocks = [(m, data.get(m)) for m in LATENCY_METRICS if m in data]
    blocks += [(f"breakdown_ms.{k}", v) for k, v in data.get("breakdown_ms", {}).items()]
    for where, block in blocks:
        if not isinstance(block, Mapping):
            raise bad(where, "is not an object of statistics")
        for stat, value in block.items():
            if value is not None and not number(value):
                raise bad(f"{where}.{stat}", f"is {value!r}; expected a number or null")
    for index, point in enumerate(data.get("timeseries", [])):
        if not isinstance(point, Mapping):
            raise bad(f"timeseries[{index}]", "is not an object")
    open_loop = data.get("open_loop")
    if open_loop is not None and not isinstance(open_loop, Mapping):
        raise bad("open_loop", "is not an object or null")
    for key, value in data.items():
        finite(value, str(key))


def write_summary(run_dir: Path, summary: Summary) -> Path:
    """Write ``run_dir/summary.json`` atomically and return its path."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / SUMMARY_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary.to_dict(), indent=2, allow_nan=False) + "\n", "utf-8")
    tmp.replace(path)
    return path


def read_summary(path: Path) -> Summary:
    """Read a summary from a run folder or a ``summary.json`` path."""
    file = path / SUMMARY_FILE if path.is_dir() else path
    if not file.exists():
        raise ResultsError(f"{path}: no {SUMMARY_FILE} here; is this a surgebench run folder?")
    try:
        data = json.loads(file.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{file}: not readable as JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ResultsError(f"{file}: expected a JSON object")
    return Summary.from_dict(data, source=str(file))


def write_config(run_dir: Path, config: Mapping[str, Any]) -> Path:
    """Write the resolved configuration of a run (secrets must already be removed)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / CONFIG_FILE
    path.write_text(json.dumps(config, indent=2, default=str) + "\n", "utf-8")
    return path


_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def new_run_dir(out: Path, name: str, now: datetime | None = None) -> Path:
    """``out/<UTC time>-<name>/``, created; a suffix keeps two runs in one second apart."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    base = f"{stamp}-{_SAFE_NAME.sub('-', name).strip('-') or 'run'}"
    for attempt in range(1000):
        candidate = out / (base if attempt == 0 else f"{base}-{attempt}")
        try:
            candidate.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            continue
        return candidate
    raise ResultsError(f"{out}: could not create a new run folder named {base}")


def find_run_dirs(paths: Sequence[Path]) -> list[Path]:
    """Run folders among `paths`: each path is a run folder or a folder of run folders."""
    found: list[Path] = []
    for path in paths:
        if (path / SUMMARY_FILE).exists():
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(p.parent for p in path.glob(f"*/{SUMMARY_FILE}")))
        else:
            raise ResultsError(f"{path}: not a folder")
    return found
