"""ServiceSettings: every knob of the service, built once from flags and `SURGE_SERVICE_*` env.

Each field carries its help text, its flag and its allowed values in `metadata`, so the CLI parser,
the environment reader and the settings table in docs/service.md come from one place. A flag wins
over its environment variable, which wins over the default. Secrets (the upstream API key, the auth
token) are kept out of `repr` and are never printed.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ENV_PREFIX = "SURGE_SERVICE_"
API_KEY_ENVS = ("SURGE_SERVICE_UPSTREAM_API_KEY", "OPENAI_API_KEY")


class SettingsError(ValueError):
    """A bad setting: names the flag (or variable), the value and what is allowed."""


def _opt(
    default: Any,
    help: str,
    *,
    choices: Sequence[Any] | None = None,
    min: float | None = None,
    flag: bool = True,
    secret: bool = False,
) -> Any:
    meta = {"help": help, "choices": choices, "min": min, "flag": flag, "secret": secret}
    return field(default=default, metadata=meta, repr=not secret)


@dataclass(frozen=True)
class ServiceSettings:
    """All settings of one service process."""

    host: str = _opt("127.0.0.1", "bind address (a warning is printed for non-loopback addresses)")
    port: int = _opt(8000, "TCP port; 0 picks a free one (printed on the first line)", min=0)
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
    )
    upstream_keepalive_s: float = _opt(30.0, "idle pooled connections are closed after this", min=0)
    upstream_connect_timeout_s: float = _opt(5.0, "TCP connect timeout", min=0.001)
    upstream_read_timeout_s: float = _opt(
        120.0,
        "socket read timeout (backstop; --idle-timeout-s is the real token-gap limit)",
        min=0.001,
    )
    upstream_pool_timeout_s: float = _opt(
        30.0, "longest wait for a free pooled connection", min=0.001
    )
    upstream_retries: int = _opt(
        0, "retries of a 429/5xx/refused upstream call, only before the first token", min=0
    )
    upstream_retry_backoff_s: float = _opt(
        0.2, "first retry delay (doubles); an upstream Retry-After replaces it", min=0
    )
    upstream_retry_max_wait_s: float = _opt(5.0, "cap on one retry delay", min=0)
    upstream_api_key: str = _opt(
        "",
        "from SURGE_SERVICE_UPSTREAM_API_KEY or OPENAI_API_KEY only; sent only upstream",
        flag=False,
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
    )
    queue_size: int = _opt(
        256, "requests allowed to wait for a slot; one more is rejected at once", min=0
    )
    workers: int = _opt(
        0, "queue only: override the worker count (0: --max-concurrent, the usual)", min=0
    )
    queue_timeout_s: float = _opt(10.0, "longest wait for a slot before an overloaded error", min=0)
    reject_status: int = _opt(503, "HTTP status of an admission rejection", choices=(503, 429))
    retry_after_s: int = _opt(1, "Retry-After seconds sent with rejections", min=0)
    timeout_s: float = _opt(
        60.0, "total budget of a request, from arrival to its last event", min=0.001
    )
    ttft_timeout_s: float = _opt(
        30.0, "longest wait for an upstream call's first token (from the call's start)", min=0.001
    )
    idle_timeout_s: float = _opt(15.0, "longest gap between two tokens of a stream", min=0.001)
    max_body_bytes: int = _opt(
        65536, "request body limit (413 before the body is read whole)", min=1
    )
    body_timeout_s: float = _opt(10.0, "longest time to receive a request body (408)", min=0.001)
    max_question_chars: int = _opt(16000, "longest accepted question", min=1)
    max_tokens_limit: int = _opt(4096, "largest accepted max_tokens", min=1)
    batch_max_items: int = _opt(16, "most questions in one /chat/batch request", min=1)
    agent_steps: int = _opt(
        1, "LLM calls per request (1: plain relay; K>1: plan, K-2 tool steps, answer)", min=1
    )
    tool_latency_ms: float = _opt(50.0, "simulated tool latency per agent tool step", min=0)
    stamp: bool = _opt(False, "send a `: t=<time_ns>` comment line before each event")
    auth_token: str = _opt(
        "", "require `Authorization: Bearer TOKEN` on /chat* (empty: no auth)", secret=True
    )
    cors_origins: str = _opt("", "comma-separated allowed CORS origins (empty: CORS off)")
    shutdown_grace_s: float = _opt(
        10.0, "on SIGINT/SIGTERM, time in-flight streams may finish", min=0
    )
    http_keepalive_s: float = _opt(75.0, "client keep-alive idle timeout (uvicorn)", min=0)
    backlog: int = _opt(2048, "listen backlog", min=1)
    access_log: bool = _opt(False, "uvicorn access log (costs CPU per request)")
    log_level: str = _opt(
        "warning", "log level", choices=("critical", "error", "warning", "info", "debug")
    )
    upstream_max_event_bytes: int = _opt(
        1048576,
        "longest SSE line the upstream may send; a longer one ends the call as an upstream error",
        min=1024,
    )
    processes: int = _opt(
        1,
        "worker processes on one port (1..64); every limit above holds per process, like N pods",
        min=1,
    )

    def __post_init__(self) -> None:
        if self.workers and self.admission != "queue":
            raise SettingsError(
                f"--workers: {self.workers} applies only to --admission queue (this is "
                f"{self.admission}); allowed: 0, or set the limit with --max-concurrent"
            )

    @property
    def worker_count(self) -> int:
        """Queue workers actually started."""
        return self.workers or self.max_concurrent

    def public_dict(self) -> dict[str, Any]:
        """The settings with secrets replaced by whether they are set."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = ("<set>" if value else "") if f.metadata["secret"] else value
        return out


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def convert(name: str, raw: str, source: str) -> Any:
    """Turn one raw string into the field's type; SettingsError names source, value, allowed."""
    f = {f.name: f for f in dataclasses.fields(ServiceSettings)}[name]
    meta = f.metadata
    kind: type[Any] = type(f.default)
    choices = meta["choices"]
    allowed = describe_allowed(f)
    try:
        value: Any
        if kind is bool:
            low = raw.strip().lower()
            if low not in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
                raise ValueError
            value = low in {"1", "true", "yes", "on"}
        elif kind is int:
            value = int(raw)
        elif kind is float:
            value = float(raw)
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError
        else:
            value = raw
    except ValueError:
        raise SettingsError(f"{source}: invalid value {raw!r}; allowed: {allowed}") from None
    if choices is not None and value not in choices:
        raise SettingsError(f"{source}: invalid value {raw!r}; allowed: {allowed}")
    if meta["min"] is not None and value < meta["min"]:
        raise SettingsError(f"{source}: invalid value {raw!r}; allowed: {allowed}")
    return value


