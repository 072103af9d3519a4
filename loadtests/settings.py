"""`surgebench run`'s resolved configuration: one frozen object, parsed from flags (exit 2 on a bad
one), written once to the run folder's ``config.json`` and rebuilt from it by every Locust process.

Locust-free. ``--mock-FLAG VALUE`` and ``--service-FLAG VALUE`` are passed through to the mock
(as ``--FLAG VALUE``) and the service; a ``--mock-FLAG`` followed by another flag (or nothing)
is passed as a bare switch (``--mock-no-stamp`` -> ``--no-stamp``).

Every default is defined once, on `RunSettings`; the flag parser shows those.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtests.arrivals import ARRIVAL_KINDS
from loadtests.process_count import mock_itl_ms, plan_processes, usable_cores
from loadtests.prompts import LengthSpec, PromptSpecError
from loadtests.schedules import ShapeSpecError, parse_schedule
from surgebench.options import (
    OptionError,
    argparse_message,
    check_range,
    is_loopback,
    range_words,
    shown,
)
from surgebench.units import DurationError, format_duration_s, parse_duration_s

USER_CLASSES = {
    "stream": "StreamingChatUser",
    "chat": "ChatUser",
    "batch": "BatchUser",
    "direct": "DirectLLMUser",
    "session": "AgentSessionUser",
}

DEFAULT_SHAPE = "spike:8:24:25:15"
"""The no-flag demo: 8 users, a spike to 24 from 25 s to 40 s, against a service that runs 8
and queues 8, so the spike meets queue-full rejections while TTFT and throughput are shown."""

DEFAULT_MOCK = ("--ttft-ms", "100", "--itl-ms", "20", "--output-tokens", "40")
DEMO_SERVICE = ("--admission", "queue", "--max-concurrent", "8", "--queue-size", "8")
"""The no-flag demo's small queue. Only a run that names no load (no --users, --rate or --shape)
gets it; any other run uses the service's own defaults plus the --service-* flags it names."""

LOAD_FLAGS = ("--users", "--rate", "--shape")
CONFIG_VERSION = 1
"""``config.json``'s ``config_version``; `RunSettings.from_dict` refuses another."""


class SettingsError(ValueError):
    """A bad flag: the message names the flag, the value and what is allowed."""


