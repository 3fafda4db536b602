"""LM Studio through its official Python SDK (the optional ``lmstudio`` package, extra ``mindgate[lmstudio]``),
for what the REST API does not give: real load progress, GPU offload, idle TTL and instance identifiers at
load, the loaded model's own tokenizer and context length, and downloaded models with their file paths.

The SDK speaks LM Studio's websocket protocol on the server's own port (``ws://host:port/llm`` etc., after a
``GET /lmstudio-greeting`` probe). :func:`usable` says whether that works for an endpoint: the package is
installed and the server answers the probe (remembered for ``CHECK_TTL`` seconds). Everything here raises
mindgate errors; the REST path (:mod:`._management`) is the fallback when the SDK is not usable.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from mindgate.errors import MindgateError, ModelNotFoundError, NetworkError, ProviderError
from mindgate.providers.management._http import start_hint
from mindgate.providers.management._records import (
    Capabilities,
    Endpoint,
    LoadedInstance,
    LoadOptions,
    ModelInfo,
    ModelState,
    ModelType,
)

CHECK_TTL = 30.0
SOURCE = "lmstudio sdk"
_usable: dict[str, tuple[float, bool]] = {}


def installed() -> bool:
    return importlib.util.find_spec("lmstudio") is not None


def api_host(url: str) -> str:
    """``http://host:1234/v1`` -> ``host:1234`` (the SDK's form)."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


async def usable(endpoint: Endpoint) -> bool:
    """Whether the SDK is installed and the server answers its probe (cached for ``CHECK_TTL`` seconds)."""
    if not endpoint.sdk or endpoint.url is None or not installed():
        return False
    cached = _usable.get(endpoint.url)
    if cached and time.monotonic() - cached[0] < CHECK_TTL:
        return cached[1]
    try:  # the SDK's own probe, with this endpoint's connect timeout rather than the SDK's fixed 1 s
        async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, connect=endpoint.connect_timeout)) as client:
            response = await client.get(f"http://{api_host(endpoint.url)}/lmstudio-greeting")
        data = response.json() if response.status_code == 200 else None
        ok = isinstance(data, dict) and data.get("lmstudio") is True
    except (httpx.HTTPError, ValueError):
        ok = False
    _usable[endpoint.url] = (time.monotonic(), ok)
    return ok


def forget(endpoint: Endpoint) -> None:
    """Drop the cached probe result (after a failed SDK call, REST is used until the next probe)."""
    if endpoint.url:
        _usable.pop(endpoint.url, None)


def _error(endpoint: Endpoint, what: str, exc: Exception) -> MindgateError:
    if isinstance(exc, MindgateError):
        return exc
    text = str(exc)
    if any(words in text.lower() for words in ("not found", "no model", "no loaded model")):
        return ModelNotFoundError(f"LM Studio at {endpoint.url} ({endpoint.name}): {what}: {text}",
                                  provider="lmstudio", hint="see `mindgate models list` for the models it has")
    if isinstance(exc, OSError | TimeoutError):
        return NetworkError(f"cannot reach LM Studio's SDK channel at {endpoint.url}: {text}", url=str(endpoint.url),
                            hint=start_hint("lmstudio"))
    return ProviderError(f"LM Studio at {endpoint.url} ({endpoint.name}): {what} failed: {text}",
                         provider="lmstudio", retryable=False)


@contextlib.asynccontextmanager
async def connect(endpoint: Endpoint) -> AsyncIterator[Any]:
    """An open ``lmstudio.AsyncClient`` for ``endpoint`` (its errors become mindgate errors)."""
    import lmstudio

    assert endpoint.url is not None
    try:
        async with lmstudio.AsyncClient(api_host(endpoint.url)) as client:
            yield client
    except MindgateError:
        raise
    except Exception as exc:
        forget(endpoint)
        raise _error(endpoint, "SDK call", exc) from None


def _info(endpoint: Endpoint, entry: dict[str, Any], loaded: list[dict[str, Any]]) -> ModelInfo:
    key = str(entry.get("modelKey"))
    instances = tuple(LoadedInstance(str(i.get("identifier")), _int(i.get("contextLength"))) for i in loaded
                      if i.get("modelKey") == key)
    embedding = entry.get("type") == "embedding"
    vision = bool(entry.get("vision"))
    return ModelInfo(
        provider="lmstudio", endpoint=endpoint.name, id=key,
        type=ModelType.EMBEDDING if embedding else ModelType.VLM if vision else ModelType.LLM,
        state=ModelState.LOADED if instances else ModelState.NOT_LOADED,
        max_context_length=_int(entry.get("maxContextLength")),
        loaded_context_length=max((i.context_length or 0 for i in instances), default=0) or None,
        size_bytes=_int(entry.get("sizeBytes")),
        capabilities=Capabilities(tool_use=None if embedding else bool(entry.get("trainedForToolUse")),
                                  vision=None if embedding else vision),
        source=SOURCE, architecture=entry.get("architecture"), instances=instances, path=entry.get("path"))


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


