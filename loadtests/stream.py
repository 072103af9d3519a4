"""Turn the timestamped events of one streamed response into a `RequestRecord`.

Two wire formats (docs/contracts.md): the service's typed events (``thinking``, ``token``,
``done``, ``error``) and OpenAI's ``data: {chat.completion.chunk}`` ... ``data: [DONE]``.
TTFT ends at the first token (service: first ``token`` event; OpenAI: first chunk with
non-empty ``delta.content``), ITL is every gap between consecutive tokens (vLLM's pooled ITL).
Locust-free; per token it does a few comparisons and two list appends, in one call per event
(`StreamTracker.on_sse`, the SSE parser's sink: no object per event).
"""

from __future__ import annotations

import orjson

from loadtests import outcomes as oc
from loadtests.recorder import RequestRecord
from loadtests.sse_reader import SSEEvent, SSEParser

DONE_DATA = b"[DONE]"


class StreamTracker:
    """Base: accumulates token times and client lags for one request."""

    __slots__ = ("_last_token_ns", "end_ns", "error", "finished", "outcome", "record")

    def __init__(self, start_ns: int, intended_ns: int | None = None) -> None:
        self.record = RequestRecord(
            start_ns=start_ns, end_ns=start_ns, outcome=oc.ERROR, intended_ns=intended_ns
        )
        self.finished = False
        self.outcome: str | None = None
        self.error = ""
        self.end_ns = 0
        """Arrival of the event that said the stream's last word (0 until then)."""
        self._last_token_ns = 0

    def _token(self, t_ns: int, sent_ns: int | None) -> None:
        record = self.record
        if record.first_token_ns is None:
            record.first_token_ns = t_ns
            if sent_ns is not None:
                record.first_token_lag_ns = t_ns - sent_ns
        else:
            record.itl_ns.append(t_ns - self._last_token_ns)
        self._last_token_ns = t_ns
        record.output_tokens += 1

    def _finished(self, t_ns: int) -> None:
        if not self.finished:
            self.finished = True
            self.end_ns = t_ns

    def on_event(self, event: SSEEvent) -> bool:
        """Take one event; True once the stream has said its last word."""
        self.on_sse(event.event, event.data, event.t_ns, event.sent_ns)
        return self.finished

    def on_sse(self, event: str, data: bytes, t_ns: int, sent_ns: int | None) -> None:
        """Take one event as the SSE parser's sink (`loadtests.sse_reader.EventSink`)."""
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

    def on_sse(self, event: str, data: bytes, t_ns: int, sent_ns: int | None) -> None:
        if sent_ns is not None:
            self.record.client_lag_ns.append(t_ns - sent_ns)
        if event == "token":
            self._token(t_ns, sent_ns)
        elif event == "thinking":
            if self.record.thinking_ns is None:
                self.record.thinking_ns = t_ns
        elif event == "done":
            self._finished(t_ns)
            self.outcome = oc.OK
            self._done(data)
        elif event == "error":
            self._finished(t_ns)
            self._error(data)

    def _done(self, raw: bytes) -> None:
        try:
            data = orjson.loads(raw)
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

    def _error(self, raw: bytes) -> None:
        error_type = ""
        message = ""
        try:
            data = orjson.loads(raw)
            error = data.get("error") or {}
            error_type = str(error.get("type", ""))
            message = str(error.get("message", ""))
        except (orjson.JSONDecodeError, AttributeError):
            message = raw[:200].decode("utf-8", "replace")
        self.outcome = oc.classify_error_event(error_type)
        self.error = f"{error_type or 'error'} event: {message}"[:200]


CONTENT_KEY = b'"content":"'
NOT_PLAIN = bytes(range(0x20)) + b'"\\'
"""Bytes that end or escape a JSON string, or may not appear raw in one (control characters)."""
TEMPLATE_PROBE = "zq"
TEMPLATE_TRIES = 3
"""Token chunks per stream from which a template is tried (`OpenAIStreamTracker`)."""


def chunk_template(data: bytes, chunk: dict[str, object]) -> tuple[bytes, bytes] | None:
    """``(prefix, suffix)`` such that ``prefix + m + suffix``, for any valid UTF-8 ``m`` free of
    `NOT_PLAIN` bytes, is this very chunk with ``choices[0].delta.content == m``; else None.

    ``chunk`` (``orjson.loads(data)``) must be a token chunk without ``error`` or ``usage``. The
    split is where its content's plain bytes follow ``"content":"`` once and only once, and is
    proved by parsing the template around a probe text: it must give the same chunk with only
    that content changed. A JSON string of plain bytes is those bytes, so every other chunk of
    that form parses the same way, and the tracker may skip the parse (exactly).
    """
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    delta = choices[0].get("delta")
    content = delta.get("content") if isinstance(delta, dict) else None
    if not isinstance(content, str) or not content:
        return None
    raw = content.encode()
    if raw.translate(None, NOT_PLAIN) != raw:
        return None  # escapes in the chunk: no plain split
    key = CONTENT_KEY + raw + b'"'
    at = data.find(key)
    if at < 0 or data.find(key, at + 1) >= 0:
        return None
    prefix, suffix = data[: at + len(CONTENT_KEY)], data[at + len(key) - 1 :]
    try:
        probe = orjson.loads(prefix + TEMPLATE_PROBE.encode() + suffix)
        expected = orjson.loads(data)
        expected["choices"][0]["delta"]["content"] = TEMPLATE_PROBE
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return None
    return (prefix, suffix) if probe == expected else None


