"""The in-process engine as a managed endpoint: its models are GGUF files (``model_path``: a file or a
folder of ``.gguf`` files; by default the shipped SmolLM2), described from their headers, loaded into the
process-wide :class:`~mindgate.providers.local._pool.LocalModelPool`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from mindgate._assets import DEFAULT_CHAT_MODEL, default_gguf_path
from mindgate.errors import ConfigurationError
from mindgate.providers.local._pool import LocalModelPool, default_pool
from mindgate.providers.management._driver import Driver, Shared
from mindgate.providers.management._gguf_info import read_gguf_info
from mindgate.providers.management._records import (
    NO_OPTIONS,
    Capabilities,
    Endpoint,
    LoadedInstance,
    LoadOptions,
    ModelInfo,
    ModelState,
    ModelType,
)


def model_files(endpoint: Endpoint) -> list[tuple[str, Path]]:
    """``(model id, file)`` for each GGUF model the endpoint offers. Without ``model_path`` that is the shipped
    SmolLM2; when its package is missing, the ConfigurationError saying how to install it propagates (the
    catalog shows the endpoint with that error, never as an empty list)."""
    if not endpoint.model_path:
        return [(DEFAULT_CHAT_MODEL, default_gguf_path())]
    root = Path(endpoint.model_path).expanduser()
    if root.is_dir():
        return [(f.stem, f) for f in sorted(root.glob("*.gguf"))]
    if root.is_file():
        return [(root.stem, root)]
    raise ConfigurationError(f"local model_path {root} does not exist",
                             hint="set model_path to a .gguf file or a folder of them")


def _expiry(last_used: float, ttl: float | None) -> str | None:
    """When an idle instance will be unloaded, as an ISO time (the pool keeps monotonic times)."""
    if ttl is None:
        return None
    left = ttl - (time.monotonic() - last_used)
    return dt.datetime.fromtimestamp(time.time() + left, dt.UTC).isoformat()


class LocalDriver(Driver):
    url_form = "none"

    def __init__(self, endpoint: Endpoint, client: httpx.AsyncClient, shared: Shared | None = None) -> None:
        super().__init__(endpoint, client, shared)
        self.pool: LocalModelPool = self.shared.pool or default_pool()

    def _describe(self, model_id: str, path: Path) -> ModelInfo:
        info = read_gguf_info(path)
        resolved = path.resolve()
        instances = tuple(LoadedInstance(i.id, i.n_ctx, _expiry(i.last_used, i.ttl), ttl=i.ttl)
                          for i in self.pool.instances() if i.path == resolved)
        return ModelInfo(
            provider="local", endpoint=self.endpoint.name, id=model_id,
            type=ModelType.EMBEDDING if info.is_embedding else ModelType.LLM,
            state=ModelState.LOADED if instances else ModelState.NOT_LOADED,
            max_context_length=info.context_length,
            loaded_context_length=max(i.context_length or 0 for i in instances) if instances else None,
            size_bytes=info.size_bytes, quantization=info.quantization, capabilities=Capabilities(vision=False),
            source="local GGUF metadata", architecture=info.architecture, instances=instances, path=str(path),
            kv_elements_per_token=info.kv_bytes_per_token)

    async def list_models(self) -> tuple[list[ModelInfo], str]:
        files = await asyncio.to_thread(model_files, self.endpoint)
        return [await asyncio.to_thread(self._describe, i, f) for i, f in files], "GGUF metadata"

    async def load(self, model: ModelInfo, *, context_length: int | None, ttl: float | None,
                   options: LoadOptions = NO_OPTIONS,
                   progress: Callable[[float], None] | None = None) -> LoadedInstance:
        self._no_options(options)
        n_ctx = context_length or self.endpoint.n_ctx or min(model.max_context_length or 4096, 4096)
        instance = await self.pool.aload(model.path, n_ctx=n_ctx, ttl=ttl)
        return LoadedInstance(instance.id, instance.n_ctx, ttl=instance.ttl)

    async def unload(self, model: ModelInfo, instance_ids: Sequence[str]) -> list[str]:
        resolved = Path(str(model.path)).resolve()
        done = []
        for instance in self.pool.instances():
            if instance.path == resolved and (not instance_ids or instance.id in instance_ids):
                done += [i.id for i in await self.pool.aunload(instance.path, n_ctx=instance.n_ctx)]
        return done
