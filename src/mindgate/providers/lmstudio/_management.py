"""LM Studio's management: through its SDK when installed and connectable (:mod:`._lmstudio_sdk`), else its
REST API, with the same results either way.

REST: list through ``/api/v1/models`` (0.4+), else ``/api/v0/models`` (0.3.6+), else the OpenAI
``/v1/models`` ids; load and unload through ``/api/v1/models/load|unload``; download through
``POST /api/v1/models/download`` and ``GET /api/v1/models/download/status/{job_id}``. Without the v1 API
(LM Studio 0.3.x) a load is a Just-In-Time load: a one-token request that carries ``ttl``; the context
length cannot be chosen then, and unloading needs ``lms unload``. GPU offload and instance identifiers
can only be chosen through the SDK (the REST load takes neither); asking for them without it is an error
that says so.

Loads are single-flight per server and model (the key is the event loop, the URL and the model id):
concurrent callers -- explicit loads and the chat path's :func:`ensure_loaded` alike -- share one load
request, so LM Studio never loads a model twice because two requests arrived together.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from mindgate.errors import ConfigurationError, ProviderError
from mindgate.providers.lmstudio import _sdk as sdk
from mindgate.providers.management._driver import Driver
from mindgate.providers.management._http import Unsupported, request_json
from mindgate.providers.management._records import (
    NO_OPTIONS,
    OPENAI_LISTING,
    Capabilities,
    DownloadCallback,
    DownloadProgress,
    LoadedInstance,
    LoadOptions,
    ModelInfo,
    ModelState,
    ModelType,
)

V1 = "/api/v1/models"
V0 = "/api/v0/models"
OPENAI = OPENAI_LISTING
DOWNLOAD_POLL_S = 1.0
SDK_NEEDED = "install the SDK (`pip install 'mindgate[lmstudio]'`) so mindgate can use LM Studio's SDK channel"

T = TypeVar("T")
_inflight: dict[tuple[int, str, str, str], asyncio.Future[Any]] = {}


async def single_flight(what: str, url: str, model_id: str, run: Callable[[], Awaitable[T]]) -> T:
    """Run ``run`` unless the same operation (``what``) on ``model_id`` at ``url`` is in flight in this event
    loop; then share its result (or its error)."""
    key = (id(asyncio.get_running_loop()), what, url, model_id)
    future = _inflight.get(key)
    if future is None:
        future = asyncio.ensure_future(run())
        _inflight[key] = future
        future.add_done_callback(lambda _: _inflight.pop(key, None))
    result: T = await asyncio.shield(future)
    return result


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class LMStudioDriver(Driver):
    loads_on_demand = True

    @classmethod
    def names(cls, model: ModelInfo, requested: str) -> bool:
        """LM Studio's id without its ``@quantization`` suffix names the one listed variant."""
        return model.id.split("@", 1)[0] == requested.split("@", 1)[0] and "@" not in requested

    def _url(self, path: str) -> str:
        return f"{self.endpoint.url}{path}"

    def _info(self, source: str, **fields: Any) -> ModelInfo:
        return ModelInfo(provider="lmstudio", endpoint=self.endpoint.name, source=f"lmstudio {source}", **fields)

    async def list_models(self) -> tuple[list[ModelInfo], str]:
        if await sdk.usable(self.endpoint):
            return await sdk.list_models(self.endpoint), sdk.SOURCE
        for path, parse in ((V1, self._parse_v1), (V0, self._parse_v0), (OPENAI, self._parse_openai)):
            try:
                data = await request_json(self.client, self.endpoint, "GET", self._url(path))
            except Unsupported:
                continue
            return parse(data), path
        raise ProviderError(f"LM Studio at {self.endpoint.url} answers none of {V1}, {V0}, {OPENAI}",
                            provider="lmstudio", hint="is this really LM Studio? check the endpoint's URL")

    def _parse_v1(self, data: Any) -> list[ModelInfo]:
        out = []
        for m in data.get("models") or []:
            caps = m.get("capabilities")
            vision = bool(caps.get("vision")) if isinstance(caps, dict) else None
            kind = (ModelType.EMBEDDING if m.get("type") == "embedding"
                    else ModelType.VLM if vision else ModelType.LLM)
            instances = tuple(
                LoadedInstance(str(i.get("id")), _int((i.get("config") or {}).get("context_length")))
                for i in m.get("loaded_instances") or [])
            contexts = [i.context_length for i in instances if i.context_length]
            quant = m.get("quantization")
            out.append(self._info(
                V1, id=str(m.get("key")), type=kind,
                state=ModelState.LOADED if instances else ModelState.NOT_LOADED,
                max_context_length=_int(m.get("max_context_length")),
                loaded_context_length=max(contexts) if contexts else None,
                size_bytes=_int(m.get("size_bytes")),
                quantization=quant.get("name") if isinstance(quant, dict) else quant,
                capabilities=Capabilities(
                    tool_use=bool(caps.get("trained_for_tool_use")) if isinstance(caps, dict) else None,
                    vision=vision,
                    reasoning=bool(caps["reasoning"]) if isinstance(caps, dict) and "reasoning" in caps else None),
                architecture=m.get("architecture"), instances=instances))
        return out

    def _parse_v0(self, data: Any) -> list[ModelInfo]:
        kinds = {"embeddings": ModelType.EMBEDDING, "embedding": ModelType.EMBEDDING, "vlm": ModelType.VLM}
        out = []
        for m in data.get("data") or []:
            caps = m.get("capabilities")
            loaded = m.get("state") == "loaded"
            loaded_ctx = _int(m.get("loaded_context_length"))
            out.append(self._info(
                V0, id=str(m.get("id")), type=kinds.get(m.get("type"), ModelType.LLM),
                state=ModelState.LOADED if loaded else ModelState.NOT_LOADED,
                max_context_length=_int(m.get("max_context_length")), loaded_context_length=loaded_ctx,
                quantization=m.get("quantization"),
                capabilities=Capabilities(tool_use="tool_use" in caps if isinstance(caps, list) else None,
                                          vision=m.get("type") == "vlm"),
                architecture=m.get("arch"),
                instances=(LoadedInstance(str(m.get("id")), loaded_ctx),) if loaded else ()))
        return out

    def _parse_openai(self, data: Any) -> list[ModelInfo]:
        return [self._info(OPENAI, id=str(m.get("id"))) for m in data.get("data") or []]

    async def load(self, model: ModelInfo, *, context_length: int | None, ttl: float | None,
                   options: LoadOptions = NO_OPTIONS,
                   progress: Callable[[float], None] | None = None) -> LoadedInstance:
        async def run() -> LoadedInstance:
            if await sdk.usable(self.endpoint):
                return await sdk.load(self.endpoint, model, context_length=context_length, ttl=ttl,
                                      options=options, progress=progress)
            if options:
                raise ConfigurationError(f"LM Studio's REST API cannot set GPU offload or an instance identifier "
                                         f"(loading {model.id} on {self.endpoint.name})", hint=SDK_NEEDED)
            return await self._rest_load(model, context_length=context_length, ttl=ttl)

        assert self.endpoint.url is not None
        return await single_flight("load", self.endpoint.url, model.id, run)

    async def _rest_load(self, model: ModelInfo, *, context_length: int | None, ttl: float | None) -> LoadedInstance:
        body: dict[str, Any] = {"model": model.id, "echo_load_config": True}
        if context_length:
            body["context_length"] = context_length
        if ttl:
            body["ttl"] = max(1, round(ttl))
        try:
            data = await request_json(self.client, self.endpoint, "POST", self._url(f"{V1}/load"), json=body,
                                      timeout=max(self.endpoint.timeout, 600.0), model=model.id)
        except Unsupported:
            return await self._jit_load(model, context_length=context_length, ttl=ttl)
        config = data.get("load_config") or {}
        return LoadedInstance(str(data.get("instance_id") or model.id),
                              _int(config.get("context_length")) or context_length, ttl=ttl)

    async def _jit_load(self, model: ModelInfo, *, context_length: int | None, ttl: float | None) -> LoadedInstance:
        if context_length:
            raise ConfigurationError(
                f"LM Studio at {self.endpoint.url} has no load endpoint (it predates 0.4), so the context "
                f"length cannot be chosen", hint=f"run `lms load {model.id} --context-length {context_length}`, "
                                                 f"or update LM Studio")
        extra: dict[str, Any] = {"ttl": max(1, round(ttl))} if ttl else {}
        if model.type is ModelType.EMBEDDING:
            await request_json(self.client, self.endpoint, "POST", self._url("/v1/embeddings"),
                               json={"model": model.id, "input": "load", **extra}, model=model.id,
                               timeout=max(self.endpoint.timeout, 600.0))
        else:
            await request_json(self.client, self.endpoint, "POST", self._url("/v1/chat/completions"),
                               json={"model": model.id, "messages": [{"role": "user", "content": "hi"}],
                                     "max_tokens": 1, **extra}, model=model.id,
                               timeout=max(self.endpoint.timeout, 600.0))
        return LoadedInstance(model.id, None, ttl=ttl)

    async def unload(self, model: ModelInfo, instance_ids: Sequence[str]) -> list[str]:
        if await sdk.usable(self.endpoint):
            return await sdk.unload(self.endpoint, model, instance_ids)
        done = []
        for instance_id in instance_ids:
            try:
                await request_json(self.client, self.endpoint, "POST", self._url(f"{V1}/unload"),
                                   json={"instance_id": instance_id}, model=instance_id)
            except Unsupported:
                raise ProviderError(f"LM Studio at {self.endpoint.url} has no unload endpoint (it predates 0.4)",
                                    provider="lmstudio", retryable=False,
                                    hint=f"run `lms unload {instance_id}`, or update LM Studio") from None
            done.append(instance_id)
        return done

    # -- downloads ---------------------------------------------------------------------------------

    def _progress(self, model: str, data: Any) -> DownloadProgress:
        if not isinstance(data, dict) or data.get("status") not in (
                "downloading", "paused", "completed", "failed", "already_downloaded"):
            raise ProviderError(f"LM Studio at {self.endpoint.url} answered a download with an unknown shape: "
                                f"{str(data)[:200]}", provider="lmstudio", retryable=False)
        speed = data.get("bytes_per_second")
        return DownloadProgress(self.endpoint.name, model, data["status"], job_id=data.get("job_id"),
                                downloaded_bytes=_int(data.get("downloaded_bytes")),
                                total_bytes=_int(data.get("total_size_bytes")),
                                bytes_per_second=float(speed) if isinstance(speed, int | float) else None,
                                message=str(data.get("error") or ""))

    async def download(self, model: str, *, quantization: str | None, progress: DownloadCallback,
                       job_id: str | None = None) -> DownloadProgress:
        """Start a download (or follow job ``job_id``) and poll its status until it is done; every status
        read goes to ``progress``."""
        if job_id is None:
            body: dict[str, Any] = {"model": model, **({"quantization": quantization} if quantization else {})}
            try:
                data = await request_json(self.client, self.endpoint, "POST", self._url(f"{V1}/download"),
                                          json=body, model=model)
            except Unsupported:
                raise ProviderError(f"LM Studio at {self.endpoint.url} has no download endpoint (it predates 0.4)",
                                    provider="lmstudio", retryable=False,
                                    hint=f"run `lms get {model}`, or update LM Studio") from None
            state = self._progress(model, data)
        else:
            state = await self.download_status(job_id, model)
        progress(state)
        while not state.done:
            await asyncio.sleep(DOWNLOAD_POLL_S)
            assert state.job_id is not None
            state = await self.download_status(state.job_id, model)
            progress(state)
        return state

    async def download_status(self, job_id: str, model: str = "") -> DownloadProgress:
        data = await request_json(self.client, self.endpoint, "GET", self._url(f"{V1}/download/status/{job_id}"),
                                  model=f"download job {job_id}")
        return self._progress(model or str(data.get("model") or job_id), data)

    async def about(self) -> dict[str, Any]:
        """Version (SDK only; REST has no version endpoint) and what this server can do, from its APIs."""
        models, api = await self.list_models()
        version = await sdk.version(self.endpoint) if api == sdk.SOURCE else None
        responses: bool | None
        mcp: bool | None
        if version:  # /v1/responses came with 0.3.29, MCP through the API with 0.4.0
            responses, mcp = _version_at_least(version, (0, 3, 29)), _version_at_least(version, (0, 4, 0))
        else:
            responses = mcp = True if api == V1 else None
        return {"version": version or ("0.4 or newer (REST v1)" if api == V1 else
                                       "0.3.6 or newer (REST v0)" if api == V0 else "unknown"),
                "api": api, "sdk": api == sdk.SOURCE, "responses_api": responses,
                "embeddings": any(m.type is ModelType.EMBEDDING for m in models), "mcp": mcp}


def _version_at_least(version: str, wanted: tuple[int, ...]) -> bool:
    numbers = []
    for part in version.split(" ")[0].split("."):
        digits = "".join(c for c in part if c.isdigit())
        numbers.append(int(digits) if digits else 0)
    return tuple(numbers) >= wanted
