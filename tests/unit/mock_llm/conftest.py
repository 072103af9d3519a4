from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

from mock_llm.scheduler import Scheduler, Sequence
from mock_llm.settings import MockSettings


@dataclass
class RecordingSink:
    """Records (time, first token index, count, done) of every emit."""

    emits: list[tuple[float, int, int, bool]] = field(default_factory=list)
    alive: bool = True

    def emit(self, seq: Sequence, n: int, now: float, done: bool) -> bool:
        self.emits.append((now, seq.sent, n, done))
        return self.alive

    @property
    def first_at(self) -> float:
        return self.emits[0][0]

    @property
    def tokens(self) -> int:
        return sum(e[2] for e in self.emits)

    @property
    def done_at(self) -> float:
        assert self.emits[-1][3]
        return self.emits[-1][0]


def settings(**kw: object) -> MockSettings:
    return replace(MockSettings(), **kw)  # type: ignore[arg-type]


def new_seq(out_tokens: int = 50, prompt_tokens: int = 10) -> tuple[Sequence, RecordingSink]:
    sink = RecordingSink()
    seq = Sequence(
        prompt_tokens=prompt_tokens, out_tokens=out_tokens, sink=sink, rng=random.Random(1)
    )
    return seq, sink


def run_until(sched: Scheduler, t_end: float) -> None:
    """Drive the scheduler like the server's timer does, with a fake clock (no sleeping)."""
    for _ in range(1_000_000):
        due = sched.next_deadline()
        if due is None or due > t_end:
            return
        sched.advance(due)
    raise AssertionError("scheduler did not settle")
