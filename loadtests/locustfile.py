"""surgebench's Locust scenarios. Usable as is: ``locust -f loadtests/locustfile.py CLASS``.

User classes (name one on the command line; the web UI's class picker works too):

- `StreamingChatUser`: the service's ``POST /chat/stream`` (host = the service's base URL).
- `ChatUser`: the service's non-streaming ``POST /chat``.
- `BatchUser`: the service's ``POST /chat/batch``.
- `DirectLLMUser`: any OpenAI-compatible endpoint, streaming (host = its base URL with ``/v1``,
  e.g. ``http://127.0.0.1:8001/v1``), to take the same metrics without the service.

Streams are read as bytes arrive (`read_available`: one ``recv`` per segment; geventhttpclient's
``read(n)`` would wait for n bytes), each event stamped with ``time.time_ns()`` on arrival.
Per request one Locust request event (end-to-end time; rejections and errors as failures with
their class), plus ``SSE TTFT`` and ``SSE ITL`` (that request's mean gap) for the live table.
Exact percentiles, per-token ITL, client lag and the validity verdict are in our own
histograms -> summary.json.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from locust import FastHttpUser, events, task

from loadtests import hooks
from loadtests import outcomes as oc
from loadtests.recorder import RequestRecord
from loadtests.sse_reader import SSEParser
from loadtests.stream import OpenAIStreamTracker, ServiceStreamTracker, StreamTracker

hooks.register(events)

STREAM_HEADERS = {"Accept": "text/event-stream", "Accept-Encoding": "identity"}
JSON_HEADERS = {"Accept": "application/json", "Accept-Encoding": "identity"}


class _SurgeUser(FastHttpUser):  # type: ignore[misc]
    """Shared plumbing: the next arrival (open loop), prompts, recording, Locust events."""

    abstract = True

    @property
    def state(self) -> hooks.SurgeState:
        state: hooks.SurgeState = self.environment.surgebench
        return state

    def wait_time(self) -> float:
        """Closed loop: the think time (default 0). Open loop: 0, arrivals pace the users."""
        if self.state.arrivals is not None:
            return 0.0
        return self.state.settings.think_s

    def _stream(self, path: str, body: dict[str, Any], tracker: StreamTracker, name: str) -> None:
        """POST, then read SSE lines as they arrive until the stream ends."""
        with self.client.post(
            path,
            json=body,
            headers={**STREAM_HEADERS, "Content-Type": "application/json"},
            stream=True,
            catch_response=True,
            name=name,
        ) as resp:
            record = self._read_stream(resp, tracker)
            self._finish(resp, record)

    def _read_stream(self, resp: Any, tracker: StreamTracker) -> RequestRecord:
        error = getattr(resp, "error", None)
        status = int(resp.status_code or 0)
        if error is not None and not status:
            return tracker.fail(oc.classify_exception(error), _describe(error), time.time_ns())
        if status != 200:
            try:
                body = resp.content or b""
            except Exception:  # the body itself failed: classify by status alone
                body = b""
            outcome = oc.classify_status(status, body)
            return tracker.fail(outcome, f"HTTP {status}", time.time_ns())
        parser = SSEParser()
        raw = resp._response
        end_ns = 0
        try:
            while True:
                chunk = read_available(raw)
                now_ns = time.time_ns()
                if not chunk:
                    break
                for event in parser.feed(chunk, now_ns):
                    if tracker.on_event(event) and not end_ns:
                        end_ns = now_ns
        except Exception as exc:  # timeout or reset mid-stream
            if tracker.finished:
                return tracker.finish(end_ns or time.time_ns())
            return tracker.fail(oc.classify_exception(exc), _describe(exc), time.time_ns())
        return tracker.finish(end_ns or time.time_ns())

    def _finish(self, resp: Any, record: RequestRecord) -> None:
        """Record in our histograms and report to Locust's table."""
        self.state.record(record)
        self._last_outcome = record.outcome
        resp.request_meta["response_time"] = record.e2e_ns / 1e6
        resp.request_meta["response_length"] = record.output_tokens
        if record.outcome == oc.OK:
            resp.success()
        else:
            resp.failure(f"{record.outcome}: {record.error}"[:120])
        fire = self.environment.events.request.fire
        ttft = record.ttft_ns
        if ttft is not None and record.outcome == oc.OK:
            fire(
                request_type="SSE",
                name="TTFT",
                response_time=ttft / 1e6,
                response_length=0,
                exception=None,
                context={},
            )
            if record.itl_ns:
                mean_ms = sum(record.itl_ns) / len(record.itl_ns) / 1e6
                fire(
                    request_type="SSE",
                    name="ITL",
                    response_time=mean_ms,
                    response_length=0,
                    exception=None,
                    context={},
                )

    def _json(self, path: str, body: dict[str, Any], name: str) -> tuple[Any, int, int, int]:
        """POST a JSON body; returns (response, status, start_ns, end_ns) inside no with-block."""
        start_ns = time.time_ns()
        resp = self.client.post(
            path,
            json=body,
            headers={**JSON_HEADERS, "Content-Type": "application/json"},
            catch_response=True,
            name=name,
        )
        return resp, int(resp.status_code or 0), start_ns, time.time_ns()

    def _json_request(self, path: str, body: dict[str, Any], name: str) -> None:
        intended = self._intended
        resp, status, start_ns, end_ns = self._json(path, body, name)
        with resp:
            record = RequestRecord(start_ns, end_ns, oc.OK, intended_ns=intended)
            error = getattr(resp, "error", None)
            if status == 200:
                try:
                    data = orjson.loads(resp.content or b"{}")
                except orjson.JSONDecodeError:
                    record.outcome, record.error = oc.ERROR, "unparseable JSON answer"
                else:
                    self._fill_json(record, data)
            elif error is not None and not status:
                record.outcome, record.error = oc.classify_exception(error), _describe(error)
            else:
                try:
                    answer: bytes = resp.content or b""
                except Exception:  # the body itself failed: classify by status alone
                    answer = b""
                record.outcome = oc.classify_status(status, answer)
                record.error = f"HTTP {status}"
            self._finish(resp, record)

    def _fill_json(self, record: RequestRecord, data: Any) -> None:
        """`/chat`'s answer, or `/chat/batch`'s: every item must be ok for the batch to be."""
        items = data.get("results") if isinstance(data, dict) else None
        for item in items if isinstance(items, list) else [data]:
            if not isinstance(item, dict):
                record.outcome, record.error = oc.ERROR, "unparseable answer"
                return
            error = item.get("error")
            if isinstance(error, dict):
                kind = str(error.get("type", ""))
                record.outcome = oc.classify_error_event(kind)
                record.error = f"{kind} item: {error.get('message', '')}"[:200]
                return
            usage = item.get("usage")
            tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
            record.output_tokens += tokens if isinstance(tokens, int) else 0
            timings = item.get("timings_ms")
            if isinstance(timings, dict) and not record.timings_ms:
                record.timings_ms = {k: float(v) for k, v in timings.items() if _is_num(v)}

    _intended: int | None = None
    _last_outcome = oc.OK

    @task
    def one_request(self) -> None:
        self._intended = self.state.next_intended_ns()
        self.request()
        wait_s = self.state.settings.reject_wait_s
        if self._last_outcome == oc.REJECTED and wait_s > 0 and self._intended is None:
            import gevent

            gevent.sleep(wait_s)  # a closed-loop client backs off after a rejection

    def request(self) -> None:
        raise NotImplementedError


