"""Admission policies: rejection, FIFO hand-off, abandonment, timeouts, idempotent release."""

from __future__ import annotations

import asyncio

import pytest

from service.admission import QueueAdmission, SemaphoreAdmission, Ticket, make_admission
from service.errors import Overloaded

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.mark.parametrize("policy", ["semaphore", "queue"])
async def test_limit_then_wait_list_then_reject(policy: str) -> None:
    clock = FakeClock()
    adm = make_admission(policy, max_concurrent=2, queue_size=1, workers=2, clock=clock)
    await adm.start()
    a, b = adm.enter(), adm.enter()
    await a.wait(1)
    await b.wait(1)
    c = adm.enter()
    assert not c.granted and adm.queue_depth == 1 and adm.in_flight == 2
    with pytest.raises(Overloaded) as info:
        adm.enter()
    assert info.value.reason == "queue_full"
    clock.now = 101.5
    waiter = asyncio.create_task(c.wait(5))
    await settle()
    a.release()
    await waiter
    assert c.granted and c.t_granted - c.t_enter == pytest.approx(1.5)
    assert adm.in_flight == 2 and adm.queue_depth == 0
    for t in (a, b, c, b, c):  # double release is harmless
        t.release()
    await settle()
    assert adm.in_flight == 0 and adm.queue_depth == 0
    await adm.stop()


@pytest.mark.parametrize("policy", ["semaphore", "queue"])
async def test_fifo_order(policy: str) -> None:
    adm = make_admission(policy, max_concurrent=1, queue_size=10, workers=1, clock=FakeClock())
    await adm.start()
    first = adm.enter()
    await first.wait(1)
    order: list[int] = []
    tickets = [adm.enter() for _ in range(4)]

    async def run(i: int, t: Ticket) -> None:
        await t.wait(5)
        order.append(i)
        await asyncio.sleep(0)
        t.release()

    tasks = [asyncio.create_task(run(i, t)) for i, t in enumerate(tickets)]
    await settle()
    first.release()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3]
    await settle()
    assert adm.in_flight == 0
    await adm.stop()


@pytest.mark.parametrize("policy", ["semaphore", "queue"])
async def test_abandoned_waiter_leaves_at_once_and_is_never_served(policy: str) -> None:
    adm = make_admission(policy, max_concurrent=1, queue_size=1, workers=1, clock=FakeClock())
    await adm.start()
    holder = adm.enter()
    await holder.wait(1)
    quitter = adm.enter()
    task = asyncio.create_task(quitter.wait(5))
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert adm.queue_depth == 0
    nxt = adm.enter()  # the freed place is usable at once
    holder.release()
    await nxt.wait(1)
    assert not quitter.granted and nxt.granted
    nxt.release()
    await settle()
    assert adm.in_flight == 0
    await adm.stop()


@pytest.mark.parametrize("policy", ["semaphore", "queue"])
async def test_queue_timeout_raises_overloaded_and_frees_place(policy: str) -> None:
    adm = make_admission(policy, max_concurrent=1, queue_size=1, workers=1, clock=FakeClock())
    await adm.start()
    holder = adm.enter()
    await holder.wait(1)
    late = adm.enter()
    with pytest.raises(Overloaded) as info:
        await late.wait(0.01)
    assert info.value.reason == "queue_timeout"
    assert adm.queue_depth == 0 and adm.in_flight == 1
    holder.release()
    await settle()
    assert adm.in_flight == 0
    await adm.stop()


async def test_none_never_rejects() -> None:
    adm = make_admission("none", 1, 0, 1, FakeClock())
    tickets = [adm.enter() for _ in range(100)]
    assert adm.in_flight == 100
    for t in tickets:
        await t.wait(0)
        t.release()
    assert adm.in_flight == 0


async def test_queue_runs_w_workers_and_refuses_after_stop() -> None:
    adm = QueueAdmission(workers=3, queue_size=0, clock=FakeClock())
    await adm.start()
    tickets = [adm.enter() for _ in range(3)]
    assert all(t.granted for t in tickets)
    with pytest.raises(Overloaded):
        adm.enter()
    for t in tickets:
        t.release()
    await settle()
    await adm.stop()
    with pytest.raises(Overloaded) as info:
        adm.enter()
    assert info.value.reason == "shutting_down"


async def test_semaphore_release_of_granted_wakes_next_even_if_some_gave_up() -> None:
    adm = SemaphoreAdmission(1, 5, FakeClock())
    holder = adm.enter()
    gone, stays = adm.enter(), adm.enter()
    gone.release()
    waiter = asyncio.create_task(stays.wait(5))
    await settle()
    holder.release()
    await waiter
    assert stays.granted and adm.in_flight == 1 and adm.queue_depth == 0
    stays.release()
    assert adm.in_flight == 0


async def test_queue_workers_start_with_load_not_with_the_limit() -> None:
    """`--workers N` used to start N tasks at once (12-24 GB for the largest N accepted)."""
    before = len(asyncio.all_tasks())
    adm = QueueAdmission(workers=10_000, queue_size=0, clock=FakeClock())
    await adm.start()
    assert len(asyncio.all_tasks()) - before == 0
    tickets = [adm.enter() for _ in range(3)]
    await settle()
    assert all(t.granted for t in tickets) and adm.in_flight == 3
    assert len(asyncio.all_tasks()) - before == 3
    for t in tickets:
        t.release()
    await settle()
    again = [adm.enter() for _ in range(3)]  # idle workers are reused, none added
    await settle()
    assert all(t.granted for t in again) and len(asyncio.all_tasks()) - before == 3
    for t in again:
        t.release()
    await adm.stop()
    assert len(asyncio.all_tasks()) - before == 0


async def test_queue_worker_started_for_a_ticket_released_at_once_serves_the_next() -> None:
    adm = QueueAdmission(workers=1, queue_size=1, clock=FakeClock())
    await adm.start()
    first = adm.enter()
    waiting = adm.enter()
    first.release()  # before the new worker task has run at all
    waiter = asyncio.create_task(waiting.wait(5))
    await settle()
    await waiter
    assert waiting.granted and adm.in_flight == 1 and adm.queue_depth == 0
    waiting.release()
    await adm.stop()
