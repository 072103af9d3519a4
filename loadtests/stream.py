"""Turn the timestamped events of one streamed response into a `RequestRecord`.

Two wire formats (docs/contracts.md): the service's typed events (``thinking``, ``token``,
``done``, ``error``) and OpenAI's ``data: {chat.completion.chunk}`` ... ``data: [DONE]``.
TTFT ends at the first token (service: first ``token`` event; OpenAI: first chunk with
non-empty ``delta.content``), ITL is every gap between consecutive tokens (vLLM's pooled ITL).
Locust-free; per token it does a few comparisons and two list appends.
"""

from __future__ import annotations

import orjson

from loadtests import outcomes as oc
from loadtests.recorder import RequestRecord
from loadtests.sse_reader import SSEEvent, SSEParser

DONE_DATA = b"[DONE]"


class StreamTracker:
    """Base: accumulates token times and client lags for one request."""

    __slots__ = ("_last_token_ns", "error", "finished", "outcome", "record")

    def __init__(self, start_ns: int, intended_ns: int | None = None) -> None:
        self.record = RequestRecord(
            start_ns=start_ns, end_ns=start_ns, outcome=oc.ERROR, intended_ns=intended_ns
        )
        self.finished = False
        self.outcome: str | None = None
        self.error = ""
        self._last_token_ns = 0

    def _token(self, event: SSEEvent) -> None:
        record = self.record
        t_ns = event.t_ns
        if record.first_token_ns is None:
            record.first_token_ns = t_ns
            if event.sent_ns is not None:
                record.first_token_lag_ns = t_ns - event.sent_ns
        else:
            record.itl_ns.append(t_ns - self._last_token_ns)
        self._last_token_ns = t_ns
        record.output_tokens += 1

    def on_event(self, event: SSEEvent) -> bool:
        """Take one event; True once the stream has said its last word."""
        if event.sent_ns is not None:
            self.record.client_lag_ns.append(event.t_ns - event.sent_ns)
        self._handle(event)
        return self.finished

    def _handle(self, event: SSEEvent) -> None:
        raise NotImplementedError

    def finish(self, end_ns: int) -> RequestRecord:
        """Close the record: a stream that ended without its final event is an error."""
        record = self.record
        record.end_ns = end_ns
        if self.outcome is None:
            self.outcome = oc.ERROR
            self.error = self.error or "stream ended before its final event"
        record.outcome = self.outcome
        record.error = self.error
        return record

    def fail(self, outcome: str, error: str, end_ns: int) -> RequestRecord:
        """Close the record with an outcome decided outside the stream (timeout, exception)."""
        self.outcome = outcome
        self.error = error
        return self.finish(end_ns)


class ServiceStreamTracker(StreamTracker):
    """The service's ``/chat/stream`` events."""

    __slots__ = ()

    def _handle(self, event: SSEEvent) -> None:
        kind = event.event
        if kind == "token":
            self._token(event)
        elif kind == "thinking":
            if self.record.thinking_ns is None:
                self.record.thinking_ns = event.t_ns
        elif kind == "done":
            self.finished = True
            self.outcome = oc.OK
            try:
                data = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                return
            usage = data.get("usage") or {}
            tokens = usage.get("completion_tokens")
            if isinstance(tokens, int) and tokens > 0:
                self.record.output_tokens = tokens
            prompt = usage.get("prompt_tokens")
            if isinstance(prompt, int) and not isinstance(prompt, bool):
                self.record.prompt_tokens = prompt
            timings = data.get("timings_ms") or {}
            self.record.timings_ms = {
                k: float(v) for k, v in timings.items() if isinstance(v, int | float)
            }
        elif kind == "error":
            self.finished = True
            error_type = ""
            message = ""
            try:
                data = orjson.loads(event.data)
                error = data.get("error") or {}
                error_type = str(error.get("type", ""))
                message = str(error.get("message", ""))
            except (orjson.JSONDecodeError, AttributeError):
                message = event.data[:200].decode("utf-8", "replace")
            self.outcome = oc.classify_error_event(error_type)
            self.error = f"{error_type or 'error'} event: {message}"[:200]


class OpenAIStreamTracker(StreamTracker):
    """An OpenAI-compatible ``chat.completion.chunk`` stream (the mock, or a real endpoint)."""

    __slots__ = ()

    def _handle(self, event: SSEEvent) -> None:
        data = event.data
        if data == DONE_DATA:
            self.finished = True
            if self.outcome is None:
                self.outcome = oc.OK
            return
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(chunk, dict):
            return
        if "error" in chunk:
            error = chunk.get("error") or {}
            self.outcome = oc.UPSTREAM_ERROR
            self.error = f"stream error: {error.get('message', '')}"[:200]
            return
        choices = chunk.get("choices")
        if choices:
            delta = choices[0].get("delta") or {}
            if delta.get("content"):
                self._token(event)
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            tokens = usage.get("completion_tokens")
            if isinstance(tokens, int) and tokens > 0:
                self.record.output_tokens = tokens
            prompt = usage.get("prompt_tokens")
            if isinstance(prompt, int) and not isinstance(prompt, bool):
                self.record.prompt_tokens = prompt


class StreamFeed:
    """One stream's body bytes -> SSE events -> its tracker, as each piece arrives.

    Both readers (fast_reader's and geventhttpclient's) call it with every body piece and its
    arrival time; `end_ns` is the arrival of the stream's final event (0 until then).
    """

    __slots__ = ("end_ns", "parser", "tracker")

    def __init__(self, tracker: StreamTracker) -> None:
        self.parser = SSEParser()
        self.tracker = tracker
        self.end_ns = 0

    def __call__(self, chunk: bytes, now_ns: int) -> None:
        for event in self.parser.feed(chunk, now_ns):
            if self.tracker.on_event(event) and not self.end_ns:
                self.end_ns = now_ns
