"""The mock server: routes, the token sinks that write pre-framed chunks, and the timer driver.

One `MockApp` per process owns the scheduler, and one loop timer drives all streams: the
scheduler says when it is next due, the timer calls `advance`, and the sinks write straight to
the transports. No coroutine runs per request or per token.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import random
import time
from urllib.parse import unquote_to_bytes

from mock_llm.faults import Fault, FaultPlan
from mock_llm.http import Connection, Request
from mock_llm.latency import output_length
from mock_llm.metrics import MockStats, make_registry, render
from mock_llm.openai_api import (
    ApiError,
    GenRequest,
    StreamTemplate,
    full_response,
    load_json,
    model_body,
    models_body,
    parse_chat,
    parse_completion,
)
from mock_llm.ratelimit import RateLimiter
from mock_llm.scheduler import Scheduler, Sequence
from mock_llm.settings import MockSettings
from mock_llm.text import TABLE_SIZE, Vocabulary
from surgebench.process import watch_parent

SSE_HEADERS = (
    b"HTTP/1.1 200 OK\r\n"
    b"content-type: text/event-stream; charset=utf-8\r\n"
    b"cache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n"
)
CHUNK_END = b"0\r\n\r\n"
READ_METHODS = (b"GET", b"HEAD")
ROUTES: dict[bytes, tuple[bytes, ...]] = {
    b"/health": READ_METHODS,
    b"/metrics": READ_METHODS,
    b"/config": READ_METHODS,
    b"/v1/models": READ_METHODS,
    b"/v1/chat/completions": (b"POST",),
    b"/v1/completions": (b"POST",),
}
"""The paths served and the methods each allows (any other method: 405 with `Allow`)."""
MODEL_PREFIX = b"/v1/models/"
"""``GET /v1/models/{id}``: one model (the OpenAI SDK's ``models.retrieve``), read methods."""


class StreamSink:
    """Writes one streamed response: each emit is one HTTP chunk of one or more SSE events."""

    __slots__ = (
        "app",
        "conn",
        "disconnect_at",
        "head",
        "offset",
        "prompt_tokens",
        "stamp",
        "tail",
        "tpl",
        "with_role",
        "with_usage",
    )

    def __init__(
        self,
        app: MockApp,
        conn: Connection,
        tpl: StreamTemplate,
        req: GenRequest,
        offset: int,
        disconnect_at: int,
    ) -> None:
        self.app = app
        self.conn = conn
        self.tpl = tpl
        self.head = b"data: " + tpl.head
        self.tail = tpl.tail + b"\n\n"
        self.offset = offset
        self.stamp = app.settings.stamp
        self.with_role = req.kind == "chat"
        self.with_usage = req.include_usage
        self.prompt_tokens = req.prompt_tokens
        self.disconnect_at = disconnect_at

    def emit(self, seq: Sequence, n: int, now: float, done: bool) -> bool:
        conn = self.conn
        if conn.closed:
            return False
        enc = self.app.vocab.encoded
        table = self.app.vocab.table
        start = seq.sent
        cut = self.disconnect_at >= 0 and start + n >= self.disconnect_at
        if cut:
            n = self.disconnect_at - start
            done = False
        tpl = self.tpl
        if n == 1 and start > 0 and not done:
            tail = self.tail if not tpl.continuous else tpl.tail_at(start + 1) + b"\n\n"
            event = self.head + enc[table[(self.offset + start) % TABLE_SIZE]] + tail
            if self.stamp:
                event = b": t=%d\n" % time.time_ns() + event
            conn.transport.write(b"%x\r\n%s\r\n" % (len(event), event))  # type: ignore[union-attr]
            return not conn.paused or self.app.check_backpressure(conn)
        else:
            events: list[bytes] = []
            if start == 0 and self.with_role:
                events.append(self.tpl.role_event())
            head, tail, off = self.tpl.head, self.tpl.tail, self.offset
            if tpl.continuous:
                tails = [tpl.tail_at(i + 1) for i in range(start, start + n)]
                events += [
                    head + enc[table[(off + i) % TABLE_SIZE]] + tails[i - start]
                    for i in range(start, start + n)
                ]
            else:
                events += [
                    head + enc[table[(off + i) % TABLE_SIZE]] + tail
                    for i in range(start, start + n)
                ]
            if done:
                events.append(tpl.finish_event(seq.finish_reason, start + n))
                if self.with_usage:
                    events.append(self.tpl.usage_event(self.prompt_tokens, start + n))
            prefix = b": t=%d\ndata: " % time.time_ns() if self.stamp else b"data: "
            payload = b"".join([prefix + e + b"\n\n" for e in events])
            if done:
                stamp = b": t=%d\n" % time.time_ns() if self.stamp else b""
                payload += stamp + self.tpl.done
                conn.write(b"%x\r\n%s\r\n%s" % (len(payload), payload, CHUNK_END))
                conn.finished()
                return True
            if payload:
                conn.write(b"%x\r\n%s\r\n" % (len(payload), payload))
        if cut:
            self.app.stats.bump(self.app.stats.faults, "disconnect")
            conn.close()
            return False
        return self.app.check_backpressure(conn)


class FullSink:
    """Collects a non-streamed response and writes it when the last token is due."""

    __slots__ = (
        "app",
        "conn",
        "created",
        "disconnect_at",
        "headers",
        "offset",
        "req",
        "response_id",
    )

    def __init__(
        self,
        app: MockApp,
        conn: Connection,
        req: GenRequest,
        response_id: str,
        created: int,
        offset: int,
        disconnect_at: int,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.headers = (("x-request-id", response_id), *headers)
        self.app = app
        self.conn = conn
        self.req = req
        self.response_id = response_id
        self.created = created
        self.offset = offset
        self.disconnect_at = disconnect_at

    def emit(self, seq: Sequence, n: int, now: float, done: bool) -> bool:
        conn = self.conn
        if conn.closed:
            return False
        sent = seq.sent + n
        if self.disconnect_at >= 0 and sent >= self.disconnect_at:
            self.app.stats.bump(self.app.stats.faults, "disconnect")
            conn.close()
            return False
        if done:
            text = self.app.vocab.text(self.offset, sent)
            body = full_response(
                self.req, self.response_id, self.created, text, seq.finish_reason, sent
            )
            conn.respond(200, body, headers=self.headers)
        return True


class MockApp:
    """Routes requests, builds sequences, drives the scheduler from one timer."""

    def __init__(self, settings: MockSettings, loop: asyncio.AbstractEventLoop) -> None:
        self.settings = settings
        self.loop = loop
        self.max_body_bytes = settings.max_body_bytes
        self.max_write_buffer = settings.max_write_buffer_bytes
        self.connections: set[Connection] = set()
        self.stats = MockStats()
        self.scheduler = Scheduler(settings, self.stats)
        self.registry = make_registry(
            self.stats, lambda: (self.scheduler.n_running, self.scheduler.n_waiting)
        )
        self.vocab = Vocabulary(settings.text_lang, settings.seed)
        self.faults = FaultPlan(settings)
        self.limiter = RateLimiter(settings.rpm_limit, settings.tpm_limit)
        self.model_ids = settings.model_ids()
        self.created = int(time.time())
        self._counter = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._sweeper: asyncio.TimerHandle | None = None
        self._api_key = settings.api_key.encode()
        self.config_body = self.config_json(settings.port)

    def config_json(self, port: int) -> bytes:
        """`GET /config`'s body: the settings, with the port actually bound and the key hidden."""
        shown = {**self.settings.redacted(), "port": port}
        return json.dumps({"component": "mock", "settings": shown}).encode()

    # ------------------------------------------------------------ driver
    def now(self) -> float:
        return self.loop.time()

    def kick(self) -> None:
        """Arm the timer for the scheduler's next deadline (if earlier than the armed one)."""
        due = self.scheduler.next_deadline()
        if due is None:
            return
        if self._timer is not None:
            if self._timer_at <= due:
                return
            self._timer.cancel()
        self._timer_at = due
        self._timer = self.loop.call_at(due, self._on_timer)

    def _on_timer(self) -> None:
        now = self.loop.time()
        self.stats.timer_lateness_s.observe(max(0.0, now - self._timer_at))
        self._timer = None
        self.scheduler.advance(now)
        self.kick()

    def start_sweeper(self) -> None:
        s = self.settings
        now = self.now()
        for conn in list(self.connections):
            conn.check_timeouts(now, s.read_timeout_s, s.keepalive_timeout_s)
        self._sweeper = self.loop.call_later(min(1.0, s.read_timeout_s / 2), self.start_sweeper)

    def stop(self) -> None:
        for handle in (self._timer, self._sweeper):
            if handle is not None:
                handle.cancel()
        for conn in list(self.connections):
            conn.close()

    def check_backpressure(self, conn: Connection) -> bool:
        """Drop a client whose unread output passed the limit; False when dropped."""
        tr = conn.transport
        if conn.paused and tr is not None and tr.get_write_buffer_size() > self.max_write_buffer:
            self.stats.slow_clients += 1
            tr.abort()
            conn.closed = True
            return False
        return True

    def connection_lost(self, conn: Connection) -> None:
        seq = conn.seq
        if seq is not None:
            conn.seq = None
            self.scheduler.cancel(seq, self.now())
            self.kick()

    # ------------------------------------------------------------ routing
    def handle(self, conn: Connection, req: Request) -> None:
        try:
            self._route(conn, req)
        except ApiError as err:
            self.stats.bump(self.stats.bad_requests, str(err.status))
            conn.respond(err.status, err.body(), headers=err.headers)

    def _route(self, conn: Connection, req: Request) -> None:
        path, method = req.path, req.method
        allowed = ROUTES.get(path)
        if allowed is None and path.startswith(MODEL_PREFIX) and len(path) > len(MODEL_PREFIX):
            allowed = READ_METHODS
        if allowed is None:
            raise ApiError(  # (OpenAI's words and type for a path it does not serve)
                404,
                f"Invalid URL ({method.decode('latin-1')} {path.decode('latin-1')})",
                type_="invalid_request_error",
            )
        if method not in allowed:
            allow = ", ".join(m.decode() for m in allowed)
            raise ApiError(
                405,
                f"method {method.decode('latin-1')} is not allowed on {path.decode()}; use {allow}",
                headers=(("allow", allow),),
            )
        if path == b"/health":
            conn.respond(200, b'{"status":"ok"}')
            return
        if path == b"/metrics":
            conn.respond(
                200, render(self.registry), content_type=b"text/plain; version=0.0.4; charset=utf-8"
            )
            return
        if path == b"/config":  # the settings this process runs with, the API key as "***"
            conn.respond(200, self.config_body)
            return
        self._check_auth(req)
        if path == b"/v1/models":
            conn.respond(200, models_body(self.model_ids or [self.settings.model], self.created))
            return
        if path.startswith(MODEL_PREFIX):
            conn.respond(200, self._model_body(unquote_to_bytes(path[len(MODEL_PREFIX) :])))
            return
        data = load_json(req.body)
        if path == b"/v1/chat/completions":
            greq = parse_chat(data, self.settings.model)
        else:
            greq = parse_completion(data, self.settings.model)
        self._generate(conn, req, greq)

    def _model_body(self, raw_id: bytes) -> bytes:
        """One model object; with ``--served-models`` only those exist (404 ``model_not_found``
        for others), without it any id is answered, as any id is accepted for generation."""
        model_id = raw_id.decode("utf-8", "replace")
        if self.model_ids and model_id not in self.model_ids:
            raise ApiError(
                404,
                f"the model {model_id!r} does not exist; served: {', '.join(self.model_ids)}",
                param="model",
                code="model_not_found",
            )
        return model_body(model_id, self.created)

    def _check_auth(self, req: Request) -> None:
        if not self._api_key:
            return
        auth = req.headers.get(b"authorization", b"")
        given = auth[7:].strip() if auth[:7].lower() == b"bearer " else b""
        if not given:
            raise ApiError(
                401,
                "missing API key: send 'Authorization: Bearer KEY'",
                code="invalid_api_key",
            )
        if not hmac.compare_digest(given, self._api_key):
            raise ApiError(401, "incorrect API key provided", code="invalid_api_key")

    def _generate(self, conn: Connection, req: Request, greq: GenRequest) -> None:
        s = self.settings
        if self.model_ids and greq.model not in self.model_ids:
            raise ApiError(
                404,
                f"the model {greq.model!r} does not exist; served: {', '.join(self.model_ids)}",
                param="model",
                code="model_not_found",
            )
        now = self.now()
        limit_headers: tuple[tuple[str, str], ...] = ()  # (as OpenAI: on every answer)
        if self.limiter.enabled:
            cost = greq.prompt_tokens + (greq.max_tokens or s.output_tokens)
            verdict = self.limiter.check(cost, now)
            limit_headers = verdict.headers
            if not verdict.ok:
                self.stats.bump(self.stats.rejected, "rate_limit")
                raise ApiError(
                    429,
                    f"rate limit reached for {verdict.limit_name} per minute; retry after "
                    f"{verdict.retry_after_s}s",
                    type_="requests" if verdict.limit_name == "requests" else "tokens",
                    code="rate_limit_exceeded",
                    headers=(("retry-after", str(verdict.retry_after_s)), *verdict.headers),
                )
        forced = req.headers.get(b"x-mock-fault")
        fault = self.faults.draw(forced.decode("latin-1") if forced is not None else None)
        if fault.http_status:
            self._http_fault(fault)
        if not self.scheduler.can_accept():
            self.stats.bump(self.stats.rejected, "queue_full")
            raise ApiError(
                s.overflow_status,
                "the server is overloaded: the waiting queue is full",
                type_="server_error" if s.overflow_status == 503 else "requests",
                code="overloaded",
                headers=(("retry-after", "1"),),
            )
        self._counter += 1
        key = greq.seed if greq.seed is not None else self._counter
        rng = random.Random((s.seed << 40) ^ key)
        offset = self.vocab.offset_for(key)
        n_out, reason = output_length(s, rng, greq.max_tokens, greq.min_tokens)
        if greq.stops:
            cut, hit = self.vocab.cut_at_stop(offset, n_out, greq.stops)
            if hit:
                n_out, reason = max(1, cut), "stop"
        response_id = f"{s.seed:x}-{self._counter:08x}"
        created = int(time.time())
        disconnect_at = s.disconnect_after_tokens if fault.kind == "disconnect" else -1
        if disconnect_at >= 0:
            disconnect_at = min(disconnect_at, n_out - 1) if n_out > 1 else 0
        sink: StreamSink | FullSink
        if greq.stream:
            tpl = StreamTemplate(greq, response_id, created)
            sink = StreamSink(self, conn, tpl, greq, offset, disconnect_at)
        else:
            sink = FullSink(
                self, conn, greq, response_id, created, offset, disconnect_at, limit_headers
            )
        seq = Sequence(prompt_tokens=greq.prompt_tokens, out_tokens=n_out, sink=sink, rng=rng)
        seq.finish_reason = reason
        if fault.kind == "stall":
            seq.stall_at = min(s.stall_after_tokens, n_out - 1)
            seq.stall_s = s.stall_ms / 1000.0
            self.stats.bump(self.stats.faults, "stall")
        elif fault.kind == "slow_first_token":
            seq.extra_ttft_s = s.slow_first_token_ms / 1000.0
            self.stats.bump(self.stats.faults, "slow_first_token")
        if greq.stream:
            head = SSE_HEADERS + f"x-request-id: {response_id}\r\n".encode()
            head += "".join(f"{k}: {v}\r\n" for k, v in limit_headers).encode("latin-1")
            if not conn.keep_alive:
                head += b"connection: close\r\n"
            conn.write(head + b"\r\n")
        if disconnect_at == 0:
            self.stats.bump(self.stats.faults, "disconnect")
            conn.close()
            return
        conn.seq = seq
        self.scheduler.submit(seq, now)
        self.kick()

    def _http_fault(self, fault: Fault) -> None:
        self.stats.bump(self.stats.faults, fault.kind)
        status = fault.http_status
        if status == 429:
            raise ApiError(
                429,
                "injected fault: rate limit reached",
                type_="requests",
                code="rate_limit_exceeded",
                headers=(("retry-after", "1"),),
            )
        raise ApiError(
            status,
            f"injected fault: HTTP {status}",
            type_="server_error",
            code="injected_fault",
        )


async def serve(settings: MockSettings, started: asyncio.Future[str] | None = None) -> None:
    """Listen, print nothing, resolve `started` with the URL, and serve until cancelled."""
    loop = asyncio.get_running_loop()
    app = MockApp(settings, loop)
    server = await loop.create_server(
        lambda: Connection(app), settings.host, settings.port, backlog=4096, reuse_address=True
    )
    sock_host, sock_port = server.sockets[0].getsockname()[:2]
    host = f"[{sock_host}]" if ":" in sock_host else sock_host
    app.config_body = app.config_json(sock_port)
    app.start_sweeper()
    watch_parent(loop)  # stop when the process that started us is gone
    if started is not None:
        started.set_result(f"http://{host}:{sock_port}")
    try:
        await asyncio.Event().wait()
    finally:
        app.stop()
        server.close()
