"""The service's exceptions: each maps to one client-facing error type of docs/contracts.md."""

from __future__ import annotations


class ServiceError(Exception):
    """Base: `error_type` is the `error.type` clients see, `status` the HTTP status (non-stream)."""

    error_type = "internal"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RequestError(ServiceError):
    """Bad input: 400 (unparseable), 401, 408, 413 (too large) or 422 (invalid)."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type


class Overloaded(ServiceError):
    """No capacity: rejected at admission, queue wait exceeded, or shutting down."""

    error_type = "overloaded"
    status = 503

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason  # queue_full, queue_timeout, shutting_down


class RequestTimeout(ServiceError):
    """A TTFT, idle-gap or total deadline passed."""

    error_type = "timeout"
    status = 504

    def __init__(self, message: str, stage: str) -> None:
        super().__init__(message)
        self.stage = stage  # ttft, idle, total


class UpstreamError(ServiceError):
    """The LLM failed: refused connection, HTTP error status, broken or malformed stream."""

    error_type = "upstream"
    status = 502

    def __init__(
        self,
        message: str,
        kind: str,
        upstream_status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind  # connect, status, read, protocol, timeout
        self.upstream_status = upstream_status
        self.retry_after_s = retry_after_s

    @property
    def retryable(self) -> bool:
        return self.kind == "connect" or self.upstream_status in {429, 500, 502, 503, 504}
