"""vLLM's ``stream_options.continuous_usage_stats`` on a real mock: running usage per chunk."""

from __future__ import annotations

import httpx
import orjson
import pytest

from tests.integration.mock_llm.conftest import StartMock

pytestmark = [pytest.mark.integration, pytest.mark.timeout(40)]


def _chunks(url: str, path: str, body: dict[str, object]) -> list[dict[str, object]]:
    with httpx.stream("POST", url + path, json=body, timeout=20) as r:
        assert r.status_code == 200
        lines = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [orjson.loads(line) for line in lines[:-1]]


@pytest.mark.parametrize("itl", ["0", "5"])  # 0: tokens written in one batch; 5: one by one
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hello there"}]}),
        ("/v1/completions", {"prompt": "hello there"}),
    ],
)
def test_every_chunk_carries_the_running_usage(
    start_mock: StartMock, itl: str, path: str, body: dict[str, object]
) -> None:
    url = start_mock("--output-tokens", "6", "--itl-ms", itl, "--ttft-ms", "5").url
    options = {"include_usage": True, "continuous_usage_stats": True}
    chunks = _chunks(url, path, {**body, "model": "m", "stream": True, "stream_options": options})
    final = chunks[-1]
    assert final["choices"] == []
    prompt = final["usage"]["prompt_tokens"]  # type: ignore[index]
    assert final["usage"] == {
        "prompt_tokens": prompt,
        "completion_tokens": 6,
        "total_tokens": prompt + 6,
    }
    counts = []
    for chunk in chunks[:-1]:
        usage = chunk["usage"]
        assert isinstance(usage, dict) and usage["prompt_tokens"] == prompt
        assert usage["total_tokens"] == prompt + usage["completion_tokens"]
        counts.append(usage["completion_tokens"])
    # chat: the role chunk (0), one chunk per token (1..6), the finish chunk (6)
    expected = ([0] if "chat" in path else []) + [1, 2, 3, 4, 5, 6] + [6]
    assert counts == expected


def test_without_it_usage_stays_null_until_the_end(start_mock: StartMock) -> None:
    url = start_mock("--output-tokens", "3", "--itl-ms", "0").url
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    plain = _chunks(
        url, "/v1/chat/completions", {**body, "stream_options": {"include_usage": True}}
    )
    assert all(chunk["usage"] is None for chunk in plain[:-1])
    # continuous_usage_stats alone (no include_usage) does nothing, as in vLLM
    only = _chunks(
        url, "/v1/chat/completions", {**body, "stream_options": {"continuous_usage_stats": True}}
    )
    assert all("usage" not in chunk for chunk in only)
