"""`create_app(settings)`: the FastAPI app behind a thin ASGI front that owns request ids.

Endpoints: `POST /chat/stream` (SSE), `POST /chat`, `POST /chat/batch`, `GET /healthz`,
`GET /readyz`, `GET /metrics`, `GET /config` (the settings it runs with). Every response carries
`X-Request-Id` (the client's when it is a safe token, else a new one). Every error is JSON
`{"error": {"type", "message"}}`; no traceback ever reaches a client.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from surgebench.process import watch_parent

from .admission import Ticket
from .agent import Timings
from .errors import Overloaded, RequestError, ServiceError
from .metrics import ServiceMetrics
from .runtime import (
    ClientGone,
    Outcome,
    RelayStream,
    Runtime,
    answer,
    classify,
    warn_secret_on_command_line,
)
from .runtime import run_until_disconnect as _run_until_disconnect
from .settings import ServiceSettings
from .validation import BatchRequest, ChatRequest, Limits, parse_batch, parse_chat, read_body
from .validation import request_id as make_request_id

log = logging.getLogger("service")
RID_KEY = "surge.request_id"
T0_KEY = "surge.t_arrival"
SEND_KEY = "surge.raw_send"


def json_response(
    status: int, payload: dict[str, Any], request_id: str, headers: dict[str, str] | None = None
) -> Response:
    out = Response(orjson.dumps(payload), status, media_type="application/json")
    out.headers["x-request-id"] = request_id
    for key, value in (headers or {}).items():
        out.headers[key] = value
    return out


def error_response(settings: ServiceSettings, error: ServiceError, request_id: str) -> Response:
    """The JSON answer for a failure before (or instead of) any stream."""
    payload: dict[str, Any] = {
        "error": {"type": error.error_type, "message": error.message},
        "request_id": request_id,
    }
    headers: dict[str, str] = {}
    status = error.status
    if isinstance(error, Overloaded):
        status = settings.reject_status
        headers["retry-after"] = str(settings.retry_after_s)
        if error.reason == "shutting_down":
            headers["connection"] = "close"
    elif status == 401:
        headers["www-authenticate"] = "Bearer"
    return json_response(status, payload, request_id, headers)


def authorization_of(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The raw `Authorization` header; 400 when there is more than one (which one would count
    is ambiguous, and proxies disagree)."""
    found: bytes | None = None
    for key, value in headers:
        if key == b"authorization":
            if found is not None:
                raise RequestError(400, "invalid_request", "more than one Authorization header")
            found = value
    return found


def check_bearer(settings: ServiceSettings, authorization: bytes | None) -> None:
    """401 unless `--auth-token` is unset or the header carries it: the header's bytes against
    the token's UTF-8 bytes, in constant time."""
    token = settings.auth_token
    if not token:
        return
    scheme, _, value = (authorization or b"").partition(b" ")
    if scheme.lower() != b"bearer" or not hmac.compare_digest(value.strip(), token.encode("utf-8")):
        raise RequestError(401, "unauthorized", "missing or wrong bearer token")