async def list_models(endpoint: Endpoint) -> list[ModelInfo]:
    """Downloaded models (``system.listDownloadedModels``) with their loaded instances (``listLoaded``)."""
    async with connect(endpoint) as client:
        downloaded = await client.system.remote_call("listDownloadedModels")
        loaded = [*await client.llm.remote_call("listLoaded"), *await client.embedding.remote_call("listLoaded")]
    return [_info(endpoint, entry, loaded) for entry in downloaded or []]


async def version(endpoint: Endpoint) -> str:
    """LM Studio's version and build (``system.version``)."""
    async with connect(endpoint) as client:
        data = await client.system.remote_call("version")
    return f"{data.get('version')} (build {data.get('build')})" if isinstance(data, dict) else str(data)


async def load(endpoint: Endpoint, model: ModelInfo, *, context_length: int | None, ttl: float | None,
               options: LoadOptions, progress: Callable[[float], None] | None) -> LoadedInstance:
    """A new instance through the ``loadModel`` channel, with LM Studio's own progress reports."""
    config: dict[str, Any] = {}
    if context_length:
        config["contextLength"] = context_length
    if options.gpu is not None:
        config["gpu"] = {"ratio": options.gpu}
    async with connect(endpoint) as client:
        namespace = client.embedding if model.type is ModelType.EMBEDDING else client.llm
        try:
            handle = await namespace.load_new_instance(model.id, options.identifier,
                                                       ttl=max(1, round(ttl)) if ttl else None,
                                                       config=config or None, on_load_progress=progress)
            info = await namespace.remote_call("getModelInfo", _specifier(handle.identifier))
        except MindgateError:
            raise
        except Exception as exc:
            raise _error(endpoint, f"loading {model.id}", exc) from None
    return LoadedInstance(str(handle.identifier), _int((info or {}).get("contextLength")) or context_length, ttl=ttl)


def _specifier(identifier: str) -> Any:
    from lmstudio._sdk_models import LlmRpcGetModelInfoParameter

    return LlmRpcGetModelInfoParameter._from_api_dict(
        {"specifier": {"type": "query", "query": {"identifier": identifier}}, "throwIfNotFound": True})


async def unload(endpoint: Endpoint, model: ModelInfo, instance_ids: Sequence[str]) -> list[str]:
    async with connect(endpoint) as client:
        namespace = client.embedding if model.type is ModelType.EMBEDDING else client.llm
        for instance_id in instance_ids:
            try:
                await namespace.unload(instance_id)
            except Exception as exc:
                raise _error(endpoint, f"unloading {instance_id}", exc) from None
    return list(instance_ids)


class TokenCounter:
    """The loaded model's tokenizer and context length over one SDK connection per event loop, kept open
    for the chat model's lifetime (a connection is five websockets; one per request would be wasteful)."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._clients: dict[asyncio.AbstractEventLoop, contextlib.AsyncExitStack] = {}
        self._handles: dict[asyncio.AbstractEventLoop, Any] = {}

    async def _client(self) -> Any:
        loop = asyncio.get_running_loop()
        if loop not in self._handles:
            stack = contextlib.AsyncExitStack()
            self._handles[loop] = await stack.enter_async_context(connect(self.endpoint))
            self._clients[loop] = stack
        return self._handles[loop]

    async def count(self, model: str, text: str) -> int:
        client = await self._client()
        from lmstudio._sdk_models import LlmRpcCountTokensParameter

        params = LlmRpcCountTokensParameter._from_api_dict(
            {"specifier": {"type": "query", "query": {"identifier": model}}, "inputString": text})
        try:
            return int((await client.llm.remote_call("countTokens", params))["tokenCount"])
        except Exception as exc:
            await self.aclose()
            raise _error(self.endpoint, f"counting tokens with {model}", exc) from None

    async def context_length(self, model: str) -> int | None:
        client = await self._client()
        try:
            info = await client.llm.remote_call("getModelInfo", _specifier(model))
        except Exception as exc:
            await self.aclose()
            raise _error(self.endpoint, f"reading {model}'s context length", exc) from None
        return _int((info or {}).get("contextLength"))

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        stack = self._clients.pop(loop, None)
        self._handles.pop(loop, None)
        if stack is not None:
            with contextlib.suppress(Exception):
                await stack.aclose()
