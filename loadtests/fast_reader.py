"""HTTP/1.1 requests on raw sockets for the Locust users: one ``recv`` per arrival.

The Locust users' fast path (docs/loadtests.md "How streams are read"). Under Locust the
``socket`` and ``ssl`` modules are gevent's (Locust patches them before this module runs), so a
blocked ``recv`` yields to the other users; elsewhere (unit tests, scripts) they are the stdlib's.

- HTTP framing (status, headers, chunked or content-length or until-close bodies) is llhttp's,
  through ``httptools.HttpResponseParser``; nothing here splits HTTP by hand.
- A streamed 2xx body goes to a sink ``(bytes, arrival_ns)`` piece by piece, in the same call
  as the ``recv`` that brought it. Other bodies are kept (bounded) for the caller.
- Arrival times: on a gevent socket on Linux (``http``, and ``https`` through `TlsBio`, TLS in
  memory over the plain socket), the kernel's receive timestamp of
  the bytes read (``SO_TIMESTAMPNS``, read with ``recvmsg``): the time the bytes reached this
  host, not the time this process got round to reading them, so a busy event loop no longer adds
  its delay to TTFT and ITL. The delay itself (read time minus kernel time) is kept per read as
  the generator's *read lag*. Where several events wait in the socket when it is read, they all
  get the time of the last one (TCP merges them): a read lag larger than the gap between two
  events of one stream is what still bends the figures. A read the kernel did not stamp keeps
  its read time and records no lag: Linux turns stamping on for the whole host in deferred work
  when the first socket asks for it, so on a machine where no socket stamps yet, the first
  replies (a millisecond or so) can come unstamped. Elsewhere (stdlib sockets, other
  systems) the arrival time is ``time.time_ns()`` when ``recv`` returns (`Connection.timestamps`
  says which).
- On a gevent socket the answer is read from the hub's loop by `loadtests.hub_read` (one
  epoll set, first ready first read, no greenlet switch until the answer is complete).
- Timeouts: a connect timeout for connect + TLS handshake (the socket's own), then a read
  timeout on the gaps between arrivals (as Locust's FastHttpUser's ``network_timeout``). Both
  raise ``TimeoutError``, which `loadtests.outcomes` classifies as a timeout. On gevent's sockets
  the read timeout is one timer per request (`ReadWatchdog`) that looks at the last arrival when
  it fires, not gevent's own socket timeout, which starts and stops a timer on every ``recv``
  that waits (one per event at a few hundred streams); on stdlib sockets it is the socket's own.
- One connection per user, kept alive between requests. A kept-alive socket that the server
  closed while idle (no byte of the answer read yet) is replaced once, transparently.

`reader_choice` says whether a target can be read this way; where it cannot (a proxy, another
scheme) the users fall back to Locust's geventhttpclient client.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httptools

from loadtests.hub_read import (
    ANCILLARY_BYTES,
    RECV_BYTES,
    SO_TIMESTAMPNS,
    HubRead,
    StaleConnectionError,
)

MAX_BODY_BYTES = 16 * 1024 * 1024
"""A non-streamed answer is kept up to this size; beyond it the rest is read and dropped."""
MAX_ERROR_BODY_BYTES = 64 * 1024
"""The body of a non-2xx answer to a streaming request is kept up to this size."""
MAX_HEADERS = 200
"""Headers beyond this many in one answer make it an error (a bound on what we keep)."""
PROXY_ENV = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")

FAST = "fast"
FALLBACK = "fallback"
KERNEL = "kernel"
"""Arrival times are the kernel's receive timestamps (``SO_TIMESTAMPNS``)."""
READ = "read"
"""Arrival times are taken when the reader's ``recv`` returns (``time.time_ns()``)."""


BodySink = Callable[[bytes, int], None]


@dataclass(frozen=True, slots=True)
class Target:
    """Where a user's requests go: one scheme/host/port and the base path of its URL."""

    tls: bool
    host: str
    port: int
    prefix: str
    host_header: str


