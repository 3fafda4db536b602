"""Ollama's management API: ``/api/tags`` (what is pulled), ``/api/ps`` (what is loaded, with
``size_vram``, ``expires_at`` and the allocated ``context_length``) and ``/api/show`` (context length,
layer and head counts, capabilities); load with an empty request carrying ``keep_alive`` (and
``options.num_ctx``), unload with ``keep_alive: 0``.

``/api/show`` answers are cached per model digest (a digest's metadata never changes). A model removed
between ``/api/tags`` and ``/api/show`` is left out; any other ``/api/show`` failure fails the listing
(the endpoint then shows the error) rather than listing models without their type and shape.

Downloads stream ``POST /api/pull`` (one NDJSON status per line; per-layer ``digest`` / ``total`` /
``completed`` bytes are summed into one progress). Pulling again resumes a partial download: Ollama keeps
the layers it has.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from mindgate.errors import ModelNotFoundError
from mindgate.providers.management._driver import Driver, Shared
from mindgate.providers.management._fit import ModelShape
from mindgate.providers.management._gguf_info import EMBEDDING_ARCHITECTURES
from mindgate.providers.management._http import request_json, stream_json_lines
from mindgate.providers.management._records import (
    NO_OPTIONS,
    Capabilities,
    DownloadCallback,
    DownloadProgress,
    Endpoint,
    LoadedInstance,
    LoadOptions,
    ModelInfo,
    ModelState,
    ModelType,
)

_SHOW_CONCURRENCY = 4


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def full_name(name: str) -> str:
    """Ollama's default tag: ``llama3.2`` means ``llama3.2:latest``."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


