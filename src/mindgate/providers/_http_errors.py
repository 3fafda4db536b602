"""One mapping from an upstream's failed HTTP answer to :mod:`mindgate.errors`, for inference and model
management alike.

:func:`http_error` takes the status, body and headers of an answer plus who answered (``where``, e.g.
"LM Studio at http://127.0.0.1:1234") and returns the error to raise:

* 401 / 403 -> :class:`~mindgate.errors.AuthenticationError` ("rejected the API key"; hint: the key's
  environment variable or ``api_key``), never retried;
* 429 -> :class:`~mindgate.errors.RateLimitError` with the server's ``Retry-After`` / ``retry-after-ms``;
* a model that was asked for and is missing (404, or a message saying so) ->
  :class:`~mindgate.errors.ModelNotFoundError` listing what the server has, when known;
* anything else -> :class:`~mindgate.errors.ProviderError` (retryable for 5xx, as routers need).

The message always names the server, the HTTP status and the server's own words (:func:`server_message`).
Vendor formats that say these things differently (Google's ``INVALID_ARGUMENT`` + ``API_KEY_INVALID``, Azure's
``DeploymentNotFound``) are recognised in their provider module, which passes ``treat_as`` and its own
message here, so every path ends in the same classes and wording. The parsers never raise on odd input.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Mapping, Sequence
from datetime import UTC
from typing import Any

from mindgate._json import loads
from mindgate.errors import AuthenticationError, ModelNotFoundError, ProviderError, RateLimitError

_MAX_RETRY_AFTER = 86_400.0
_LISTED = 20  # models named in a hint; a cloud lists hundreds
_MISSING_MODEL_WORDS = ("not found", "does not exist", "not exist", "no such", "unknown model", "invalid model",
                        "not loaded", "no models loaded", "model_not_found")


def http_error(status: int, body: str, headers: Mapping[str, str], *, provider: str, where: str,
               key_env: str | None = None, model: str | None = None, available: Sequence[str] | None = None,
               model_hint: str | None = None, request: str | None = None, message: str | None = None,
               treat_as: int | None = None, retry_after: float | None = None,
               key_hint: str | None = None) -> ProviderError:
    """The error for an HTTP ``status`` answer (see the module docstring).

    ``where`` names the server; ``request`` (e.g. ``"GET /api/tags"``) is added to a plain failure;
    ``model`` is the model the request named (a 404 without one is a plain failure); ``available`` lists
    the server's models for a missing one and ``model_hint`` says how to get it; ``key_env`` / ``key_hint``
    say how to fix a rejected key. ``message`` replaces the text read from ``body``; ``treat_as`` maps as if
    the status were that one (the reported ``status_code`` stays ``status``); ``retry_after`` is the wait
    when the headers give none."""
    text = message if message is not None else server_message(body)
    kind = treat_as or status
    if kind in (401, 403):
        return AuthenticationError(f"{where} rejected the API key (HTTP {status}: {text})", provider=provider,
                                   status_code=status, body=body, hint=key_hint or api_key_hint(key_env),
                                   retryable=False)
    if kind == 429:
        return RateLimitError(f"{where} is rate limiting requests (HTTP {status}: {text})",
                              retry_after=retry_after_seconds(headers) or retry_after, provider=provider,
                              status_code=status, body=body, hint="slow down or retry after the delay")
    if model and (kind == 404 or names_missing_model(text)):
        hint = model_hint or "check the model's name"
        if available is not None:
            shown = ", ".join(available[:_LISTED]) + (f" and {len(available) - _LISTED} more"
                                                       if len(available) > _LISTED else "")
            hint = f"{hint}; the server has: {shown or 'none'}"
        return ModelNotFoundError(f"model {model!r} is not available on {where} (HTTP {status}: {text})",
                                  available=list(available or []), provider=provider, status_code=status, body=body,
                                  hint=hint)
    answered = f"answered {request} with HTTP {status}" if request else f"answered HTTP {status}"
    return ProviderError(f"{where} {answered}: {text}", provider=provider, status_code=status, body=body[:2000],
                         hint="the server failed; retry later or check its logs" if kind >= 500 else None)


def is_missing_model(status: int, body: str) -> bool:
    """Does an answer to a request naming a model say the model is missing (so the server's list is
    worth fetching for the error)?"""
    return status == 404 or names_missing_model(server_message(body))


def names_missing_model(message: str) -> bool:
    text = message.lower()
    return "model" in text and any(word in text for word in _MISSING_MODEL_WORDS)


def api_key_hint(key_env: str | None) -> str:
    """How to give a key: the provider's environment variable, or ``api_key`` in its config."""
    return f"set {key_env} or `api_key` in the provider config" if key_env else "set `api_key` in the provider config"


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date), or OpenAI's ``retry-after-ms``.

    Never raises: a value that is neither (``"soon"``, ``"nan"``, a garbled date) is ignored (None), and
    the result is finite and at most a day, so callers can sleep on it or echo it in a header."""
    if (ms := finite_seconds(headers.get("retry-after-ms"))) is not None:
        return min(ms / 1000, _MAX_RETRY_AFTER)
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return None
    seconds = finite_seconds(value)
    if seconds is None:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if parsed.tzinfo is None:  # RFC 9110 dates are GMT; parsedate gives naive for "-0000"
            parsed = parsed.replace(tzinfo=UTC)
        seconds = max(0.0, parsed.timestamp() - time.time())
    return min(seconds, _MAX_RETRY_AFTER)


def finite_seconds(value: str | None) -> float | None:
    """``value`` as a finite, non-negative number, or None when it is not one."""
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return max(0.0, number) if math.isfinite(number) else None


def json_or_none(text: str | bytes) -> Any:
    """``text`` decoded as JSON, or None when it is not JSON (or nested too deeply to decode)."""
    try:
        return loads(text)
    except (ValueError, RecursionError):
        return None


def server_message(body: str) -> str:
    """The human part of an error body: OpenAI's ``error.message``, Ollama's and LM Studio's ``error``,
    FastAPI's ``detail``, or the text itself (shortened)."""
    data = json_or_none(body)
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data.get("message")))
        if isinstance(err, dict):
            err = err.get("message") or err.get("msg") or json.dumps(err)
        if isinstance(err, list):
            err = "; ".join(str(e.get("msg", e)) if isinstance(e, dict) else str(e) for e in err)
        if err:
            return str(err)[:500]
    return body.strip()[:500]


def error_code(body: str) -> Any:
    """OpenAI's machine-readable ``error.code`` from an error body, or None."""
    data = json_or_none(body)
    error = data.get("error") if isinstance(data, dict) else None
    return error.get("code") if isinstance(error, dict) else None