def describe_allowed(f: dataclasses.Field[Any]) -> str:
    kind: type[Any] = type(f.default)
    if f.metadata["choices"] is not None:
        return ", ".join(str(c) for c in f.metadata["choices"])
    if kind is bool:
        return "true/false (1/0, yes/no, on/off)"
    name = {int: "an integer", float: "a number"}.get(kind, "a string")
    if f.metadata["min"] is not None:
        return f"{name} >= {f.metadata['min']:g}"
    return name


def from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """Values set by `SURGE_SERVICE_*` variables (and the API key variables)."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(ServiceSettings):
        if f.name == "upstream_api_key":
            for var in API_KEY_ENVS:
                if env.get(var):
                    values[f.name] = env[var]
                    break
            continue
        var = env_name(f.name)
        if var in env:
            values[f.name] = convert(f.name, env[var], var)
    return values


def build_settings(
    overrides: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> ServiceSettings:
    """Defaults, then the environment, then explicit overrides (parsed flags)."""
    values = from_env(os.environ if env is None else env)
    values.update(overrides)
    return ServiceSettings(**values)


def settings_table_markdown() -> str:
    """The README/docs table: flag, env variable, default, meaning."""
    rows = ["| flag | environment | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(ServiceSettings):
        flag = flag_name(f.name) if f.metadata["flag"] else "(env only)"
        env = (
            " or ".join(f"`{v}`" for v in API_KEY_ENVS)
            if f.name == "upstream_api_key"
            else f"`{env_name(f.name)}`"
        )
        default = f.default if f.default != "" else "(empty)"
        if isinstance(default, bool):
            default = "off" if not default else "on"
        rows.append(f"| `{flag}` | {env} | `{default}` | {f.metadata['help']} |")
    return "\n".join(rows)
