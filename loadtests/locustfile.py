"""surgebench's Locust scenarios. Usable as is: ``locust -f loadtests/locustfile.py CLASS``.

User classes (name one on the command line, or pick in the web UI with ``--class-picker``; with
none named, `StreamingChatUser` runs alone):

- `StreamingChatUser`: the service's ``POST /chat/stream`` (host = the service's base URL).
- `ChatUser`: the service's non-streaming ``POST /chat``.
- `BatchUser`: the service's ``POST /chat/batch``.
- `DirectLLMUser`: any OpenAI-compatible endpoint, streaming (host = its base URL with ``/v1``,
  e.g. ``http://127.0.0.1:8001/v1``), to take the same metrics without the service.
- `AgentSessionUser`: multi-turn agent sessions through ``POST /chat/stream``
  (loadtests/session_user.py).

With a trace (``surgebench run --trace``) the streaming and direct users send its rows at their
recorded times, each with a prompt and an output cap of the row's lengths (loadtests/trace.py).

Streams are read as bytes arrive by `loadtests.fast_reader` (raw gevent sockets read from one
epoll set, httptools' HTTP framing), each event stamped with the kernel's receive time (Linux;
elsewhere ``time.time_ns()`` on arrival); behind a proxy, by geventhttpclient
(`read_available`), and summary.json says which.
Each request is one Locust request event (end-to-end time; errors and timeouts as failures with
their class; admission refusals in their own ``(rejected)`` row, not failures; warm-up requests
in a ``(warm-up)`` row). TTFT, ITL, client lag and the validity verdict are in our own HDR
histograms -> summary.json, and live in the web UI's "LLM streams" tab (`loadtests.webui`).
"""

from __future__ import annotations

import os
import time
from typing import Any

import orjson
from gevent import GreenletExit
from locust import FastHttpUser, events, runners, task
from locust.exception import CatchResponseError, StopUser

from loadtests import hooks, webui
from loadtests import outcomes as oc
from loadtests.distributed import apply_connect_timeout
from loadtests.fast_reader import MAX_BODY_BYTES, Connection, reader_choice
from loadtests.prompts import Prompt
from loadtests.recorder import RequestRecord
from loadtests.session_user import session_user_class
from loadtests.stream import (
    OpenAIStreamTracker,
    ServiceStreamTracker,
    StreamFeed,
    StreamTracker,
)
from loadtests.trace import ReplayItem, trace_prompt

hooks.register(events)
apply_connect_timeout(os.environ, runners)  # `surgebench worker --connect-timeout`


def _on_init(environment: Any, **_: Any) -> None:
    """StreamingChatUser unless a class is named (or picked in the web UI); our web UI tab.
    A worker keeps every class: it runs those its master sends."""
    opts = environment.parsed_options
    named = bool(getattr(opts, "user_classes", None)) or bool(getattr(opts, "class_picker", False))
    worker = bool(getattr(opts, "worker", False))
    if not named and not worker and StreamingChatUser in environment.user_classes:
        environment.user_classes[:] = [StreamingChatUser]
    webui.register(environment)


def _on_quitting(environment: Any, **_: Any) -> None:
    """Let Locust's CSV writer (a snapshot every CSV_STATS_INTERVAL_SEC) take one more after the
    last request, so locust_stats.csv counts what summary.json counts."""
    if getattr(environment.parsed_options, "csv_prefix", None):
        import gevent
        import locust.stats

        gevent.sleep(locust.stats.CSV_STATS_INTERVAL_SEC + 0.2)


events.init.add_listener(_on_init)  # type: ignore[no-untyped-call]
events.quitting.add_listener(_on_quitting)  # type: ignore[no-untyped-call]


STREAM_HEADERS = {
    "Accept": "text/event-stream",
    "Accept-Encoding": "identity",
    "Content-Type": "application/json",
}
JSON_HEADERS = {
    "Accept": "application/json",
    "Accept-Encoding": "identity",
    "Content-Type": "application/json",
}