class OpenAIStreamTracker(StreamTracker):
    """An OpenAI-compatible ``chat.completion.chunk`` stream (the mock, or a real endpoint).

    Each chunk is parsed with orjson, except the chunks that match the stream's template
    (`chunk_template`, learned from one of its first token chunks): those differ from a parsed
    chunk only by their content's plain bytes, so a prefix, suffix and byte-class check decides
    them exactly, ~3 us less per token. Anything else (the first chunk, errors, usage, escapes,
    another layout) takes the full parse.
    """

    __slots__ = ("_at", "_least", "_prefix", "_suffix", "_to", "_tries")

    def __init__(self, start_ns: int, intended_ns: int | None = None) -> None:
        super().__init__(start_ns, intended_ns)
        self._prefix: bytes | None = None
        self._suffix = b""
        self._at = self._to = self._least = 0
        """The content's place in a template chunk: ``data[_at:-_to]``; ``_least`` its length."""
        self._tries = TEMPLATE_TRIES

    def on_sse(self, event: str, data: bytes, t_ns: int, sent_ns: int | None) -> None:
        record = self.record
        if sent_ns is not None:
            record.client_lag_ns.append(t_ns - sent_ns)
        prefix = self._prefix
        if (
            prefix is not None
            and data.startswith(prefix)
            and data.endswith(self._suffix)
            and len(data) >= self._least
        ):
            content = data[self._at : -self._to]
            if content.translate(None, NOT_PLAIN) == content and (
                content.isascii() or _utf8(content)
            ):  # the template's chunk with this content: a token if it is not empty
                if content:  # (`_token`, inline: one call less per token)
                    if record.first_token_ns is None:
                        record.first_token_ns = t_ns
                        if sent_ns is not None:
                            record.first_token_lag_ns = t_ns - sent_ns
                    else:
                        record.itl_ns.append(t_ns - self._last_token_ns)
                    self._last_token_ns = t_ns
                    record.output_tokens += 1
                return
        if data == DONE_DATA:
            self._finished(t_ns)
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
                if record.first_token_ns is None:
                    record.first_token_ns = t_ns
                    if sent_ns is not None:
                        record.first_token_lag_ns = t_ns - sent_ns
                else:
                    record.itl_ns.append(t_ns - self._last_token_ns)
                self._last_token_ns = t_ns
                record.output_tokens += 1
                usage = chunk.get("usage")
                if self._tries and not usage:
                    self._tries -= 1
                    template = chunk_template(data, chunk)
                    if template is not None:
                        self._prefix, self._suffix = template
                        self._at, self._to = len(template[0]), len(template[1])
                        self._least = self._at + self._to
                        self._tries = 0
                    return
        usage = chunk.get("usage")
        if usage and isinstance(usage, dict):
            tokens = usage.get("completion_tokens")
            if isinstance(tokens, int) and tokens > 0:
                record.output_tokens = tokens
            prompt = usage.get("prompt_tokens")
            if isinstance(prompt, int) and not isinstance(prompt, bool):
                record.prompt_tokens = prompt


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode()
    except UnicodeDecodeError:
        return False
    return True


class StreamFeed:
    """One stream's body bytes -> SSE events -> its tracker, as each piece arrives.

    Both readers (fast_reader's and geventhttpclient's) call `push` (or the feed itself) with
    every body piece and its arrival time; the parser hands each event to the tracker's `on_sse`.
    `end_ns` is the arrival of the stream's final event (0 until then).
    """

    __slots__ = ("parser", "push", "tracker")

    def __init__(self, tracker: StreamTracker) -> None:
        self.parser = SSEParser(tracker.on_sse)
        self.tracker = tracker
        self.push = self.parser.push
        """The body sink ``(chunk, arrival_ns)``: the parser's own method, no layer between."""

    @property
    def end_ns(self) -> int:
        return self.tracker.end_ns

    def __call__(self, chunk: bytes, now_ns: int) -> None:
        self.push(chunk, now_ns)
