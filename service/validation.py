"""Request bodies: read under a size and time limit, parse, validate. Pure except `read_body`.

Every failure is a `RequestError` with a status and a short message that never echoes the input:
400 not JSON / not UTF-8 / nested too deep, 408 body too slow, 413 too large, 422 wrong shape.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from .errors import RequestError
from .settings import ServiceSettings

MAX_DEPTH = 32
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


class ChatRequest(BaseModel):
    """`POST /chat/stream` and `POST /chat` body."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    question: StrictStr = Field(description="the user's question", min_length=1)
    max_tokens: StrictInt | None = Field(default=None, ge=1, description="cap on answer tokens")
    agent_steps: StrictInt | None = Field(
        default=None,
        ge=1,
        description="LLM calls for this request (1: a plain answer; K>1: plan, K-2 tool steps, "
        "answer); absent: the service's --agent-steps",
    )


class BatchRequest(BaseModel):
    """`POST /chat/batch` body."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    questions: list[StrictStr] = Field(min_length=1, description="questions answered concurrently")
    max_tokens: StrictInt | None = Field(default=None, ge=1)
    agent_steps: StrictInt | None = Field(
        default=None, ge=1, description="LLM calls for every question (as in /chat)"
    )


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int
    max_question_chars: int
    max_tokens_limit: int
    batch_max_items: int
    agent_steps_limit: int

    @classmethod
    def from_settings(cls, s: ServiceSettings) -> Limits:
        return cls(
            s.max_body_bytes,
            s.max_question_chars,
            s.max_tokens_limit,
            s.batch_max_items,
            s.agent_steps_limit,
        )


async def read_body(
    declared: str | None, chunks: AsyncIterator[bytes], limit: int, timeout_s: float
) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed `limit` bytes.

    `declared` is the Content-Length header (None for chunked bodies, which are counted).
    """
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(400, "invalid_request", "Content-Length is not a number")
        if int(declared) > limit:
            raise RequestError(413, "too_large", f"request body over the {limit}-byte limit")
    parts: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise RequestError(
                        413, "too_large", f"request body over the {limit}-byte limit"
                    )
                parts.append(chunk)
    except TimeoutError:
        raise RequestError(
            408, "timeout", f"request body not received within {timeout_s:g} s"
        ) from None
    return b"".join(parts)


def _depth(value: Any, limit: int) -> int:
    """Nesting depth, stopping early once over `limit`."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    deepest = 0
    while stack:
        item, depth = stack.pop()
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                return deepest
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def load_json_object(body: bytes) -> dict[str, Any]:
    """Parse a JSON object; 400 for anything that is not (or is nested too deep)."""
    if not body:
        raise RequestError(400, "invalid_json", "empty body; expected a JSON object")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        text = str(exc).lower()
        reason = "recursion" if ("recursion" in text or "depth" in text) else "syntax"
        if reason == "recursion":
            raise RequestError(400, "invalid_json", "JSON nested too deeply") from None
        if _is_bad_utf8(body):
            raise RequestError(400, "invalid_json", "body is not valid UTF-8") from None
        raise RequestError(400, "invalid_json", f"body is not valid JSON: {exc.msg}") from None
    if _depth(value, MAX_DEPTH) > MAX_DEPTH:
        raise RequestError(400, "invalid_json", f"JSON nested deeper than {MAX_DEPTH} levels")
    if not isinstance(value, dict):
        raise RequestError(422, "invalid_request", "body must be a JSON object")
    return value


def _is_bad_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _validation_message(exc: ValidationError) -> tuple[str, list[dict[str, Any]]]:
    details = [
        {"loc": [str(p) for p in err["loc"]], "msg": err["msg"]}
        for err in exc.errors(include_input=False, include_url=False)
    ]
    first = details[0]
    where = ".".join(first["loc"]) or "body"
    return f"{where}: {first['msg']}", details


def parse_chat(body: bytes, limits: Limits) -> ChatRequest:
    """A valid `ChatRequest` or a `RequestError`."""
    obj = load_json_object(body)
    try:
        req = ChatRequest.model_validate(obj)
    except ValidationError as exc:
        message, _ = _validation_message(exc)
        raise RequestError(422, "invalid_request", message) from None
    _check_question(req.question, limits, "question")
    _check_max_tokens(req.max_tokens, limits)
    _check_agent_steps(req.agent_steps, limits)
    return req


def parse_batch(body: bytes, limits: Limits) -> BatchRequest:
    """A valid `BatchRequest` or a `RequestError`."""
    obj = load_json_object(body)
    try:
        req = BatchRequest.model_validate(obj)
    except ValidationError as exc:
        message, _ = _validation_message(exc)
        raise RequestError(422, "invalid_request", message) from None
    if len(req.questions) > limits.batch_max_items:
        raise RequestError(
            422, "invalid_request", f"questions: at most {limits.batch_max_items} items allowed"
        )
    for i, q in enumerate(req.questions):
        _check_question(q, limits, f"questions.{i}")
    _check_max_tokens(req.max_tokens, limits)
    _check_agent_steps(req.agent_steps, limits)
    return req


def _check_question(question: str, limits: Limits, where: str) -> None:
    if not question.strip():
        raise RequestError(422, "invalid_request", f"{where}: must not be blank")
    if len(question) > limits.max_question_chars:
        raise RequestError(
            422, "invalid_request", f"{where}: longer than {limits.max_question_chars} characters"
        )


def _check_max_tokens(max_tokens: int | None, limits: Limits) -> None:
    if max_tokens is not None and max_tokens > limits.max_tokens_limit:
        raise RequestError(
            422, "invalid_request", f"max_tokens: at most {limits.max_tokens_limit} allowed"
        )


def _check_agent_steps(agent_steps: int | None, limits: Limits) -> None:
    if agent_steps is not None and agent_steps > limits.agent_steps_limit:
        raise RequestError(
            422,
            "invalid_request",
            f"agent_steps: at most {limits.agent_steps_limit} allowed (--agent-steps-limit)",
        )


def request_id(header_value: str | None) -> str:
    """The client's X-Request-Id when it is a safe token (no CR/LF, 1-128 chars), else a new one."""
    if header_value is not None and _REQUEST_ID_RE.fullmatch(header_value):
        return header_value
    return "r-" + uuid.uuid4().hex[:16]
