"""Helpers for the service's unit tests: drive the ASGI app in-process, fake upstream streams."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from service.app import ServiceApp, create_app
from service.settings import ServiceSettings

UPSTREAM = "http://upstream.test/v1"
COMPLETIONS = UPSTREAM + "/chat/completions"


def settings(**overrides: Any) -> ServiceSettings:
    base: dict[str, Any] = {"upstream_url": UPSTREAM, "upstream_transport": "httpx"}
    base.update(overrides)
    return ServiceSettings(**base)


def sse_chunk(content: str) -> bytes:
    obj = {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": content}}],
    }
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n'
DONE = b"data: [DONE]\n\n"


class Gate:
    """An upstream stream that sends `before`, then waits for `release()` (or forever)."""

    def __init__(self, before: Sequence[bytes], after: Sequence[bytes] = ()) -> None:
        self.before = list(before)
        self.after = list(after)
        self.opened = asyncio.Event()
        self.closed = asyncio.Event()
        self._go = asyncio.Event()

    def release(self) -> None:
        self._go.set()

    def response(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=_GateStream(self))


class _GateStream(httpx.AsyncByteStream):
    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.gate.opened.set()
        for chunk in self.gate.before:
            yield chunk
        await self.gate._go.wait()
        for chunk in self.gate.after:
            yield chunk

    async def aclose(self) -> None:
        self.gate.closed.set()


def stream_response(*chunks: bytes) -> httpx.Response:
    return httpx.Response(200, stream=_ListStream(list(chunks)))


class _ListStream(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


@dataclass
class Call:
    """One in-process ASGI request: its response and a switch to disconnect the client."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    started: asyncio.Event = field(default_factory=asyncio.Event)
    got_body: asyncio.Event = field(default_factory=asyncio.Event)
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    async def wait_for(self, needle: bytes) -> None:
        """Until the response body contains `needle` (woken by each write)."""
        async with asyncio.timeout(5):
            while needle not in self.body:
                self.got_body.clear()
                await self.got_body.wait()

    def disconnect(self) -> None:
        self.gone.set()

    async def finish(self) -> Call:
        assert self.task is not None
        await asyncio.wait_for(self.task, 10)
        return self

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        from service.sse import decode_stream

        return decode_stream(self.body)


def start_call(
    app: ServiceApp,
    method: str,
    path: str,
    body: bytes = b"",
    headers: Sequence[tuple[str, str]] = (),
    chunks: Sequence[bytes] | None = None,
    hold_body: bool = False,
) -> Call:
    """Run one HTTP request against the app in a task, like uvicorn would."""
    call = Call()
    parts = list(chunks) if chunks is not None else [body]
    raw_headers = [(k.lower().encode(), v.encode()) for k, v in headers]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": raw_headers,
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    pending = list(parts)

    async def receive() -> dict[str, Any]:
        if pending:
            chunk = pending.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(pending) or hold_body}
        await call.gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if call.gone.is_set():
            return  # like uvicorn: writes after a disconnect are dropped
        if message["type"] == "http.response.start":
            call.status = message["status"]
            call.headers = {k.decode(): v.decode() for k, v in message.get("headers", [])}
            call.started.set()
        else:
            call.body += message.get("body", b"")
            call.got_body.set()

    call.task = asyncio.get_running_loop().create_task(app(scope, receive, send))
    return call


async def request(app: ServiceApp, method: str, path: str, body: Any = None, **kw: Any) -> Call:
    raw = (
        body
        if isinstance(body, bytes)
        else (json.dumps(body).encode() if body is not None else b"")
    )
    return await start_call(app, method, path, raw, **kw).finish()


@asynccontextmanager
async def running(app: ServiceApp) -> AsyncIterator[ServiceApp]:
    """The app with its lifespan entered (admission workers, upstream client)."""
    async with app.api.router.lifespan_context(app.api):
        yield app


def make_app(**overrides: Any) -> ServiceApp:
    return create_app(settings(**overrides))


def gauge(app: ServiceApp, name: str) -> float:
    value = app.runtime.metrics.registry.get_sample_value(name)
    assert value is not None, name
    return value


import pytest  # noqa: E402


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
