"""Discovery on any OpenAI-compatible server (vLLM, llama.cpp, ...): ``GET {base}/models``.

The OpenAI shape says nothing about state or size, so those stay unknown; llama.cpp's own server adds
``meta`` (``n_ctx_train``, ``size``), which is used when present. Loading is not part of the API.
"""

from __future__ import annotations

from typing import Any

from mindgate.providers.management._driver import Driver
from mindgate.providers.management._http import request_json
from mindgate.providers.management._records import ModelInfo


class OpenAICompatDriver(Driver):
    url_form = "api"
    async def list_models(self) -> tuple[list[ModelInfo], str]:
        data = await request_json(self.client, self.endpoint, "GET", f"{self.endpoint.url}/models")
        out = []
        for m in data.get("data") or []:
            meta: dict[str, Any] = m.get("meta") if isinstance(m.get("meta"), dict) else {}
            out.append(ModelInfo(provider=self.endpoint.provider, endpoint=self.endpoint.name, id=str(m.get("id")),
                                 max_context_length=meta.get("n_ctx_train"), size_bytes=meta.get("size"),
                                 source="openai_compatible /v1/models"))
        return out, "/v1/models"