@dataclass(frozen=True)
class RunSettings:
    """The resolved configuration of one run. `host` is filled in once the servers are up."""

    name: str = "default"
    out: Path = Path("results")
    run_dir: str = ""
    """Write into exactly this folder (the sweep chooses each cell's); empty: a new
    ``OUT/<UTC time>-<name>/``."""
    duration_s: float = 60.0
    users: int = 16
    spawn_rate: float = 0.0
    rate: float = 0.0
    arrival: str = "poisson"
    warmup_s: float = 5.0
    target: str = ""
    scrape: tuple[str, ...] = ()
    """Prometheus ``/metrics`` URLs scraped once a second during a ``--target`` run (the runner
    scrapes the servers it starts by itself)."""
    processes: int = 0
    """Locust processes; 0 is ``--processes auto`` (the default), which `parse_run_args`
    resolves with `loadtests.process_count.plan_processes` (so a parsed run has >= 1)."""
    processes_reason: str = ""
    """How many processes and why (``--processes auto``), printed when the run starts."""
    report: bool = True
    save_baseline: str = ""
    compare_baseline: str = ""
    thresholds: str = ""
    user: str = "stream"
    shape: str = ""
    prompt_words: str = "uniform:8:64"
    max_tokens: str = ""
    prompts: str = ""
    model: str = "mock"
    seed: int = 1
    slo_ttft_ms: float = 0.0
    slo_tpot_ms: float = 0.0
    slo_e2e_ms: float = 0.0
    think_s: float = 0.0
    reject_wait_s: float = 0.5
    progress_s: float = 5.0
    stop_timeout_s: float = 10.0
    request_timeout_s: float = 120.0
    max_client_lag_ms: float = 5.0
    max_loop_lag_ms: float = 5.0
    max_cpu_percent: float = 85.0
    strict: bool = False
    """Exit 3 when the run is invalid (the CI gate: figures a saturated generator distorted are
    not trusted)."""
    mock_args: tuple[str, ...] = ()
    service_args: tuple[str, ...] = ()
    explicit: frozenset[str] = field(default_factory=frozenset)
    host: str = ""
    demo: bool = False
    # trace replay and agent sessions (loadtests/trace.py, loadtests/sessions.py)
    trace: str = ""
    trace_speedup: float = 1.0
    trace_start_s: float = 0.0
    session_turns: str = "uniform:2:6"
    session_think_ms: str = "uniform:500:2000"
    session_user_tokens: str = "uniform:8:64"
    session_answer_tokens: str = "uniform:32:128"
    session_max_history_tokens: int = 3800
    session_agent_share: float = 0.0
    session_agent_steps: int = 3
    # across machines (docs/distributed.md): this run is a Locust master only
    master: bool = False
    expect_workers: int = 0
    """``--master``: the workers (``surgebench worker``) to wait for; 0 when not a master."""
    expect_workers_timeout_s: float = 60.0
    master_bind_host: str = "127.0.0.1"
    master_port: int = 5557
    """``--master``: the port workers connect to (Locust's default); 0 picks a free one."""

    @property
    def user_class(self) -> str:
        return USER_CLASSES[self.user]

    @property
    def effective_spawn_rate(self) -> float:
        return self.spawn_rate or float(max(self.users, 1))

    @property
    def load_model(self) -> str:
        """``closed``, ``shape:SPEC`` or ``open:KIND:RATE/s`` (as the summary records it)."""
        if self.trace:
            return f"trace:{Path(self.trace).name}:{self.trace_speedup:g}x"
        if self.rate > 0:
            return f"open:{self.arrival}:{self.rate:g}/s"
        return f"shape:{self.shape}" if self.shape else "closed"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every field, plus ``user_class`` and ``config_version``."""
        data = dataclasses.asdict(self)
        data["out"] = str(self.out)
        data["mock_args"] = list(self.mock_args)
        data["service_args"] = list(self.service_args)
        data["explicit"] = sorted(self.explicit)
        data["user_class"] = self.user_class
        data["config_version"] = CONFIG_VERSION
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSettings:
        """The inverse of `to_dict` (keys that are not fields, e.g. ``effective``, are skipped);
        raises `SettingsError` on a document of another version or a field of the wrong type."""
        version = data.get("config_version")
        if version != CONFIG_VERSION:
            raise SettingsError(
                f"config.json: config_version {version!r}; this surgebench reads {CONFIG_VERSION}"
            )
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                continue
            raw = data[f.name]
            default = f.default if f.default is not dataclasses.MISSING else frozenset()
            if isinstance(default, Path):
                values[f.name] = Path(str(raw))
            elif isinstance(default, tuple):
                values[f.name] = tuple(str(v) for v in raw)
            elif isinstance(default, frozenset):
                values[f.name] = frozenset(str(v) for v in raw)
            elif isinstance(default, bool):
                values[f.name] = _typed(f.name, raw, bool)
            elif isinstance(default, float):
                values[f.name] = float(_typed(f.name, raw, int | float))
            else:
                values[f.name] = _typed(f.name, raw, type(default))
        return cls(**values)


def _typed(name: str, value: Any, kind: Any) -> Any:
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise SettingsError(f"config.json: {name} = {value!r} has the wrong type")
    return value


def config_document(settings: RunSettings, effective: Mapping[str, Any]) -> dict[str, Any]:
    """What ``config.json`` holds: the settings and the servers' effective configuration."""
    return {**settings.to_dict(), "effective": dict(effective)}


def read_config_document(path: Path) -> dict[str, Any]:
    """A run's ``config.json`` as written by `config_document`; `SettingsError` if unreadable."""
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SettingsError(f"config.json {str(path)!r}: cannot read ({exc})") from None
    if not isinstance(data, dict):
        raise SettingsError(f"config.json {str(path)!r}: expected an object")
    return data


def read_config(path: Path) -> RunSettings:
    """Rebuild the run's `RunSettings` from its ``config.json`` (the Locust side does this)."""
    return RunSettings.from_dict(read_config_document(path))


DEFAULTS = RunSettings()
MAX_SCRAPE = 8


def _duration(flag: str, text: str) -> float:
    try:
        return parse_duration_s(text)
    except DurationError as exc:
        raise SettingsError(f"{flag}: {exc}") from None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise SettingsError(argparse_message(message, self.prog, _flag_ranges()))


