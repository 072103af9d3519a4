"""Non-streaming endpoints and hostile input, in-process."""

from __future__ import annotations

import json

import httpx
import pytest
import respx

from .conftest import (
    COMPLETIONS,
    DONE,
    USAGE,
    Gate,
    gauge,
    make_app,
    request,
    running,
    sse_chunk,
    start_call,
    stream_response,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(20)]


def error_of(call: object) -> dict[str, str]:
    body = json.loads(call.body)  # type: ignore[attr-defined]
    assert set(body["error"]) >= {"type", "message"}
    return body["error"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("path", ["/chat/stream", "/chat", "/chat/batch"])
@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"", 400, "empty body"),
        (b'{"question": "\xff\xfe"}', 400, "UTF-8"),
        (b"[" * 5000 + b"]" * 5000, 400, "nested"),
        (b'{"x":' * 40 + b"1" + b"}" * 40, 400, "nested"),
        (b"[1, 2]", 422, "JSON object"),
        (b'{"question": 5}', 422, "valid string"),
        (b'{"question": "hi", "max_tokens": "5"}', 422, "max_tokens"),
        (b'{"question": "hi", "max_tokens": true}', 422, "max_tokens"),
        (b'{"question": "hi", "max_tokens": 0}', 422, "max_tokens"),
        (b'{"question": "hi", "max_tokens": 999999}', 422, "max_tokens"),
        (b'{"question": "   "}', 422, "blank"),
        (b'{"question": "' + b"a" * 20000 + b'"}', 422, "longer than"),
        (b"{}", 422, "required"),
    ],
)
async def test_bad_bodies_get_clear_4xx_json(
    path: str, body: bytes, status: int, needle: str
) -> None:
    if path == "/chat/batch":
        body = body.replace(b'"question"', b'"questions"').replace(b'"hi"', b'["hi"]')
        if needle in {"valid string", "blank", "longer than", "required"}:
            needle = ""
    app = make_app()
    async with running(app):
        call = await request(app, "POST", path, body)
        assert gauge(app, "surge_service_in_flight") == 0
    assert call.status == status, call.body
    assert call.headers["content-type"] == "application/json"
    assert needle in error_of(call)["message"]
    assert b"Traceback" not in call.body
    assert "x-request-id" in call.headers


async def test_body_limit_413_from_content_length_before_reading() -> None:
    app = make_app(max_body_bytes=100)
    async with running(app):
        call = start_call(
            app,
            "POST",
            "/chat",
            headers=[("content-length", "1000000")],
            chunks=[b'{"question":', b"never read"],
        )
        await call.finish()
    assert call.status == 413
    assert error_of(call)["type"] == "too_large"


async def test_body_limit_413_while_streaming_chunked_body() -> None:
    app = make_app(max_body_bytes=100)
    async with running(app):
        call = await start_call(app, "POST", "/chat", chunks=[b"x" * 60, b"x" * 60]).finish()
    assert call.status == 413


async def test_slow_body_gets_408() -> None:
    app = make_app(body_timeout_s=0.05)
    async with running(app):
        # One chunk with more_body=True, then nothing: receive() blocks until disconnect.
        call = start_call(app, "POST", "/chat", chunks=[b'{"question":'], hold_body=True)
        await call.finish()
    assert call.status == 408
    assert error_of(call)["type"] == "timeout"


@pytest.mark.parametrize("header", ["evil\r\nSet-Cookie: x=1", "a b", "x" * 200, "ünï", "ok\nno"])
async def test_unsafe_request_ids_are_replaced_not_echoed(header: str) -> None:
    app = make_app()
    async with running(app):
        call = await request(app, "GET", "/healthz", headers=[("x-request-id", header)])
    rid = call.headers["x-request-id"]
    assert rid != header and rid.startswith("r-")
    assert "\r" not in rid and "\n" not in rid


async def test_bearer_auth_when_configured() -> None:
    app = make_app(auth_token="s3cret")
    with respx.mock(using="httpx") as mock:
        mock.post(COMPLETIONS).mock(return_value=stream_response(sse_chunk("a"), DONE))
        async with running(app):
            anon = await request(app, "POST", "/chat", {"question": "q"})
            wrong = await request(
                app, "POST", "/chat", {"question": "q"}, headers=[("authorization", "Bearer no")]
            )
            ok = await request(
                app,
                "POST",
                "/chat",
                {"question": "q"},
                headers=[("authorization", "Bearer s3cret")],
            )
            health = await request(app, "GET", "/healthz")
    assert anon.status == 401 and wrong.status == 401
    assert anon.headers["www-authenticate"] == "Bearer"
    assert b"s3cret" not in anon.body + wrong.body
    assert ok.status == 200 and health.status == 200


async def test_api_key_sent_upstream_only() -> None:
    app = make_app(upstream_api_key="sk-test-123")
    assert "sk-test-123" not in repr(app.runtime.settings)
    with respx.mock(using="httpx") as mock:
        route = mock.post(COMPLETIONS).mock(return_value=httpx.Response(401, json={"error": "no"}))
        async with running(app):
            call = await request(app, "POST", "/chat", {"question": "q"})
            metrics = await request(app, "GET", "/metrics")
    assert route.calls.last.request.headers["authorization"] == "Bearer sk-test-123"
    assert call.status == 502
    assert b"sk-test-123" not in call.body + metrics.body


