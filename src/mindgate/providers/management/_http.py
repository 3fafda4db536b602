"""JSON over HTTP for the management drivers, with every failure mapped to :mod:`mindgate.errors`.

:class:`Unsupported` means "this server does not have that endpoint" (HTTP 404/405, or LM Studio's
HTTP 200 ``{"error": "Unexpected endpoint or method. ..."}``); drivers catch it to fall back to an older API.
Any other failed answer maps exactly as an inference call's does (:func:`mindgate.providers._http_errors.http_error`):
the same error class and wording for 401/403, 429, a missing model and 5xx.
"""

from __future__ import annotations

import json as json_module
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx

from mindgate.errors import NetworkError, ProviderError
from mindgate.providers._http_errors import http_error
from mindgate.providers.management._records import Endpoint


def display(provider: str) -> str:
    """The provider's name for people (from its spec)."""
    from mindgate.providers import provider_spec  # the package imports this module's users

    return provider_spec(provider).display


def start_hint(provider: str) -> str | None:
    """How to bring the provider's server up, from its spec (None for the in-process engine)."""
    from mindgate.providers import provider_spec

    hint = provider_spec(provider).start_hint
    return f"{hint}, or fix its URL" if hint else None


class Unsupported(Exception):
    """The server does not implement the endpoint that was called."""


def client_for(endpoint: Endpoint) -> httpx.AsyncClient:
    mounts = {pattern: httpx.AsyncHTTPTransport(proxy=url) for pattern, url in endpoint.proxies} or None
    return httpx.AsyncClient(timeout=httpx.Timeout(endpoint.timeout, connect=endpoint.connect_timeout),
                             headers=endpoint.headers(), mounts=mounts)


def _error_text(data: Any, fallback: str) -> str:
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            return str(error.get("message") or error)
        if error:
            return str(error)
    return fallback


def _http_error(endpoint: Endpoint, status: int, body: str, headers: Mapping[str, str], *, model: str | None,
                request: str, model_hint: str) -> ProviderError:
    """A failed management answer, mapped as inference maps one (:func:`mindgate.providers._http_errors.http_error`)."""
    return http_error(status, body, headers, provider=endpoint.provider,
                      where=f"{display(endpoint.provider)} at {endpoint.url} ({endpoint.name})",
                      model=model, request=request,  # an endpoint's key comes from its config only
                      model_hint=model_hint)


def _unreachable(endpoint: Endpoint, method: str, url: str, exc: httpx.HTTPError) -> NetworkError:
    """A transport failure (connect, timeout, broken connection) talking to ``endpoint``, with its start hint."""
    name, hint = display(endpoint.provider), start_hint(endpoint.provider)
    if isinstance(exc, httpx.ConnectTimeout):
        return NetworkError(f"{name} is not reachable at {endpoint.url} ({endpoint.name}; connect timed out after "
                            f"{endpoint.connect_timeout}s)", url=url, hint=hint)
    if isinstance(exc, httpx.TimeoutException):
        return NetworkError(f"{name} at {endpoint.url} ({endpoint.name}) did not answer {method} {url} in time",
                            url=url, hint=hint)
    return NetworkError(f"cannot reach {name} at {endpoint.url} ({endpoint.name}): {exc}", url=url, hint=hint)


async def request_json(client: httpx.AsyncClient, endpoint: Endpoint, method: str, url: str, *,
                       json: Any = None, timeout: float | None = None, model: str | None = None) -> Any:
    """The JSON body of a successful response; raises mindgate errors (or :class:`Unsupported`)."""
    name = display(endpoint.provider)
    try:
        response = await client.request(method, url, json=json,
                                         timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout)
    except httpx.HTTPError as exc:
        raise _unreachable(endpoint, method, url, exc) from None
    try:
        data = response.json()
    except ValueError:
        data = None
    text = _error_text(data, response.text[:300])
    if "Unexpected endpoint" in text or (response.status_code in (404, 405) and model is None):
        raise Unsupported(f"{method} {url}: {text}")
    if not response.is_success:
        raise _http_error(endpoint, response.status_code, response.text, response.headers, model=model,
                          request=f"{method} {url}", model_hint="see `mindgate models list` for the models it has")
    if data is None:
        raise ProviderError(f"{name} at {endpoint.url} answered {method} {url} with a body that is not JSON",
                            provider=endpoint.provider, status_code=response.status_code,
                            body=response.text[:2000])
    if isinstance(data, dict) and data.get("error"):
        raise ProviderError(f"{name} at {endpoint.url} answered {method} {url} with an error: {text}",
                            provider=endpoint.provider, status_code=response.status_code, retryable=False)
    return data


async def stream_json_lines(client: httpx.AsyncClient, endpoint: Endpoint, method: str, url: str, *,
                            json: Any = None, model: str | None = None) -> AsyncIterator[Any]:
    """Each JSON line of a streamed (NDJSON) response, e.g. Ollama's ``/api/pull``; failures map like
    :func:`request_json`'s, and an ``{"error": ...}`` line raises ProviderError."""
    name = display(endpoint.provider)
    try:
        async with client.stream(method, url, json=json, timeout=httpx.Timeout(None, connect=endpoint.connect_timeout)
                                 ) as response:
            if not response.is_success:
                body = (await response.aread()).decode("utf-8", "replace")
                raise _http_error(endpoint, response.status_code, body, response.headers, model=model,
                                  request=f"{method} {url}",
                                  model_hint="check the model's name in the server's library")
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                try:
                    data = json_module.loads(line)
                except ValueError:
                    raise ProviderError(f"{name} at {endpoint.url} streamed a line that is not JSON: {line[:200]!r}",
                                        provider=endpoint.provider) from None
                if isinstance(data, dict) and data.get("error"):
                    raise ProviderError(f"{name} at {endpoint.url}: {data['error']}", provider=endpoint.provider,
                                        retryable=False)
                yield data
    except httpx.HTTPError as exc:
        raise _unreachable(endpoint, method, url, exc) from None