POSITIVE_FLAGS = ("--rate", "--spawn-rate")
"""Flags whose 0 in `RunSettings` means "not set": a value given must be above 0."""


def _flag_ranges() -> dict[str, str]:
    """What each numeric flag a user types (``--users``) allows, in words (`RUN_BOUNDS`)."""
    ranges = {flag: range_words(lo, hi) for flag, lo, hi in RUN_BOUNDS.values() if " " not in flag}
    for flag in POSITIVE_FLAGS:
        ranges[flag] = f"> 0 and <= {RUN_BOUNDS[flag.removeprefix('--').replace('-', '_')][2]:g}"
    return ranges


def build_parser() -> argparse.ArgumentParser:
    d = DEFAULTS
    p = _Parser(
        prog="surgebench run",
        description=(
            "Start the mock LLM and the service on free 127.0.0.1 ports, run a Locust load "
            "test headless, write results/<time>-<name>/ (config.json, Locust CSV/HTML, "
            "summary.json) and a report. With no load flags (--users, --rate, --shape): a ~1 "
            "minute spike against a small demo queue; otherwise the service runs with its own "
            "defaults plus the --service-FLAG VALUE flags given. Any --mock-FLAG VALUE / "
            "--service-FLAG VALUE is passed to that server."
        ),
    )
    a = p.add_argument
    dur = format_duration_s
    a("--name", default=d.name, help=f"run name (folder suffix; default {d.name})")
    a("--out", default=str(d.out), help=f"parent folder of the run folder (default {d.out})")
    a("--run-dir", default=d.run_dir, metavar="DIR", help="write the run into exactly DIR "
      "(instead of a new OUT/<time>-<name>/); DIR must not hold a run yet")  # fmt: skip
    a("--duration", default=dur(d.duration_s), help=f"test length, e.g. 30s, 2m "
      f"(default {dur(d.duration_s)})")  # fmt: skip
    a("--users", type=int, help=f"concurrent users (closed loop) or max in flight (open loop; "
      f"default {d.users})")  # fmt: skip
    a("--spawn-rate", type=float, help="users started per second (default: all at once)")
    a("--rate", type=float, help="open loop: arrivals per second, independent of responses")
    a("--arrival", default=d.arrival, help=f"open-loop arrivals: {', '.join(ARRIVAL_KINDS)} "
      f"(default {d.arrival})")  # fmt: skip
    a("--warmup", default=None, help=f"left out of the statistics (default "
      f"{dur(d.warmup_s)}, at most 1/4 of the run)")  # fmt: skip
    a("--target", default=d.target, help="test this running deployment; start no servers")
    a("--scrape", action="append", default=[], metavar="URL", help="with --target: a Prometheus "
      f"/metrics URL to scrape once a second (repeatable, at most {MAX_SCRAPE})")  # fmt: skip
    a("--processes", default="auto", help="Locust processes (distributed when > 1); auto: as "
      "many as the load needs at ~400 streams per process, at most the cores left after the "
      "local servers (default auto)")  # fmt: skip
    a("--no-report", action="store_true", help="do not run `surgebench report` afterwards")
    a("--save-baseline", default="", metavar="NAME", help="keep this run as baseline NAME")
    a("--compare-baseline", default="", metavar="NAME", help="gate this run on baseline NAME")
    a("--thresholds", default="", metavar="FILE", help="thresholds file for --compare-baseline")
    a("--user", default=d.user, help=f"scenario: {', '.join(USER_CLASSES)} (default {d.user})")
    a("--shape", default=None, help="step:S:STEP:EVERY_S:MAX, spike:B:P:AT_S:FOR_S, sweep:U1,U2:S")
    a("--prompt-words", default=d.prompt_words, help=f"prompt length spec in words "
      f"(default {d.prompt_words})")  # fmt: skip
    a("--max-tokens", default=d.max_tokens, help="output length spec sent as max_tokens")
    a("--prompts", default=d.prompts, help="JSONL prompt file (question, optional max_tokens)")
    a("--model", default=d.model, help=f"model name sent by the direct user (default {d.model})")
    a("--seed", type=int, default=d.seed)
    a("--slo-ttft-ms", type=float, default=d.slo_ttft_ms, help="goodput SLO on TTFT")
    a("--slo-tpot-ms", type=float, default=d.slo_tpot_ms, help="goodput SLO on TPOT")
    a("--slo-e2e-ms", type=float, default=d.slo_e2e_ms, help="goodput SLO on end-to-end latency")
    a("--think", default=dur(d.think_s), help="closed loop: pause between a user's requests")
    a("--reject-wait", default=dur(d.reject_wait_s), help=f"closed loop: pause after a "
      f"rejection (default {dur(d.reject_wait_s)})")  # fmt: skip
    a("--progress", default=dur(d.progress_s), help="progress line period (0 = none)")
    a("--stop-timeout", default=dur(d.stop_timeout_s), help="let in-flight streams finish at "
      f"the end (default {dur(d.stop_timeout_s)})")  # fmt: skip
    a("--request-timeout", default=dur(d.request_timeout_s), help="per-read timeout of a "
      f"request (default {dur(d.request_timeout_s)})")  # fmt: skip
    a("--max-client-lag-ms", type=float, default=d.max_client_lag_ms, help="validity: client "
      f"lag p99 limit (default {d.max_client_lag_ms:g})")  # fmt: skip
    a("--max-loop-lag-ms", type=float, default=d.max_loop_lag_ms, help="validity: event-loop "
      f"lag p99 limit (default {d.max_loop_lag_ms:g}); with kernel timestamps the read-lag p99 "
      "limit is half the median ITL, never below this")  # fmt: skip
    a("--max-cpu-percent", type=float, default=d.max_cpu_percent, help="validity: generator "
      f"CPU limit (default {d.max_cpu_percent:g})")  # fmt: skip
    a("--strict", action="store_true", help="exit 3 when the run is invalid (the load "
      "generator's own lag or CPU distorted the figures); for CI")  # fmt: skip
    add_workload_arguments(p, d)
    add_master_arguments(p, d)
    return p


