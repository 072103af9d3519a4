"""One frozen `MockSettings`, built from defaults < profile < env (`SURGE_MOCK_*`) < CLI flags.

Every knob is a dataclass field made with `surgebench.options.option`: its help text and what it
allows (numbers: lowest and highest value; text: choices). The CLI, the environment, profile files,
the error messages and `GET /config` all come from that one table; the machinery is shared with the
service in `surgebench/options.py`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mock_llm.errors import SettingsError
from mock_llm.profiles import PROFILES
from surgebench import options

ENV_PREFIX = "SURGE_MOCK_"

MS_MAX = 3_600_000.0
"""An hour: the largest latency, stall or cost any `*_ms` knob accepts."""
COUNT_MAX = 1_000_000
"""The largest token count, sequence count or queue length a count knob accepts."""


def _num(default: float, help_: str, *, lo: float = 0.0, hi: float = MS_MAX) -> Any:
    return options.option(default, help_, lo=lo, hi=hi)


def _int(default: int, help_: str, *, lo: int = 0, hi: int = COUNT_MAX) -> Any:
    return options.option(default, help_, lo=lo, hi=hi)


def _choice(default: Any, help_: str, choices: tuple[Any, ...]) -> Any:
    return options.option(default, help_, choices=choices)


def _str(default: str, help_: str, *, secret: bool = False) -> Any:
    return options.option(default, help_, secret=secret)


def _bool(default: bool, help_: str) -> Any:
    return options.option(default, help_)


@dataclass(frozen=True)
class MockSettings:
    """Every knob of the mock. Units are in the names."""

    # server
    host: str = _str("127.0.0.1", "address to bind (a non-loopback address prints a warning)")
    port: int = _int(8001, "TCP port; 0 picks a free one", hi=65535)
    profile: str = _str("", "a .json/.toml profile file or one of: " + ", ".join(PROFILES))
    api_key: str = _str(
        "", "require 'Authorization: Bearer KEY' (401 otherwise); never logged", secret=True
    )
    model: str = _str("mock-llm", "model id reported by /v1/models and in responses")
    served_models: str = _str("", "comma-separated model ids to accept (404 for others); empty=any")
    max_body_bytes: int = _int(
        1_048_576, "largest request body; larger gets 413", lo=1, hi=268_435_456
    )
    read_timeout_s: float = _num(
        10.0, "a request must arrive whole within this; else 408", lo=0.001, hi=3600.0
    )
    keepalive_timeout_s: float = _num(
        75.0, "idle keep-alive connections close after this", lo=0.001, hi=86400.0
    )
    max_write_buffer_bytes: int = _int(
        8_388_608, "a client whose unread output exceeds this is dropped", lo=1024, hi=1_073_741_824
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
    step_per_kv_token_ms: float = _num(
        0.0,
        "engine: step cost per context token (prompt + generated) of each decoding sequence "
        "(attention reads the whole KV cache)",
        hi=1000.0,
    )
    step_compute_per_token_ms: float = _num(
        0.0,
        "engine: compute-bound cost per token a step processes (decode + prompt); a step takes "
        "the larger of this x tokens and the memory-bound sum of the other costs (roofline); "
        "0 = off",
        hi=1000.0,
    )
    step_jitter_cv: float = _num(0.0, "engine: coefficient of variation of each step", hi=5.0)
    max_batched_tokens: int = _int(8192, "engine: token budget of one step (chunked prefill)", lo=1)
    ttft_overhead_ms: float = _num(0.0, "engine: fixed frontend cost added to every TTFT")
    prefill_policy: str = _choice(
        "mixed",
        "engine: mixed = decodes first, prompt chunks fill the rest of the step's token budget "
        "(vLLM chunked prefill); prefill_first = waiting prompts get steps of their own while "
        "decodes pause (vLLM without chunked prefill, SGLang)",
        ("mixed", "prefill_first"),
    )
    frontend_tokens_per_s: float = _num(
        0.0,
        "engine: most tokens per second the frontend sends (detokenize + stream), in the order "
        "the engine computed them; tokens beyond it queue (0 = no limit)",
        hi=100_000_000.0,
    )
    max_num_seqs: int = _int(0, "most sequences running at once (0 = unlimited); others wait")
    max_waiting: int = _int(0, "waiting-queue cap (0 = unbounded); overflow is rejected")
    overflow_status: int = _choice(503, "status for a full waiting queue", (429, 503))
    # output
    output_tokens: int = _int(
        50, "output length (capped by the request's max_tokens)", lo=1, hi=100_000_000
    )
    output_tokens_dist: str = _choice(
        "fixed",
        "output length: fixed, a seeded distribution, or max_tokens (the request's cap, always)",
        ("fixed", "uniform", "lognormal", "max_tokens"),
    )
    output_tokens_spread: float = _num(0.0, "uniform: +-fraction; lognormal: sigma", hi=5.0)
    text_lang: str = _choice("en", "language of the generated text", ("en", "zh"))
    seed: int = _int(0, "seed of text, lengths, jitter and faults", hi=2**63 - 1)
    stamp: bool = _bool(False, "precede each streamed event with ': t=<time_ns>'")
    # rate limits (0 = off)
    rpm_limit: int = _int(0, "requests per minute before 429 (0 = off)", hi=100_000_000)
    tpm_limit: int = _int(
        0, "tokens (prompt + max output) per minute before 429 (0 = off)", hi=10**11
    )
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
        """The settings as a dict, with the API key hidden ("***" when set)."""
        return options.public_settings(self)


FIELDS: dict[str, dataclasses.Field[Any]] = options.fields_of(MockSettings)


def flag_of(name: str) -> str:
    return options.flag_name(name)


def load_profile(spec: str, source: str) -> dict[str, object]:
    """A named profile's raw values, or those of a JSON/TOML file (keys with '-' or '_')."""
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
        out[str(key).replace("-", "_")] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    return options.build_parser(
        MockSettings,
        ENV_PREFIX,
        prog="surgebench mock",
        description="OpenAI-compatible mock LLM with a seeded latency and capacity model. "
        "Precedence: defaults < --profile < environment < flags.",
    )


def resolve(argv: Sequence[str], env: Mapping[str, str] | None = None) -> MockSettings:
    """Build the settings from flags and environment; raise SettingsError on a bad value.

    argparse errors (unknown flags) raise SystemExit(2) as usual.
    """
    environ = os.environ if env is None else env
    flags = vars(build_parser().parse_args(list(argv)))
    profile: dict[str, Any] = {}
    profile_flag = flags.pop("profile", None)
    spec = profile_flag or environ.get(ENV_PREFIX + "PROFILE", "")
    if spec:
        source = "--profile" if profile_flag else f"{ENV_PREFIX}PROFILE (--profile)"
        raw = load_profile(spec, source)
        profile = options.from_mapping(MockSettings, raw, f"profile {spec!r}")
        profile["profile"] = spec
    return options.resolve(
        MockSettings,
        flags=flags,
        env=environ,
        prefix=ENV_PREFIX,
        profile=profile,
        skip_env=("profile",),
    )
