"""Limits on the request head, enforced under the ASGI app (uvicorn's httptools protocol).

uvicorn (0.54, httptools) reads a request head of any size: httptools buffers a header line until
it ends, uvicorn concatenates the target and keeps every header, and nothing times out a head
that arrives one byte at a time. `limited_protocol` subclasses uvicorn's protocol and adds:

- a request target longer than `MAX_TARGET_BYTES` gets 414, more than `MAX_HEADERS` header lines
  or a head larger than `MAX_HEAD_BYTES` gets 431 (checked per chunk read, so at most one chunk
  past the limit is ever held), each with a JSON body, and the connection closes;
- a head not received whole within `head_timeout_s` of its first byte gets 408 and a close;
- a connection that never sends a byte is closed after uvicorn's keep-alive timeout, as an idle
  connection between two requests already is.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_TARGET_BYTES = 8 * 1024
"""The longest request target (path and query) accepted; longer gets 414."""
MAX_HEAD_BYTES = 32 * 1024
"""The largest request head (request line and header lines) accepted; larger gets 431."""
MAX_HEADERS = 100
"""The most header lines in one request; more gets 431."""

REASONS = {408: b"Request Timeout", 414: b"URI Too Long", 431: b"Request Header Fields Too Large"}
ERROR_TYPES = {408: "timeout", 414: "too_large", 431: "too_large"}


class HeadRefused(Exception):
    """The head passed a limit (raised inside a parser callback)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def refusal_bytes(status: int, message: str) -> bytes:
    body = orjson.dumps({"error": {"type": ERROR_TYPES[status], "message": message}})
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: close\r\n\r\n%s" % (status, REASONS[status], len(body), body)
    )


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounded request heads (see the module docstring)."""

    head_timeout_s = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refusal: HeadRefused | None = None
        self._in_head = False
        self._head_began_now = False
        self._head_bytes = 0
        self._target_bytes = 0
        self._header_count = 0
        self._head_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------ asyncio callbacks
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # uvicorn arms its keep-alive timer only after a response; a connection that never
        # sends a request would otherwise stay open for good.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._head_began_now = False
        super().data_received(data)  # a refusal raised in a callback ends in send_400_response
        if self._in_head and not self.transport.is_closing():
            if self._head_began_now:
                self._head_bytes += self._target_bytes
            else:
                self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse(HeadRefused(431, f"request head exceeds {MAX_HEAD_BYTES} bytes"))

    def send_400_response(self, msg: str) -> None:
        if self._refusal is not None:
            self._refuse(self._refusal)
        else:
            super().send_400_response(msg)

    # ------------------------------------------------------------ httptools callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_began_now = True
        self._head_bytes = 0  # header lines only until the chunk ends (see data_received)
        self._target_bytes = 0
        self._header_count = 0
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def on_url(self, url: bytes) -> None:
        self._target_bytes += len(url)
        if self._target_bytes > MAX_TARGET_BYTES:
            self._refusal = HeadRefused(414, f"request target exceeds {MAX_TARGET_BYTES} bytes")
            raise self._refusal
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > MAX_HEADERS:
            self._refusal = HeadRefused(431, f"more than {MAX_HEADERS} header lines")
            raise self._refusal
        if self._head_began_now:
            self._head_bytes += len(name) + len(value) + 4
            if self._target_bytes + self._head_bytes > MAX_HEAD_BYTES:
                self._refusal = HeadRefused(431, f"request head exceeds {MAX_HEAD_BYTES} bytes")
                raise self._refusal
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        super().on_headers_complete()

    # ------------------------------------------------------------ refusals
    def _refuse(self, refusal: HeadRefused) -> None:
        self._cancel_head_timer()
        self._in_head = False
        if not self.transport.is_closing():
            self.transport.write(refusal_bytes(refusal.status, refusal.message))
            self.transport.close()

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head:
            self._refuse(
                HeadRefused(408, f"request head not received within {self.head_timeout_s:g}s")
            )

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None


def limited_protocol(head_timeout_s: float) -> type[LimitedHttpToolsProtocol]:
    """The protocol class to hand to `uvicorn.Config(http=...)`."""
    return type(
        "LimitedHttpToolsProtocol", (LimitedHttpToolsProtocol,), {"head_timeout_s": head_timeout_s}
    )