def add_master_arguments(p: argparse.ArgumentParser, d: RunSettings) -> None:
    a = p.add_argument
    a("--master", action="store_true", help="across machines: run only the Locust master "
      "here; the users run in `surgebench worker --master-host HOST` processes "
      "(docs/distributed.md)")  # fmt: skip
    a("--expect-workers", type=int, default=None, metavar="N", help="with --master: start the "
      "test once N workers have connected (required with --master)")  # fmt: skip
    a("--expect-workers-timeout", default=format_duration_s(d.expect_workers_timeout_s),
      metavar="DURATION",
      help="with --master: give up (exit 1) when fewer workers connected by then (default "
      f"{format_duration_s(d.expect_workers_timeout_s)})")  # fmt: skip
    a("--master-bind-host", default=d.master_bind_host, metavar="HOST", help="with --master: "
      f"the address workers connect to (default {d.master_bind_host}: this machine only; "
      "0.0.0.0 for workers on other hosts, printed as a warning)")  # fmt: skip
    a("--master-port", type=int, default=None, metavar="PORT", help="with --master: the port "
      f"workers connect to (default {d.master_port}; 0: a free port, printed)")  # fmt: skip


def master_fields(ns: argparse.Namespace, explicit: frozenset[str]) -> dict[str, Any]:
    """The ``--master`` fields of `RunSettings`, validated (exit-2 messages name the flag);
    ``processes`` is the number of workers (each takes its share of an open-loop rate)."""
    given = [f for f in ("--expect-workers", "--expect-workers-timeout", "--master-bind-host",
                         "--master-port") if f in explicit]  # fmt: skip
    if not ns.master:
        if given:
            raise SettingsError(f"{given[0]}: only with --master")
        return {}
    if "--processes" in explicit:
        raise SettingsError(
            "--processes: not with --master (the workers are `surgebench worker` processes; "
            "use --expect-workers N)"
        )
    if ns.expect_workers is None:
        raise SettingsError("--expect-workers: required with --master; allowed: an integer >= 1")
    if ns.expect_workers < 1:
        raise SettingsError(f"--expect-workers: bad value {ns.expect_workers}; allowed: >= 1")
    timeout_s = _duration("--expect-workers-timeout", ns.expect_workers_timeout)
    if timeout_s <= 0:
        raise SettingsError(f"--expect-workers-timeout: {ns.expect_workers_timeout!r} must be > 0")
    host = ns.master_bind_host
    if not re.fullmatch(r"[A-Za-z0-9_.:*-]{1,253}", host):
        raise SettingsError(
            f"--master-bind-host: bad value {host!r}; allowed: an IP address or host name"
        )
    if not ns.target and not is_loopback(host):
        raise SettingsError(
            "--master-bind-host: workers on other hosts need --target URL (a deployment they "
            "can reach); the mock and service a run starts listen on 127.0.0.1 only"
        )
    port = DEFAULTS.master_port if ns.master_port is None else ns.master_port
    return {
        "master": True,
        "expect_workers": ns.expect_workers,
        "expect_workers_timeout_s": timeout_s,
        "master_bind_host": host,
        "master_port": port,
        "processes": ns.expect_workers,
        "processes_reason": f"--master: {ns.expect_workers} workers (surgebench worker) run "
        "the users; this process runs the Locust master only",
    }