async def _body_chunks(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


class ServiceApp:
    """The ASGI app: request id and arrival time for every HTTP request, then FastAPI.

    `POST /chat/stream` (the hot endpoint) is served here directly when the raw send path is on
    (no CORS): same validation, admission and relay as the FastAPI route, without FastAPI's
    per-request routing and dependency machinery. The FastAPI route still documents it in the
    OpenAPI schema and serves it when CORS middleware must see every response.
    """

    def __init__(self, runtime: Runtime, api: FastAPI, raw_send: bool) -> None:
        self.runtime = runtime
        self.api = api
        self._raw_send = raw_send
        self._limits = Limits.from_settings(runtime.settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)
            return
        try:
            await self._http(scope, receive, send)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not self.runtime.draining or task is None:
                raise
            # The server cancels what is still running when its shutdown grace is over; the
            # request already answered (or gets uvicorn's 500 if it had not started): no
            # traceback for an expected event.
            task.uncancel()
            log.info("request %s cancelled at shutdown", scope.get(RID_KEY, "?"))

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        t_arrival = self.runtime.clock()
        header = None
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                header = value.decode("latin-1")
                break
        rid = make_request_id(header)
        try:
            authorization_of(scope["headers"])
        except RequestError as exc:  # on every route, before any routing
            await error_response(self.runtime.settings, exc, rid)(scope, receive, send)
            return
        if self._raw_send and scope["path"] == "/chat/stream" and scope["method"] == "POST":
            await self._chat_stream(scope, receive, send, rid, t_arrival)
            return
        scope[RID_KEY] = rid
        scope[T0_KEY] = t_arrival
        if self._raw_send:
            scope[SEND_KEY] = send
        rid_header = (b"x-request-id", rid.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"x-request-id" for k, _ in headers):
                    headers.append(rid_header)
                message = {**message, "headers": headers}
            await send(message)

        await self.api(scope, receive, send_with_id)

    async def _chat_stream(
        self, scope: Scope, receive: Receive, send: Send, rid: str, t_arrival: float
    ) -> None:
        rt = self.runtime
        settings = rt.settings
        length = None
        for key, value in scope["headers"]:
            if key == b"content-length":
                length = value.decode("latin-1")
        try:
            check_bearer(settings, authorization_of(scope["headers"]))
            body = await read_body(
                length, _body_chunks(receive), settings.max_body_bytes, settings.body_timeout_s
            )
            req = parse_chat(body, self._limits)
        except ClientGone:
            return
        except RequestError as exc:
            rt.metrics.requests.labels("stream", "client_error").inc()
            await error_response(settings, exc, rid)(scope, receive, send)
            return
        await _StreamEndpoint(rt, rid, Timings(t_arrival), req, send)(scope, receive, send)


def create_app(settings: ServiceSettings, metrics: ServiceMetrics | None = None) -> ServiceApp:
    """Build the service. The lifespan starts admission workers and closes the upstream pool."""
    runtime = Runtime(settings, metrics or ServiceMetrics())
    limits = Limits.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        warn_secret_on_command_line(settings, os.environ)
        watch_parent(asyncio.get_running_loop())  # stop when the process that started us is gone
        try:
            yield
        finally:
            await runtime.stop()

    api = FastAPI(
        title="surgebench reference streaming agent service",
        version="1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        debug=False,
        # FastAPI's built-in OpenTelemetry hook checks three providers per request; the
        # service exports its own Prometheus metrics, so it is off.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    api.state.runtime = runtime
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:
        api.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type", "x-request-id"],
            expose_headers=["x-request-id"],
        )

    def rid_of(request: Request) -> str:
        return str(request.scope.get(RID_KEY) or make_request_id(None))

    def check_auth(request: Request) -> None:
        check_bearer(settings, authorization_of(request.scope["headers"]))

    async def body_of(request: Request) -> bytes:
        return await read_body(
            request.headers.get("content-length"),
            request.stream(),
            settings.max_body_bytes,
            settings.body_timeout_s,
        )

    def arrival(request: Request) -> float:
        t0 = request.scope.get(T0_KEY)
        return float(t0) if t0 is not None else runtime.clock()

    @api.exception_handler(ServiceError)
    async def on_service_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServiceError)
        runtime.metrics.requests.labels(_endpoint(request), classify(exc).name).inc()
        return error_response(settings, exc, rid_of(request))

    @api.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        err = RequestError(exc.status_code, kind, str(exc.detail))
        return error_response(settings, err, rid_of(request))

    @api.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: Exception) -> Response:
        err = RequestError(422, "invalid_request", "invalid request")
        return error_response(settings, err, rid_of(request))

    @api.exception_handler(Exception)
    async def on_any_error(request: Request, exc: Exception) -> Response:
        outcome = classify(exc)
        assert outcome.error is not None
        return error_response(settings, outcome.error, rid_of(request))

    chat_body = {"requestBody": _body_schema(ChatRequest)}

    @api.post("/chat/stream", openapi_extra=chat_body, response_class=Response)
    async def chat_stream(request: Request) -> Response:
        """SSE stream: thinking, token..., done (or error). Rejection: 503/429 JSON."""
        check_auth(request)
        req = parse_chat(await body_of(request), limits)
        rid = rid_of(request)
        return _StreamEndpoint(
            runtime, rid, Timings(arrival(request)), req, request.scope.get(SEND_KEY)
        )

    @api.post("/chat", openapi_extra=chat_body, response_class=Response)
    async def chat(request: Request) -> Response:
        """Non-streaming answer through the same admission, with the timeouts (504)."""
        check_auth(request)
        req = parse_chat(await body_of(request), limits)
        rid = rid_of(request)
        timings = Timings(arrival(request))
        ticket = runtime.admit()
        outcome = Outcome()
        try:
            work = answer(runtime, ticket, timings, req.question, req.max_tokens, req.agent_steps)
            text, usage = await _run_until_disconnect(request.receive, work, ticket.release)
        except ClientGone:
            outcome = Outcome("cancelled")
            runtime.metrics.cancelled.labels("client_disconnect").inc()
            return json_response(499, {"error": {"type": "cancelled"}}, rid)
        except asyncio.CancelledError:
            outcome = Outcome("cancelled")
            task = asyncio.current_task()
            if not runtime.draining or task is None:
                raise
            task.uncancel()  # past the shutdown grace: answered, not a traceback
            runtime.metrics.cancelled.labels("shutdown").inc()
            body = {"error": {"type": "cancelled", "message": "the server is shutting down"}}
            return json_response(503, body, rid)
        except Exception as exc:
            outcome = classify(exc)
            assert outcome.error is not None
            return error_response(settings, outcome.error, rid)
        finally:
            ticket.release()
            runtime.record("chat", outcome, timings, 0)
        payload = {
            "request_id": rid,
            "answer": text,
            "usage": usage.as_dict(),
            "timings_ms": timings.as_ms(runtime.clock()),
        }
        return json_response(200, payload, rid)

    @api.post(
        "/chat/batch",
        openapi_extra={"requestBody": _body_schema(BatchRequest)},
        response_class=Response,
    )
    async def chat_batch(request: Request) -> Response:
        """Several questions answered concurrently; one result or error per item."""
        check_auth(request)
        req = parse_batch(await body_of(request), limits)
        rid = rid_of(request)
        t0 = arrival(request)

        async def one(index: int, question: str) -> dict[str, Any]:
            item_id = f"{rid}.{index}"
            timings = Timings(t0)
            outcome = Outcome()
            ticket: Ticket | None = None
            try:
                ticket = runtime.admit()
                text, usage = await answer(
                    runtime, ticket, timings, question, req.max_tokens, req.agent_steps
                )
            except asyncio.CancelledError:
                outcome = Outcome("cancelled")
                raise
            except Exception as exc:
                outcome = classify(exc)
                assert outcome.error is not None
                error = {"type": outcome.error.error_type, "message": outcome.error.message}
                return {"index": index, "request_id": item_id, "error": error}
            finally:
                if ticket is not None:
                    ticket.release()
                runtime.record("batch", outcome, timings, 0)
            return {
                "index": index,
                "request_id": item_id,
                "answer": text,
                "usage": usage.as_dict(),
                "timings_ms": timings.as_ms(runtime.clock()),
            }

        async def all_items() -> list[dict[str, Any]]:
            return list(await asyncio.gather(*(one(i, q) for i, q in enumerate(req.questions))))

        try:
            results = await _run_until_disconnect(request.receive, all_items(), lambda: None)
        except ClientGone:
            runtime.metrics.cancelled.labels("client_disconnect").inc()
            return json_response(499, {"error": {"type": "cancelled"}}, rid)
        return json_response(200, {"request_id": rid, "results": results}, rid)

    @api.get("/healthz")
    async def healthz(request: Request) -> Response:
        """Liveness: the process answers."""
        return json_response(200, {"status": "ok"}, rid_of(request))

    @api.get("/readyz")
    async def readyz(request: Request) -> Response:
        """Readiness: started and not draining (503 while shutting down)."""
        adm = runtime.admission
        state = {
            "in_flight": adm.in_flight,
            "queue_depth": adm.queue_depth,
            "admission": adm.name,
        }
        if runtime.started and not runtime.draining:
            return json_response(200, {"status": "ready", **state}, rid_of(request))
        reason = "draining" if runtime.draining else "starting"
        return json_response(503, {"status": reason, **state}, rid_of(request))

    config_payload = {
        "component": "service",
        "settings": settings.public_dict(),
        "limits": "per process",  # with --processes N each process enforces every limit alone
    }

    @api.get("/config")
    async def config(request: Request) -> Response:
        """The settings this process runs with; secrets (auth token, API key) shown as "***"."""
        return json_response(200, config_payload, rid_of(request))

    api.add_api_route("/config", config, methods=["HEAD"], include_in_schema=False)

    @api.get("/metrics")
    async def metrics_endpoint() -> Response:
        """Prometheus exposition."""
        return Response(runtime.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return ServiceApp(runtime, api, raw_send=not origins)


def _endpoint(request: Request) -> str:
    path = request.url.path
    return {"/chat/stream": "stream", "/chat": "chat", "/chat/batch": "batch"}.get(path, "other")


def _body_schema(model: type[ChatRequest] | type[BatchRequest]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": model.model_json_schema()}},
    }


class _StreamEndpoint(Response):
    """Admission and the SSE relay in one ASGI call, so the ticket is taken and released in one
    scope (no leak if the response is never started). Rejections are sent as JSON 503/429."""

    def __init__(
        self,
        runtime: Runtime,
        request_id: str,
        timings: Timings,
        req: ChatRequest,
        raw_send: Send | None,
    ) -> None:
        self.runtime = runtime
        self.request_id = request_id
        self.timings = timings
        self.req = req
        self.raw_send = raw_send
        self.background = None
        self.status_code = 200

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        rt = self.runtime
        try:
            ticket = rt.admit()
        except Overloaded as exc:
            rt.record("stream", Outcome("rejected", exc), self.timings, 0)
            response = error_response(rt.settings, exc, self.request_id)
            await response(scope, receive, send)
            return
        relay = RelayStream(
            rt,
            ticket,
            self.timings,
            self.request_id,
            self.req.question,
            self.req.max_tokens,
            self.raw_send,
            self.req.agent_steps,
        )
        await relay(scope, receive, send)


__all__ = ["ServiceApp", "create_app"]