class StreamingChatUser(_SurgeUser):
    """The service's streaming chat: ``POST /chat/stream``."""

    def request(self) -> None:
        prompt = self.state.prompts.next()
        body: dict[str, Any] = {"question": prompt.question}
        if prompt.max_tokens is not None:
            body["max_tokens"] = prompt.max_tokens
        tracker = ServiceStreamTracker(time.time_ns(), self._intended)
        self._stream("/chat/stream", body, tracker, "/chat/stream")


class DirectLLMUser(_SurgeUser):
    """An OpenAI-compatible endpoint, streaming ``POST {host}/chat/completions``."""

    def request(self) -> None:
        prompt = self.state.prompts.next()
        body: dict[str, Any] = {
            "model": self.state.settings.model,
            "messages": [{"role": "user", "content": prompt.question}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if prompt.max_tokens is not None:
            body["max_tokens"] = prompt.max_tokens
        tracker = OpenAIStreamTracker(time.time_ns(), self._intended)
        self._stream("/chat/completions", body, tracker, "/chat/completions")


class ChatUser(_SurgeUser):
    """The service's non-streaming ``POST /chat`` (end-to-end latency and outcomes)."""

    def request(self) -> None:
        prompt = self.state.prompts.next()
        body: dict[str, Any] = {"question": prompt.question}
        if prompt.max_tokens is not None:
            body["max_tokens"] = prompt.max_tokens
        self._json_request("/chat", body, "/chat")


class BatchUser(_SurgeUser):
    """The service's ``POST /chat/batch`` with a few questions per request."""

    batch_size = 4

    def request(self) -> None:
        questions = [self.state.prompts.next().question for _ in range(self.batch_size)]
        self._json_request("/chat/batch", {"questions": questions}, "/chat/batch")


def read_available(raw: Any) -> bytes:
    """The body bytes that have arrived: what is buffered, else one ``recv``; b"" at the end.

    geventhttpclient's ``read(n)`` waits for n bytes and its ``readline`` costs a call per line;
    this returns each TCP segment as it lands (one SSE event, usually), de-chunked by the
    response's own parser. It uses the private ``_body_buffer``/``_sock`` of geventhttpclient's
    response (pinned versions; the integration tests read real streams through it).
    """
    buf = raw._body_buffer
    while not buf:
        sock = raw._sock
        if raw.message_complete or sock is None:
            return b""
        try:
            data = sock.recv(raw.block_size)
            if not data:
                raise ConnectionError("connection closed before the end of the stream")
            raw.feed(data)
        except BaseException:
            raw.release()
            raise
    chunk = bytes(buf)
    del buf[:]
    return chunk


def _is_num(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]