# -- trace replay and agent sessions ------------------------------------------------------------
TRACE_USERS = ("stream", "direct")
TRACE_MAX_USERS = 4096


def add_workload_arguments(p: argparse.ArgumentParser, d: RunSettings) -> None:
    a = p.add_argument
    a("--trace", default=d.trace, metavar="FILE", help="replay a trace open-loop at its recorded "
      "times: Azure CSV (TIMESTAMP,ContextTokens,GeneratedTokens) or Mooncake JSONL; --duration "
      "is the window")  # fmt: skip
    a("--trace-speedup", type=float, default=d.trace_speedup, help="replay X times faster "
      f"(default {d.trace_speedup:g})")  # fmt: skip
    a("--trace-start", default=format_duration_s(d.trace_start_s), help="offset into the trace "
      "where the window starts (default 0s)")  # fmt: skip
    a("--session-turns", default=d.session_turns, help="session user: turns per session, a "
      f"length spec (default {d.session_turns})")  # fmt: skip
    a("--session-think-ms", default=d.session_think_ms, help="session user: pause before each "
      f"later turn, ms spec or 0 (default {d.session_think_ms})")  # fmt: skip
    a("--session-user-tokens", default=d.session_user_tokens, help="session user: new user "
      f"message per turn, tokens (default {d.session_user_tokens})")  # fmt: skip
    a("--session-answer-tokens", default=d.session_answer_tokens, help="session user: max_tokens "
      f"per turn (default {d.session_answer_tokens})")  # fmt: skip
    a("--session-max-history-tokens", type=int, default=d.session_max_history_tokens,
      help="session user: history bound; the oldest messages are dropped past it "
      f"(default {d.session_max_history_tokens})")  # fmt: skip
    a("--session-agent-share", type=float, default=d.session_agent_share, help="session user: "
      "probability that a turn asks the service for agent mode, drawn per turn from --seed "
      f"(0: every turn in the service's own mode; default {d.session_agent_share:g})")  # fmt: skip
    a("--session-agent-steps", type=int, default=d.session_agent_steps, help="session user: LLM "
      "calls of an agent turn, sent as agent_steps (plan, tool steps, answer; default "
      f"{d.session_agent_steps})")  # fmt: skip


