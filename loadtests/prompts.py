"""Prompts for the load: seeded synthetic lengths, or a JSONL file.

A length spec is ``N`` (fixed), ``uniform:LO:HI``, ``normal:MEAN:STD`` or ``lognormal:MEDIAN:SIGMA``
(words, at least 1). A prompt file has one JSON object per line with ``question`` (or ``prompt``)
and an optional ``max_tokens``.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

WORDS = [
    "capacity",
    "latency",
    "token",
    "stream",
    "queue",
    "agent",
    "model",
    "answer",
    "question",
    "throughput",
    "service",
    "request",
    "budget",
    "planner",
    "cluster",
    "window",
    "context",
    "cache",
    "replica",
    "batch",
    "decode",
    "prefill",
]

LENGTH_KINDS = ("fixed", "uniform", "normal", "lognormal")
MAX_LENGTH = 1_000_000
"""The largest length (words or tokens) a spec may name: a prompt is built in memory."""


class PromptSpecError(ValueError):
    """A prompt or length spec that cannot be used; the message says what is allowed."""


@dataclass(frozen=True)
class LengthSpec:
    kind: str
    a: float
    b: float = 0.0

    @classmethod
    def parse(cls, text: str) -> LengthSpec:
        parts = str(text).split(":")
        try:
            if len(parts) == 1:
                kind = "fixed"
                spec = cls(kind, float(int(parts[0])))
            else:
                kind, *nums = parts
                if kind not in LENGTH_KINDS[1:] or len(nums) != 2:
                    raise ValueError
                spec = cls(kind, float(nums[0]), float(nums[1]))
        except ValueError:
            raise PromptSpecError(
                f"bad length {text!r}; allowed: N, uniform:LO:HI, normal:MEAN:STD, "
                "lognormal:MEDIAN:SIGMA"
            ) from None
        if not (math.isfinite(spec.a) and math.isfinite(spec.b)):
            raise PromptSpecError(f"bad length {text!r}: values must be finite numbers")
        if spec.a <= 0 or spec.b < 0 or (kind == "uniform" and spec.b < spec.a):
            raise PromptSpecError(f"bad length {text!r}: values must be positive, LO <= HI")
        if max(spec.a, spec.b) > MAX_LENGTH:
            raise PromptSpecError(f"bad length {text!r}: values must be <= {MAX_LENGTH:,}")
        return spec

    def sample(self, rng: random.Random) -> int:
        if self.kind == "fixed":
            value = self.a
        elif self.kind == "uniform":
            value = rng.uniform(self.a, self.b)
        elif self.kind == "normal":
            value = rng.gauss(self.a, self.b)
        else:
            value = rng.lognormvariate(math.log(self.a), self.b)
        return max(1, round(value))


@dataclass(frozen=True)
class Prompt:
    question: str
    max_tokens: int | None


class PromptSource:
    """Deterministic prompts under a seed: synthetic, or cycled from a file's entries."""

    def __init__(
        self,
        *,
        prompt_words: str = "uniform:8:64",
        max_tokens: str = "",
        file: Path | None = None,
        seed: int = 1,
    ) -> None:
        self._rng = random.Random(seed)
        self._words = LengthSpec.parse(prompt_words)
        self._max_tokens = LengthSpec.parse(max_tokens) if max_tokens else None
        self._entries: Sequence[Prompt] = load_jsonl(file) if file else ()
        self._next = 0

    def next(self) -> Prompt:
        if self._entries:
            entry = self._entries[self._next % len(self._entries)]
            self._next += 1
            if entry.max_tokens is None and self._max_tokens is not None:
                return Prompt(entry.question, self._max_tokens.sample(self._rng))
            return entry
        n = self._words.sample(self._rng)
        question = " ".join(self._rng.choice(WORDS) for _ in range(n))
        max_tokens = self._max_tokens.sample(self._rng) if self._max_tokens else None
        return Prompt(question, max_tokens)


def load_jsonl(path: Path) -> list[Prompt]:
    """Prompts of a JSONL file; a bad line raises `PromptSpecError` naming the line."""
    prompts: list[Prompt] = []
    try:
        lines = path.read_text("utf-8").splitlines()
    except OSError as exc:
        raise PromptSpecError(f"prompt file {path}: {exc.strerror or exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            question = data.get("question", data.get("prompt"))
            if not isinstance(question, str) or not question:
                raise ValueError("needs a non-empty 'question' or 'prompt'")
            max_tokens = data.get("max_tokens")
            if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
                raise ValueError("'max_tokens' must be a positive integer")
        except (ValueError, AttributeError) as exc:
            raise PromptSpecError(f"prompt file {path} line {number}: {exc}") from None
        prompts.append(Prompt(question, max_tokens))
    if not prompts:
        raise PromptSpecError(f"prompt file {path} holds no prompts")
    return prompts
