"""A small HTTP/1.1 server protocol on asyncio (uvloop) with httptools parsing.

It handles keep-alive, pipelined requests (answered in order), Content-Length and chunked request
bodies, a body size limit enforced while reading (413 before the body is read whole), malformed
HTTP (400), a read timeout for requests that arrive too slowly (408) and an idle timeout.
The request head is bounded while it is read: a request target over `MAX_TARGET_BYTES` gets 414,
more than `MAX_HEADERS` header lines or a head over `MAX_HEAD_BYTES` gets 431 (httptools would
otherwise buffer a header line of any length). `HEAD` answers carry no body; absolute-form
targets (`GET http://host/health`) route by their path; `CONNECT` gets one 501 and the connection
closes; an `Upgrade:` request (h2c, websocket) is answered as plain HTTP/1.1, the upgrade ignored.
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

MAX_TARGET_BYTES = 8 * 1024
"""The longest request target (path and query) accepted; longer gets 414."""
MAX_HEAD_BYTES = 32 * 1024
"""The largest request head (request line and header lines) accepted; larger gets 431."""
MAX_HEADERS = 100
"""The most header lines in one request; more gets 431."""

REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Payload Too Large",
    414: "URI Too Long",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}


@dataclass(slots=True)
class Request:
    method: bytes
    path: bytes
    headers: dict[bytes, bytes]
    body: bytes
    keep_alive: bool
    refused: tuple[int, str] | None = None
    """Answered by the protocol itself with this status and message (CONNECT, an upgrade with
    a body); the connection closes after it."""


class Handler(Protocol):
    """The application behind the protocol."""

    max_body_bytes: int
    connections: set[Connection]

    def handle(self, conn: Connection, req: Request) -> None: ...

    def connection_lost(self, conn: Connection) -> None: ...

    def now(self) -> float: ...


class _TooLarge(Exception):
    pass


class _HeadRefused(Exception):
    """The request head passed a limit: answer `status` and close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def response_bytes(
    status: int,
    body: bytes,
    *,
    content_type: bytes = b"application/json",
    headers: tuple[tuple[str, str], ...] = (),
    close: bool = False,
    head_only: bool = False,
) -> bytes:
    """A whole response; `head_only` (an answer to HEAD) leaves the body out, not its length."""
    lines = [
        b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, "Error").encode()),
        b"content-type: " + content_type + b"\r\n",
        b"content-length: %d\r\n" % len(body),
    ]
    lines += [f"{k}: {v}\r\n".encode("latin-1") for k, v in headers]
    if close:
        lines.append(b"connection: close\r\n")
    lines.append(b"\r\n")
    if not head_only:
        lines.append(body)
    return b"".join(lines)


def request_path(target: bytes) -> bytes:
    """The path of a request target: origin form (`/a?b`) or absolute form (`http://h/a?b`)."""
    if target[:1] != b"/" and b"://" in target[:16]:
        try:
            return httptools.parse_url(target).path or b"/"
        except httptools.HttpParserInvalidURLError:
            return target
    return target.split(b"?", 1)[0]


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
        self.head_only = False  # the current request is a HEAD
        self.seq: Sequence | None = None
        self.pending: deque[Request] = deque()
        self.msg_started_at: float | None = None
        self.last_activity = 0.0
        self._url: list[bytes] = []
        self._headers: dict[bytes, bytes] = {}
        self._body: list[bytes] = []
        self._body_size = 0
        self._in_head = False  # a request head is being read
        self._head_bytes = 0  # its size so far (exact, or an upper bound for the last chunk)
        self._head_began_now = False  # the head began in the chunk being parsed
        self._target_bytes = 0
        self._header_count = 0
        self._discard_rest = False  # a refused upgrade: ignore what follows it

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
        while data and not self.closed and not self._discard_rest:
            self._head_began_now = False
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserCallbackError as exc:
                context = exc.__context__
                if isinstance(context, _TooLarge):
                    self.fail(413, f"request body exceeds {self.app.max_body_bytes} bytes")
                elif isinstance(context, _HeadRefused):
                    self.fail(context.status, context.message)
                else:
                    self.fail(400, "malformed HTTP request")
                return
            except httptools.HttpParserUpgrade as exc:
                # The upgrade request itself was complete and is answered as plain HTTP/1.1;
                # the parser resumed, so the bytes after it are the next request.
                data = data[int(exc.args[0]) :]
                continue
            except httptools.HttpParserError as exc:
                self.fail(400, f"malformed HTTP request: {exc}")
                return
            break
        if self._in_head:
            self._count_head(len(data))

    def _count_head(self, chunk_bytes: int) -> None:
        """After a chunk that ended inside a request head: 431 once the head is too large.

        httptools buffers a header line until it ends, so the limit is checked per chunk: a head
        that began in an earlier chunk grew by the whole chunk; one that began in this chunk is
        counted from its target and complete header lines (the unfinished line is at most one
        chunk), so at most one chunk past the limit is ever held."""
        if self._head_began_now:
            self._head_bytes = self._target_bytes + self._head_bytes
        else:
            self._head_bytes += chunk_bytes
        if self._head_bytes > MAX_HEAD_BYTES:
            self.fail(431, f"request head exceeds {MAX_HEAD_BYTES} bytes")

    # ------------------------------------------------------------ httptools callbacks
    def on_message_begin(self) -> None:
        self.msg_started_at = self.app.now()
        self._url = []
        self._headers = {}
        self._body = []
        self._body_size = 0
        self._in_head = True
        self._head_began_now = True
        self._head_bytes = 0  # header lines only, until the chunk ends (see _count_head)
        self._target_bytes = 0
        self._header_count = 0

    def on_url(self, url: bytes) -> None:
        self._target_bytes += len(url)
        if self._target_bytes > MAX_TARGET_BYTES:
            raise _HeadRefused(414, f"request target exceeds {MAX_TARGET_BYTES} bytes")
        self._url.append(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > MAX_HEADERS:
            raise _HeadRefused(431, f"more than {MAX_HEADERS} header lines")
        if self._head_began_now:
            self._head_bytes += len(name) + len(value) + 4
            if self._target_bytes + self._head_bytes > MAX_HEAD_BYTES:
                raise _HeadRefused(431, f"request head exceeds {MAX_HEAD_BYTES} bytes")
        self._headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        self._in_head = False
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
        method = self.parser.get_method()
        req = Request(
            method=method,
            path=request_path(b"".join(self._url)),
            headers=self._headers,
            body=b"".join(self._body),
            keep_alive=self.parser.should_keep_alive(),
        )
        if self.parser.should_upgrade():
            # httptools skips the body of an upgrade request, and CONNECT has none to route.
            if method == b"CONNECT":
                req.refused = (501, "CONNECT is not supported")
            elif b"content-length" in self._headers or b"transfer-encoding" in self._headers:
                req.refused = (501, "a protocol upgrade with a request body is not supported")
            if req.refused is not None:
                req.keep_alive = False
                self._discard_rest = True
                if self.transport is not None:
                    self.transport.pause_reading()
        if self.busy:
            self.pending.append(req)
        else:
            self.start(req)

    # ------------------------------------------------------------ responses
    def start(self, req: Request) -> None:
        self.busy = True
        self.keep_alive = req.keep_alive
        self.head_only = req.method == b"HEAD"
        if req.refused is not None:
            status, message = req.refused
            self.respond(status, error_json(message, "invalid_request_error"))
            return
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
                head_only=self.head_only,
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
