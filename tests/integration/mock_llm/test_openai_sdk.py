"""The official openai SDK talks to the mock: streaming, non-streaming, usage, stamps."""

from __future__ import annotations

import openai
import pytest

from tests.integration.mock_llm.conftest import StartMock

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

MESSAGES: list[openai.types.chat.ChatCompletionMessageParam] = [
    {"role": "user", "content": "Say something"}
]


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)


def test_streaming_with_usage_matches_chunks_and_stamps_are_ignored(mock_url: str) -> None:
    stream = client(mock_url).chat.completions.create(
        model="mock-llm",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish == ["stop"]
    assert len(content) == 8
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == []
    assert usage.completion_tokens == len(content)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    # every chunk parsed as a chat.completion.chunk: the ': t=' comment lines were ignored
    assert all(c.object == "chat.completion.chunk" for c in chunks)


def test_non_streaming_completion_with_usage(mock_url: str) -> None:
    resp = client(mock_url).chat.completions.create(model="mock-llm", messages=MESSAGES)
    assert resp.object == "chat.completion"
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None and resp.usage.completion_tokens == 8
    assert resp.choices[0].message.content


def test_max_tokens_caps_with_finish_reason_length(mock_url: str) -> None:
    stream = client(mock_url).chat.completions.create(
        model="m", messages=MESSAGES, stream=True, max_tokens=3
    )
    chunks = list(stream)
    content = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    assert len(content) == 3
    assert chunks[-1].choices[0].finish_reason == "length"


def test_same_seed_same_text(mock_url: str) -> None:
    c = client(mock_url)
    a = c.chat.completions.create(model="m", messages=MESSAGES, seed=42)
    b = c.chat.completions.create(model="m", messages=MESSAGES, seed=42)
    other = c.chat.completions.create(model="m", messages=MESSAGES, seed=43)
    assert a.choices[0].message.content == b.choices[0].message.content
    assert a.choices[0].message.content != other.choices[0].message.content


def test_legacy_completions_stream(mock_url: str) -> None:
    stream = client(mock_url).completions.create(
        model="m", prompt="hello", stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    texts = [c.choices[0].text for c in chunks if c.choices and c.choices[0].text]
    assert len(texts) == 8
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 8


def test_models_and_health(mock_url: str) -> None:
    models = client(mock_url).models.list()
    assert [m.id for m in models.data] == ["mock-llm"]


def test_models_retrieve(mock_url: str) -> None:
    """The SDK's `models.retrieve` (GET /v1/models/{id}): any id, as any model is accepted."""
    model = client(mock_url).models.retrieve("gpt-4o")
    assert (model.id, model.object, model.owned_by) == ("gpt-4o", "model", "surgebench")


def test_models_retrieve_with_served_models(start_mock: StartMock) -> None:
    url = start_mock("--served-models", "a,b").url
    assert client(url).models.retrieve("b").id == "b"
    with pytest.raises(openai.NotFoundError) as info:
        client(url).models.retrieve("c")
    assert info.value.code == "model_not_found"


def test_empty_model_names_the_empty_string(mock_url: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client(mock_url).chat.completions.create(model="", messages=MESSAGES)
    assert "'model' must be a non-empty string, got an empty string" in str(info.value)
