"""ServiceSettings: every knob of the service, built once from flags and `SURGE_SERVICE_*` env.

Each field is made with `surgebench.options.option` (the options table shared with the mock): its
help text, its flag and what it allows (numbers: lowest and highest value; text: choices). The CLI
parser, the environment reader, the error messages, `GET /config` and the settings table in
docs/service.md come from that one place. A flag wins over its environment variable, which wins
over the default. Secrets (the upstream API key, the auth token) are kept out of `repr` and are
never printed.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from surgebench import options
from surgebench.options import OptionError

ENV_PREFIX = "SURGE_SERVICE_"
API_KEY_ENVS = ("SURGE_SERVICE_UPSTREAM_API_KEY", "OPENAI_API_KEY")

SettingsError = OptionError
"""A bad setting: names the flag (or variable), the value and what is allowed."""

UPSTREAM_URL_RE = re.compile(r"https?://[^\s/?#]+(/\S*)?$")
"""What `--upstream-url` accepts: an http(s) URL with a host (the service posts to
``{url}/chat/completions``)."""

DAY_S = 86_400.0
"""The longest any `*_s` time knob may be."""


def _opt(
    default: Any,
    help: str,
    *,
    choices: Sequence[Any] | None = None,
    min: float | None = None,
    max: float | None = None,
    flag: bool = True,
    env: tuple[str, ...] = (),
    secret: bool = False,
) -> Any:
    return options.option(
        default, help, lo=min, hi=max, choices=choices, flag=flag, env=env, secret=secret
    )


@dataclass(frozen=True)
class ServiceSettings:
    """All settings of one service process."""

    host: str = _opt("127.0.0.1", "bind address (a warning is printed for non-loopback addresses)")
    port: int = _opt(
        8000, "TCP port; 0 picks a free one (printed on the first line)", min=0, max=65535
    )
    upstream_url: str = _opt(
        "http://127.0.0.1:8001/v1", "OpenAI-compatible base URL (POST {url}/chat/completions)"
    )
    upstream_model: str = _opt("mock", "model name sent upstream")
    upstream_transport: str = _opt(
        "aiohttp",
        "transport under the httpx API: aiohttp (httpx-aiohttp) or httpx (httpcore pool)",
        choices=("aiohttp", "httpx"),
    )
    upstream_max_connections: int = _opt(
        1000,
        "pool size (keep it >= the concurrency limit, or the pool becomes a hidden queue)",
        min=1,
        max=100_000,
    )
    upstream_keepalive_s: float = _opt(
        30.0, "idle pooled connections are closed after this", min=0, max=DAY_S
    )
    upstream_connect_timeout_s: float = _opt(5.0, "TCP connect timeout", min=0.001, max=3600.0)
    upstream_read_timeout_s: float = _opt(
        120.0,
        "socket read timeout (backstop; --idle-timeout-s is the real token-gap limit)",
        min=0.001,
        max=DAY_S,
    )
    upstream_pool_timeout_s: float = _opt(
        30.0, "longest wait for a free pooled connection", min=0.001, max=3600.0
    )
    upstream_retries: int = _opt(
        0, "retries of a 429/5xx/refused upstream call, only before the first token", min=0, max=100
    )
    upstream_retry_backoff_s: float = _opt(
        0.2, "first retry delay (doubles); an upstream Retry-After replaces it", min=0, max=3600.0
    )
    upstream_retry_max_wait_s: float = _opt(5.0, "cap on one retry delay", min=0, max=3600.0)
    upstream_api_key: str = _opt(
        "",
        "from SURGE_SERVICE_UPSTREAM_API_KEY or OPENAI_API_KEY only; sent only upstream",
        flag=False,
        env=API_KEY_ENVS,
        secret=True,
    )
    admission: str = _opt(
        "queue",
        "queue: bounded FIFO served by --max-concurrent worker tasks; semaphore: "
        "--max-concurrent permits with a bounded wait list; none: no limit",
        choices=("queue", "semaphore", "none"),
    )
    max_concurrent: int = _opt(
        64,
        "the concurrency limit under every admission policy but none (queue: worker tasks; "
        "semaphore: permits)",
        min=1,
        max=100_000,
    )
    queue_size: int = _opt(
        256,
        "requests allowed to wait for a slot; one more is rejected at once",
        min=0,
        max=1_000_000,
    )
    workers: int = _opt(
        0,
        "queue only: override the worker count (0: --max-concurrent, the usual)",
        min=0,
        max=100_000,
    )
    queue_timeout_s: float = _opt(
        10.0, "longest wait for a slot before an overloaded error", min=0, max=DAY_S
    )
    reject_status: int = _opt(503, "HTTP status of an admission rejection", choices=(503, 429))
    retry_after_s: int = _opt(1, "Retry-After seconds sent with rejections", min=0, max=86_400)
    timeout_s: float = _opt(
        60.0, "total budget of a request, from arrival to its last event", min=0.001, max=DAY_S
    )
    ttft_timeout_s: float = _opt(
        30.0,
        "longest wait for an upstream call's first token (from the call's start)",
        min=0.001,
        max=DAY_S,
    )
    idle_timeout_s: float = _opt(
        15.0, "longest gap between two tokens of a stream", min=0.001, max=DAY_S
    )
    max_body_bytes: int = _opt(
        65536, "request body limit (413 before the body is read whole)", min=1, max=268_435_456
    )
    body_timeout_s: float = _opt(
        10.0, "longest time to receive a request body (408)", min=0.001, max=3600.0
    )
    max_question_chars: int = _opt(16000, "longest accepted question", min=1, max=10_000_000)
    max_tokens_limit: int = _opt(4096, "largest accepted max_tokens", min=1, max=10_000_000)
    batch_max_items: int = _opt(16, "most questions in one /chat/batch request", min=1, max=10_000)
    agent_steps: int = _opt(
        1,
        "LLM calls per request (1: plain relay; K>1: plan, K-2 tool steps, answer)",
        min=1,
        max=1000,
    )
    tool_latency_ms: float = _opt(
        50.0,
        "simulated tool latency per agent tool step (the median when --tool-latency-sigma > 0)",
        min=0,
        max=3_600_000.0,
    )
    tool_latency_sigma: float = _opt(
        0.0,
        "lognormal sigma of each tool step's latency around --tool-latency-ms (0: fixed)",
        min=0,
        max=5.0,
    )
    agent_steps_limit: int = _opt(
        16,
        "largest agent_steps a request body may ask for (LLM calls of that request)",
        min=1,
        max=1000,
    )
    seed: int = _opt(0, "seed of the tool latency draws", min=0, max=2**63 - 1)
    stamp: bool = _opt(False, "send a `: t=<time_ns>` comment line before each event")
    auth_token: str = _opt(
        "", "require `Authorization: Bearer TOKEN` on /chat* (empty: no auth)", secret=True
    )
    cors_origins: str = _opt("", "comma-separated allowed CORS origins (empty: CORS off)")
    shutdown_grace_s: float = _opt(
        10.0, "on SIGINT/SIGTERM, time in-flight streams may finish", min=0, max=DAY_S
    )
    http_keepalive_s: float = _opt(
        75.0, "client keep-alive idle timeout (uvicorn)", min=0, max=DAY_S
    )
    backlog: int = _opt(2048, "listen backlog", min=1, max=65535)
    access_log: bool = _opt(False, "uvicorn access log (costs CPU per request)")
    log_level: str = _opt(
        "warning", "log level", choices=("critical", "error", "warning", "info", "debug")
    )
    upstream_max_event_bytes: int = _opt(
        1048576,
        "longest SSE line the upstream may send; a longer one ends the call as an upstream error",
        min=1024,
        max=268_435_456,
    )
    processes: int = _opt(
        1,
        "worker processes on one port (1..64); every limit above holds per process, like N pods",
        min=1,
        max=64,
    )

    def __post_init__(self) -> None:
        if not UPSTREAM_URL_RE.match(self.upstream_url):
            raise SettingsError(
                f"--upstream-url: invalid value {options.shown(self.upstream_url)} (allowed: an "
                "http:// or https:// base URL, e.g. http://127.0.0.1:8001/v1)"
            )
        if self.workers and self.admission != "queue":
            raise SettingsError(
                f"--workers: {self.workers} applies only to --admission queue (this is "
                f"{self.admission}); allowed: 0, or set the limit with --max-concurrent"
            )

    @property
    def worker_count(self) -> int:
        """Queue workers allowed to run at once (started on demand, never ahead of load)."""
        return self.workers or self.max_concurrent

    def public_dict(self) -> dict[str, Any]:
        """The settings with secrets shown as "***" when set (empty when not)."""
        return options.public_settings(self)


def flag_name(name: str) -> str:
    return options.flag_name(name)


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


FIELDS: dict[str, dataclasses.Field[Any]] = options.fields_of(ServiceSettings)


def convert(name: str, raw: str, source: str) -> Any:
    """Turn one raw string into the field's type; SettingsError names source, value, allowed."""
    return options.convert(FIELDS[name], raw, source)


def describe_allowed(f: dataclasses.Field[Any]) -> str:
    return options.describe_allowed(f)


def from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """Values set by `SURGE_SERVICE_*` variables (and the API key variables)."""
    return options.from_env(ServiceSettings, env, ENV_PREFIX)


def build_settings(
    overrides: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> ServiceSettings:
    """Defaults, then the environment, then explicit overrides (parsed flags, raw or typed)."""
    environ = os.environ if env is None else env
    return options.resolve(ServiceSettings, flags=overrides, env=environ, prefix=ENV_PREFIX)


def settings_table_markdown() -> str:
    """The README/docs table: flag, env variable, default, meaning."""
    rows = ["| flag | environment | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(ServiceSettings):
        flag = flag_name(f.name) if f.metadata["flag"] else "(env only)"
        env = " or ".join(f"`{v}`" for v in options.env_names(f, ENV_PREFIX))
        default = f.default if f.default != "" else "(empty)"
        if isinstance(default, bool):
            default = "off" if not default else "on"
        rows.append(f"| `{flag}` | {env} | `{default}` | {f.metadata['help']} |")
    return "\n".join(rows)
