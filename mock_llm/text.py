"""Deterministic generated text: a fixed vocabulary walked by a seeded index table.

Each token's JSON string form (quotes and escapes included) is encoded once, so the hot path only
splices bytes.
"""

from __future__ import annotations

import random

import orjson

_EN_WORDS = (  # noqa: SIM905
    "the of and to in is that for it as was with be by on not he this are or his from at which "
    "but have an they you were her she there one all we their has been if more when will would "
    "who so no time only new some could these two may first then do any like my now over such "
    "our man me even most made after also did many before must through back years where much "
    "your way well down should because each just those people how too little state good very "
    "make world still own see men work long get here between both life being under never day "
    "same another know while last might us great old year off come since against go came right "
    "used take three model token stream latency batch queue server request answer quick steady"
).split()

# Common Chinese characters plus punctuation; tokens of one or two characters.
_ZH_CHARS = (
    "的一是不了人我在有他这为之大来以个中上们到说国和地也子时道出而要于就下得可你年生自会那后能对"
    "着事其里所去行过家十用发天如然作方成者多日都三小军二无同么经法当起与好看学进种将还分此心前面"
    "又定见只主没公从数据模型服务请求流式延迟队列批量测试性能稳定快速回答问题"
)
_ZH_PUNCT = ("，", "。", "、", "：", "「", "」")

TABLE_SIZE = 8192


class Vocabulary:
    """Tokens of one language with their pre-encoded JSON string bytes."""

    def __init__(self, lang: str, seed: int) -> None:
        rng = random.Random(f"vocab:{lang}:{seed}")
        if lang == "zh":
            chars = list(_ZH_CHARS)
            words = [*chars, *(a + b for a, b in zip(chars, reversed(chars), strict=True))]
            words += list(_ZH_PUNCT) * 4
            self.tokens: list[str] = words
        else:
            self.tokens = [" " + w for w in _EN_WORDS] + [",", "."]
        # A few tokens that need JSON escaping, so framing of quotes and backslashes is exercised.
        self.tokens += [' "ok"', " a\\b", "\n"]
        self.encoded: list[bytes] = [orjson.dumps(t) for t in self.tokens]
        n = len(self.tokens)
        self.table: list[int] = [rng.randrange(n) for _ in range(TABLE_SIZE)]

    def offset_for(self, key: int) -> int:
        """Where in the index table a request whose text key is `key` starts."""
        return (key * 7919) % TABLE_SIZE

    def token_index(self, offset: int, i: int) -> int:
        return self.table[(offset + i) % TABLE_SIZE]

    def text(self, offset: int, n: int) -> str:
        """The first `n` tokens of the text starting at `offset`, joined."""
        tokens, table = self.tokens, self.table
        return "".join(tokens[table[(offset + i) % TABLE_SIZE]] for i in range(n))

    def cut_at_stop(self, offset: int, n: int, stops: list[str]) -> tuple[int, bool]:
        """How many tokens to send so the text stops before the first stop string, and whether
        a stop string was hit."""
        if not stops:
            return n, False
        text = ""
        for i in range(n):
            text += self.tokens[self.token_index(offset, i)]
            if any(s in text for s in stops):
                return i, True
        return n, False
