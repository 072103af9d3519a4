"""Replayed lengths are exact against the mock: prompt tokens as reported in usage, and output
tokens both as reported and as streamed, directly and through the service."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest

from loadtests.trace import CHAT_MESSAGE_OVERHEAD_TOKENS, load_trace, trace_prompt
from tests.integration.conftest import Start

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
AZURE = Path(__file__).resolve().parents[2] / "data" / "azure_conv_head200.csv"
ROWS = 25


def stream_events(client: httpx.Client, url: str, body: dict[str, object]) -> list[bytes]:
    with client.stream("POST", url, json=body) as resp:
        assert resp.status_code == 200, resp.read()
        text = b"".join(resp.iter_bytes())
    return [line[6:] for line in text.split(b"\n") if line.startswith(b"data: ")]


@pytest.mark.parametrize("force", ["ignore_eos", "min_tokens"])
def test_direct_lengths_are_exact(start: Start, force: str) -> None:
    # a drawn output length (lognormal around 50) that the request must override either way
    mock = start(
        "mock", "--ttft-ms", "1", "--itl-ms", "0", "--output-tokens", "50",
        "--output-tokens-dist", "lognormal", "--output-tokens-spread", "1.0",
    )  # fmt: skip
    trace = load_trace(AZURE)
    with httpx.Client(timeout=30) as client:
        for item in list(trace.schedule())[:ROWS]:
            body: dict[str, object] = {
                "model": "m",
                "messages": [{"role": "user", "content": trace_prompt(item.prompt_tokens, 1)}],
                "max_tokens": item.output_tokens,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            body[force] = True if force == "ignore_eos" else item.output_tokens
            events = stream_events(client, mock.url + "/v1/chat/completions", body)
            chunks = [orjson.loads(e) for e in events if e != b"[DONE]"]
            tokens = sum(
                1 for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")
            )
            usage = chunks[-1]["usage"]
            assert tokens == item.output_tokens, item
            assert usage["completion_tokens"] == item.output_tokens, item
            assert usage["prompt_tokens"] == max(
                item.prompt_tokens, 1 + CHAT_MESSAGE_OVERHEAD_TOKENS
            ), item


def test_lengths_through_the_service_are_exact(start: Start) -> None:
    # the service forwards max_tokens only; the mock answers with exactly max_tokens
    mock = start("mock", "--ttft-ms", "1", "--itl-ms", "0", "--output-tokens-dist", "max_tokens")
    service = start("serve", "--upstream-url", mock.url + "/v1", "--max-question-chars", "100000")
    trace = load_trace(AZURE)
    with httpx.Client(timeout=30) as client:
        for item in list(trace.schedule())[:ROWS]:
            body = {
                "question": trace_prompt(item.prompt_tokens, 2),
                "max_tokens": item.output_tokens,
            }
            with client.stream("POST", service.url + "/chat/stream", json=body) as resp:
                assert resp.status_code == 200
                text = b"".join(resp.iter_bytes())
            events = text.split(b"\n\n")
            tokens = sum(1 for e in events if e.startswith(b"event: token"))
            (done,) = [e for e in events if e.startswith(b"event: done")]
            usage = orjson.loads(done.split(b"data: ", 1)[1])["usage"]
            assert usage["completion_tokens"] == item.output_tokens, item
            assert usage["prompt_tokens"] == item.prompt_tokens, item
            assert 0 < tokens <= item.output_tokens  # the service may coalesce tokens per event