def workload_fields(
    ns: argparse.Namespace, duration_s: float, open_loop: bool, shape_given: bool
) -> dict[str, Any]:
    """The trace and session fields of `RunSettings`, validated (exit-2 messages name the flag);
    with ``--trace``, also ``users`` (when not given) and the server flags the replay needs."""
    from loadtests.sessions import SessionSettings, SessionSpecError
    from loadtests.trace import TraceError, TraceWindow, load_trace

    fields: dict[str, Any] = {
        "session_turns": ns.session_turns,
        "session_think_ms": ns.session_think_ms,
        "session_user_tokens": ns.session_user_tokens,
        "session_answer_tokens": ns.session_answer_tokens,
        "session_max_history_tokens": ns.session_max_history_tokens,
        "session_agent_share": ns.session_agent_share,
        "session_agent_steps": ns.session_agent_steps,
    }
    check_bounds(fields)
    try:
        SessionSettings(**{k.removeprefix("session_"): v for k, v in fields.items()})
    except SessionSpecError as exc:
        raise SettingsError(f"--session-{str(exc).replace('_', '-')}") from None
    if not ns.trace:
        return fields
    start_s = _duration("--trace-start", ns.trace_start)
    if ns.user not in TRACE_USERS:
        raise SettingsError(
            f"--trace: replays with --user {' or '.join(TRACE_USERS)}, not {ns.user!r}"
        )
    if open_loop or shape_given:
        raise SettingsError("--trace: the trace sets the arrivals; drop --rate / --shape")
    try:
        window = TraceWindow(start_s=start_s, duration_s=duration_s, speedup=ns.trace_speedup)
    except TraceError as exc:
        raise SettingsError(f"--trace-speedup/--trace-start: {exc}") from None
    try:
        trace = load_trace(Path(ns.trace), window)
    except TraceError as exc:
        raise SettingsError(f"--trace: {exc}") from None
    per_s: dict[int, int] = {}
    for item in trace.schedule():
        per_s[int(item.offset_s)] = per_s.get(int(item.offset_s), 0) + 1
    fields.update(
        trace=str(Path(ns.trace).resolve()),
        trace_speedup=ns.trace_speedup,
        trace_start_s=start_s,
        # most rows in flight: a minute of the peak second's arrivals
        trace_users=min(TRACE_MAX_USERS, max(64, 60 * max(per_s.values()))),
        trace_max_prompt_tokens=max(trace.prompt_tokens),
        trace_max_output_tokens=max(trace.output_tokens),
    )
    return fields


