"""A small HTTP/1.1 server protocol on asyncio (uvloop) with httptools parsing.

It handles keep-alive, pipelined requests (answered in order), Content-Length and chunked request
bodies, a body size limit enforced while reading (413 before the body is read whole), malformed
HTTP (400), a read timeout for requests that arrive too slowly (408) and an idle timeout.
Responses are written by the application straight to the transport.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import httptools
import orjson

if TYPE_CHECKING:
    from mock_llm.scheduler import Sequence

REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(slots=True)
class Request:
    method: bytes
    path: bytes
    headers: dict[bytes, bytes]
    body: bytes
    keep_alive: bool


class Handler(Protocol):
    """The application behind the protocol."""

    max_body_bytes: int
    connections: set[Connection]

    def handle(self, conn: Connection, req: Request) -> None: ...

    def connection_lost(self, conn: Connection) -> None: ...

    def now(self) -> float: ...


class _TooLarge(Exception):
    pass


def response_bytes(
    status: int,
    body: bytes,
    *,
    content_type: bytes = b"application/json",
    headers: tuple[tuple[str, str], ...] = (),
    close: bool = False,
) -> bytes:
    lines = [
        b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, "Error").encode()),
        b"content-type: " + content_type + b"\r\n",
        b"content-length: %d\r\n" % len(body),
    ]
    lines += [f"{k}: {v}\r\n".encode("latin-1") for k, v in headers]
    if close:
        lines.append(b"connection: close\r\n")
    lines.append(b"\r\n")
    lines.append(body)
    return b"".join(lines)


def error_json(message: str, type_: str, param: str | None = None) -> bytes:
    return orjson.dumps(
        {"error": {"message": message, "type": type_, "param": param, "code": None}}
    )


class Connection(asyncio.Protocol):
    """One client connection."""

    def __init__(self, app: Handler) -> None:
        self.app = app
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.closed = False
        self.paused = False
        self.busy = False  # a response is in progress
        self.keep_alive = True
        self.seq: Sequence | None = None
        self.pending: deque[Request] = deque()
        self.msg_started_at: float | None = None
        self.last_activity = 0.0
        self._url: list[bytes] = []
        self._headers: dict[bytes, bytes] = {}
        self._body: list[bytes] = []
        self._body_size = 0

    # ------------------------------------------------------------ asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.last_activity = self.app.now()
        self.app.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.app.connections.discard(self)
        self.app.connection_lost(self)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_activity = self.app.now()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _TooLarge):
                self.fail(413, f"request body exceeds {self.app.max_body_bytes} bytes")
            else:
                self.fail(400, "malformed HTTP request")
        except httptools.HttpParserUpgrade:
            self.fail(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            self.fail(400, f"malformed HTTP request: {exc}")

    # ------------------------------------------------------------ httptools callbacks
    def on_message_begin(self) -> None:
        self.msg_started_at = self.app.now()
        self._url = []
        self._headers = {}
        self._body = []
        self._body_size = 0

    def on_url(self, url: bytes) -> None:
        self._url.append(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        length = self._headers.get(b"content-length")
        if (
            length is not None
            and length.strip().isdigit()
            and int(length) > self.app.max_body_bytes
        ):
            raise _TooLarge
        if self._headers.get(b"expect", b"").lower() == b"100-continue":
            self.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self.app.max_body_bytes:
            raise _TooLarge
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.msg_started_at = None
        url = b"".join(self._url)
        req = Request(
            method=self.parser.get_method(),
            path=url.split(b"?", 1)[0],
            headers=self._headers,
            body=b"".join(self._body),
            keep_alive=self.parser.should_keep_alive(),
        )
        if self.busy:
            self.pending.append(req)
        else:
            self.start(req)

    # ------------------------------------------------------------ responses
    def start(self, req: Request) -> None:
        self.busy = True
        self.keep_alive = req.keep_alive
        self.app.handle(self, req)

    def write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def respond(
        self,
        status: int,
        body: bytes,
        *,
        content_type: bytes = b"application/json",
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """A whole response; then the next pipelined request, or close."""
        self.write(
            response_bytes(
                status,
                body,
                content_type=content_type,
                headers=headers,
                close=not self.keep_alive,
            )
        )
        self.finished()

    def finished(self) -> None:
        """The current response is complete."""
        self.busy = False
        self.seq = None
        if self.closed:
            return
        if not self.keep_alive:
            self.close()
            return
        if self.pending:
            self.start(self.pending.popleft())

    def fail(self, status: int, message: str) -> None:
        """Answer a protocol-level error and close the connection."""
        if self.closed or self.transport is None:
            return
        if not self.busy:
            self.write(
                response_bytes(status, error_json(message, "invalid_request_error"), close=True)
            )
        self.close()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()

    def check_timeouts(self, now: float, read_timeout_s: float, idle_timeout_s: float) -> None:
        """Called about once a second: 408 for a request arriving too slowly, close idle ones."""
        if self.closed:
            return
        if self.msg_started_at is not None and now - self.msg_started_at > read_timeout_s:
            self.fail(408, f"request not received whole within {read_timeout_s:g}s")
        elif not self.busy and now - self.last_activity > idle_timeout_s:
            self.close()
