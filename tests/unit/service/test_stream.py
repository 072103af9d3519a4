"""The /chat/stream flow in-process (respx upstream): events, timeouts, errors, disconnects."""

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
Q = {"question": "hello"}


def zero_left(app: object) -> bool:
    return (
        gauge(app, "surge_service_in_flight") == 0  # type: ignore[arg-type]
        and gauge(app, "surge_service_queue_depth") == 0  # type: ignore[arg-type]
        and gauge(app, "surge_service_upstream_connections_in_use") == 0  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("admission", ["queue", "semaphore", "none"])
async def test_event_sequence_and_done_timings(admission: str) -> None:
    app = make_app(admission=admission, max_concurrent=2)
    with respx.mock(using="httpx") as mock:
        route = mock.post(COMPLETIONS).mock(
            return_value=stream_response(
                sse_chunk("Hel"), sse_chunk("lo\nwor") + sse_chunk("ld ✓"), USAGE, DONE
            )
        )
        async with running(app):
            call = await request(
                app, "POST", "/chat/stream", Q, headers=[("x-request-id", "abc-1")]
            )
    assert call.status == 200
    assert call.headers["content-type"].startswith("text/event-stream")
    assert call.headers["x-request-id"] == "abc-1"
    assert call.headers["x-accel-buffering"] == "no"
    events = call.events()
    assert [e for e, _ in events] == ["thinking", "token", "token", "token", "done"]
    assert "".join(d["content"] for e, d in events if e == "token") == "Hello\nworld ✓"
    done = events[-1][1]
    assert done["request_id"] == "abc-1"
    assert done["usage"] == {"prompt_tokens": 3, "completion_tokens": 2}
    t = done["timings_ms"]
    assert set(t) == {"queue_wait", "pool_wait", "upstream_ttft", "relay_overhead", "ttft", "total"}
    parts = t["queue_wait"] + t["pool_wait"] + t["upstream_ttft"] + t["relay_overhead"]
    assert parts == pytest.approx(t["ttft"], abs=0.01)
    assert 0 <= t["ttft"] <= t["total"]
    sent = route.calls.last.request
    assert b'"stream":true' in sent.content
    assert zero_left(app)


async def test_stamps_precede_each_event() -> None:
    app = make_app(stamp=True)
    with respx.mock(using="httpx") as mock:
        mock.post(COMPLETIONS).mock(return_value=stream_response(sse_chunk("a"), DONE))
        async with running(app):
            call = await request(app, "POST", "/chat/stream", Q)
    blocks = [b for b in call.body.split(b"\n\n") if b]
    assert len(blocks) == 3
    assert all(b.startswith(b": t=") for b in blocks)


@pytest.mark.parametrize(
    ("overrides", "before", "stage"),
    [
        ({"ttft_timeout_s": 0.05}, [], "no first token"),
        ({"idle_timeout_s": 0.05}, [sse_chunk("a")], "no token for"),
        ({"timeout_s": 0.05}, [sse_chunk("a")], "total timeout"),
    ],
)
async def test_timeouts_end_the_stream_with_an_error_event(
    overrides: dict[str, float], before: list[bytes], stage: str
) -> None:
    app = make_app(**overrides)
    gate = Gate(before)
    with respx.mock(using="httpx") as mock:
        mock.post(COMPLETIONS).mock(side_effect=gate.response)
        async with running(app):
            call = await request(app, "POST", "/chat/stream", Q)
            assert zero_left(app)
    events = call.events()
    assert events[0][0] == "thinking"
    kind, data = events[-1]
    assert kind == "error"
    assert data["error"]["type"] == "timeout"
    assert stage in data["error"]["message"]
    assert gate.closed.is_set()  # the upstream stream was closed


async def test_upstream_error_status_becomes_upstream_error_event() -> None:
    app = make_app()
    body = {"error": {"message": "boom", "type": "server_error"}}
    with respx.mock(using="httpx") as mock:
        mock.post(COMPLETIONS).mock(return_value=httpx.Response(500, json=body))
        async with running(app):
            call = await request(app, "POST", "/chat/stream", Q)
            assert zero_left(app)
            failed = app.runtime.metrics.registry.get_sample_value(
                "surge_service_requests_total", {"endpoint": "stream", "outcome": "upstream_error"}
            )
    kind, data = call.events()[-1]
    assert kind == "error" and data["error"]["type"] == "upstream"
    assert "500" in data["error"]["message"] and "boom" in data["error"]["message"]
    assert failed == 1


async def test_truncated_upstream_stream_is_an_upstream_error() -> None:
    app = make_app()
    with respx.mock(using="httpx") as mock:
        mock.post(COMPLETIONS).mock(return_value=stream_response(sse_chunk("a")))
        async with running(app):
            call = await request(app, "POST", "/chat/stream", Q)
    events = call.events()
    assert [e for e, _ in events] == ["thinking", "token", "error"]
    assert "before [DONE]" in events[-1][1]["error"]["message"]


async def test_refused_connection_is_an_upstream_error() -> None:
    app = make_app()
    with respx.mock(using="httpx") as mock:
        mock.post(COMPLETIONS).mock(side_effect=httpx.ConnectError("refused"))
        async with running(app):
            call = await request(app, "POST", "/chat/stream", Q)
            assert zero_left(app)
    assert call.events()[-1][1]["error"]["type"] == "upstream"


async def test_retry_before_first_token_honours_retry_after() -> None:
    app = make_app(upstream_retries=2, upstream_retry_max_wait_s=0.01)
    with respx.mock(using="httpx") as mock:
        route = mock.post(COMPLETIONS).mock(
            side_effect=[
                httpx.Response(429, headers={"retry-after": "0"}, json={"error": "slow down"}),
                httpx.Response(503),
                stream_response(sse_chunk("ok"), DONE),
            ]
        )
        async with running(app):
            call = await request(app, "POST", "/chat/stream", Q)
            retries = app.runtime.metrics.registry.get_sample_value(
                "surge_service_upstream_retries_total"
            )
    assert route.call_count == 3
    assert retries == 2
    assert [e for e, _ in call.events()] == ["thinking", "token", "done"]


async def test_retries_are_bounded() -> None:
    app = make_app(upstream_retries=1, upstream_retry_backoff_s=0)
    with respx.mock(using="httpx") as mock:
        route = mock.post(COMPLETIONS).mock(return_value=httpx.Response(503))
        async with running(app):
            call = await request(app, "POST", "/chat/stream", Q)
    assert route.call_count == 2
    assert call.events()[-1][1]["error"]["type"] == "upstream"


async def test_full_queue_rejects_before_any_stream_while_admitted_continue() -> None:
    app = make_app(admission="queue", max_concurrent=1, queue_size=1, retry_after_s=3)
    gate = Gate([sse_chunk("first")], [sse_chunk("second"), DONE])
    with respx.mock(using="httpx") as mock:
        mock.post(COMPLETIONS).mock(side_effect=gate.response)
        async with running(app):
            running_call = start_call(app, "POST", "/chat/stream", b'{"question":"a"}')
            await gate.opened.wait()
            queued = start_call(app, "POST", "/chat/stream", b'{"question":"b"}')
            await queued.wait_for(b"thinking")
            assert gauge(app, "surge_service_queue_depth") == 1
            rejected = await request(app, "POST", "/chat/stream", Q)
            assert rejected.status == 503
            assert rejected.headers["retry-after"] == "3"
            assert rejected.events() == [] and b'"type":"overloaded"' in rejected.body
            gate.release()
            await running_call.finish()
            await queued.finish()
            assert zero_left(app)
    assert [e for e, _ in running_call.events()][-1] == "done"
    assert [e for e, _ in queued.events()][-1] == "done"


async def test_reject_status_429() -> None:
    app = make_app(admission="semaphore", max_concurrent=1, queue_size=0, reject_status=429)
    gate = Gate([sse_chunk("x")], [DONE])
    with respx.mock(using="httpx") as mock:
        mock.post(COMPLETIONS).mock(side_effect=gate.response)
        async with running(app):
            first = start_call(app, "POST", "/chat/stream", b'{"question":"a"}')
            await gate.opened.wait()
            rejected = await request(app, "POST", "/chat/stream", Q)
            gate.release()
            await first.finish()
    assert rejected.status == 429 and "retry-after" in rejected.headers


@pytest.mark.parametrize("admission", ["queue", "semaphore"])
async def test_disconnect_while_queued_frees_the_place_at_once(admission: str) -> None:
    app = make_app(admission=admission, max_concurrent=1, queue_size=5)
    gate = Gate([sse_chunk("x")], [DONE])
    with respx.mock(using="httpx") as mock:
        route = mock.post(COMPLETIONS).mock(side_effect=gate.response)
        async with running(app):
            first = start_call(app, "POST", "/chat/stream", b'{"question":"a"}')
            await gate.opened.wait()
            waiting = start_call(app, "POST", "/chat/stream", b'{"question":"b"}')
            await waiting.wait_for(b"thinking")
            assert gauge(app, "surge_service_queue_depth") == 1
            waiting.disconnect()
            await waiting.finish()
            assert gauge(app, "surge_service_queue_depth") == 0
            gate.release()
            await first.finish()
            assert zero_left(app)
    assert route.call_count == 1  # the abandoned request never reached the upstream
    cancelled = app.runtime.metrics.registry.get_sample_value(
        "surge_service_cancelled_total", {"reason": "client_disconnect"}
    )
    assert cancelled == 1


async def test_disconnect_mid_stream_cancels_upstream_and_frees_slot() -> None:
    app = make_app(admission="semaphore", max_concurrent=1, queue_size=0)
    gate = Gate([sse_chunk("x")])
    with respx.mock(using="httpx") as mock:
        mock.post(COMPLETIONS).mock(side_effect=gate.response)
        async with running(app):
            call = start_call(app, "POST", "/chat/stream", b'{"question":"a"}')
            await call.wait_for(b"event: token")
            assert gauge(app, "surge_service_in_flight") == 1
            call.disconnect()
            await call.finish()
            assert zero_left(app)
            assert gate.closed.is_set()


async def test_queue_wait_timeout_is_an_overloaded_error_event() -> None:
    app = make_app(admission="queue", max_concurrent=1, queue_size=2, queue_timeout_s=0.05)
    gate = Gate([sse_chunk("x")], [DONE])
    with respx.mock(using="httpx") as mock:
        mock.post(COMPLETIONS).mock(side_effect=gate.response)
        async with running(app):
            first = start_call(app, "POST", "/chat/stream", b'{"question":"a"}')
            await gate.opened.wait()
            late = await request(app, "POST", "/chat/stream", Q)
            gate.release()
            await first.finish()
            assert zero_left(app)
    assert late.events()[-1][1]["error"]["type"] == "overloaded"


async def test_agent_mode_marks_steps_and_relays_only_the_answer() -> None:
    app = make_app(agent_steps=3, tool_latency_ms=1)
    with respx.mock(using="httpx") as mock:
        route = mock.post(COMPLETIONS).mock(
            side_effect=lambda req: stream_response(sse_chunk("t"), USAGE, DONE)
        )
        async with running(app):
            call = await request(app, "POST", "/chat/stream", Q)
    events = call.events()
    steps = [d.get("step") for e, d in events if e == "thinking"]
    assert steps == ["admitted", "plan", "tool", "answer"]
    assert [e for e, _ in events].count("token") == 1
    assert route.call_count == 3
    done = events[-1][1]
    assert done["usage"] == {"prompt_tokens": 9, "completion_tokens": 6}
    assert done["timings_ms"]["tool"] >= 2 * 1.0 * 0.9


@pytest.mark.parametrize(
    ("service_steps", "body_steps", "calls", "steps"),
    [
        (3, 1, 1, ["admitted"]),  # a plain answer from a service in agent mode
        (1, 3, 3, ["admitted", "plan", "tool", "answer"]),  # agent mode on a plain service
        (2, None, 2, ["admitted", "plan", "answer"]),  # absent: the service's own mode
    ],
)
async def test_a_request_chooses_its_own_agent_steps(
    service_steps: int, body_steps: int | None, calls: int, steps: list[str]
) -> None:
    app = make_app(agent_steps=service_steps, tool_latency_ms=1)
    body: dict[str, object] = {"question": "hello"}
    if body_steps is not None:
        body["agent_steps"] = body_steps
    with respx.mock(using="httpx") as mock:
        route = mock.post(COMPLETIONS).mock(
            side_effect=lambda req: stream_response(sse_chunk("t"), USAGE, DONE)
        )
        async with running(app):
            call = await request(app, "POST", "/chat/stream", body)
            plain = await request(app, "POST", "/chat", body)
            batch = await request(app, "POST", "/chat/batch", {**body, "questions": ["a", "b"]})
    events = call.events()
    assert [d.get("step") for e, d in events if e == "thinking"] == steps
    assert route.call_count == calls * 4  # stream + chat + two batch questions
    for timings in (
        events[-1][1]["timings_ms"],
        json.loads(plain.body)["timings_ms"],
        *(r["timings_ms"] for r in json.loads(batch.body)["results"]),
    ):
        assert ("tool" in timings) == (calls > 1)
        if calls > 1:
            assert timings["tool"] >= (calls - 1) * 1.0 * 0.9


async def test_agent_steps_over_the_limit_is_refused_before_admission() -> None:
    app = make_app(agent_steps_limit=4)
    with respx.mock(using="httpx", assert_all_called=False) as mock:
        route = mock.post(COMPLETIONS).mock(return_value=stream_response(sse_chunk("t"), DONE))
        async with running(app):
            calls = [
                await request(app, "POST", path, {"question": "q", "agent_steps": value})
                for path in ("/chat/stream", "/chat")
                for value in (5, 0, "2")
            ]
    assert route.call_count == 0
    for call in calls:
        assert call.status == 422
        error = json.loads(call.body)["error"]
        assert error["type"] == "invalid_request" and error["message"].startswith("agent_steps")