async def test_chat_answers_json_with_timings() -> None:
    app = make_app()
    with respx.mock(using="httpx") as mock:
        mock.post(COMPLETIONS).mock(
            return_value=stream_response(sse_chunk("Hi "), sse_chunk("there"), USAGE, DONE)
        )
        async with running(app):
            call = await request(app, "POST", "/chat", {"question": "q", "max_tokens": 2})
    body = json.loads(call.body)
    assert call.status == 200
    assert body["answer"] == "Hi there"
    assert body["request_id"] == call.headers["x-request-id"]
    assert body["usage"]["completion_tokens"] == 2
    assert body["timings_ms"]["total"] >= body["timings_ms"]["ttft"] >= 0


async def test_chat_timeout_is_504_json() -> None:
    app = make_app(ttft_timeout_s=0.05)
    gate = Gate([])
    with respx.mock(using="httpx") as mock:
        mock.post(COMPLETIONS).mock(side_effect=gate.response)
        async with running(app):
            call = await request(app, "POST", "/chat", {"question": "q"})
            assert gauge(app, "surge_service_in_flight") == 0
    assert call.status == 504
    assert error_of(call)["type"] == "timeout"


async def test_chat_rejection_is_json_with_retry_after() -> None:
    app = make_app(admission="semaphore", max_concurrent=1, queue_size=0)
    gate = Gate([sse_chunk("a")], [DONE])
    with respx.mock(using="httpx") as mock:
        mock.post(COMPLETIONS).mock(side_effect=gate.response)
        async with running(app):
            first = start_call(app, "POST", "/chat", b'{"question":"a"}')
            await gate.opened.wait()
            rejected = await request(app, "POST", "/chat", {"question": "b"})
            gate.release()
            await first.finish()
    assert rejected.status == 503 and rejected.headers["retry-after"] == "1"
    assert error_of(rejected)["type"] == "overloaded"
    assert first.status == 200


async def test_batch_reports_each_item() -> None:
    app = make_app(admission="semaphore", max_concurrent=4, queue_size=0)
    with respx.mock(using="httpx") as mock:
        mock.post(COMPLETIONS).mock(
            side_effect=[
                stream_response(sse_chunk("one"), DONE),
                httpx.Response(500),
                stream_response(sse_chunk("three"), DONE),
            ]
        )
        async with running(app):
            call = await request(app, "POST", "/chat/batch", {"questions": ["a", "b", "c"]})
            assert gauge(app, "surge_service_in_flight") == 0
    results = json.loads(call.body)["results"]
    assert call.status == 200
    assert [r["index"] for r in results] == [0, 1, 2]
    answers = sorted(r.get("answer", "") for r in results)
    assert answers == ["", "one", "three"]
    assert sum(1 for r in results if r.get("error", {}).get("type") == "upstream") == 1


async def test_batch_size_is_bounded() -> None:
    app = make_app(batch_max_items=2)
    async with running(app):
        call = await request(app, "POST", "/chat/batch", {"questions": ["a", "b", "c"]})
    assert call.status == 422 and "at most 2" in error_of(call)["message"]


async def test_health_ready_metrics_and_json_404() -> None:
    app = make_app()
    async with running(app):
        health = await request(app, "GET", "/healthz")
        ready = await request(app, "GET", "/readyz")
        app.runtime.draining = True
        draining = await request(app, "GET", "/readyz")
        refused = await request(app, "POST", "/chat/stream", {"question": "q"})
        metrics = await request(app, "GET", "/metrics")
        missing = await request(app, "GET", "/nope")
        wrong_method = await request(app, "GET", "/chat")
    assert health.status == 200 and ready.status == 200
    assert draining.status == 503
    assert refused.status == 503 and refused.headers.get("connection") == "close"
    text = metrics.body.decode()
    for name in (
        "surge_service_in_flight",
        "surge_service_queue_depth",
        "surge_service_rejected_total",
    ):
        assert name in text
    assert missing.status == 404 and error_of(missing)["type"] == "not_found"
    assert wrong_method.status == 405


async def test_cors_off_by_default_and_on_when_configured() -> None:
    origin = [("origin", "http://ui.example")]
    plain, cors = make_app(), make_app(cors_origins="http://ui.example")
    with respx.mock(using="httpx") as mock:
        mock.post(COMPLETIONS).mock(side_effect=lambda req: stream_response(sse_chunk("a"), DONE))
        async with running(plain), running(cors):
            off = await request(plain, "POST", "/chat/stream", {"question": "q"}, headers=origin)
            on = await request(cors, "POST", "/chat/stream", {"question": "q"}, headers=origin)
            bad = await request(cors, "POST", "/chat/stream", b"{", headers=origin)
    assert "access-control-allow-origin" not in off.headers
    assert on.headers["access-control-allow-origin"] == "http://ui.example"
    # With CORS the FastAPI route serves the stream: same events, same request id header.
    assert [e for e, _ in on.events()] == ["thinking", "token", "done"]
    assert on.headers["x-request-id"].startswith("r-")
    assert bad.status == 400 and error_of(bad)["type"] == "invalid_json"


async def test_openapi_documents_the_endpoints() -> None:
    app = make_app()
    async with running(app):
        call = await request(app, "GET", "/openapi.json")
    paths = json.loads(call.body)["paths"]
    assert {"/chat/stream", "/chat", "/chat/batch", "/healthz", "/readyz", "/metrics"} <= set(paths)
    body = paths["/chat/stream"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "question" in body["properties"]