def reader_choice(
    base_url: str, *, proxy_host: str | None = None, environ: Mapping[str, str] | None = None
) -> tuple[Target | None, str]:
    """The fast reader's `Target` for a base URL, or None and the reason the fallback reads it."""
    env = os.environ if environ is None else environ
    set_proxies = [name for name in PROXY_ENV if env.get(name)]
    if set_proxies:
        return None, f"a proxy is configured ({set_proxies[0]})"
    if proxy_host:
        return None, "the user class sets proxy_host"
    try:
        parts = urlsplit(base_url)
        port = parts.port
    except ValueError as exc:
        return None, f"unparsed host URL: {exc}"
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        return None, f"scheme {scheme or '(none)'!r} (fast reader: http, https)"
    host = parts.hostname
    if not host:
        return None, "no host in the URL"
    tls = scheme == "https"
    default_port = 443 if tls else 80
    port = port or default_port
    name = f"[{host}]" if ":" in host else host
    host_header = name if port == default_port else f"{name}:{port}"
    return Target(tls, host, port, parts.path.rstrip("/"), host_header), ""


def reader_record(base_url: str, user_classes: list[type]) -> dict[str, str]:
    """summary.json's account of the reader the users ran (``config.generator``)."""
    proxy = next((p for c in user_classes if (p := getattr(c, "proxy_host", None))), None)
    target, why = reader_choice(base_url, proxy_host=proxy)
    if target is not None:
        return {"reader": FAST, "timestamps": timestamps_for(target)}
    return {"reader": FALLBACK, "fallback_reason": why, "timestamps": READ}


def timestamps_for(target: Target) -> str:
    """Where the fast reader's arrival times come from for a target (see the module's doc)."""
    return KERNEL if sys.platform == "linux" and ANCILLARY_BYTES else READ


class Response:
    """One answer as httptools parses it (the parser's callback object)."""

    __slots__ = (
        "_framed",
        "_headers",
        "_limit",
        "_parser",
        "_stream",
        "body",
        "complete",
        "headers_done",
        "keep_alive",
        "now_ns",
        "retry_after",
        "sink",
        "status",
        "truncated",
    )

    def __init__(self, sink: BodySink | None) -> None:
        self.sink = sink
        self.status = 0
        self.body = bytearray()
        self.truncated = False
        """True when the kept body stopped at its limit (the rest was read and dropped)."""
        self.complete = False
        self.headers_done = False
        self.keep_alive = False
        self.retry_after = ""
        self.now_ns = 0
        self._framed = False
        self._stream = False
        self._headers = 0
        self._limit = MAX_BODY_BYTES
        self._parser: httptools.HttpResponseParser | None = None

    @property
    def until_close(self) -> bool:
        """A body with neither Content-Length nor chunked framing: it ends when the socket does."""
        return self.headers_done and not self._framed and self.status not in (204, 304)

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers += 1
        if self._headers > MAX_HEADERS:
            raise ValueError(f"more than {MAX_HEADERS} headers in the answer")
        lower = name.lower()
        if lower in (b"content-length", b"transfer-encoding"):
            self._framed = True
        elif lower == b"retry-after":
            self.retry_after = value.decode("latin-1")[:64]

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        self.status = self._parser.get_status_code()
        self.headers_done = True
        if self.sink is not None:
            self._stream = 200 <= self.status < 300
            self._limit = MAX_ERROR_BODY_BYTES

    def on_body(self, data: bytes) -> None:
        if self._stream:
            assert self.sink is not None
            self.sink(data, self.now_ns)
        elif len(self.body) + len(data) <= self._limit:
            self.body += data
        else:
            self.body += data[: max(0, self._limit - len(self.body))]
            self.truncated = True

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200:  # an interim answer (100 Continue): the real one follows
            self.headers_done = False
            self._framed = False
            self._headers = 0
            self.status = 0
            return
        assert self._parser is not None
        self.keep_alive = self._parser.should_keep_alive()  # (llhttp forgets it afterwards)
        self.complete = True


