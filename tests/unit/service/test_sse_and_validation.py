"""SSE encoder and request validators, including property tests (hypothesis)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.errors import RequestError
from service.sse import decode_stream, encode_event, encode_token, encode_tokens
from service.validation import Limits, parse_batch, parse_chat, request_id

LIMITS = Limits(
    max_body_bytes=65536,
    max_question_chars=200,
    max_tokens_limit=100,
    batch_max_items=4,
    agent_steps_limit=8,
)


@given(st.text())
@settings(max_examples=150, deadline=None)
def test_any_string_round_trips_through_a_token_event(content: str) -> None:
    raw = encode_token(content)
    assert raw.count(b"\n\n") == 1 and raw.endswith(b"\n\n")
    assert b"\r" not in raw
    [(name, data)] = decode_stream(raw)
    assert name == "token" and data == {"type": "token", "content": content}


@given(st.lists(st.text(), min_size=1, max_size=5), st.booleans())
@settings(max_examples=100, deadline=None)
def test_batched_token_events_round_trip(contents: list[str], stamp: bool) -> None:
    events = decode_stream(encode_tokens(contents, stamp))
    assert [d["content"] for _, d in events] == contents


def test_lone_surrogates_survive() -> None:
    [(_, data)] = decode_stream(encode_token("a\ud800b"))
    assert data["content"] == "a\ud800b"


def test_event_format_matches_contract() -> None:
    assert encode_event("thinking", {"request_id": "r-1", "step": "admitted"}) == (
        b'event: thinking\ndata: {"type":"thinking","request_id":"r-1","step":"admitted"}\n\n'
    )
    assert encode_token('a"\n') == b'event: token\ndata: {"type":"token","content":"a\\"\\n"}\n\n'


def _check(result: Any) -> None:
    assert result.question.strip()
    assert len(result.question) <= LIMITS.max_question_chars


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@given(
    st.dictionaries(
        st.sampled_from(["question", "max_tokens", "agent_steps", "other"]) | st.text(max_size=5),
        json_values,
        max_size=4,
    )
)
@settings(max_examples=150, deadline=None)
def test_chat_validator_accepts_or_rejects_with_4xx(body: dict[str, Any]) -> None:
    raw = json.dumps(body).encode()
    try:
        result = parse_chat(raw, LIMITS)
    except RequestError as exc:
        assert exc.status in {400, 413, 422}
        assert exc.message and "Traceback" not in exc.message
    else:
        _check(result)
        assert result.question == body["question"]
        mt = body.get("max_tokens")
        assert result.max_tokens == mt and (mt is None or 1 <= mt <= LIMITS.max_tokens_limit)
        steps = body.get("agent_steps")
        assert result.agent_steps == steps
        assert steps is None or 1 <= steps <= LIMITS.agent_steps_limit


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), (1, 1), (8, 8), (0, 422), (9, 422), (-1, 422), (2.0, 422), (True, 422),
     ("3", 422)],
)  # fmt: skip
def test_agent_steps_is_bounded_by_the_limit(value: object, expected: int | None) -> None:
    body: dict[str, Any] = {"question": "q"}
    if value is not None:
        body["agent_steps"] = value
    for parse, payload in (
        (parse_chat, body),
        (parse_batch, {"questions": ["q"], **{k: v for k, v in body.items() if k != "question"}}),
    ):
        raw = json.dumps(payload).encode()
        if expected == 422:
            with pytest.raises(RequestError) as info:
                parse(raw, LIMITS)  # type: ignore[operator]
            assert info.value.status == 422 and "agent_steps" in info.value.message
        else:
            assert parse(raw, LIMITS).agent_steps == expected  # type: ignore[operator]


@given(st.binary(max_size=200))
@settings(max_examples=150, deadline=None)
def test_chat_validator_never_crashes_on_bytes(raw: bytes) -> None:
    try:
        parse_chat(raw, LIMITS)
    except RequestError as exc:
        assert 400 <= exc.status < 500


@given(st.text(min_size=1, max_size=200).filter(lambda s: s.strip()), st.integers(1, 100))
@settings(max_examples=100, deadline=None)
def test_valid_requests_parse(question: str, max_tokens: int) -> None:
    raw = json.dumps({"question": question, "max_tokens": max_tokens}).encode()
    result = parse_chat(raw, LIMITS)
    assert (result.question, result.max_tokens) == (question, max_tokens)


@given(st.lists(json_values, max_size=6))
@settings(max_examples=200, deadline=None)
def test_batch_validator_accepts_or_rejects_with_4xx(questions: list[Any]) -> None:
    try:
        result = parse_batch(json.dumps({"questions": questions}).encode(), LIMITS)
    except RequestError as exc:
        assert exc.status in {400, 422}
    else:
        assert list(result.questions) == questions
        assert 1 <= len(questions) <= LIMITS.batch_max_items


@given(st.text())
@settings(max_examples=150, deadline=None)
def test_request_id_is_echoed_only_when_safe(value: str) -> None:
    rid = request_id(value)
    assert rid.isascii() and "\r" not in rid and "\n" not in rid and " " not in rid
    assert 1 <= len(rid) <= 128
    if rid == value:
        assert all(c.isalnum() or c in "._:-" for c in value)


@pytest.mark.parametrize("value", ["abc", "req-1.2:3_x", "A" * 128])
def test_safe_request_ids_are_kept(value: str) -> None:
    assert request_id(value) == value
