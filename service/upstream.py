"""The pooled client to the LLM: one per process, the httpx API over a measured transport.

`--upstream-transport aiohttp` (default) runs httpx's API over `httpx-aiohttp` (an aiohttp
connector pool); `httpx` uses httpx's own httpcore pool, which collapses under hundreds of
concurrent streams (docs/service.md has the figures). The pool holds a connection for the whole
stream, so `--upstream-max-connections` must be >= the concurrency limit.

Each call records when it started, when it got a connection (pool wait: from aiohttp's connection
trace hooks, or httpcore's trace extension), when its first token arrived and when it ended.
Failures become `UpstreamError` with a kind: `connect` (before any response: refused, reset,
pool timeout), `status` (HTTP error status), `read` (the stream broke), `protocol` (malformed or
truncated stream), `timeout` (socket read backstop). 429/5xx/connect failures are retried up to
`--upstream-retries` times, honouring `Retry-After`, and only before any token was read.

A misbehaving upstream is bounded: an SSE line longer than `--upstream-max-event-bytes` ends the
call at once (`protocol`), the request asks for `Accept-Encoding: identity` and a compressed answer
is refused (`protocol`) rather than misread, and a malformed HTTP response (bad status line, bad
chunk size) is an upstream error, not an internal one. What clients see names the failure, never
the upstream's address: the details (host, port, the library's message) go to the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import email.utils
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import SimpleNamespace, TracebackType
from typing import Any

import aiohttp
import httpx
import orjson
from httpx_aiohttp import AiohttpTransport

from .errors import UpstreamError
from .metrics import ServiceMetrics
from .settings import ServiceSettings

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
DRAIN_TIMEOUT_S = 0.5

log = logging.getLogger("service")


def failure(message: str, kind: str, detail: object) -> UpstreamError:
    """An `UpstreamError` whose client-facing `message` is generic; `detail` (which may name the
    upstream's host and port) is logged, not sent."""
    log.warning("%s (%s): %s", message, kind, str(detail) or type(detail).__name__)
    return UpstreamError(message, kind)


@dataclass
class CallTiming:
    """Timestamps (clock seconds) of one upstream call."""

    t_start: float
    t_conn: float | None = None
    t_first: float | None = None
    t_end: float | None = None
    attempts: int = 0
    queued_for_connection: bool = False

    @property
    def pool_wait_s(self) -> float:
        return 0.0 if self.t_conn is None else max(0.0, self.t_conn - self.t_start)

    @property
    def connected_at(self) -> float:
        return self.t_start if self.t_conn is None else self.t_conn


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens

    def as_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


@dataclass
class _ParseState:
    max_line_bytes: int = 1 << 20
    buffer: bytes = b""
    done: bool = False
    usage: dict[str, Any] | None = None
    content_chunks: int = 0
    errors: list[str] = field(default_factory=list)


def parse_chunk(state: _ParseState, chunk: bytes) -> list[str]:
    """Feed raw bytes of an OpenAI-style SSE stream; return the content pieces completed by it."""
    data = state.buffer + chunk if state.buffer else chunk
    lines = data.split(b"\n")
    state.buffer = lines.pop()
    limit = state.max_line_bytes
    if len(state.buffer) > limit:
        raise UpstreamError(f"upstream sent an event line longer than {limit} bytes", "protocol")
    tokens: list[str] = []
    for line in lines:
        if len(line) > limit:
            raise UpstreamError(
                f"upstream sent an event line longer than {limit} bytes", "protocol"
            )
        if not line.startswith(b"data:"):
            continue  # blank separators, comments, event:/id: fields
        payload = line[5:].strip()
        if payload == b"[DONE]":
            state.done = True
            break
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise UpstreamError("upstream sent a malformed event", "protocol") from None
        if not isinstance(obj, dict):
            raise UpstreamError("upstream sent a malformed event", "protocol")
        if "error" in obj:
            raise UpstreamError(f"upstream error in stream: {_error_message(obj)}", "read")
        choices = obj.get("choices")
        if choices and isinstance(choices, list) and isinstance(choices[0], dict):
            delta = choices[0].get("delta") or {}
            content = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(content, str) and content:
                tokens.append(content)
        usage = obj.get("usage")
        if isinstance(usage, dict):
            state.usage = usage
    state.content_chunks += len(tokens)
    return tokens


def _error_message(obj: Any) -> str:
    err = obj.get("error") if isinstance(obj, dict) else None
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        return str(err["message"])[:200]
    if isinstance(err, str):
        return err[:200]
    return "no message"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds:
        return None
    return max(0.0, seconds)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    """An already-read body (e.g. a transport that returns it whole) as one chunk."""
    yield data


class UpstreamCall:
    """One streaming chat completion: `async with client.call(...) as call: async for ...`."""

    def __init__(self, client: UpstreamClient, body: bytes, timing: CallTiming) -> None:
        self._client = client
        self._body = body
        self.timing = timing
        self._response: httpx.Response | None = None
        self._state = _ParseState(client.settings.upstream_max_event_bytes)

    async def __aenter__(self) -> UpstreamCall:
        self._response = await self._client._open(self._body, self.timing)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        response, self._response = self._response, None
        if response is not None:
            self._client.in_use -= 1
            # A broken connection is dropped by the pool either way.
            with contextlib.suppress(httpx.HTTPError):
                await response.aclose()

    async def chunks(self) -> AsyncIterator[list[str]]:
        """Content pieces, one list per network read (never empty)."""
        assert self._response is not None
        state = self._state
        clock = self._client.clock
        response = self._response
        source = _once(response.content) if response.is_stream_consumed else response.aiter_raw()
        try:
            async for raw in source:
                tokens = parse_chunk(state, raw)
                if tokens:
                    if self.timing.t_first is None:
                        self.timing.t_first = clock()
                    yield tokens
                if state.done:
                    break
        except httpx.TimeoutException as exc:
            raise failure("upstream read timed out", "timeout", exc) from None
        except (httpx.HTTPError, aiohttp.ClientError) as exc:
            raise failure("upstream stream broke", "read", exc) from None
        if not state.done:
            raise UpstreamError("upstream closed the stream before [DONE]", "protocol")
        self.timing.t_end = clock()
        await self._drain(source)

    async def _drain(self, source: AsyncIterator[bytes]) -> None:
        """Read to the end of the body after [DONE] (normally just the chunked terminator), so
        the pool can reuse the connection; httpcore closes a connection released mid-body."""
        try:
            async with asyncio.timeout(DRAIN_TIMEOUT_S):
                async for _ in source:
                    pass
        except (TimeoutError, httpx.HTTPError):
            pass  # the connection is closed instead of reused; the answer is complete anyway

    @property
    def usage(self) -> Usage:
        u = self._state.usage or {}
        prompt = u.get("prompt_tokens")
        completion = u.get("completion_tokens")
        return Usage(
            prompt if isinstance(prompt, int) else 0,
            completion if isinstance(completion, int) else self._state.content_chunks,
        )


class UpstreamClient:
    """The process-wide pooled client. Create in the app's lifespan; `aclose()` at shutdown."""

    def __init__(
        self,
        settings: ServiceSettings,
        metrics: ServiceMetrics,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self._sleep = sleep
        self.in_use = 0
        self._current: contextvars.ContextVar[CallTiming | None] = contextvars.ContextVar(
            "surge_upstream_call", default=None
        )
        self.url = settings.upstream_url.rstrip("/") + "/chat/completions"
        self._headers = {
            "content-type": "application/json",
            "accept": "text/event-stream",
            "accept-encoding": "identity",  # the SSE parser reads the bytes as sent
        }
        if settings.upstream_api_key:
            self._headers["authorization"] = f"Bearer {settings.upstream_api_key}"
        self.http = self._build_client()
        # Parsed once: building a request through the client (URL parsing, merging defaults)
        # costs more than the rest of the per-request work.
        self._url = httpx.URL(self.url)
        self._timeout = self.http.timeout.as_dict()

    def _build_client(self) -> httpx.AsyncClient:
        s = self.settings
        limits = httpx.Limits(
            max_connections=s.upstream_max_connections,
            max_keepalive_connections=s.upstream_max_connections,
            keepalive_expiry=s.upstream_keepalive_s,
        )
        timeout = httpx.Timeout(
            connect=s.upstream_connect_timeout_s,
            read=s.upstream_read_timeout_s,
            write=s.upstream_connect_timeout_s,
            pool=s.upstream_pool_timeout_s,
        )
        transport: httpx.AsyncBaseTransport
        if s.upstream_transport == "aiohttp":
            transport = AiohttpTransport(limits=limits, client=self._aiohttp_session)
        else:
            transport = httpx.AsyncHTTPTransport(limits=limits)
        return httpx.AsyncClient(transport=transport, timeout=timeout, trust_env=False)

    def _aiohttp_session(self) -> aiohttp.ClientSession:
        """The aiohttp session under the httpx API, with hooks that time connection acquisition."""
        s = self.settings
        trace = aiohttp.TraceConfig()
        trace.on_connection_queued_start.append(self._on_queued)
        trace.on_connection_create_end.append(self._on_connected)
        trace.on_connection_reuseconn.append(self._on_connected)
        connector = aiohttp.TCPConnector(
            limit=s.upstream_max_connections,
            limit_per_host=0,
            keepalive_timeout=s.upstream_keepalive_s,
        )
        return aiohttp.ClientSession(connector=connector, trace_configs=[trace])

    async def _on_queued(self, session: Any, ctx: SimpleNamespace, params: Any) -> None:
        timing = self._current.get()
        if timing is not None:
            timing.queued_for_connection = True

    async def _on_connected(self, session: Any, ctx: SimpleNamespace, params: Any) -> None:
        timing = self._current.get()
        if timing is not None and timing.t_conn is None:
            timing.t_conn = self.clock()

    def call(
        self, messages: list[dict[str, str]], max_tokens: int | None, timing: CallTiming
    ) -> UpstreamCall:
        payload: dict[str, Any] = {
            "model": self.settings.upstream_model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if max_tokens is not None:
            payload["max_tokens"] = max_tokens
        return UpstreamCall(self, orjson.dumps(payload), timing)

    async def _open(self, body: bytes, timing: CallTiming) -> httpx.Response:
        """Send the request (with retries) and return a 200 streaming response."""
        retries = self.settings.upstream_retries
        for attempt in range(retries + 1):
            timing.attempts = attempt + 1
            timing.t_conn = None
            try:
                response = await self._send_once(body, timing)
            except UpstreamError as exc:
                self.metrics.upstream_errors.labels(exc.kind).inc()
                if attempt < retries and exc.retryable:
                    self.metrics.upstream_retries.inc()
                    await self._sleep(self._retry_delay(attempt, exc.retry_after_s))
                    timing.t_start = self.clock()
                    continue
                raise
            self.metrics.pool_wait.observe(timing.pool_wait_s)
            if timing.pool_wait_s > 0.001 or timing.queued_for_connection:
                self.metrics.pool_waits.inc()
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _retry_delay(self, attempt: int, retry_after_s: float | None) -> float:
        s = self.settings
        delay = (
            retry_after_s if retry_after_s is not None else s.upstream_retry_backoff_s * 2**attempt
        )
        return min(delay, s.upstream_retry_max_wait_s)

    async def _send_once(self, body: bytes, timing: CallTiming) -> httpx.Response:
        extensions: dict[str, Any] = {"timeout": self._timeout}
        if self.settings.upstream_transport == "httpx":

            async def trace(event: str, info: dict[str, Any]) -> None:
                if timing.t_conn is None and event.startswith("http11.send_request_headers"):
                    timing.t_conn = self.clock()

            extensions["trace"] = trace
        request = httpx.Request(
            "POST", self._url, content=body, headers=self._headers, extensions=extensions
        )
        token = self._current.set(timing)
        try:
            response = await self.http.send(request, stream=True)
        except httpx.PoolTimeout:
            raise UpstreamError(
                "no free upstream connection within the pool timeout", "connect"
            ) from None
        except aiohttp.ClientResponseError as exc:  # aiohttp's parser: bad status line, ...
            raise failure("upstream sent a malformed HTTP response", "protocol", exc) from None
        except (httpx.HTTPError, aiohttp.ClientError) as exc:
            raise failure("upstream connection failed", "connect", exc) from None
        finally:
            self._current.reset(token)
        if response.status_code != 200:
            message = await self._error_text(response)
            raise UpstreamError(
                f"upstream answered {response.status_code}: {message}",
                "status",
                upstream_status=response.status_code,
                retry_after_s=parse_retry_after(response.headers.get("retry-after")),
            )
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            await response.aclose()
            raise UpstreamError(
                f"upstream answered with content-encoding {encoding[:40]!r}; identity was asked",
                "protocol",
            )
        self.in_use += 1
        return response

    async def _error_text(self, response: httpx.Response) -> str:
        raw = b""
        try:
            async for chunk in response.aiter_raw():
                raw += chunk
                if len(raw) > 4096:
                    break
        except httpx.StreamConsumed:  # already read (e.g. an in-memory response)
            raw = response.content[:4097]
        except (httpx.HTTPError, aiohttp.ClientError):
            raw = b""
        finally:
            with contextlib.suppress(httpx.HTTPError, aiohttp.ClientError):
                await response.aclose()
        try:
            return _error_message(orjson.loads(raw))
        except orjson.JSONDecodeError:
            return raw[:200].decode("utf-8", "replace") or "no body"

    async def aclose(self) -> None:
        await self.http.aclose()
