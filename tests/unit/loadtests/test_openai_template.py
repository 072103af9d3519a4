"""The OpenAI tracker's template path (chunks decided without a JSON parse) gives exactly the
records of the full parse, for any bytes a server may send in the content's place."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from loadtests import outcomes as oc
from loadtests.stream import OpenAIStreamTracker, chunk_template

BASE = (
    b'{"id":"c-1","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"content":"%s"},"finish_reason":null}],"usage":null}'
)
ROLE = b'{"id":"c-1","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}'
USAGE = b'{"id":"c-1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":7}}'
ERROR = b'{"error":{"message":"boom"}}'

CONTENT = st.binary(max_size=8) | st.sampled_from(
    [b"hi", b" the", b"", b'a"b', b"a\\nb", b"\\u0041", b"\x01", b"\xe4\xb8\xad", b"\xe4\xb8",
     b"\xed\xa0\x80", b"\x7f", b'"}],"usage":{"completion_tokens":99}}//', b"x" * 40]
)  # fmt: skip
EVENT = st.one_of(
    CONTENT.map(lambda c: BASE % c),
    st.sampled_from([ROLE, USAGE, ERROR, b"[DONE]", b"not json", b"{}", b"[]", b"", b"\0hi"]),
    CONTENT.map(lambda c: BASE.replace(b'"c-1"', b'"c-2"') % c),  # another prefix
)


def records(events: list[bytes], template: bool) -> tuple[object, ...]:
    tracker = OpenAIStreamTracker(1_000)
    if not template:
        tracker._tries = 0
    for i, data in enumerate(events):
        tracker.on_sse("message", data, 10_000 + i * 1_000, 9_000 + i * 1_000 if i % 3 else None)
    r = tracker.finish(99_000)
    return (r.first_token_ns, r.itl_ns, r.output_tokens, r.prompt_tokens, r.client_lag_ns,
            r.first_token_lag_ns, r.outcome, r.error, tracker.end_ns)  # fmt: skip


@settings(max_examples=400)
@given(st.lists(CONTENT, min_size=1, max_size=3), st.lists(EVENT, max_size=30))
def test_the_template_path_equals_the_full_parse(first: list[bytes], events: list[bytes]) -> None:
    stream = [ROLE, *(BASE % c for c in first), *events]
    assert records(stream, template=True) == records(stream, template=False)


def test_a_plain_token_chunk_gives_a_template_and_its_tokens_skip_the_parse() -> None:
    tracker = OpenAIStreamTracker(0)
    for i, content in enumerate([b"", b"one", b" two", b" three"]):
        tracker.on_sse("message", BASE % content, 10 + i, None)
    assert tracker._prefix is not None and tracker._prefix.endswith(b'"content":"')
    assert tracker._suffix.startswith(b'"},"finish_reason"')
    assert tracker.record.output_tokens == 3 and tracker.record.itl_ns == [1, 1]
    tracker.on_sse("message", USAGE, 20, None)
    tracker.on_sse("message", b"[DONE]", 21, None)
    record = tracker.finish(22)
    assert (record.outcome, record.output_tokens, record.prompt_tokens) == (oc.OK, 7, 3)


def test_no_template_where_the_content_is_escaped_ambiguous_or_with_usage() -> None:
    def template(data: bytes) -> tuple[bytes, bytes] | None:
        return chunk_template(data, orjson.loads(data))

    assert template(BASE % b"hi") is not None
    assert template(BASE % b"a\\nb") is None  # an escape
    twice = b'{"x":{"content":"hi"},"choices":[{"delta":{"content":"hi"}}]}'
    assert template(twice) is None  # the content's bytes twice: no single split
    elsewhere = b'{"choices":[{"delta":{"content":"hi"}}],"message":{"content":"hi!"}}'
    assert template(elsewhere) is not None  # once after "content":" + its closing quote
    assert template(b'{"choices":[{"delta":{"content":""}}]}') is None  # not a token
