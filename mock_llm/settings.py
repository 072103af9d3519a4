"""One frozen `MockSettings`, built from defaults < profile < env (`SURGE_MOCK_*`) < CLI flags.

Every knob is a dataclass field whose metadata says its flag help and its allowed values, so the
CLI, the environment, profile files and the error messages all come from one table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mock_llm.errors import SettingsError
from mock_llm.profiles import PROFILES

ENV_PREFIX = "SURGE_MOCK_"


def _num(default: float, help_: str, *, lo: float = 0.0, hi: float = math.inf) -> Any:
    return field(default=default, metadata={"help": help_, "lo": lo, "hi": hi})


def _int(default: int, help_: str, *, lo: int = 0, hi: int = 2**31) -> Any:
    return field(default=default, metadata={"help": help_, "lo": lo, "hi": hi})


def _choice(default: str, help_: str, choices: tuple[str, ...]) -> Any:
    return field(default=default, metadata={"help": help_, "choices": choices})


def _str(default: str, help_: str) -> Any:
    return field(default=default, metadata={"help": help_})


def _bool(default: bool, help_: str) -> Any:
    return field(default=default, metadata={"help": help_})


@dataclass(frozen=True)
class MockSettings:
    """Every knob of the mock. Units are in the names."""

    # server
    host: str = _str("127.0.0.1", "address to bind (a non-loopback address prints a warning)")
    port: int = _int(8001, "TCP port; 0 picks a free one", hi=65535)
    profile: str = _str("", "named profile or a .json/.toml profile file")
    api_key: str = _str("", "require 'Authorization: Bearer KEY' (401 otherwise); never logged")
    model: str = _str("mock-llm", "model id reported by /v1/models and in responses")
    served_models: str = _str("", "comma-separated model ids to accept (404 for others); empty=any")
    max_body_bytes: int = _int(1_048_576, "largest request body; larger gets 413", lo=1)
    read_timeout_s: float = _num(
        10.0, "a request must arrive whole within this; else 408", lo=0.001
    )
    keepalive_timeout_s: float = _num(
        75.0, "idle keep-alive connections close after this", lo=0.001
    )
    max_write_buffer_bytes: int = _int(
        8_388_608, "a client whose unread output exceeds this is dropped", lo=1024
    )
    # latency model
    mode: str = _choice(
        "hosted", "hosted: independent streams; engine: batched decode steps", ("hosted", "engine")
    )
    ttft_ms: float = _num(100.0, "hosted: median time to first token")
    ttft_sigma: float = _num(0.0, "hosted: lognormal sigma of TTFT (0 = exact)", hi=5.0)
    prefill_ms_per_token: float = _num(0.0, "hosted: TTFT added per prompt token")
    itl_ms: float = _num(20.0, "hosted: mean inter-token latency")
    itl_cv: float = _num(0.0, "hosted: coefficient of variation of each ITL draw (0 = exact)", hi=5)
    jitter: str = _choice("lognormal", "distribution of the jitter draws", ("normal", "lognormal"))
    step_base_ms: float = _num(10.0, "engine: fixed cost of one decode step")
    step_per_seq_ms: float = _num(0.0, "engine: step cost per running sequence")
    step_per_prefill_token_ms: float = _num(0.0, "engine: step cost per prefilled prompt token")
    step_jitter_cv: float = _num(0.0, "engine: coefficient of variation of each step", hi=5.0)
    max_batched_tokens: int = _int(8192, "engine: token budget of one step (chunked prefill)", lo=1)
    ttft_overhead_ms: float = _num(0.0, "engine: fixed frontend cost added to every TTFT")
    max_num_seqs: int = _int(0, "most sequences running at once (0 = unlimited); others wait")
    max_waiting: int = _int(0, "waiting-queue cap (0 = unbounded); overflow is rejected")
    overflow_status: int = field(
        default=503, metadata={"help": "status for a full waiting queue", "choices": (429, 503)}
    )
    # output
    output_tokens: int = _int(50, "output length (capped by the request's max_tokens)", lo=1)
    output_tokens_dist: str = _choice(
        "fixed",
        "output length: fixed, a seeded distribution, or max_tokens (the request's cap, always)",
        ("fixed", "uniform", "lognormal", "max_tokens"),
    )
    output_tokens_spread: float = _num(0.0, "uniform: +-fraction; lognormal: sigma", hi=5.0)
    text_lang: str = _choice("en", "language of the generated text", ("en", "zh"))
    seed: int = _int(0, "seed of text, lengths, jitter and faults")
    stamp: bool = _bool(False, "precede each streamed event with ': t=<time_ns>'")
    # rate limits (0 = off)
    rpm_limit: int = _int(0, "requests per minute before 429 (0 = off)")
    tpm_limit: int = _int(0, "tokens (prompt + max output) per minute before 429 (0 = off)")
    # faults (probabilities per request, seeded)
    fault_500_prob: float = _num(0.0, "probability of HTTP 500", hi=1.0)
    fault_503_prob: float = _num(0.0, "probability of HTTP 503", hi=1.0)
    fault_429_prob: float = _num(0.0, "probability of HTTP 429", hi=1.0)
    disconnect_prob: float = _num(0.0, "probability of closing the stream mid-way", hi=1.0)
    disconnect_after_tokens: int = _int(5, "tokens sent before an injected disconnect")
    stall_prob: float = _num(0.0, "probability of a mid-stream stall", hi=1.0)
    stall_after_tokens: int = _int(5, "tokens sent before an injected stall")
    stall_ms: float = _num(2000.0, "length of an injected stall")
    slow_first_token_prob: float = _num(0.0, "probability of a slow first token", hi=1.0)
    slow_first_token_ms: float = _num(2000.0, "extra TTFT of a slow first token")
    # replicas
    processes: int = _int(
        1, "worker processes on one port, each a replica with its own limits", lo=1, hi=64
    )

    def model_ids(self) -> list[str]:
        """Accepted model ids (empty: any id is accepted)."""
        return [m.strip() for m in self.served_models.split(",") if m.strip()]

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict, with the API key hidden."""
        out = dataclasses.asdict(self)
        if out["api_key"]:
            out["api_key"] = "***"
        return out


