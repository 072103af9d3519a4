"""Request validation (errors name the field) and the pre-encoded chunk bytes."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mock_llm.openai_api import (
    ApiError,
    GenRequest,
    StreamTemplate,
    full_response,
    load_json,
    parse_chat,
    parse_completion,
)
from mock_llm.text import Vocabulary

pytestmark = pytest.mark.timeout(30)
MSG = [{"role": "user", "content": "hello there"}]


def chat(**kw: Any) -> GenRequest:
    return parse_chat({"model": "m", "messages": MSG, **kw}, "default")


def test_valid_chat() -> None:
    r = chat(stream=True, stream_options={"include_usage": True}, max_completion_tokens=5, seed=3)
    assert r.stream and r.include_usage and r.max_tokens == 5 and r.seed == 3
    assert r.prompt_tokens == 3 + 4  # 11 chars -> 3 tokens, +4 per message


def test_content_parts_are_counted() -> None:
    parts = [{"type": "text", "text": "x" * 40}, {"type": "image_url", "image_url": {"url": "u"}}]
    r = parse_chat({"messages": [{"role": "user", "content": parts}]}, "default")
    assert r.model == "default" and r.prompt_tokens == 10 + 4


def test_min_tokens_and_ignore_eos() -> None:
    assert chat().min_tokens == 0
    assert chat(min_tokens=7).min_tokens == 7
    assert chat(min_tokens=70, max_tokens=20).min_tokens == 20  # the cap wins
    assert chat(ignore_eos=True, max_tokens=33).min_tokens == 33
    assert chat(ignore_eos=True).min_tokens == 0  # no cap: the configured length
    assert chat(ignore_eos=False, max_tokens=33).min_tokens == 0


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": "hi"}, "messages"),
        ({"model": "m", "messages": [1]}, "messages[0]"),
        ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        (
            {"model": "m", "messages": [{"role": "user", "content": [{"type": "text"}]}]},
            "messages[0].content[0].text",
        ),
        ({"model": 5, "messages": MSG}, "model"),
        ({"messages": MSG, "max_tokens": -1}, "max_tokens"),
        ({"messages": MSG, "max_tokens": 0}, "max_tokens"),
        ({"messages": MSG, "max_tokens": "10"}, "max_tokens"),
        ({"messages": MSG, "max_tokens": True}, "max_tokens"),
        ({"messages": MSG, "max_completion_tokens": 1.5}, "max_completion_tokens"),
        ({"messages": MSG, "stream": "yes"}, "stream"),
        ({"messages": MSG, "stream_options": {"include_usage": True}}, "stream_options"),
        ({"messages": MSG, "stream": True, "stream_options": []}, "stream_options"),
        ({"messages": MSG, "n": 2}, "n"),
        ({"messages": MSG, "seed": "1"}, "seed"),
        ({"messages": MSG, "temperature": 3}, "temperature"),
        ({"messages": MSG, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"messages": MSG, "stop": 7}, "stop"),
        ({"messages": MSG, "min_tokens": -1}, "min_tokens"),
        ({"messages": MSG, "min_tokens": "5"}, "min_tokens"),
        ({"messages": MSG, "ignore_eos": 1}, "ignore_eos"),
    ],
)
def test_invalid_chat_names_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_chat(body, "default")
    assert info.value.status == 400 and info.value.param == param
    err = orjson.loads(info.value.body())["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error"
    assert param.split("[")[0].split(".")[0] in err["message"]


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"", "empty"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object, got array"),
        (b'{"a": "\xff\xfe"}', "not valid JSON"),
        (b"[" * 5000 + b"]" * 5000, "not valid JSON"),
    ],
)
def test_load_json_rejects(raw: bytes, needle: str) -> None:
    with pytest.raises(ApiError, match=needle) as info:
        load_json(raw)
    assert info.value.status == 400


def test_completion_prompts() -> None:
    assert parse_completion({"prompt": "abcd" * 10}, "d").prompt_tokens == 10
    assert parse_completion({"prompt": [1, 2, 3]}, "d").prompt_tokens == 3
    with pytest.raises(ApiError, match="'prompt' is required"):
        parse_completion({}, "d")
    with pytest.raises(ApiError):
        parse_completion({"prompt": [{"x": 1}]}, "d")


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=20,
    )
)
@pytest.mark.serial  # an upper bound on time: run alone (see the Makefile)
@settings(max_examples=200, deadline=None)
def test_any_json_is_accepted_or_rejected_with_api_error(value: Any) -> None:
    body = {"messages": value} if not isinstance(value, dict) else value
    try:
        parse_chat(body, "d")
    except ApiError as err:
        assert err.status == 400 and err.param


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("kind", ["chat", "completion"])
def test_stream_events_are_valid_json_with_the_token(lang: str, kind: str) -> None:
    vocab = Vocabulary(lang, 1)
    req = GenRequest(kind, 'mo"del', 5, True, True, None, None, [])
    tpl = StreamTemplate(req, "abc", 123)
    for token, enc in zip(vocab.tokens, vocab.encoded, strict=True):
        event = orjson.loads(tpl.head + enc + tpl.tail)
        choice = event["choices"][0]
        assert (choice["delta"]["content"] if kind == "chat" else choice["text"]) == token
        assert event["model"] == 'mo"del' and event["usage"] is None
    fin = orjson.loads(tpl.finish_event("length"))
    assert fin["choices"][0]["finish_reason"] == "length"
    usage = orjson.loads(tpl.usage_event(5, 7))
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] == 12
    if kind == "chat":
        assert orjson.loads(tpl.role_event())["choices"][0]["delta"]["role"] == "assistant"


def test_full_response_shape() -> None:
    req = GenRequest("chat", "m", 5, False, False, None, None, [])
    body = orjson.loads(full_response(req, "x", 1, "héllo 你好", "stop", 2))
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "héllo 你好"
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
