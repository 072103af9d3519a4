"""Admission control: who may talk to the LLM now, who waits, who is turned away.

Three policies share one interface. `enter()` is synchronous: it either rejects at once (raises
`Overloaded`, before any response starts) or returns a `Ticket` that holds a place. `await
ticket.wait(timeout_s)` waits for a slot; `ticket.release()` gives back whatever the ticket holds
(a wait-list place, a slot, or nothing) and is safe to call on every path, any number of times.

`max_concurrent` is the concurrency limit under both limiting policies:

- `none`: every request runs at once (the baseline).
- `semaphore`: `max_concurrent` permits; up to `queue_size` requests wait in FIFO order.
- `queue`: the seed's design: a bounded FIFO of `queue_size` served by up to W worker tasks, W =
  `max_concurrent` unless `--workers` overrides it; a worker takes the next waiting request,
  hands it a slot and waits until the request releases it, so W is the concurrency limit.
  Workers are started on demand (one more only when a request finds none idle), so memory
  follows the load, never the limit: W = 100,000 costs nothing until 100,000 requests run at once.

A waiter that gives up (timeout, client gone) leaves the wait list at once, so abandoned requests
neither hold a queue place nor get served later as zombie work.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Protocol

from .errors import Overloaded


class Admission(Protocol):
    """What the app needs from a policy."""

    name: str

    @property
    def in_flight(self) -> int: ...

    @property
    def queue_depth(self) -> int: ...

    @property
    def capacity(self) -> int: ...

    def enter(self) -> Ticket: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Ticket:
    """One request's claim on capacity."""

    __slots__ = ("_future", "_on_release", "granted", "released", "t_enter", "t_granted")

    def __init__(self, on_release: Callable[[Ticket], None], t_enter: float) -> None:
        self._future: asyncio.Future[None] | None = None
        self._on_release = on_release
        self.granted = False
        self.released = False
        self.t_enter = t_enter
        self.t_granted = t_enter

    def _grant(self, now: float) -> bool:
        """Give this ticket a slot; False if it already gave up."""
        if self.released or self.granted:
            return False
        self.granted = True
        self.t_granted = now
        if self._future is not None and not self._future.done():
            self._future.set_result(None)
        return True

    async def wait(self, timeout_s: float | None) -> None:
        """Wait for a slot. Raises `Overloaded` on timeout; on any failure the place is freed."""
        if self.granted:
            return
        if self.released:
            raise Overloaded("request already released", "released")
        self._future = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout_s):
                await self._future
        except TimeoutError:
            self.release()
            raise Overloaded(
                f"no free slot within the queue timeout of {timeout_s:g} s", "queue_timeout"
            ) from None
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Give back the slot or the wait-list place (idempotent)."""
        if self.released:
            return
        self.released = True
        self._on_release(self)


class NoAdmission:
    """No limit: every request runs at once."""

    name = "none"

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._running = 0

    @property
    def in_flight(self) -> int:
        return self._running

    @property
    def queue_depth(self) -> int:
        return 0

    @property
    def capacity(self) -> int:
        return 0

    def enter(self) -> Ticket:
        ticket = Ticket(self._release, self._clock())
        ticket._grant(ticket.t_enter)
        self._running += 1
        return ticket

    def _release(self, ticket: Ticket) -> None:
        self._running -= 1

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class SemaphoreAdmission:
    """`max_concurrent` permits and a FIFO wait list of at most `queue_size`."""

    name = "semaphore"

    def __init__(self, max_concurrent: int, queue_size: int, clock: Callable[[], float]) -> None:
        self._limit = max_concurrent
        self._queue_size = queue_size
        self._clock = clock
        self._running = 0
        self._waiting: deque[Ticket] = deque()

    @property
    def in_flight(self) -> int:
        return self._running

    @property
    def queue_depth(self) -> int:
        return len(self._waiting)

    @property
    def capacity(self) -> int:
        return self._limit

    def enter(self) -> Ticket:
        ticket = Ticket(self._release, self._clock())
        if self._running < self._limit and not self._waiting:
            ticket._grant(ticket.t_enter)
            self._running += 1
        elif len(self._waiting) >= self._queue_size:
            raise Overloaded(
                f"{self._running} requests running and {len(self._waiting)} waiting "
                f"(limits {self._limit} and {self._queue_size})",
                "queue_full",
            )
        else:
            self._waiting.append(ticket)
        return ticket

    def _release(self, ticket: Ticket) -> None:
        if not ticket.granted:
            self._waiting.remove(ticket)
            return
        self._running -= 1
        while self._waiting and self._running < self._limit:
            nxt = self._waiting.popleft()
            if nxt._grant(self._clock()):
                self._running += 1

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class QueueAdmission:
    """A bounded FIFO of waiting requests served by up to `workers` worker tasks (the seed's
    queue), each started when a request first finds no idle worker."""

    name = "queue"

    def __init__(self, workers: int, queue_size: int, clock: Callable[[], float]) -> None:
        self._workers_n = workers
        self._queue_size = queue_size
        self._clock = clock
        self._waiting: deque[Ticket] = deque()
        self._running = 0
        self._idle_workers: deque[asyncio.Future[Ticket]] = deque()
        self._slot_freed: dict[int, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped = False

    @property
    def in_flight(self) -> int:
        return self._running

    @property
    def queue_depth(self) -> int:
        return len(self._waiting)

    @property
    def capacity(self) -> int:
        return self._workers_n

    def enter(self) -> Ticket:
        if self._stopped:
            raise Overloaded("the service is shutting down", "shutting_down")
        ticket = Ticket(self._release, self._clock())
        # Hand it straight to an idle worker when one waits (no queue place needed).
        while self._idle_workers:
            worker = self._idle_workers.popleft()
            if not worker.done():
                self._running += 1
                ticket._grant(ticket.t_enter)
                worker.set_result(ticket)
                return ticket
        # No idle worker: start one more while fewer than W exist; it serves this ticket first.
        if self._loop is not None and len(self._tasks) < self._workers_n:
            self._running += 1
            ticket._grant(ticket.t_enter)
            self._tasks.append(
                self._loop.create_task(
                    self._worker(ticket), name=f"admission-worker-{len(self._tasks)}"
                )
            )
            return ticket
        if len(self._waiting) >= self._queue_size:
            raise Overloaded(
                f"queue full: {len(self._waiting)} waiting, {self._running} running "
                f"(queue size {self._queue_size}, workers {self._workers_n})",
                "queue_full",
            )
        self._waiting.append(ticket)
        return ticket

    def _release(self, ticket: Ticket) -> None:
        if not ticket.granted:
            self._waiting.remove(ticket)
            return
        self._running -= 1
        event = self._slot_freed.pop(id(ticket), None)
        if event is not None:
            event.set()

    async def _next_ticket(self) -> Ticket:
        while self._waiting:
            ticket = self._waiting.popleft()
            self._running += 1
            if ticket._grant(self._clock()):
                return ticket
            self._running -= 1
        future: asyncio.Future[Ticket] = asyncio.get_running_loop().create_future()
        self._idle_workers.append(future)
        try:
            return await future
        finally:
            if not future.done() and future in self._idle_workers:
                self._idle_workers.remove(future)

    async def _worker(self, first: Ticket) -> None:
        ticket = first
        while True:
            if not ticket.released:  # else it finished before we looked (e.g. failed at once)
                freed = asyncio.Event()
                self._slot_freed[id(ticket)] = freed
                await freed.wait()
            ticket = await self._next_ticket()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()  # workers start on demand, in enter()

    async def stop(self) -> None:
        self._stopped = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []


def make_admission(
    policy: str, max_concurrent: int, queue_size: int, workers: int, clock: Callable[[], float]
) -> NoAdmission | SemaphoreAdmission | QueueAdmission:
    """Build the policy named by `--admission`."""
    if policy == "none":
        return NoAdmission(clock)
    if policy == "semaphore":
        return SemaphoreAdmission(max_concurrent, queue_size, clock)
    if policy == "queue":
        return QueueAdmission(workers, queue_size, clock)
    raise ValueError(f"unknown admission policy {policy!r}")