FIELDS: dict[str, dataclasses.Field[Any]] = {f.name: f for f in dataclasses.fields(MockSettings)}


def flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


def allowed_of(name: str) -> str:
    """Human text for the values a field accepts."""
    f = FIELDS[name]
    meta = f.metadata
    if "choices" in meta:
        return ", ".join(str(c) for c in meta["choices"])
    if f.type in ("bool", bool):
        return "true, false, 1, 0, yes, no"
    if f.type in ("int", int):
        hi = meta["hi"]
        return f"an integer >= {meta['lo']}" + (f" and <= {hi}" if hi < 2**31 else "")
    if f.type in ("float", float):
        hi = meta["hi"]
        return f"a number >= {meta['lo']:g}" + (f" and <= {hi:g}" if hi != math.inf else "")
    if name == "profile":
        return "a file path or one of: " + ", ".join(PROFILES)
    return "any text"


def convert(name: str, raw: object, source: str) -> object:
    """Convert and check one raw value; raise SettingsError naming the source, value and allowed."""
    f = FIELDS.get(name)
    if f is None:
        raise SettingsError(f"{source}: unknown setting {name!r}; allowed: {', '.join(FIELDS)}")
    meta = f.metadata
    try:
        value: object
        if f.type in ("bool", bool):
            if isinstance(raw, bool):
                value = raw
            elif str(raw).lower() in ("1", "true", "yes", "on"):
                value = True
            elif str(raw).lower() in ("0", "false", "no", "off"):
                value = False
            else:
                raise ValueError
        elif f.type in ("int", int):
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            value = int(raw)  # type: ignore[call-overload]
        elif f.type in ("float", float):
            if isinstance(raw, bool):
                raise ValueError
            value = float(raw)  # type: ignore[arg-type]
            if not math.isfinite(value):  # type: ignore[arg-type]
                raise ValueError
        else:
            if not isinstance(raw, str):
                raise ValueError
            value = raw
        if "choices" in meta and value not in meta["choices"]:
            raise ValueError
        if "lo" in meta and not (meta["lo"] <= value <= meta["hi"]):  # type: ignore[operator]
            raise ValueError
    except (TypeError, ValueError):
        raise SettingsError(
            f"{source}: invalid value {raw!r} (allowed: {allowed_of(name)})"
        ) from None
    return value


def load_profile(spec: str, source: str) -> dict[str, object]:
    """A named profile's values, or those of a JSON/TOML file."""
    if spec in PROFILES:
        return dict(PROFILES[spec])
    path = Path(spec)
    if path.suffix not in (".json", ".toml") or not path.is_file():
        raise SettingsError(
            f"{source}: invalid value {spec!r} (allowed: an existing .json/.toml file or one of: "
            f"{', '.join(PROFILES)})"
        )
    try:
        if path.suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
        else:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{source}: cannot read profile file {spec!r}: {exc}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"{source}: profile file {spec!r} must hold a table/object")
    out: dict[str, object] = {}
    base = data.pop("profile", None)
    if isinstance(base, str) and base:
        out.update(load_profile(base, f"{spec}: profile"))
    for key, value in data.items():
        name = str(key).replace("-", "_")
        out[name] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="surgebench mock",
        description="OpenAI-compatible mock LLM with a seeded latency and capacity model. "
        "Each flag is also read from SURGE_MOCK_<NAME> (e.g. SURGE_MOCK_TTFT_MS); precedence: "
        "defaults < --profile < environment < flags.",
    )
    for name, f in FIELDS.items():
        if f.type in ("bool", bool):
            parser.add_argument(
                flag_of(name),
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f.metadata["help"],
            )
        else:
            parser.add_argument(
                flag_of(name),
                dest=name,
                default=None,
                metavar="VALUE",
                help=f"{f.metadata['help']} (default {f.default!r}; allowed: {allowed_of(name)})",
            )
    return parser


def resolve(argv: Sequence[str], env: Mapping[str, str] | None = None) -> MockSettings:
    """Build the settings from flags and environment; raise SettingsError on a bad value.

    argparse errors (unknown flags) raise SystemExit(2) as usual.
    """
    environ = os.environ if env is None else env
    args = vars(build_parser().parse_args(list(argv)))
    values: dict[str, object] = {}
    profile_spec = args.get("profile") or environ.get(ENV_PREFIX + "PROFILE", "")
    if profile_spec:
        source = "--profile" if args.get("profile") else f"{ENV_PREFIX}PROFILE (--profile)"
        for name, raw in load_profile(profile_spec, source).items():
            values[name] = convert(name, raw, f"profile {profile_spec!r}: {name}")
        values["profile"] = profile_spec
    for name in FIELDS:
        key = ENV_PREFIX + name.upper()
        if key in environ and name != "profile":
            values[name] = convert(name, environ[key], f"{key} ({flag_of(name)})")
    for name, raw in args.items():
        if raw is not None and name != "profile":
            values[name] = convert(name, raw, flag_of(name))
    return MockSettings(**values)  # type: ignore[arg-type]