class ReadWatchdog:
    """The read timeout of one gevent connection: one timer per request, not one per ``recv``.

    Armed when a request starts (`arm`), it fires ``timeout_s`` later; if a byte arrived
    meanwhile (`Response.now_ns`) it re-arms for the rest of the gap since that arrival, else it
    raises ``TimeoutError("timed out")`` in the waiting greenlet, as gevent's socket timeout does.
    A stream that keeps arriving costs one timer callback per ``timeout_s``, whatever its events.
    """

    __slots__ = ("_greenlet", "_loop", "_response", "_since_ns", "_timer", "timeout_s")

    def __init__(self, timeout_s: float) -> None:
        from gevent import get_hub  # only for gevent's sockets (then gevent is loaded already)

        self.timeout_s = timeout_s
        self._loop: Any = get_hub().loop
        self._timer: Any = None
        self._greenlet: Any = None
        self._response: Response | None = None
        self._since_ns = 0

    def arm(self, response: Response) -> None:
        from gevent import getcurrent

        self._greenlet = getcurrent()
        self._response = response
        self._since_ns = time.time_ns()
        self._start(self.timeout_s)

    def _start(self, after_s: float) -> None:
        self._timer = self._loop.timer(after_s)
        self._timer.start(self._expired)

    def disarm(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.close()
        self._greenlet = self._response = None

    def _expired(self) -> None:
        response = self._response
        if self._timer is None or response is None:
            return
        self._timer.close()
        last_ns = max(response.now_ns, self._since_ns)
        left_s = self.timeout_s - (time.time_ns() - last_ns) / 1e9
        if left_s > 0.001:
            self._start(left_s)
            return
        self._timer = None
        self._greenlet.throw(TimeoutError("timed out"))


_TLS_CONTEXTS: dict[bool, ssl.SSLContext] = {}


def tls_context(insecure: bool) -> ssl.SSLContext:
    """One TLS context per process (``insecure``: no certificate check, as Locust's default)."""
    context = _TLS_CONTEXTS.get(insecure)
    if context is None:
        context = ssl.create_default_context()
        if insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        _TLS_CONTEXTS[insecure] = context
    return context


class TlsBio:
    """TLS over memory buffers (`ssl.SSLObject`): the OS socket stays plain, so its reads keep
    their kernel timestamps and go through the same shared poll as plain ``http``.

    `handshake` runs on the (gevent) socket with its connect timeout; then `encrypt` turns a
    request into the bytes to send and `decrypt` turns the bytes of one read into the plain
    bytes they complete (maybe none: a TLS record can span reads), or None at the peer's
    ``close_notify``.
    """

    __slots__ = ("_incoming", "_outgoing", "_tls")

    def __init__(self, context: ssl.SSLContext, server_hostname: str) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(
            self._incoming, self._outgoing, server_hostname=server_hostname
        )

    def handshake(self, sock: socket.socket) -> None:
        while True:
            try:
                self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                pending = self._outgoing.read()
                if pending:
                    sock.sendall(pending)
                data = sock.recv(RECV_BYTES)
                if not data:
                    raise ConnectionError("connection closed during the TLS handshake") from None
                self._incoming.write(data)
        pending = self._outgoing.read()
        if pending:
            sock.sendall(pending)

    def encrypt(self, data: bytes) -> bytes:
        self._tls.write(data)
        return self._outgoing.read()

    def decrypt(self, data: bytes) -> bytes | None:
        self._incoming.write(data)
        pieces: list[bytes] = []
        while True:
            try:
                piece = self._tls.read(RECV_BYTES)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                return b"".join(pieces) if pieces else None
            if not piece:
                return b"".join(pieces) if pieces else None
            pieces.append(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def pending_output(self) -> bytes:
        """What the TLS layer wants sent on its own (a key update's answer, say)."""
        return self._outgoing.read()


class Connection:
    """One user's keep-alive connection to a `Target` and its request/answer exchange."""

    __slots__ = (
        "_hub_read",
        "_tls",
        "connect_timeout_s",
        "insecure",
        "read_timeout_s",
        "sock",
        "target",
        "timestamps",
        "watchdog",
    )

    def __init__(
        self,
        target: Target,
        *,
        connect_timeout_s: float,
        read_timeout_s: float,
        insecure: bool = True,
    ) -> None:
        self.target = target
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.insecure = insecure
        self.sock: socket.socket | None = None
        self.watchdog: ReadWatchdog | None = None
        """Set on gevent's sockets (then the socket itself has no read timeout)."""
        self._hub_read: tuple[Any, Any, Any] | None = None
        """On a gevent socket (TLS or not): (its OS socket, gevent's hub, its read watcher):
        the answer is then read by `HubRead` from the hub's loop."""
        self.timestamps = READ
        """`KERNEL` once the connection's socket gives kernel receive timestamps, else `READ`."""
        self._tls: TlsBio | None = None
        """On a gevent socket to an ``https`` target: the TLS layer over the plain socket."""

    def request_head(
        self, method: str, path: str, headers: Mapping[str, str], length: int
    ) -> bytes:
        """The request line and headers for a body of ``length`` bytes (build once, reuse)."""
        lines = [
            f"{method} {self.target.prefix}{path} HTTP/1.1",
            f"Host: {self.target.host_header}",
            *(f"{k}: {v}" for k, v in headers.items()),
            f"Content-Length: {length}",
            "",
            "",
        ]
        return "\r\n".join(lines).encode("latin-1")

    def close(self) -> None:
        sock, self.sock = self.sock, None
        self._hub_read = None
        self._tls = None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def _connect(self) -> socket.socket:
        target = self.target
        sock = socket.create_connection((target.host, target.port), timeout=self.connect_timeout_s)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            on_gevent = type(sock).__module__.startswith("gevent.")
            if target.tls and on_gevent:  # TLS in memory over the plain socket (`TlsBio`)
                tls = TlsBio(tls_context(self.insecure), target.host)
                tls.handshake(sock)  # (within the connect timeout: still the socket's)
                self._tls = tls
            elif target.tls:
                sock = tls_context(self.insecure).wrap_socket(sock, server_hostname=target.host)
            if on_gevent:
                sock.settimeout(None)
                if self.watchdog is None:
                    self.watchdog = ReadWatchdog(self.read_timeout_s)
                gsock: Any = sock  # gevent's socket: its OS socket, hub and read watcher
                self._hub_read = (gsock._sock, gsock.hub, gsock._read_event)
                self.timestamps = READ
                if timestamps_for(target) == KERNEL:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                        self.timestamps = KERNEL
            else:
                sock.settimeout(self.read_timeout_s)
        except BaseException:
            sock.close()
            raise
        return sock

    def exchange(
        self, data: bytes, sink: BodySink | None, read_lag_ns: list[int] | None = None
    ) -> Response:
        """Send one request (head + body bytes) and read its whole answer.

        ``sink`` gets a 2xx body piece by piece with its arrival time; without a sink (or for a
        non-2xx answer) the body is kept in `Response.body`. ``read_lag_ns`` (with kernel
        timestamps) gets each read's lag: when it returned minus when its bytes arrived. Raises
        on timeouts (TimeoutError), resets and early closes (ConnectionError), malformed
        answers (httptools' errors); the connection is closed then.
        """
        for attempt in (1, 2):
            reused = self.sock is not None
            try:
                return self._exchange_once(data, sink, reused, read_lag_ns)
            except StaleConnectionError:
                self.close()
                if attempt == 2:
                    raise
            except BaseException:
                self.close()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _exchange_once(
        self, data: bytes, sink: BodySink | None, reused: bool, read_lag_ns: list[int] | None
    ) -> Response:
        sock = self.sock
        if sock is None:
            sock = self.sock = self._connect()
        response = Response(sink)
        parser = httptools.HttpResponseParser(response)
        response._parser = parser
        watchdog = self.watchdog
        if watchdog is not None:
            watchdog.arm(response)
        try:
            try:
                sock.sendall(data if self._tls is None else self._tls.encrypt(data))
            except (BrokenPipeError, ConnectionResetError) as exc:
                if reused:
                    raise StaleConnectionError(str(exc)) from exc
                raise
            hub_read = self._hub_read
            if hub_read is not None:
                reader = HubRead(
                    response,
                    parser,
                    hub_read,
                    self.timestamps == KERNEL,
                    read_lag_ns,
                    reused,
                    self._tls,
                )
                if reader.read_all():  # the answer ended with the connection
                    self.close()
                    return response
            else:
                self._read_loop(sock, response, parser, reused)
            if not response.keep_alive:
                self.close()
            return response
        finally:
            if watchdog is not None:
                watchdog.disarm()
            response._parser = None  # no reference cycle between the parser and its callbacks

    def _read_loop(
        self, sock: socket.socket, response: Response, parser: Any, reused: bool
    ) -> None:
        """Read an answer with the socket's own blocking ``recv`` (stdlib sockets; TLS)."""
        got_bytes = False
        while not response.complete:
            try:
                chunk = sock.recv(RECV_BYTES)
            except ConnectionResetError as exc:
                if reused and not got_bytes:
                    raise StaleConnectionError(str(exc)) from exc
                raise
            now_ns = time.time_ns()
            if not chunk:
                if response.until_close:
                    response.complete = True
                    self.close()
                    return
                if reused and not got_bytes:
                    raise StaleConnectionError("kept-alive connection closed by the server")
                raise ConnectionError("connection closed before the end of the answer")
            got_bytes = True
            response.now_ns = now_ns
            parser.feed_data(chunk)
