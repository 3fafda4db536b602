"""LM Studio's management API: list through ``/api/v1/models`` (0.4+), else ``/api/v0/models`` (0.3.6+),
else the OpenAI ``/v1/models`` ids; load and unload through ``/api/v1/models/load|unload``.

Without the v1 API (LM Studio 0.3.x) a load is a Just-In-Time load: a one-token request that carries
``ttl``; the context length cannot be chosen then, and unloading needs ``lms unload``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mindgate.errors import ConfigurationError, ProviderError
from mindgate.models._driver import Driver
from mindgate.models._http import Unsupported, request_json
from mindgate.models.records import Capabilities, LoadedInstance, ModelInfo, ModelState, ModelType

V1 = "/api/v1/models"
V0 = "/api/v0/models"
OPENAI = "/v1/models"


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class LMStudioDriver(Driver):
    def _url(self, path: str) -> str:
        return f"{self.endpoint.url}{path}"

    def _info(self, source: str, **fields: Any) -> ModelInfo:
        return ModelInfo(provider="lmstudio", endpoint=self.endpoint.name, source=f"lmstudio {source}", **fields)

    async def list_models(self) -> tuple[list[ModelInfo], str]:
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

    async def load(self, model: ModelInfo, *, context_length: int | None, ttl: float | None) -> LoadedInstance:
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
