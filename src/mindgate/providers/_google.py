"""Google's API error format, shared by the Gemini API and Vertex AI adapters.

Google APIs answer errors as ``{"error": {"code", "message", "status", "details": [...]}}``; their
OpenAI-compatible endpoints wrap that object in a one-element list. Quirks handled here:

* an invalid Gemini API key is HTTP **400** ``INVALID_ARGUMENT`` with ``ErrorInfo.reason`` ``API_KEY_INVALID``
  (not 401), so it is recognised by the reason, not the status;
* a 429 ``RESOURCE_EXHAUSTED`` carries the wait as ``RetryInfo.retryDelay`` (``"37s"``), usually without a
  ``Retry-After`` header.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mindgate.providers._http_errors import finite_seconds, http_error, json_or_none
from mindgate.providers.openai_compat import OpenAICompatClient, ServerProfile

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
        treat_as = status
        if status in (401, 403) or error.reason in _AUTH_REASONS or error.status in _AUTH_STATUSES:
            treat_as = 401  # e.g. a bad Gemini key is HTTP 400 INVALID_ARGUMENT with reason API_KEY_INVALID
        elif error.status == "RESOURCE_EXHAUSTED":
            treat_as = 429
        elif error.status == "NOT_FOUND":
            treat_as = 404
        missing = bool(model) and treat_as == 404
        raise http_error(status, body, headers, provider=self.profile.provider,
                         where=f"{self.profile.display} at {self.base_url}", key_hint=self.key_hint,
                         model=model if missing else None, model_hint=self.profile.model_hint,
                         available=await self._available_models() if missing else None,
                         message=f"{error.status}: {error.message}" if error.status else error.message,
                         treat_as=treat_as, retry_after=error.retry_delay)
