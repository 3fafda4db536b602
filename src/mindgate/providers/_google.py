"""Google's API error format, shared by the Gemini API and Vertex AI adapters.

Google APIs answer errors as ``{"error": {"code", "message", "status", "details": [...]}}``; their
OpenAI-compatible endpoints wrap that object in a one-element list. Quirks handled here:

* an invalid Gemini API key is HTTP **400** ``INVALID_ARGUMENT`` with ``ErrorInfo.reason`` ``API_KEY_INVALID``
  (not 401), so it is recognised by the reason, not the status;
* a 429 ``RESOURCE_EXHAUSTED`` carries the wait as ``RetryInfo.retryDelay`` (``"37s"``), usually without a
  ``Retry-After`` header.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mindgate.errors import AuthenticationError, ModelNotFoundError, RateLimitError
from mindgate.providers.openai_compat import (
    OpenAICompatClient,
    ServerProfile,
    finite_seconds,
    json_or_none,
    retry_after_seconds,
)

_AUTH_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_SERVICE_BLOCKED", "ACCESS_TOKEN_EXPIRED"})
_AUTH_STATUSES = frozenset({"UNAUTHENTICATED", "PERMISSION_DENIED"})


@dataclass(frozen=True)
class GoogleError:
    """The parts of a Google error body mindgate acts on."""

    message: str
    status: str | None = None
    reason: str | None = None
    retry_delay: float | None = None


def _seconds(duration: Any) -> float | None:
    """Protobuf JSON duration (``"37s"``, ``"1.5s"``) -> finite seconds; None for anything else."""
    if not isinstance(duration, str) or not duration.endswith("s"):
        return None
    return finite_seconds(duration[:-1])


def parse_google_error(body: str) -> GoogleError | None:
    """The error in ``body`` (dict or one-element list form); None when it is not Google's format."""
    data = json_or_none(body)
    if isinstance(data, list) and data:
        data = data[0]
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return None
    reason, delay = None, None
    details = error.get("details")
    for detail in details if isinstance(details, list) else []:
        if not isinstance(detail, dict):
            continue
        kind = str(detail.get("@type", ""))
        if kind.endswith("google.rpc.ErrorInfo"):
            reason = _text(detail.get("reason"))
        elif kind.endswith("google.rpc.RetryInfo"):
            delay = _seconds(detail.get("retryDelay"))
    return GoogleError(error["message"], _text(error.get("status")), reason, delay)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class GoogleClient(OpenAICompatClient):
    """The shared client with Google's error format mapped; ``key_hint`` says how to fix a rejected key."""

    def __init__(self, base_url: str, *, profile: ServerProfile, key_hint: str, **kwargs: Any) -> None:
        super().__init__(base_url, profile=profile, **kwargs)
        self.key_hint = key_hint

    async def raise_for_status(self, status: int, body: str, headers: Mapping[str, str], *,
                               model: str | None) -> None:
        error = parse_google_error(body)
        if error is None:
            await super().raise_for_status(status, body, headers, model=model)
            return
        where = f"{self.profile.display} at {self.base_url}"
        provider = self.profile.provider
        if status in (401, 403) or error.reason in _AUTH_REASONS or error.status in _AUTH_STATUSES:
            raise AuthenticationError(f"{where} rejected the credentials (HTTP {status} {error.status}: "
                                      f"{error.message})", provider=provider, status_code=status, body=body,
                                      hint=self.key_hint, retryable=False)
        if status == 429 or error.status == "RESOURCE_EXHAUSTED":
            raise RateLimitError(f"{where} is rate limiting requests (HTTP {status}: {error.message})",
                                 retry_after=retry_after_seconds(headers) or error.retry_delay, provider=provider,
                                 status_code=status, body=body, hint="slow down or retry after the delay")
        if model and (status == 404 or error.status == "NOT_FOUND"):
            available = await self._available_models()
            listing = f"; available: {', '.join(available)}" if available else ""
            raise ModelNotFoundError(f"model {model!r} is not available on {where} ({error.message})",
                                     available=available, provider=provider, status_code=status, body=body,
                                     hint=f"{self.profile.model_hint}{listing}")
        await super().raise_for_status(status, json.dumps({"error": {"message": error.message}}), headers,
                                       model=None)