def _split_passthrough(argv: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    own: list[str] = []
    mock: list[str] = []
    service: list[str] = []
    i = 0
    args = list(argv)
    while i < len(args):
        arg = args[i]
        for prefix, bucket in (("--mock-", mock), ("--service-", service)):
            if arg.startswith(prefix) and len(arg) > len(prefix):
                name, eq, value = arg[len(prefix) :].partition("=")
                bucket.append(f"--{name}")
                if eq:
                    bucket.append(value)
                elif i + 1 < len(args) and not args[i + 1].startswith("--"):
                    bucket.append(args[i + 1])
                    i += 1
                break
        else:
            own.append(arg)
        i += 1
    return own, mock, service


def parse_run_args(argv: Sequence[str]) -> RunSettings:
    """Flags -> settings; raises `SettingsError` naming the bad flag and the allowed values."""
    own, mock, service = _split_passthrough(argv)
    ns = build_parser().parse_args(own)
    for flag, value in (("--rate", ns.rate), ("--spawn-rate", ns.spawn_rate)):
        hi = RUN_BOUNDS[flag.removeprefix("--").replace("-", "_")][2]
        if value is not None and not 0 < value <= hi:  # NaN fails too
            allowed = _flag_ranges()[flag]
            raise SettingsError(
                f"{flag}: invalid value {shown(value)} (allowed: a number {allowed})"
            )
    check_bounds(vars(ns))
    explicit = frozenset(a.split("=")[0] for a in own if a.startswith("--"))
    duration_s = _duration("--duration", ns.duration)
    if duration_s <= 0:
        raise SettingsError(f"--duration: {ns.duration!r} must be > 0")
    if ns.warmup is None:
        warmup_s = min(DEFAULTS.warmup_s, duration_s / 4)
    else:
        warmup_s = _duration("--warmup", ns.warmup)
    if warmup_s >= duration_s:
        raise SettingsError(f"--warmup: {ns.warmup!r} must be shorter than --duration")
    if ns.user not in USER_CLASSES:
        raise SettingsError(f"--user: bad value {ns.user!r}; allowed: {', '.join(USER_CLASSES)}")
    if ns.arrival not in ARRIVAL_KINDS:
        raise SettingsError(
            f"--arrival: bad value {ns.arrival!r}; allowed: {', '.join(ARRIVAL_KINDS)}"
        )
    if ns.users is not None and ns.users < 1:
        raise SettingsError(f"--users: bad value {ns.users}; allowed: an integer >= 1")
    ns.processes = _processes_flag(ns.processes)
    if ns.target and not re.match(r"^https?://[^\s/]+", ns.target):
        raise SettingsError(f"--target: bad URL {ns.target!r}; allowed: http(s)://HOST[:PORT]")
    if ns.scrape and not ns.target:
        raise SettingsError(
            "--scrape: only with --target (a run that starts its servers scrapes them)"
        )
    if len(ns.scrape) > MAX_SCRAPE:
        raise SettingsError(f"--scrape: {len(ns.scrape)} URLs; allowed: at most {MAX_SCRAPE}")
    for url in ns.scrape:
        if not re.match(r"^https?://[^\s/]+(/\S*)?$", url):
            raise SettingsError(f"--scrape: bad URL {url!r}; allowed: http(s)://HOST[:PORT]/PATH")
    for flag, spec in (("--prompt-words", ns.prompt_words), ("--max-tokens", ns.max_tokens)):
        if spec:
            try:
                LengthSpec.parse(spec)
            except PromptSpecError as exc:
                raise SettingsError(f"{flag}: {exc}") from None
    if ns.prompts and not Path(ns.prompts).is_file():
        raise SettingsError(f"--prompts: {ns.prompts!r} is not a file; allowed: a JSONL file")
    request_timeout_s = _duration("--request-timeout", ns.request_timeout)
    if request_timeout_s <= 0:
        raise SettingsError(f"--request-timeout: {ns.request_timeout!r} must be > 0")
    open_loop = ns.rate is not None
    workload = workload_fields(ns, duration_s, open_loop, ns.shape is not None)
    replay_users = workload.pop("trace_users", 0)
    max_prompt = workload.pop("trace_max_prompt_tokens", 0)
    max_output = workload.pop("trace_max_output_tokens", 0)
    if replay_users and not ns.target:
        # exact lengths from the built-in servers (any explicit --mock-/--service- flag wins)
        mock = ["--output-tokens-dist", "max_tokens", *mock]
        if ns.user == "stream":
            limits = ["--max-question-chars", str(4 * max_prompt + 64)]
            service = [*limits, "--max-tokens-limit", str(max(4096, max_output)), *service]
    demo = ns.users is None and ns.shape is None and not open_loop and not replay_users
    shape = ns.shape if ns.shape is not None else (DEFAULT_SHAPE if demo else "")
    if shape and open_loop:
        raise SettingsError("--shape: cannot be combined with --rate (open loop); choose one")
    if shape:
        try:
            schedule = parse_schedule(shape, duration_s)
        except ShapeSpecError as exc:
            raise SettingsError(f"--shape: {exc}") from None
    users = (
        ns.users
        or replay_users
        or (schedule.max_users if shape else (max(16, int(ns.rate * 4)) if open_loop else 16))
    )
    if demo and not ns.target and ns.user != "direct":
        service = [*DEMO_SERVICE, *service]
    mock_args = (*DEFAULT_MOCK, *mock)
    processes, processes_reason = ns.processes, ""
    master = master_fields(ns, explicit)
    if master:
        processes, processes_reason = master.pop("processes"), master.pop("processes_reason")
    elif processes == 0:
        plan = plan_processes(users, usable_cores(), not ns.target, mock_itl_ms(mock_args))
        processes, processes_reason = plan.processes, plan.reason
    settings = RunSettings(
        name=ns.name,
        out=Path(ns.out),
        run_dir=_fresh_run_dir(ns.run_dir),
        duration_s=duration_s,
        users=users,
        spawn_rate=ns.spawn_rate or 0.0,
        rate=ns.rate or 0.0,
        arrival=ns.arrival,
        warmup_s=warmup_s,
        target=ns.target.rstrip("/"),
        scrape=tuple(ns.scrape),
        processes=processes,
        processes_reason=processes_reason,
        report=not ns.no_report,
        save_baseline=_baseline_name("--save-baseline", ns.save_baseline),
        compare_baseline=_baseline_name("--compare-baseline", ns.compare_baseline),
        thresholds=_thresholds_file(ns.thresholds),
        user=ns.user,
        shape=shape,
        prompt_words=ns.prompt_words,
        max_tokens=ns.max_tokens,
        prompts=str(Path(ns.prompts).resolve()) if ns.prompts else "",
        model=ns.model,
        seed=ns.seed,
        slo_ttft_ms=ns.slo_ttft_ms,
        slo_tpot_ms=ns.slo_tpot_ms,
        slo_e2e_ms=ns.slo_e2e_ms,
        think_s=_duration("--think", ns.think),
        reject_wait_s=_duration("--reject-wait", ns.reject_wait),
        progress_s=_duration("--progress", ns.progress),
        stop_timeout_s=_duration("--stop-timeout", ns.stop_timeout),
        request_timeout_s=request_timeout_s,
        max_client_lag_ms=ns.max_client_lag_ms,
        max_loop_lag_ms=ns.max_loop_lag_ms,
        max_cpu_percent=ns.max_cpu_percent,
        strict=ns.strict,
        mock_args=mock_args,
        service_args=tuple(service),
        explicit=explicit,
        demo=demo,
        **workload,
        **master,
    )
    check_bounds(vars(settings))
    return settings


RUN_BOUNDS: dict[str, tuple[str, float, float]] = {
    # RunSettings field: (flag, lowest, highest). Far above real use; listed in docs/reliability.md.
    "users": ("--users", 1, 100_000),
    "spawn_rate": ("--spawn-rate", 0, 100_000),
    "rate": ("--rate", 0, 10_000),
    "processes": ("--processes (0 = auto)", 1, 256),
    "seed": ("--seed", 0, 2**63 - 1),
    "slo_ttft_ms": ("--slo-ttft-ms", 0, 3_600_000),
    "slo_tpot_ms": ("--slo-tpot-ms", 0, 3_600_000),
    "slo_e2e_ms": ("--slo-e2e-ms", 0, 86_400_000),
    "max_client_lag_ms": ("--max-client-lag-ms", 0, 3_600_000),
    "max_loop_lag_ms": ("--max-loop-lag-ms", 0, 3_600_000),
    "max_cpu_percent": ("--max-cpu-percent", 0, 100_000),
    "duration_s": ("--duration (in s)", 0, 604_800),
    "warmup_s": ("--warmup (in s)", 0, 604_800),
    "think_s": ("--think (in s)", 0, 3600),
    "reject_wait_s": ("--reject-wait (in s)", 0, 3600),
    "progress_s": ("--progress (in s)", 0, 3600),
    "stop_timeout_s": ("--stop-timeout (in s)", 0, 3600),
    "request_timeout_s": ("--request-timeout (in s)", 0, 86_400),
    "trace_speedup": ("--trace-speedup", 0, 10_000),
    "trace_start_s": ("--trace-start (in s)", 0, 31_536_000),
    "session_max_history_tokens": ("--session-max-history-tokens", 0, 10_000_000),
    "session_agent_share": ("--session-agent-share", 0, 1),
    "session_agent_steps": ("--session-agent-steps", 2, 1000),
    "expect_workers": ("--expect-workers", 0, 256),
    "expect_workers_timeout_s": ("--expect-workers-timeout (in s)", 0, 86_400),
    "master_port": ("--master-port", 0, 65_535),
}


def check_bounds(values: dict[str, object]) -> None:
    """Refuse a number outside `RUN_BOUNDS` (NaN and infinities included), naming the flag."""
    for name, (flag, lo, hi) in RUN_BOUNDS.items():
        value = values.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                check_range(flag, value, lo, hi)
            except OptionError as exc:
                raise SettingsError(str(exc)) from None


def _processes_flag(text: str) -> int:
    """``--processes``: ``auto`` (0) or an integer >= 1."""
    if text == "auto":
        return 0
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise SettingsError(f"--processes: bad value {text!r}; allowed: auto or an integer >= 1")
    return value


def _baseline_name(flag: str, name: str) -> str:
    if not name:
        return ""
    from reports.baseline import check_name
    from reports.results import ResultsError

    try:
        return check_name(name)
    except ResultsError as exc:
        raise SettingsError(f"{flag}: {exc}") from None


def _fresh_run_dir(path: str) -> str:
    if path and (Path(path) / "summary.json").exists():
        raise SettingsError(
            f"--run-dir: {path!r} already holds a run (summary.json); allowed: a new or empty "
            "folder"
        )
    return str(Path(path).resolve()) if path else ""


def _thresholds_file(path: str) -> str:
    if path and not Path(path).is_file():
        raise SettingsError(f"--thresholds: {path!r} is not a file; allowed: a TOML or JSON file")
    return path
