from __future__ import annotations

import pytest

from loadtests import outcomes as oc
from loadtests.sse_reader import SSEParser
from loadtests.stream import OpenAIStreamTracker, ServiceStreamTracker, StreamTracker

MS = 1_000_000


def run(tracker: StreamTracker, timed_chunks: list[tuple[int, bytes]], end_ns: int) -> None:
    parser = SSEParser()
    for t_ns, chunk in timed_chunks:
        for event in parser.feed(chunk, t_ns):
            tracker.on_event(event)


def service_event(kind: str, data: str, stamp: int | None = None) -> bytes:
    head = f": t={stamp}\n" if stamp is not None else ""
    return f"{head}event: {kind}\ndata: {data}\n\n".encode()


def test_service_stream_gives_ttft_itl_thinking_lag_and_breakdown() -> None:
    start = 1_000 * MS
    done = (
        '{"type":"done","request_id":"r-1","usage":{"prompt_tokens":3,"completion_tokens":3},'
        '"timings_ms":{"queue_wait":1.5,"pool_wait":0.0,"upstream_ttft":100.0,'
        '"relay_overhead":0.4,"total":150.0}}'
    )
    chunks = [
        (start + 2 * MS, service_event("thinking", '{"type":"thinking"}', start + 1 * MS)),
        (
            start + 100 * MS,
            service_event("token", '{"type":"token","content":"a"}', start + 99 * MS),
        ),
        (
            start + 120 * MS,
            service_event("token", '{"type":"token","content":"b"}', start + 120 * MS),
        ),
        (start + 145 * MS, service_event("token", '{"type":"token","content":"c"}')),
        (start + 150 * MS, service_event("done", done)),
    ]
    tracker = ServiceStreamTracker(start)
    run(tracker, chunks, start + 151 * MS)
    assert tracker.finished
    record = tracker.finish(start + 151 * MS)
    assert record.outcome == oc.OK
    assert record.ttft_ns == 100 * MS
    assert record.thinking_ns == start + 2 * MS
    assert record.itl_ns == [20 * MS, 25 * MS]
    assert record.output_tokens == 3
    assert record.prompt_tokens == 3
    assert record.client_lag_ns == [1 * MS, 1 * MS, 0]
    assert record.first_token_lag_ns == 1 * MS
    assert record.timings_ms["queue_wait"] == 1.5
    assert record.timings_ms["upstream_ttft"] == 100.0


@pytest.mark.parametrize(
    ("error_type", "outcome"),
    [
        ("timeout", oc.TIMEOUT),
        ("upstream", oc.UPSTREAM_ERROR),
        ("overloaded", oc.REJECTED),
        ("cancelled", oc.CANCELLED),
        ("weird", oc.ERROR),
    ],
)
def test_service_error_events_are_classified(error_type: str, outcome: str) -> None:
    data = f'{{"type":"error","request_id":"r","error":{{"type":"{error_type}","message":"m"}}}}'
    tracker = ServiceStreamTracker(0)
    run(tracker, [(5, service_event("token", "{}")), (6, service_event("error", data))], 7)
    record = tracker.finish(7)
    assert record.outcome == outcome
    assert error_type in record.error


def test_a_stream_cut_before_done_is_an_error() -> None:
    tracker = ServiceStreamTracker(0)
    run(tracker, [(5, service_event("token", "{}"))], 6)
    assert not tracker.finished
    record = tracker.finish(6)
    assert record.outcome == oc.ERROR and "before its final event" in record.error


def openai_chunk(content: str | None, usage: str = "") -> bytes:
    delta = "{}" if content is None else f'{{"content":"{content}"}}'
    extra = f',"usage":{usage}' if usage else ""
    return (
        f'data: {{"id":"c","object":"chat.completion.chunk","choices":[{{"index":0,'
        f'"delta":{delta}}}]{extra}}}\n\n'
    ).encode()


def test_openai_stream_ttft_skips_the_empty_role_chunk_and_uses_usage() -> None:
    tracker = OpenAIStreamTracker(0, intended_ns=-5)
    chunks = [
        (10, b': t=9\ndata: {"choices":[{"index":0,"delta":{"role":"assistant"}}]}\n\n'),
        (100, b": t=98\n" + openai_chunk("Hi")),
        (120, openai_chunk("")),
        (130, openai_chunk(" there")),
        (131, b'data: {"choices":[],"usage":{"completion_tokens":7,"prompt_tokens":12}}\n\n'),
        (132, b"data: [DONE]\n\n"),
    ]
    run(tracker, chunks, 133)
    record = tracker.finish(133)
    assert record.outcome == oc.OK
    assert record.ttft_ns == 100
    assert record.itl_ns == [30]
    assert record.output_tokens == 7
    assert record.prompt_tokens == 12
    assert record.client_lag_ns == [1, 2]
    assert record.intended_ns == -5


def test_openai_in_stream_error_is_upstream_error() -> None:
    tracker = OpenAIStreamTracker(0)
    run(tracker, [(3, b'data: {"error":{"message":"boom","type":"server_error"}}\n\n')], 4)
    run(tracker, [(4, b"data: [DONE]\n\n")], 5)
    assert tracker.finish(5).outcome == oc.UPSTREAM_ERROR


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (200, b"", oc.OK),
        (503, b'{"error":{"type":"overloaded","message":"queue full"}}', oc.REJECTED),
        (429, b'{"error":{"type":"overloaded","message":"queue full"}}', oc.REJECTED),
        (429, b"slow down", oc.REJECTED),
        (503, b"Service Unavailable", oc.UPSTREAM_ERROR),
        (504, b'{"error":{"type":"timeout"}}', oc.TIMEOUT),
        (422, b'{"detail":[]}', oc.CLIENT_ERROR),
        (404, b"", oc.CLIENT_ERROR),
        (500, b"", oc.UPSTREAM_ERROR),
        (502, b"", oc.UPSTREAM_ERROR),
    ],
)
def test_status_classification(status: int, body: bytes, outcome: str) -> None:
    assert oc.classify_status(status, body) == outcome


def test_exception_classification() -> None:
    assert oc.classify_exception(TimeoutError()) == oc.TIMEOUT
    assert oc.classify_exception(type("ConnectionTimeout", (Exception,), {})()) == oc.TIMEOUT
    assert oc.classify_exception(ConnectionRefusedError()) == oc.ERROR
