"""`surgebench run`'s settings: one frozen object, parsed from flags with exit-2 errors.

Locust-free. ``--mock-FLAG VALUE`` and ``--service-FLAG VALUE`` are passed through to the mock
(as ``--FLAG VALUE``) and the service; a ``--mock-FLAG`` followed by another flag (or nothing)
is passed as a bare switch (``--mock-no-stamp`` -> ``--no-stamp``).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from loadtests.arrivals import ARRIVAL_KINDS
from loadtests.prompts import LengthSpec, PromptSpecError
from loadtests.schedules import ShapeSpecError, parse_schedule
from surgebench.options import OptionError, check_range

USER_CLASSES = {
    "stream": "StreamingChatUser",
    "chat": "ChatUser",
    "batch": "BatchUser",
    "direct": "DirectLLMUser",
}

DEFAULT_SHAPE = "spike:8:24:25:15"
"""The no-flag run: 8 users, a spike to 24 from 25 s to 40 s, against a service that runs 8
and queues 8, so the spike meets queue-full rejections while TTFT and throughput are shown."""

DEFAULT_MOCK = ("--ttft-ms", "100", "--itl-ms", "20", "--output-tokens", "40")
DEFAULT_SERVICE = ("--admission", "queue", "--workers", "8", "--queue-size", "8")


class SettingsError(ValueError):
    """A bad flag: the message names the flag, the value and what is allowed."""


@dataclass(frozen=True)
class RunSettings:
    name: str = "default"
    out: Path = Path("results")
    duration_s: float = 60.0
    users: int = 16
    spawn_rate: float = 0.0
    rate: float = 0.0
    arrival: str = "poisson"
    warmup_s: float = 5.0
    target: str = ""
    processes: int = 1
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
    max_client_lag_ms: float = 5.0
    max_cpu_percent: float = 85.0
    mock_args: tuple[str, ...] = ()
    service_args: tuple[str, ...] = ()
    explicit: frozenset[str] = field(default_factory=frozenset)

    @property
    def user_class(self) -> str:
        return USER_CLASSES[self.user]

    @property
    def effective_spawn_rate(self) -> float:
        return self.spawn_rate or float(max(self.users, 1))


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration_s(flag: str, text: str) -> float:
    match = _DURATION.match(text.strip())
    if not match:
        raise SettingsError(
            f"{flag}: bad duration {text!r}; allowed: a number with an optional unit "
            "ms, s, m or h (e.g. 30s, 2m)"
        )
    return float(match.group(1)) * _UNIT_S[match.group(2)]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise SettingsError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="surgebench run",
        description=(
            "Start the mock LLM and the service on free 127.0.0.1 ports, run a Locust load "
            "test headless, write results/<time>-<name>/ (config.json, Locust CSV/HTML, "
            "summary.json) and a report. With no flags: a ~1 minute spike against a small "
            "queue. Any --mock-FLAG VALUE / --service-FLAG VALUE is passed to that server."
        ),
    )
    a = p.add_argument
    a("--name", default="default", help="run name (folder suffix)")
    a("--out", default="results", help="parent folder of the run folder (default results)")
    a("--duration", default="60s", help="test length, e.g. 30s, 2m (default 60s)")
    a("--users", type=int, help="concurrent users (closed loop) or max in flight (open loop)")
    a("--spawn-rate", type=float, help="users started per second (default: all at once)")
    a("--rate", type=float, help="open loop: arrivals per second, independent of responses")
    a("--arrival", default="poisson", help="open-loop arrivals: poisson or constant")
    a("--warmup", default=None, help="left out of the statistics (default 5s, at most 1/4 run)")
    a("--target", default="", help="test this running deployment; start no servers")
    a("--processes", type=int, default=1, help="Locust processes (distributed mode when > 1)")
    a("--no-report", action="store_true", help="do not run `surgebench report` afterwards")
    a("--save-baseline", default="", metavar="NAME", help="keep this run as baseline NAME")
    a("--compare-baseline", default="", metavar="NAME", help="gate this run on baseline NAME")
    a("--thresholds", default="", metavar="FILE", help="thresholds file for --compare-baseline")
    a("--user", default="stream", help=f"scenario: {', '.join(USER_CLASSES)} (default stream)")
    a("--shape", default=None, help="step:S:STEP:EVERY_S:MAX, spike:B:P:AT_S:FOR_S, sweep:U1,U2:S")
    a("--prompt-words", default="uniform:8:64", help="prompt length spec (words)")
    a("--max-tokens", default="", help="output length spec sent as max_tokens")
    a("--prompts", default="", help="JSONL prompt file (question, optional max_tokens)")
    a("--model", default="mock", help="model name sent by the direct user")
    a("--seed", type=int, default=1)
    a("--slo-ttft-ms", type=float, default=0.0, help="goodput SLO on TTFT")
    a("--slo-tpot-ms", type=float, default=0.0, help="goodput SLO on TPOT")
    a("--slo-e2e-ms", type=float, default=0.0, help="goodput SLO on end-to-end latency")
    a("--think", default="0s", help="closed loop: pause between a user's requests")
    a("--reject-wait", default="0.5s", help="closed loop: pause after a rejection")
    a("--progress", default="5s", help="progress line period (0 = none)")
    a("--stop-timeout", default="10s", help="let in-flight streams finish at the end")
    a("--max-client-lag-ms", type=float, default=5.0, help="validity: client lag p99 limit")
    a("--max-cpu-percent", type=float, default=85.0, help="validity: generator CPU limit")
    return p


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
    check_bounds(vars(ns))
    explicit = frozenset(a.split("=")[0] for a in own if a.startswith("--"))
    duration_s = parse_duration_s("--duration", ns.duration)
    if duration_s <= 0:
        raise SettingsError(f"--duration: {ns.duration!r} must be > 0")
    if ns.warmup is None:
        warmup_s = min(5.0, duration_s / 4)
    else:
        warmup_s = parse_duration_s("--warmup", ns.warmup)
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
    if ns.processes < 1:
        raise SettingsError(f"--processes: bad value {ns.processes}; allowed: an integer >= 1")
    if ns.rate is not None and ns.rate <= 0:
        raise SettingsError(f"--rate: bad value {ns.rate}; allowed: a number > 0")
    if ns.spawn_rate is not None and ns.spawn_rate <= 0:
        raise SettingsError(f"--spawn-rate: bad value {ns.spawn_rate}; allowed: a number > 0")
    if ns.target and not re.match(r"^https?://[^\s/]+", ns.target):
        raise SettingsError(f"--target: bad URL {ns.target!r}; allowed: http(s)://HOST[:PORT]")
    for flag, spec in (("--prompt-words", ns.prompt_words), ("--max-tokens", ns.max_tokens)):
        if spec:
            try:
                LengthSpec.parse(spec)
            except PromptSpecError as exc:
                raise SettingsError(f"{flag}: {exc}") from None
    if ns.prompts and not Path(ns.prompts).is_file():
        raise SettingsError(f"--prompts: {ns.prompts!r} is not a file; allowed: a JSONL file")
    open_loop = ns.rate is not None
    no_load_flags = ns.users is None and ns.shape is None and not open_loop
    shape = ns.shape if ns.shape is not None else (DEFAULT_SHAPE if no_load_flags else "")
    if shape and open_loop:
        raise SettingsError("--shape: cannot be combined with --rate (open loop); choose one")
    if shape:
        try:
            schedule = parse_schedule(shape, duration_s)
        except ShapeSpecError as exc:
            raise SettingsError(f"--shape: {exc}") from None
    users = ns.users or (
        schedule.max_users if shape else (max(16, int(ns.rate * 4)) if open_loop else 16)
    )
    if not ns.target and ns.user != "direct":
        service = [*DEFAULT_SERVICE, *service]
    settings = RunSettings(
        name=ns.name,
        out=Path(ns.out),
        duration_s=duration_s,
        users=users,
        spawn_rate=ns.spawn_rate or 0.0,
        rate=ns.rate or 0.0,
        arrival=ns.arrival,
        warmup_s=warmup_s,
        target=ns.target.rstrip("/"),
        processes=ns.processes,
        report=not ns.no_report,
        save_baseline=_baseline_name("--save-baseline", ns.save_baseline),
        compare_baseline=_baseline_name("--compare-baseline", ns.compare_baseline),
        thresholds=_thresholds_file(ns.thresholds),
        user=ns.user,
        shape=shape,
        prompt_words=ns.prompt_words,
        max_tokens=ns.max_tokens,
        prompts=ns.prompts,
        model=ns.model,
        seed=ns.seed,
        slo_ttft_ms=ns.slo_ttft_ms,
        slo_tpot_ms=ns.slo_tpot_ms,
        slo_e2e_ms=ns.slo_e2e_ms,
        think_s=parse_duration_s("--think", ns.think),
        reject_wait_s=parse_duration_s("--reject-wait", ns.reject_wait),
        progress_s=parse_duration_s("--progress", ns.progress),
        stop_timeout_s=parse_duration_s("--stop-timeout", ns.stop_timeout),
        max_client_lag_ms=ns.max_client_lag_ms,
        max_cpu_percent=ns.max_cpu_percent,
        mock_args=(*DEFAULT_MOCK, *mock),
        service_args=tuple(service),
        explicit=explicit,
    )
    check_bounds(vars(settings))
    return settings


RUN_BOUNDS: dict[str, tuple[str, float, float]] = {
    # RunSettings field: (flag, lowest, highest). Far above real use; listed in docs/reliability.md.
    "users": ("--users", 1, 100_000),
    "spawn_rate": ("--spawn-rate", 0, 100_000),
    "rate": ("--rate", 0, 10_000),
    "processes": ("--processes", 1, 256),
    "seed": ("--seed", 0, 2**63 - 1),
    "slo_ttft_ms": ("--slo-ttft-ms", 0, 3_600_000),
    "slo_tpot_ms": ("--slo-tpot-ms", 0, 3_600_000),
    "slo_e2e_ms": ("--slo-e2e-ms", 0, 86_400_000),
    "max_client_lag_ms": ("--max-client-lag-ms", 0, 3_600_000),
    "max_cpu_percent": ("--max-cpu-percent", 0, 100_000),
    "duration_s": ("--duration (in s)", 0, 604_800),
    "warmup_s": ("--warmup (in s)", 0, 604_800),
    "think_s": ("--think (in s)", 0, 3600),
    "reject_wait_s": ("--reject-wait (in s)", 0, 3600),
    "progress_s": ("--progress (in s)", 0, 3600),
    "stop_timeout_s": ("--stop-timeout (in s)", 0, 3600),
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


def _baseline_name(flag: str, name: str) -> str:
    if not name:
        return ""
    from reports.baseline import check_name
    from reports.results import ResultsError

    try:
        return check_name(name)
    except ResultsError as exc:
        raise SettingsError(f"{flag}: {exc}") from None


def _thresholds_file(path: str) -> str:
    if path and not Path(path).is_file():
        raise SettingsError(f"--thresholds: {path!r} is not a file; allowed: a TOML or JSON file")
    return path