class OllamaDriver(Driver):
    loads_on_demand = True

    def __init__(self, endpoint: Endpoint, client: httpx.AsyncClient, shared: Shared | None = None) -> None:
        super().__init__(endpoint, client, shared)
        self.show_cache = self.shared.cache("ollama")

    @classmethod
    def names(cls, model: ModelInfo, requested: str) -> bool:
        return model.id == full_name(requested)

    def _url(self, path: str) -> str:
        return f"{self.endpoint.url}{path}"

    async def _show(self, name: str, digest: str | None, gate: asyncio.Semaphore) -> dict[str, Any]:
        key = f"{name}@{digest}"
        if key not in self.show_cache:
            async with gate:
                self.show_cache[key] = await request_json(self.client, self.endpoint, "POST",
                                                          self._url("/api/show"), json={"model": name}, model=name)
        return self.show_cache[key]

    async def list_models(self) -> tuple[list[ModelInfo], str]:
        tags, ps = await asyncio.gather(
            request_json(self.client, self.endpoint, "GET", self._url("/api/tags")),
            request_json(self.client, self.endpoint, "GET", self._url("/api/ps")))
        running = {str(r.get("name") or r.get("model")): r for r in ps.get("models") or []}
        pulled = tags.get("models") or []
        gate = asyncio.Semaphore(_SHOW_CONCURRENCY)
        shows = await asyncio.gather(*(self._show(str(m.get("name")), m.get("digest"), gate) for m in pulled),
                                     return_exceptions=True)
        out = []
        for m, show in zip(pulled, shows, strict=True):
            if isinstance(show, ModelNotFoundError):
                continue  # removed since /api/tags listed it
            if isinstance(show, BaseException):
                raise show
            out.append(self._info(m, show, running.get(str(m.get("name")))))
        return out, "/api/tags + /api/ps + /api/show"

    def _info(self, tag: dict[str, Any], show: dict[str, Any], run: dict[str, Any] | None) -> ModelInfo:
        details = tag.get("details") or {}
        info = show.get("model_info") or {}
        arch = str(info.get("general.architecture") or details.get("family") or "")
        caps = show.get("capabilities")
        caps = [str(c) for c in caps] if isinstance(caps, list) else None
        if caps is not None:
            kind = (ModelType.EMBEDDING if "embedding" in caps and "completion" not in caps
                    else ModelType.VLM if "vision" in caps else ModelType.LLM)
        else:
            kind = ModelType.EMBEDDING if arch in EMBEDDING_ARCHITECTURES else ModelType.LLM
        size = _int(tag.get("size"))
        shape = ModelShape.from_dims(size or 0, n_layers=_int(info.get(f"{arch}.block_count")),
                                     n_heads=_int(info.get(f"{arch}.attention.head_count")),
                                     n_kv_heads=_int(info.get(f"{arch}.attention.head_count_kv")),
                                     embedding_length=_int(info.get(f"{arch}.embedding_length")))
        instances: tuple[LoadedInstance, ...] = ()
        if run is not None:
            instances = (LoadedInstance(str(tag.get("name")), _int(run.get("context_length")),
                                        run.get("expires_at"), _int(run.get("size_vram"))),)
        return ModelInfo(
            provider="ollama", endpoint=self.endpoint.name, id=str(tag.get("name")), type=kind,
            state=ModelState.LOADED if run is not None else ModelState.NOT_LOADED,
            max_context_length=_int(info.get(f"{arch}.context_length")),
            loaded_context_length=instances[0].context_length if instances else None,
            size_bytes=size, quantization=details.get("quantization_level"),
            capabilities=Capabilities(tool_use="tools" in caps if caps is not None else None,
                                      vision="vision" in caps if caps is not None else None,
                                      reasoning="thinking" in caps if caps is not None else None),
            source="ollama /api/tags + /api/show" + (" + /api/ps" if run is not None else ""),
            architecture=arch or None, instances=instances, kv_elements_per_token=shape.kv_elements_per_token)

    async def load(self, model: ModelInfo, *, context_length: int | None, ttl: float | None,
                   options: LoadOptions = NO_OPTIONS,
                   progress: Callable[[float], None] | None = None) -> LoadedInstance:
        self._no_options(options)
        body: dict[str, Any] = {"model": model.id, "keep_alive": max(1, round(ttl)) if ttl else -1}
        if context_length:
            body["options"] = {"num_ctx": context_length}
        path = "/api/embed" if model.type is ModelType.EMBEDDING else "/api/generate"
        if path == "/api/embed":
            body["input"] = []
        else:
            body["stream"] = False
        await request_json(self.client, self.endpoint, "POST", self._url(path), json=body, model=model.id,
                           timeout=max(self.endpoint.timeout, 600.0))
        return LoadedInstance(model.id, context_length, ttl=ttl)

    async def unload(self, model: ModelInfo, instance_ids: Sequence[str]) -> list[str]:
        if model.type is ModelType.EMBEDDING:
            body: dict[str, Any] = {"model": model.id, "input": [], "keep_alive": 0}
            path = "/api/embed"
        else:
            body, path = {"model": model.id, "keep_alive": 0, "stream": False}, "/api/generate"
        await request_json(self.client, self.endpoint, "POST", self._url(path), json=body, model=model.id)
        return [model.id]

    async def download(self, model: str, *, quantization: str | None, progress: DownloadCallback,
                       job_id: str | None = None) -> DownloadProgress:
        name = f"{model}:{quantization.lower()}" if quantization and ":" not in model else model
        layers: dict[str, tuple[int, int]] = {}
        state = DownloadProgress(self.endpoint.name, name, "downloading", message="pulling manifest")
        progress(state)
        async for event in stream_json_lines(self.client, self.endpoint, "POST", self._url("/api/pull"),
                                             json={"model": name, "stream": True}, model=name):
            status = str(event.get("status") or "") if isinstance(event, dict) else ""
            digest = event.get("digest") if isinstance(event, dict) else None
            if digest and isinstance(event.get("total"), int):
                layers[str(digest)] = (int(event.get("completed") or 0), int(event["total"]))
            done = status == "success"
            state = DownloadProgress(self.endpoint.name, name, "completed" if done else "downloading",
                                     downloaded_bytes=sum(c for c, _ in layers.values()) if layers else None,
                                     total_bytes=sum(t for _, t in layers.values()) if layers else None,
                                     message=status)
            progress(state)
        if not state.done:
            state = DownloadProgress(self.endpoint.name, name, "failed", downloaded_bytes=state.downloaded_bytes,
                                     total_bytes=state.total_bytes, message="the pull stream ended before success")
            progress(state)
        return state

    async def about(self) -> dict[str, Any]:
        data = await request_json(self.client, self.endpoint, "GET", self._url("/api/version"))
        version = str(data.get("version")) if isinstance(data, dict) else "unknown"
        models, _ = await self.list_models()
        numbers = tuple(int(p) if p.isdigit() else 0 for p in version.split("-")[0].split("."))
        return {"version": version, "api": "/api/version", "sdk": False,
                "responses_api": numbers >= (0, 13, 3),  # /v1/responses (stateless) came with 0.13.3
                "embeddings": any(m.type is ModelType.EMBEDDING for m in models),
                "mcp": False}  # Ollama's API runs no MCP servers
