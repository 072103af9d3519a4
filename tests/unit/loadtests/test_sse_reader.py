from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from loadtests.sse_reader import SSEEvent, SSEParser

SERVICE_STREAM = (
    b": t=1000\n"
    b"event: thinking\n"
    b'data: {"type":"thinking","request_id":"r-1","step":"admitted"}\n'
    b"\n"
    b": t=2000\n"
    b"event: token\n"
    b'data: {"type":"token","content":"Hello"}\n'
    b"\n"
    b": ping\n"
    b"event: token\n"
    b'data: {"type":"token","content":" world"}\n'
    b"\n"
    b"event: done\n"
    b'data: {"type":"done","request_id":"r-1"}\n'
    b"\n"
)


def kinds(events: list[SSEEvent]) -> list[str]:
    return [e.event for e in events]


def test_lines_give_events_with_stamps_and_arrival_times() -> None:
    parser = SSEParser()
    events = []
    for i, line in enumerate(SERVICE_STREAM.splitlines(keepends=True)):
        event = parser.feed_line(line, 10_000 + i)
        if event is not None:
            events.append(event)
    assert kinds(events) == ["thinking", "token", "token", "done"]
    assert [e.sent_ns for e in events] == [1000, 2000, None, None]
    assert events[1].data == b'{"type":"token","content":"Hello"}'
    # arrival is the time of the blank line that completed the event
    assert events[0].t_ns == 10_003
    assert parser.comments == 1


@given(st.lists(st.integers(min_value=1, max_value=len(SERVICE_STREAM) - 1), max_size=12))
def test_chunks_split_anywhere_give_the_same_events(cuts: list[int]) -> None:
    bounds = [0, *sorted(set(cuts)), len(SERVICE_STREAM)]
    parser = SSEParser()
    events: list[SSEEvent] = []
    for a, b in itertools.pairwise(bounds):
        events += parser.feed(SERVICE_STREAM[a:b], b)
    assert kinds(events) == ["thinking", "token", "token", "done"]
    assert [e.sent_ns for e in events] == [1000, 2000, None, None]
    # an event is timestamped when its last byte (the blank line) arrives, never before
    ends = [SERVICE_STREAM.index(b"\n\n", SERVICE_STREAM.index(k)) + 2 for k in (b"thinking\n",)]
    assert events[0].t_ns >= ends[0]


def test_crlf_and_cr_line_ends_and_a_split_crlf() -> None:
    stream = b"data: a\r\n\r\ndata: b\r\rdata: c\n\n"
    parser = SSEParser()
    events = parser.feed(stream[:8], 1) + parser.feed(stream[8:9], 2) + parser.feed(stream[9:], 3)
    assert [e.data for e in events] == [b"a", b"b", b"c"]
    assert events[0].t_ns == 3  # completed by the blank line in the third chunk


def test_multiline_data_and_missing_space_after_colon() -> None:
    parser = SSEParser()
    events = parser.feed(b"event:done\ndata:x\ndata: y\nid: 7\nretry: 10\n\n", 5)
    assert len(events) == 1
    assert events[0].event == "done" and events[0].data == b"x\ny"


def test_openai_data_lines_default_to_message_and_bad_stamps_are_comments() -> None:
    parser = SSEParser()
    events = parser.feed(b": t=notanumber\ndata: [DONE]\n\n", 9)
    assert events[0].event == "message" and events[0].data == b"[DONE]"
    assert events[0].sent_ns is None and parser.comments == 1


@given(
    st.lists(st.integers(min_value=1, max_value=len(SERVICE_STREAM) - 1), max_size=12),
    st.booleans(),
)
def test_a_sink_gets_the_same_events_as_feed_returns(cuts: list[int], crlf: bool) -> None:
    stream = SERVICE_STREAM.replace(b"\n", b"\r\n") if crlf else SERVICE_STREAM
    bounds = [0, *sorted({min(c, len(stream) - 1) for c in cuts}), len(stream)]
    returned: list[SSEEvent] = []
    sunk: list[SSEEvent] = []
    listing, sinking = SSEParser(), SSEParser(lambda *args: sunk.append(SSEEvent(*args)))
    for a, b in itertools.pairwise(bounds):
        returned += listing.feed(stream[a:b], b)
        assert sinking.feed(stream[a:b], b) == []  # a parser with a sink returns nothing
    assert sunk == returned
    assert kinds(sunk) == ["thinking", "token", "token", "done"]
    assert sinking.comments == listing.comments == 1


LINE = st.sampled_from(
    [b": t=12", b": t=007", b": t=1_0", b": t=+3", b": t=", b": t=x", b": ping", b"event: token",
     b"event: ", b"event:done", b"data: x", b"data:y", b"data:  z", b"data: ", b"data",
     b'data: {"a":1}', b"id: 3", b"retry: 5", b"", b"\xff\xfe"]
)  # fmt: skip


USUAL = st.tuples(
    st.sampled_from([[], [b": t=5"], [b": t=x"]]),
    st.sampled_from([[], [b"event: token"], [b"event: "]]),
    st.sampled_from([[b"data: {}"], [b"data:{}"], [b"data: a", b"data: b"]]),
).map(lambda parts: [line for part in parts for line in part])
"""Well-formed events, most of them in the usual layout."""


@given(
    st.lists(st.lists(LINE, max_size=5) | USUAL, max_size=12),
    st.integers(min_value=0, max_value=3),
    st.integers(min_value=1, max_value=4),
)
def test_whole_event_chunks_parse_as_byte_by_byte(
    blocks: list[list[bytes]], skip: int, per_chunk: int
) -> None:
    """Chunks of whole blocks of lines, each ending with a blank line (the usual arrival, one
    event or a few when the reader fell behind, which the parser takes whole when nothing is
    pending) give the same events, arrival times and comment count as the same bytes fed one
    at a time."""
    whole_blocks = [b"".join(line + b"\n" for line in block) + b"\n" for block in blocks]
    whole_blocks = [*whole_blocks[skip:], b"data: tail\n", *whole_blocks[:skip]]  # pending
    chunks = [
        b"".join(whole_blocks[i : i + per_chunk]) for i in range(0, len(whole_blocks), per_chunk)
    ]
    whole: list[SSEEvent] = []
    single: list[SSEEvent] = []
    by_chunk = SSEParser(lambda *args: whole.append(SSEEvent(*args)))
    by_byte = SSEParser(lambda *args: single.append(SSEEvent(*args)))
    for t, chunk in enumerate(chunks):
        by_chunk.push(chunk, t)
        for i in range(len(chunk)):
            by_byte.push(chunk[i : i + 1], t)
    assert whole == single
    assert by_chunk.comments == by_byte.comments
