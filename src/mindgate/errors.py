"""One exception hierarchy for everything mindgate raises.

Every error says what was wrong and what to do about it. Each class carries the HTTP status and
the OpenAI error ``type``/``code`` the gateway uses when it turns the error into a response, so the
mapping lives next to the error and not in a table somewhere else.
"""

from __future__ import annotations

from typing import Any


class MindgateError(Exception):
    """Base of all mindgate errors.

    ``hint`` is the "what to do" half of the message; it is appended to ``str(error)``.
    """

    http_status: int = 500
    error_type: str = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message}: {hint}" if hint else message)

    def to_openai(self) -> dict[str, Any]:
        """The error as OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``."""
        return {"error": {"message": str(self), "type": self.error_type, "param": None, "code": self.code}}


class ConfigurationError(MindgateError, ValueError):
    """The configuration (or an argument that acts like configuration) is invalid."""

    http_status = 400
    error_type = "invalid_request_error"
    code = "invalid_configuration"


class InvalidRequestError(MindgateError, ValueError):
    """A call's arguments are invalid: missing scope, bad filter operator, malformed messages."""

    http_status = 400
    error_type = "invalid_request_error"
    code = "invalid_request"


class ScopeError(InvalidRequestError):
    """No user_id / agent_id / run_id was given where one is required."""

    code = "missing_scope"


class FilterError(InvalidRequestError):
    """A metadata filter uses an unknown operator or a value of the wrong type."""

    code = "invalid_filter"


class NativeResponsesUnavailable(InvalidRequestError):
    """A target cannot take a Responses API request on its own ``/v1/responses`` (no pass-through configured,
    or the server turned out to have no such route): the request is bridged onto chat completions instead.
    Raised before anything reached the client, so the caller can still bridge; it never reaches a client."""

    code = "responses_passthrough_unavailable"


class NotFoundError(MindgateError, LookupError):
    """A memory (or other named object) does not exist in the caller's scope."""

    http_status = 404
    error_type = "invalid_request_error"
    code = "not_found"


class PermissionDeniedError(MindgateError):
    """The caller's API key may not touch this user, model or memory."""

    http_status = 403
    error_type = "permission_error"
    code = "forbidden"


class UnauthorizedError(MindgateError):
    """The caller's gateway API key is missing or not one the gateway knows (HTTP 401).

    Not an :class:`AuthenticationError`: that one means an upstream server rejected mindgate's key."""

    http_status = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class TooManyRequestsError(MindgateError):
    """The caller's gateway API key is over its request or token limit; ``retry_after`` is in seconds.

    Not a :class:`RateLimitError`: that one means an upstream server is limiting mindgate."""

    http_status = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float, hint: str | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message, hint=hint)


class ModelNotServedError(NotFoundError):
    """The gateway serves no model by this name (``GET /v1/models`` lists the names it serves)."""

    code = "model_not_found"


class NetworkError(MindgateError):
    """A server could not be reached (connection refused, DNS failure, timeout)."""

    http_status = 502
    error_type = "api_connection_error"
    code = "upstream_unreachable"

    def __init__(self, message: str, *, url: str, hint: str | None = None) -> None:
        self.url = url
        super().__init__(message, hint=hint)


class TargetTimeoutError(NetworkError):
    """A target did not answer (or send its first token) within the router's per-target timeout."""

    code = "upstream_timeout"
    http_status = 504


class ProviderError(MindgateError):
    """A model server answered with an error.

    ``status_code`` is the upstream HTTP status (None when the failure was not HTTP-level).
    ``retryable`` tells routers whether trying again (here or elsewhere) can help.
    """

    http_status = 502
    error_type = "api_error"
    code = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status_code: int | None = None,
        body: str | None = None,
        hint: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        self.provider = provider
        self.status_code = status_code
        self.body = body
        self.retryable = (status_code is None or status_code >= 500) if retryable is None else retryable
        super().__init__(message, hint=hint)


class AuthenticationError(ProviderError):
    """The server rejected the API key (HTTP 401/403)."""

    http_status = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class RateLimitError(ProviderError):
    """The server answered 429; ``retry_after`` is in seconds when the server said so."""

    http_status = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        kwargs.setdefault("retryable", True)
        super().__init__(message, **kwargs)


class ModelNotFoundError(ProviderError):
    """The requested model is not on the server; ``available`` lists what the server has."""

    http_status = 404
    error_type = "invalid_request_error"
    code = "model_not_found"

    def __init__(self, message: str, *, available: list[str] | None = None, **kwargs: Any) -> None:
        self.available = list(available or [])
        kwargs.setdefault("retryable", False)
        super().__init__(message, **kwargs)


class StructuredOutputError(ProviderError):
    """The model did not produce JSON matching the requested schema, even after a retry."""

    code = "invalid_structured_output"

    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs.setdefault("retryable", False)
        super().__init__(message, **kwargs)


class StreamInterruptedError(ProviderError):
    """A stream broke after its first token: the answer is incomplete. Never retried or re-routed (the caller
    already has part of an answer); the gateway ends the stream with an error event."""

    code = "stream_interrupted"

    def __init__(self, message: str, *, chunks: int, **kwargs: Any) -> None:
        self.chunks = chunks
        kwargs.setdefault("retryable", True)
        super().__init__(message, **kwargs)


class ContextOverflowError(MindgateError):
    """A request does not fit the context window of any usable model."""

    http_status = 400
    error_type = "invalid_request_error"
    code = "context_length_exceeded"

    def __init__(self, message: str, *, needed: int | None = None, available: int | None = None,
                 hint: str | None = None) -> None:
        self.needed = needed
        self.available = available
        super().__init__(message, hint=hint)


class ResourceError(MindgateError):
    """A model does not fit in free memory (RAM/VRAM)."""

    http_status = 507
    error_type = "server_error"
    code = "insufficient_resources"


class InsufficientMemoryError(ResourceError):
    """A :class:`~mindgate.errors.ResourceError` that carries the numbers: ``needed_bytes``, ``free_bytes``,
    and the suggested ``shorter_context`` (None when no context fits)."""

    def __init__(self, message: str, *, needed_bytes: int, free_bytes: int, shorter_context: int | None,
                 hint: str | None = None) -> None:
        self.needed_bytes = needed_bytes
        self.free_bytes = free_bytes
        self.shorter_context = shorter_context
        super().__init__(message, hint=hint)


class StoreError(MindgateError):
    """The memory store failed (I/O, corruption, unreachable database). ``operation`` says what failed
    ("read", "write", "open") when the store knows."""

    code = "store_error"
    operation: str | None = None


class EmbedderMismatchError(StoreError):
    """The store was built with a different embedder than the one configured now."""

    http_status = 409
    error_type = "invalid_request_error"
    code = "embedder_mismatch"


class ToolServerError(MindgateError):
    """An MCP tool server could not be started, reached, or answer in time (ends that tool call only)."""

    http_status = 502
    error_type = "api_error"
    code = "tool_server_error"


class RoutingError(MindgateError):
    """Every target of a route failed or is unavailable; the message lists each target's state."""

    http_status = 503
    error_type = "api_error"
    code = "no_target_available"

    def __init__(self, message: str, *, retry_after: float | None = None, hint: str | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message, hint=hint)