class _SurgeUser(FastHttpUser):  # type: ignore[misc]
    """Shared plumbing: the next arrival (open loop), prompts, the reader, recording, Locust events.

    Requests go over the fast reader (`loadtests.fast_reader`: raw gevent sockets, httptools'
    framing) unless the target needs Locust's own client (a proxy, another scheme); then they go
    over geventhttpclient (``self.client``), the fallback. Either way each request fires one
    Locust request event, as FastHttpUser's own requests do.
    """

    abstract = True
    _conn: Connection | None = None
    _reader_decided = False

    @property
    def state(self) -> hooks.SurgeState:
        state: hooks.SurgeState = self.environment.surgebench
        return state

    def wait_time(self) -> float:
        """Closed loop: the think time (default 0). Open loop: 0, arrivals pace the users."""
        if self.state.arrivals is not None:
            return 0.0
        return self.state.settings.think_s

    def on_stop(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def _fast(self) -> Connection | None:
        """This user's fast-reader connection, or None where the fallback must read."""
        if not self._reader_decided:
            self._reader_decided = True
            target, _why = reader_choice(self.host or "", proxy_host=self.proxy_host)
            if target is not None:
                self._conn = Connection(
                    target,
                    connect_timeout_s=float(self.connection_timeout),
                    read_timeout_s=float(self.network_timeout),
                    insecure=bool(self.insecure),
                )
        return self._conn

    # -- streaming -----------------------------------------------------------------------------
    def _stream(self, path: str, body: dict[str, Any], tracker: StreamTracker, name: str) -> None:
        """POST, then read SSE events as they arrive until the stream ends."""
        conn = self._fast()
        if conn is None:
            self._stream_fallback(path, body, tracker, name)
            return
        payload = orjson.dumps(body)
        data = conn.request_head("POST", path, STREAM_HEADERS, len(payload)) + payload
        feed = StreamFeed(tracker)
        try:
            resp = conn.exchange(data, feed.push, tracker.record.read_lag_ns)
        except GreenletExit:  # stopped after the stop timeout, this stream still in flight
            self._cut_off(tracker, feed.end_ns, name)
            raise
        except Exception as exc:  # connect/read timeout, reset, malformed answer
            if tracker.finished:
                record = tracker.finish(feed.end_ns or time.time_ns())
            else:
                record = tracker.fail(oc.classify_exception(exc), _describe(exc), time.time_ns())
        else:
            status = resp.status
            if status == 200:
                record = tracker.finish(feed.end_ns or time.time_ns())
            else:
                outcome = oc.classify_status(status, bytes(resp.body))
                record = tracker.fail(outcome, f"HTTP {status}", time.time_ns())
        self._finish(record, name, None)

    def _stream_fallback(
        self, path: str, body: dict[str, Any], tracker: StreamTracker, name: str
    ) -> None:
        self._ended = False
        try:
            with self.client.post(
                path,
                json=body,
                headers=STREAM_HEADERS,
                stream=True,
                catch_response=True,
                name=name,
            ) as resp:
                record = self._read_stream_fallback(resp, tracker)
                self._finish(record, name, resp)
        except GreenletExit:  # the response context reports nothing on it: we do
            if not self._ended:
                self._cut_off(tracker, 0, name)
            raise

    def _read_stream_fallback(self, resp: Any, tracker: StreamTracker) -> RequestRecord:
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
        feed = StreamFeed(tracker)
        raw = resp._response
        try:
            while True:
                chunk = read_available(raw)
                now_ns = time.time_ns()
                if not chunk:
                    break
                feed.push(chunk, now_ns)
        except Exception as exc:  # timeout or reset mid-stream
            if tracker.finished:
                return tracker.finish(feed.end_ns or time.time_ns())
            return tracker.fail(oc.classify_exception(exc), _describe(exc), time.time_ns())
        return tracker.finish(feed.end_ns or time.time_ns())

    # -- reporting -----------------------------------------------------------------------------
    def _cut_off(self, tracker: StreamTracker, end_ns: int, name: str) -> None:
        """The user was stopped (killed after the stop timeout) with this stream in flight:
        count it ``unfinished``, or as it ended when its last event had already arrived."""
        now_ns = time.time_ns()
        if tracker.finished:
            record = tracker.finish(end_ns or now_ns)
        else:
            record = tracker.fail(oc.UNFINISHED, "still in flight at the stop", now_ns)
        self._finish(record, name, None)

    def _finish(self, record: RequestRecord, name: str, resp: Any | None) -> None:
        """Record in our histograms and fire this request's one Locust request event.

        ``resp``: the fallback's response context (its event fires when the ``with`` block
        exits); None on the fast path, which fires the event here.
        """
        self._ended = True
        self.state.record(record)
        if self._replay is not None and record.outcome != oc.UNFINISHED:
            self.state.workload.completed(self._replay, record)  # (the trace's `unfinished`)
        self._last_outcome = record.outcome
        response_ms = record.e2e_ns / 1e6
        name = locust_name(name, record, self.state.recorder.measure_from_ns)
        failure = None
        if record.outcome not in (oc.OK, oc.REJECTED, oc.UNFINISHED):
            failure = f"{record.outcome}: {record.error}"[:120]
        if resp is not None:
            resp.request_meta["name"] = name
            resp.request_meta["response_time"] = response_ms
            resp.request_meta["response_length"] = record.output_tokens
            if failure is None:
                resp.success()
            else:
                resp.failure(failure)
        else:
            self.environment.events.request.fire(
                request_type="POST",
                name=name,
                response_time=response_ms,
                response_length=record.output_tokens,
                exception=None if failure is None else CatchResponseError(failure),
                context=self.context(),
                response=None,
                url=f"{self.host}{name}",
                start_time=record.start_ns / 1e9,
            )

    # -- JSON answers --------------------------------------------------------------------------
    def _json_request(self, path: str, body: dict[str, Any], name: str) -> None:
        intended = self._intended
        conn = self._fast()
        if conn is None:
            self._json_request_fallback(path, body, name)
            return
        payload = orjson.dumps(body)
        data = conn.request_head("POST", path, JSON_HEADERS, len(payload)) + payload
        start_ns = time.time_ns()
        record = RequestRecord(start_ns, start_ns, oc.OK, intended_ns=intended)
        resp = None
        try:
            resp = conn.exchange(data, None, record.read_lag_ns)
        except GreenletExit:  # stopped after the stop timeout, this request still in flight
            record.outcome, record.error = oc.UNFINISHED, "still in flight at the stop"
            record.end_ns = time.time_ns()
            self._finish(record, name, None)
            raise
        except Exception as exc:  # connect/read timeout, reset, malformed answer
            record.outcome, record.error = oc.classify_exception(exc), _describe(exc)
        else:
            if resp.truncated:
                record.outcome = oc.ERROR
                record.error = f"answer larger than {MAX_BODY_BYTES} bytes"
            else:
                self._judge_json(record, resp.status, bytes(resp.body))
        # the answer's last arrival (the kernel's time where there is one), else now
        record.end_ns = resp.now_ns if resp is not None and resp.now_ns else time.time_ns()
        self._finish(record, name, None)

    def _json_request_fallback(self, path: str, body: dict[str, Any], name: str) -> None:
        intended = self._intended
        start_ns = time.time_ns()
        try:
            resp = self.client.post(
                path, json=body, headers=JSON_HEADERS, catch_response=True, name=name
            )
        except GreenletExit:  # stopped after the stop timeout, this request still in flight
            record = RequestRecord(start_ns, time.time_ns(), oc.UNFINISHED, intended_ns=intended)
            record.error = "still in flight at the stop"
            self._finish(record, name, None)
            raise
        end_ns = time.time_ns()
        with resp:
            record = RequestRecord(start_ns, end_ns, oc.OK, intended_ns=intended)
            error = getattr(resp, "error", None)
            status = int(resp.status_code or 0)
            if error is not None and not status:
                record.outcome, record.error = oc.classify_exception(error), _describe(error)
            else:
                try:
                    answer: bytes = resp.content or b""
                except Exception:  # the body itself failed: classify by status alone
                    answer = b""
                self._judge_json(record, status, answer)
            self._finish(record, name, resp)

    def _judge_json(self, record: RequestRecord, status: int, answer: bytes) -> None:
        """Outcome of a JSON answer: its status, then (200) every item of it."""
        if status != 200:
            record.outcome = oc.classify_status(status, answer)
            record.error = f"HTTP {status}"
            return
        try:
            data = orjson.loads(answer or b"{}")
        except orjson.JSONDecodeError:
            record.outcome, record.error = oc.ERROR, "unparseable JSON answer"
            return
        self._fill_json(record, data)

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
    _replay: ReplayItem | None = None
    _last_outcome = oc.OK
    _ended = True
    """The current request has been recorded (`_finish`); False while one is in flight."""

    def _prompt(self) -> Prompt:
        """The replayed row's prompt and output length, else the next synthetic prompt."""
        row = self._replay
        if row is None:
            return self.state.prompts.next()
        return Prompt(trace_prompt(row.prompt_tokens, row.line), max(1, row.output_tokens))

    @task
    def one_request(self) -> None:
        arrival = self.state.workload.next_arrival(self.state.recorder.measure_from_ns)
        self._intended, self._replay = arrival or (self.state.next_intended_ns(), None)
        if self.state.stopping:
            raise StopUser()  # the test is stopping: nothing new is sent
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
        prompt = self._prompt()
        body: dict[str, Any] = {"question": prompt.question}
        if prompt.max_tokens is not None:
            body["max_tokens"] = prompt.max_tokens
        tracker = ServiceStreamTracker(time.time_ns(), self._intended)
        self._stream("/chat/stream", body, tracker, "/chat/stream")


class DirectLLMUser(_SurgeUser):
    """An OpenAI-compatible endpoint, streaming ``POST {host}/chat/completions``."""

    def request(self) -> None:
        prompt = self._prompt()
        body: dict[str, Any] = {
            "model": self.state.settings.model,
            "messages": [{"role": "user", "content": prompt.question}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if prompt.max_tokens is not None:
            body["max_tokens"] = prompt.max_tokens
        if self._replay is not None:  # the row's exact output length (vLLM's extensions)
            body["min_tokens"], body["ignore_eos"] = prompt.max_tokens, True
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


AgentSessionUser = session_user_class(_SurgeUser)


def locust_name(name: str, record: RequestRecord, measure_from_ns: int) -> str:
    """The row of Locust's table a request is counted in: its path; ``(rejected)`` for an
    admission refusal (not a failure, as in summary.json); ``(unfinished)`` for a request still
    in flight when the user was stopped (not a failure either); ``(warm-up)`` before the
    measurement starts (summary.json leaves those out, Locust's table labels them)."""
    if record.start_ns < measure_from_ns:
        return f"{name} (warm-up)"
    if record.outcome == oc.REJECTED:
        return f"{name} (rejected)"
    if record.outcome == oc.UNFINISHED:
        return f"{name} (unfinished)"
    return name


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
