"""The live state of one service process and the request flows that use it.

`Runtime` owns the admission policy, the upstream client and the metrics (built in the app's
lifespan). `RelayStream` is the `/chat/stream` response: a bare ASGI callable that writes SSE
events with the server's own `send` (no StreamingResponse task group, no middleware wrappers on
the per-token path). `answer()` is the non-streaming flow behind `/chat` and `/chat/batch`.

Every flow acquires its ticket before it starts and releases it in the same `finally`, so a slot
or queue place is freed on success, timeout, upstream error, client disconnect and shutdown alike.
A watcher task reads `receive()` for `http.disconnect` from the first moment, so a client that
leaves while its request waits in the queue or for the first upstream token cancels it at once.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.types import Receive, Scope, Send

from .admission import Ticket, make_admission
from .agent import Agent, Timings
from .errors import Overloaded, RequestError, RequestTimeout, ServiceError, UpstreamError
from .metrics import ServiceMetrics
from .settings import ServiceSettings
from .sse import SSE_HEADERS, encode_event, encode_tokens, stamp_line
from .upstream import UpstreamClient, Usage

log = logging.getLogger("service")

T = TypeVar("T")


@dataclass
class Outcome:
    """How a request ended (one label of `surge_service_requests_total`)."""

    name: str = "ok"
    error: ServiceError | None = None


@dataclass
class Runtime:
    """Everything a request needs; one per process."""

    settings: ServiceSettings
    metrics: ServiceMetrics
    clock: Callable[[], float] = time.perf_counter
    draining: bool = False
    started: bool = False
    upstream: UpstreamClient = field(init=False)
    agent: Agent = field(init=False)

    def __post_init__(self) -> None:
        s = self.settings
        self.admission = make_admission(
            s.admission, s.max_concurrent, s.queue_size, s.worker_count, self.clock
        )
        self.upstream = UpstreamClient(s, self.metrics, self.clock)
        self.agent = Agent(s, self.upstream, self.clock)
        self.metrics.bind_state(
            lambda: self.admission.in_flight,
            lambda: self.admission.queue_depth,
            lambda: self.admission.capacity,
            lambda: self.upstream.in_use,
        )

    async def start(self) -> None:
        await self.admission.start()
        self.started = True

    async def stop(self) -> None:
        self.draining = True
        await self.admission.stop()
        await self.upstream.aclose()

    async def drain(self, grace_s: float, give_up: Callable[[], bool] = lambda: False) -> bool:
        """Refuse new requests (`/readyz` 503, admission `shutting_down`) and wait up to
        `grace_s` (or until `give_up()`) for those in flight or queued to finish; True when
        none is left. The server keeps its listener open meanwhile, so probes see the 503."""
        self.draining = True
        deadline = self.clock() + grace_s
        while self.admission.in_flight or self.admission.queue_depth:
            if self.clock() >= deadline or give_up():
                return False
            await asyncio.sleep(0.05)  # a poll period; streams end on their own schedule
        return True

    def admit(self) -> Ticket:
        """A ticket, or `Overloaded` (counted) before any response starts."""
        if self.draining:
            self.metrics.rejected.labels("shutting_down").inc()
            raise Overloaded("the service is shutting down", "shutting_down")
        try:
            ticket = self.admission.enter()
        except Overloaded as exc:
            self.metrics.rejected.labels(exc.reason).inc()
            raise
        self.metrics.admitted.inc()
        return ticket

    async def wait_for_slot(self, ticket: Ticket, timings: Timings) -> None:
        remaining = self.settings.timeout_s - (self.clock() - timings.t_arrival)
        try:
            await ticket.wait(min(self.settings.queue_timeout_s, max(0.0, remaining)))
        except Overloaded:
            self.metrics.timed_out.labels("queue").inc()
            raise
        timings.t_enter = ticket.t_enter
        timings.t_granted = ticket.t_granted
        self.metrics.queue_wait.observe(ticket.t_granted - ticket.t_enter)

    def record(self, endpoint: str, outcome: Outcome, timings: Timings, tokens: int) -> None:
        m = self.metrics
        err = outcome.error
        if isinstance(err, RequestTimeout):
            m.timed_out.labels(err.stage).inc()
        m.requests.labels(endpoint, outcome.name).inc()
        if tokens:
            m.tokens.inc(tokens)
        if timings.t_first_out is not None:
            m.ttft.observe(timings.t_first_out - timings.t_arrival)
        m.duration.observe(self.clock() - timings.t_arrival)


AUTH_TOKEN_ENV = "SURGE_SERVICE_AUTH_TOKEN"


def warn_secret_on_command_line(settings: ServiceSettings, env: Mapping[str, str]) -> bool:
    """One line on stderr when the auth token did not come from the environment (a flag wins over
    the variable, so a token that differs from it came from the command line, which `ps` shows
    to every user of the machine). True when warned."""
    if not settings.auth_token or env.get(AUTH_TOKEN_ENV) == settings.auth_token:
        return False
    print(
        f"warning: --auth-token on the command line is visible to other users (ps); "
        f"set {AUTH_TOKEN_ENV} instead",
        file=sys.stderr,
        flush=True,
    )
    return True


def classify(exc: BaseException) -> Outcome:
    """Map an exception ending a request to its outcome."""
    if isinstance(exc, Overloaded):
        return Outcome("rejected", exc)
    if isinstance(exc, RequestTimeout):
        return Outcome("timeout", exc)
    if isinstance(exc, UpstreamError):
        return Outcome("upstream_error", exc)
    if isinstance(exc, RequestError):
        return Outcome("client_error", exc)
    if isinstance(exc, ServiceError):
        return Outcome("error", exc)
    log.exception("internal error", exc_info=exc)
    return Outcome("error", ServiceError("internal error"))


async def run_until_disconnect(
    receive: Receive, work: Coroutine[Any, Any, T], on_disconnect: Callable[[], None]
) -> T:
    """Run `work`, cancelling it if the client disconnects first; CancelledError then propagates."""
    task = asyncio.current_task()
    assert task is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                gone = True
                on_disconnect()
                task.cancel()
                return

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if gone and task.uncancel() == 0:
            raise ClientGone from None
        raise
    finally:
        watcher.cancel()


class ClientGone(Exception):
    """The client disconnected; the work was cancelled."""


class RelayStream:
    """The `/chat/stream` response (ASGI). Admission already happened: it owns `ticket`."""

    def __init__(
        self,
        runtime: Runtime,
        ticket: Ticket,
        timings: Timings,
        request_id: str,
        question: str,
        max_tokens: int | None,
        raw_send: Send | None,
        agent_steps: int | None = None,
    ) -> None:
        self.runtime = runtime
        self.ticket = ticket
        self.timings = timings
        self.request_id = request_id
        self.question = question
        self.max_tokens = max_tokens
        self.raw_send = raw_send
        self.agent_steps = agent_steps
        self.tokens = 0
        self._finished = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        send = self.raw_send or send
        rt = self.runtime
        stamp = rt.settings.stamp
        outcome = Outcome()
        try:
            headers = [*SSE_HEADERS, (b"x-request-id", self.request_id.encode("ascii"))]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await self._event(send, "thinking", {"request_id": self.request_id, "step": "admitted"})

            async def on_tokens(tokens: list[str]) -> None:
                self.tokens += len(tokens)
                body = encode_tokens(tokens, stamp)
                await send({"type": "http.response.body", "body": body, "more_body": True})

            async def on_step(step: str, call: int) -> None:
                payload = {"request_id": self.request_id, "step": step, "call": call}
                await self._event(send, "thinking", payload)

            async def work() -> Usage:
                await rt.wait_for_slot(self.ticket, self.timings)
                return await rt.agent.run(
                    self.question,
                    self.max_tokens,
                    self.timings,
                    on_tokens,
                    on_step,
                    self.agent_steps,
                )

            usage = await run_until_disconnect(receive, work(), self.ticket.release)
            self._finish(outcome)  # slot and counters settled before the last write may block
            done = {
                "request_id": self.request_id,
                "usage": usage.as_dict(),
                "timings_ms": self.timings.as_ms(rt.clock()),
            }
            await self._last_event(send, "done", done)
        except ClientGone:
            rt.metrics.cancelled.labels("client_disconnect").inc()
            self._finish(Outcome("cancelled"))
        except asyncio.CancelledError:
            rt.metrics.cancelled.labels("shutdown").inc()
            self._finish(Outcome("cancelled"))
            task = asyncio.current_task()
            if not rt.draining or task is None:
                await self._final_error(send, "cancelled", "the server is shutting down")
                raise
            # Cancelled by the server past its shutdown grace: the client gets `cancelled` and
            # the stream ends normally, so no traceback is logged for an expected event.
            task.uncancel()
            await self._final_error(send, "cancelled", "the server is shutting down")
        except Exception as exc:
            outcome = classify(exc)
            self._finish(outcome)
            err = outcome.error
            assert err is not None
            await self._final_error(send, err.error_type, err.message)
        finally:
            self._finish(Outcome("error"))  # no-op unless a path above missed it

    def _finish(self, outcome: Outcome) -> None:
        """Release the slot and count the outcome, once."""
        self.ticket.release()
        if not self._finished:
            self._finished = True
            self.runtime.record("stream", outcome, self.timings, self.tokens)

    async def _event(
        self, send: Send, kind: str, payload: dict[str, Any], more: bool = True
    ) -> None:
        body = encode_event(kind, payload)
        if self.runtime.settings.stamp:
            body = stamp_line() + body
        await send({"type": "http.response.body", "body": body, "more_body": more})

    async def _last_event(self, send: Send, kind: str, payload: dict[str, Any]) -> None:
        """The closing event. A client that stops reading can block it (back-pressure), so it
        gets at most --idle-timeout-s; then the connection is dropped."""
        try:
            async with asyncio.timeout(self.runtime.settings.idle_timeout_s):
                await self._event(send, kind, payload, more=False)
        except TimeoutError:
            log.info("client of %s stopped reading; dropping the stream", self.request_id)

    async def _final_error(self, send: Send, error_type: str, message: str) -> None:
        payload = {"request_id": self.request_id, "error": {"type": error_type, "message": message}}
        try:
            await self._last_event(send, "error", payload)
        except Exception:  # the connection may be gone already; nothing more to tell anyone
            log.debug("could not send the error event of %s", self.request_id)


async def answer(
    runtime: Runtime,
    ticket: Ticket,
    timings: Timings,
    question: str,
    max_tokens: int | None,
    agent_steps: int | None = None,
) -> tuple[str, Usage]:
    """The non-streaming flow: wait for a slot, collect the answer. Caller releases the ticket."""
    pieces: list[str] = []

    async def on_tokens(tokens: list[str]) -> None:
        pieces.extend(tokens)

    await runtime.wait_for_slot(ticket, timings)
    usage = await runtime.agent.run(question, max_tokens, timings, on_tokens, None, agent_steps)
    return "".join(pieces), usage
