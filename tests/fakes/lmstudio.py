"""CONTRACT FAKE of LM Studio's HTTP server (LM Studio cannot run here). Not LM Studio: a small real HTTP
server that answers with the request/response shapes LM Studio documents, including its quirks.

Documented surface served (lmstudio.ai/docs/developer):

* native REST v1 (LM Studio 0.4+): ``GET /api/v1/models`` (``models[]`` with ``key``, ``type``,
  ``max_context_length``, ``size_bytes``, ``quantization{name, bits_per_weight}``,
  ``loaded_instances[{id, config{context_length}}]``, ``capabilities{vision, trained_for_tool_use}``),
  ``POST /api/v1/models/load`` (``model``, ``context_length``, ``ttl``, ``echo_load_config`` ->
  ``{type, instance_id, load_time_seconds, status, load_config}``), ``POST /api/v1/models/unload``
  (``instance_id``);
* native REST v0 (0.3.6+): ``GET /api/v0/models`` and ``/api/v0/models/{id}`` (``state``,
  ``max_context_length``, ``quantization``, ``arch``, ``capabilities[]``), ``/api/v0/chat/completions``,
  ``/api/v0/embeddings``;
* OpenAI-compatible: ``GET /v1/models``, ``POST /v1/chat/completions`` (JSON and SSE),
  ``POST /v1/embeddings``; with ``responses=True`` also ``POST /v1/responses`` (LM Studio >= 0.3.29; JIT
  loading as for chat, answers in OpenAI's documented shapes from :mod:`fakes.responses_api`);
* downloads (REST v1): ``POST /api/v1/models/download`` (``model``, ``quantization`` only for Hugging Face
  links) -> a job status ``{job_id, status: "downloading", total_size_bytes, started_at}`` or
  ``{status: "already_downloaded"}``; ``GET /api/v1/models/download/status/{job_id}`` -> ``{job_id, status,
  total_size_bytes, downloaded_bytes, bytes_per_second?, estimated_completion?, started_at,
  completed_at?}``. Each status read advances a job by ``1 / download_steps`` of its size; a model named in
  ``failing_downloads`` fails at its second status read. A completed download joins ``models``;
* the SDK channel (websockets on the same port), when ``sdk`` is true: see :mod:`fakes.lmstudio_sdk`.

Not documented for ``/api/v1/models/load`` but sent by mindgate and accepted here: ``ttl`` (seconds).

Quirks reproduced:

* an endpoint the server does not have answers **HTTP 200** with
  ``{"error": "Unexpected endpoint or method. (GET /path)"}`` (so ``api_versions=("v0",)`` behaves like
  LM Studio 0.3.x, and ``()`` like a server with only the OpenAI surface);
* ``/api/v1/models/load`` always loads a **new** instance: loading a loaded model again creates
  ``<key>:2`` (what ``lms load`` does), and ``/v1/models`` then lists both ids;
* with JIT loading on (default), an inference request for a model that is not loaded loads it (idle TTL
  from the request's ``ttl``, default 3600 s; auto-evict unloads earlier JIT-loaded instances); with JIT off
  and nothing loaded, HTTP 400 ``No models loaded. Please load a model in the developer page or use the
  'lms load' command.``;
* model ids carry a quantization suffix when a model has a ``variant`` (``name@q4_k_m``), and responses
  name the suffixed id even when the request used the bare key;
* ``response_format: {"type": "json_object"}`` -> HTTP 400
  ``{"error": "'response_format.type' must be 'json_schema' or 'text'"}``;
* ``/v1/embeddings`` rejects token arrays: HTTP 400
  ``{"error": "'input' field must be a string or an array of strings"}``;
* idle TTL: an instance unused for ``ttl`` seconds is gone at the next request.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ._openai import openai_error
from ._server import FakeServer, sleep
from .lmstudio_sdk import SDKChannel
from .responses_api import ResponsesSurface

NO_MODELS_LOADED = ("No models loaded. Please load a model in the developer page or use the 'lms load' "
                    "command.")
JIT_DEFAULT_TTL = 3600.0
JIT_DEFAULT_CONTEXT = 4096


@dataclass
class LMStudioModel:
    """A downloaded model. ``id`` is ``key@variant`` when ``variant`` is set (LM Studio's suffix)."""

    key: str
    type: Literal["llm", "vlm", "embedding"] = "llm"
    publisher: str = "lmstudio-community"
    architecture: str | None = "llama"
    quantization: str | None = "Q4_K_M"
    bits_per_weight: float | None = 4
    size_bytes: int = 4_683_073_952
    params_string: str | None = "7B"
    max_context_length: int = 32768
    format: str = "gguf"
    tool_use: bool = False
    reasoning: bool = False
    variant: str | None = None
    embedding_dims: int = 768
    display_name: str | None = None
    file: str | None = None

    @property
    def path(self) -> str:
        """The model file under LM Studio's models folder (``publisher/repo/file.gguf``)."""
        return self.file or f"{self.publisher}/{self.key}-GGUF/{self.key}-{(self.quantization or 'f16')}.gguf"

    @property
    def id(self) -> str:
        return f"{self.key}@{self.variant}" if self.variant else self.key

    @property
    def vision(self) -> bool:
        return self.type == "vlm"


@dataclass
class LMStudioInstance:
    """A loaded instance of a model (several may exist per model: ``key``, ``key:2``, ...)."""

    id: str
    model: LMStudioModel
    context_length: int
    ttl: float | None = None
    jit: bool = False
    last_used: float = field(default_factory=time.monotonic)
    gpu: float | str | None = None


@dataclass
class DownloadJob:
    job_id: str
    model: LMStudioModel
    status: str = "downloading"
    downloaded_bytes: int = 0
    reads: int = 0
    started_at: str = "2026-01-01T00:00:00.000Z"
    completed_at: str | None = None


def default_lmstudio_models() -> list[LMStudioModel]:
    return [
        LMStudioModel("qwen2.5-7b-instruct", tool_use=True, architecture="qwen2", params_string="7B",
                      size_bytes=4_683_073_952, max_context_length=32768),
        LMStudioModel("llama-3.2-1b-instruct", architecture="llama", params_string="1B",
                      size_bytes=807_694_464, max_context_length=131072, quantization="Q4_K_M",
                      variant="q4_k_m"),
        LMStudioModel("qwen2-vl-2b-instruct", type="vlm", architecture="qwen2_vl", params_string="2B",
                      size_bytes=1_500_000_000, max_context_length=32768, quantization="Q4_K_M"),
        LMStudioModel("text-embedding-nomic-embed-text-v1.5", type="embedding", publisher="nomic-ai",
                      architecture="nomic-bert", quantization="Q4_K_M", params_string=None,
                      size_bytes=84_106_624, max_context_length=2048, embedding_dims=768,
                      file="nomic-ai/nomic-embed-text-v1.5-GGUF/nomic-embed-text-v1.5.Q4_K_M.gguf"),
    ]


def default_lmstudio_catalog() -> list[LMStudioModel]:
    """Models the fake's "model catalog" can download (identifiers as LM Studio's catalog names them)."""
    return [LMStudioModel("ibm/granite-4-micro", publisher="ibm", architecture="granite", params_string="3B",
                          size_bytes=2_279_145_003, max_context_length=131072, tool_use=True)]


class LMStudioFake(ResponsesSurface, FakeServer):
    """LM Studio contract fake. Mutable state tests may read or change between calls:

    ``models`` (downloaded models), ``loaded`` (instances), ``requests`` (log), ``jit`` (JIT loading on/off),
    ``auto_evict``, ``load_delay`` (seconds a load takes), ``api_versions`` (native APIs served),
    ``reply`` / ``tool_calls`` (chat answer, see :class:`~fakes._openai.OpenAISurface`), ``responses``
    (serve ``POST /v1/responses`` as LM Studio >= 0.3.29 does, with JIT loading as for chat; answers in
    OpenAI's shapes, see :mod:`fakes.responses_api`; off: the route is an "Unexpected endpoint", as before
    0.3.29).
    """

    def __init__(self, models: list[LMStudioModel] | None = None, *,
                 api_versions: tuple[str, ...] = ("v1", "v0"), jit: bool = True, auto_evict: bool = True,
                 load_delay: float = 0.05, sdk: bool = False, download_steps: int = 3,
                 responses: bool = False) -> None:
        FakeServer.__init__(self)
        self._init_responses()
        self.responses = responses
        self.models: list[LMStudioModel] = list(default_lmstudio_models() if models is None else models)
        self.loaded: list[LMStudioInstance] = []
        self.api_versions = api_versions
        self.jit = jit
        self.auto_evict = auto_evict
        self.load_delay = load_delay
        self.sdk = SDKChannel(self) if sdk else None
        self.catalog: list[LMStudioModel] = default_lmstudio_catalog()
        self.jobs: dict[str, DownloadJob] = {}
        self.download_steps = download_steps
        self.failing_downloads: set[str] = set()
        self._lock = threading.RLock()

    # -- state helpers (usable from tests) ---------------------------------------------------------

    def find_model(self, name: str) -> LMStudioModel | None:
        """A downloaded model by id (``key@variant``) or bare key."""
        for model in self.models:
            if name in (model.id, model.key):
                return model
        return None

    def load_instance(self, name: str, *, context_length: int | None = None, ttl: float | None = None,
                      jit: bool = False, identifier: str | None = None,
                      gpu: float | str | None = None) -> LMStudioInstance:
        """Load a new instance like LM Studio does: never reusing one, ids ``key``, ``key:2``, ... (or the
        given ``identifier``)."""
        model = self.find_model(name)
        if model is None:
            raise KeyError(name)
        with self._lock:
            taken = {i.id for i in self.loaded}
            instance_id, n = identifier or model.key, 1
            while instance_id in taken and not identifier:
                n += 1
                instance_id = f"{model.key}:{n}"
            instance = LMStudioInstance(instance_id, model, context_length or JIT_DEFAULT_CONTEXT, ttl, jit,
                                        gpu=gpu)
            self.loaded.append(instance)
            return instance

    def instances_of(self, model: LMStudioModel) -> list[LMStudioInstance]:
        return [i for i in self.loaded if i.model is model]

    def _expire(self) -> None:
        now = time.monotonic()
        with self._lock:
            self.loaded = [i for i in self.loaded if i.ttl is None or now - i.last_used < i.ttl]

    # -- app ---------------------------------------------------------------------------------------

    def build_app(self) -> Starlette:
        routes: list[BaseRoute] = [
            Route("/v1/models", self._openai_models, methods=["GET"]),
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
            Route("/v1/embeddings", self._embeddings, methods=["POST"]),
        ]
        if self.responses:
            routes.append(Route("/v1/responses", self._responses, methods=["POST"]))
        if "v0" in self.api_versions:
            routes += [
                Route("/api/v0/models", self._v0_models, methods=["GET"]),
                Route("/api/v0/models/{model:path}", self._v0_model, methods=["GET"]),
                Route("/api/v0/chat/completions", self._chat, methods=["POST"]),
                Route("/api/v0/embeddings", self._embeddings, methods=["POST"]),
            ]
        if "v1" in self.api_versions:
            routes += [
                Route("/api/v1/models", self._v1_models, methods=["GET"]),
                Route("/api/v1/models/load", self._v1_load, methods=["POST"]),
                Route("/api/v1/models/unload", self._v1_unload, methods=["POST"]),
                Route("/api/v1/models/download", self._v1_download, methods=["POST"]),
                Route("/api/v1/models/download/status/{job_id}", self._v1_download_status, methods=["GET"]),
            ]
        if self.sdk is not None:
            routes += self.sdk.routes()
        routes.append(Route("/{path:path}", self._unexpected,
                            methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]))
        return Starlette(routes=routes)

    async def _unexpected(self, request: Request) -> Response:
        return JSONResponse({"error": f"Unexpected endpoint or method. ({request.method} {request.url.path})"})

    async def _body(self, request: Request) -> dict[str, Any] | None:
        try:
            body = await request.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    # native v1

    async def _v1_models(self, request: Request) -> Response:
        self._expire()
        out = []
        for m in self.models:
            entry: dict[str, Any] = {
                "type": "embedding" if m.type == "embedding" else "llm",
                "publisher": m.publisher, "key": m.id, "display_name": m.display_name or m.key,
                "quantization": {"name": m.quantization, "bits_per_weight": m.bits_per_weight},
                "size_bytes": m.size_bytes, "params_string": m.params_string,
                "loaded_instances": [{"id": i.id, "config": {"context_length": i.context_length}}
                                     for i in self.instances_of(m)],
                "max_context_length": m.max_context_length, "format": m.format,
            }
            if m.type != "embedding":
                entry["architecture"] = m.architecture
                caps: dict[str, Any] = {"vision": m.vision, "trained_for_tool_use": m.tool_use}
                if m.reasoning:
                    caps["reasoning"] = {"allowed_options": ["off", "on"], "default": "on"}
                entry["capabilities"] = caps
                entry["description"] = None
            out.append(entry)
        return JSONResponse({"models": out})

    async def _v1_load(self, request: Request) -> Response:
        body = await self._body(request)
        if not body or not isinstance(body.get("model"), str):
            return JSONResponse({"error": {"message": "'model' is required", "type": "invalid_request"}},
                                status_code=400)
        model = self.find_model(body["model"])
        if model is None:
            return JSONResponse({"error": {"message": f"Model not found: {body['model']}",
                                           "type": "model_not_found"}}, status_code=404)
        context_length = body.get("context_length")
        if context_length is not None and (not isinstance(context_length, int) or context_length < 1
                                           or context_length > model.max_context_length):
            return JSONResponse({"error": {"message": f"context_length must be between 1 and "
                                                      f"{model.max_context_length}",
                                           "type": "invalid_request"}}, status_code=400)
        started = time.monotonic()
        await sleep(self.load_delay)
        ttl = body.get("ttl")
        instance = self.load_instance(model.id, context_length=context_length or min(
            JIT_DEFAULT_CONTEXT, model.max_context_length), ttl=float(ttl) if ttl else None)
        out: dict[str, Any] = {"type": "embedding" if model.type == "embedding" else "llm",
                               "instance_id": instance.id,
                               "load_time_seconds": round(time.monotonic() - started, 3), "status": "loaded"}
        if body.get("echo_load_config"):
            out["load_config"] = {"context_length": instance.context_length}
        return JSONResponse(out)

    async def _v1_unload(self, request: Request) -> Response:
        body = await self._body(request) or {}
        instance_id = body.get("instance_id")
        with self._lock:
            match = [i for i in self.loaded if i.id == instance_id]
            if not match:
                return JSONResponse({"error": {"message": f"No model found with instance id {instance_id!r}",
                                               "type": "model_not_found"}}, status_code=404)
            self.loaded.remove(match[0])
        return JSONResponse({"instance_id": instance_id})

    async def _v1_download(self, request: Request) -> Response:
        body = await self._body(request)
        if not body or not isinstance(body.get("model"), str):
            return JSONResponse({"error": {"message": "'model' is required", "type": "invalid_request"}},
                                status_code=400)
        name, quantization = body["model"], body.get("quantization")
        if quantization is not None and not name.startswith("https://huggingface.co/"):
            return JSONResponse({"error": {"message": "'quantization' is only supported for Hugging Face links",
                                           "type": "invalid_request"}}, status_code=400)
        if self.find_model(name.rsplit("/", 1)[-1]) or self.find_model(name):
            return JSONResponse({"status": "already_downloaded"})
        model = next((m for m in self.catalog if m.key == name), None)
        if model is None:
            return JSONResponse({"error": {"message": f"Model not found in the catalog: {name}",
                                           "type": "model_not_found"}}, status_code=404)
        with self._lock:
            job = DownloadJob(f"job_{len(self.jobs) + 1:010x}", model)
            self.jobs[job.job_id] = job
        return JSONResponse({"job_id": job.job_id, "status": job.status, "total_size_bytes": model.size_bytes,
                             "started_at": job.started_at})

    async def _v1_download_status(self, request: Request) -> Response:
        job = self.jobs.get(request.path_params["job_id"])
        if job is None:
            return JSONResponse({"error": {"message": f"No download job {request.path_params['job_id']!r}",
                                           "type": "not_found"}}, status_code=404)
        with self._lock:
            job.reads += 1
            if job.status == "downloading":
                if job.model.key in self.failing_downloads and job.reads >= 2:
                    job.status = "failed"
                else:
                    step = -(-job.model.size_bytes // self.download_steps)
                    job.downloaded_bytes = min(job.model.size_bytes, job.downloaded_bytes + step)
                    if job.downloaded_bytes >= job.model.size_bytes:
                        job.status, job.completed_at = "completed", "2026-01-01T00:10:00.000Z"
                        self.models.append(job.model)
        out: dict[str, Any] = {"job_id": job.job_id, "status": job.status,
                               "total_size_bytes": job.model.size_bytes, "downloaded_bytes": job.downloaded_bytes,
                               "started_at": job.started_at}
        if job.status == "downloading":
            out.update(bytes_per_second=7834.71, estimated_completion="2026-01-01T00:10:00.000Z")
        if job.completed_at:
            out["completed_at"] = job.completed_at
        return JSONResponse(out)

    # native v0

    def _v0_entry(self, m: LMStudioModel) -> dict[str, Any]:
        caps = ["tool_use"] if m.tool_use else []
        return {"id": m.id, "object": "model", "type": "embeddings" if m.type == "embedding" else m.type,
                "publisher": m.publisher, "arch": m.architecture, "compatibility_type": m.format,
                "quantization": m.quantization,
                "state": "loaded" if self.instances_of(m) else "not-loaded",
                "max_context_length": m.max_context_length, "capabilities": caps}

    async def _v0_models(self, request: Request) -> Response:
        self._expire()
        return JSONResponse({"object": "list", "data": [self._v0_entry(m) for m in self.models]})

    async def _v0_model(self, request: Request) -> Response:
        self._expire()
        model = self.find_model(request.path_params["model"])
        if model is None:
            return openai_error(404, f"Model {request.path_params['model']!r} not found", code="model_not_found")
        return JSONResponse(self._v0_entry(model))

    # OpenAI-compatible

    async def _openai_models(self, request: Request) -> Response:
        self._expire()
        ids = [m.id for m in self.models] if self.jit else []
        ids += [i.id for i in self.loaded if i.id not in ids]
        return JSONResponse({"object": "list",
                             "data": [{"id": i, "object": "model", "owned_by": "organization_owner"}
                                      for i in ids]})

    async def _resolve(self, name: str | None, body: dict[str, Any],
                       kind: Literal["llm", "embedding"]) -> LMStudioInstance | Response:
        """The instance serving ``name``: a loaded one, else a JIT load, else LM Studio's errors."""
        self._expire()
        if not name:
            candidates = [i for i in self.loaded if (i.model.type == "embedding") == (kind == "embedding")]
            if not candidates:
                return openai_error(400, NO_MODELS_LOADED)
            return candidates[0]
        instance = next((i for i in self.loaded if i.id == name), None)
        model = instance.model if instance else self.find_model(name)
        if model is None:
            return openai_error(404, f'Model "{name}" not found. Please check the model identifier.',
                                code="model_not_found", param="model")
        if (model.type == "embedding") != (kind == "embedding"):
            wanted = "an embedding model" if kind == "embedding" else "an LLM"
            return openai_error(400, f'Model "{name}" is not {wanted}.', param="model")
        if instance is None:
            existing = self.instances_of(model)
            if existing:
                instance = existing[0]
            elif not self.jit:
                if not self.loaded:
                    return openai_error(400, NO_MODELS_LOADED)
                return openai_error(404, f'Model "{name}" is not loaded.', code="model_not_found",
                                    param="model")
            else:
                if self.auto_evict:
                    with self._lock:
                        self.loaded = [i for i in self.loaded if not i.jit]
                await sleep(self.load_delay)
                ttl = body.get("ttl")
                instance = self.load_instance(model.id, context_length=min(JIT_DEFAULT_CONTEXT,
                                                                           model.max_context_length),
                                              ttl=float(ttl) if ttl else JIT_DEFAULT_TTL, jit=True)
        instance.last_used = time.monotonic()
        return instance

    async def _chat(self, request: Request) -> Response:
        body = await self._body(request)
        if body is None or not isinstance(body.get("messages"), list):
            return JSONResponse({"error": "'messages' field is required"}, status_code=400)
        response_format = body.get("response_format")
        if isinstance(response_format, dict) and response_format.get("type") not in ("json_schema", "text"):
            return JSONResponse({"error": "'response_format.type' must be 'json_schema' or 'text'"},
                                status_code=400)
        instance = await self._resolve(body.get("model"), body, "llm")
        if isinstance(instance, Response):
            return instance
        return self.chat_response(body, instance.id if ":" in instance.id else instance.model.id)

    async def _responses(self, request: Request) -> Response:
        body = await self._body(request)
        if body is None:
            return JSONResponse({"error": "'input' field is required"}, status_code=400)
        instance = await self._resolve(body.get("model"), body, "llm")
        if isinstance(instance, Response):
            return instance
        return self.responses_answer(body, instance.id if ":" in instance.id else instance.model.id)

    async def _embeddings(self, request: Request) -> Response:
        body = await self._body(request) or {}
        raw = body.get("input")
        if isinstance(raw, str):
            inputs = [raw]
        elif isinstance(raw, list) and raw and all(isinstance(t, str) for t in raw):
            inputs = raw
        else:
            return JSONResponse({"error": "'input' field must be a string or an array of strings"},
                                status_code=400)
        instance = await self._resolve(body.get("model"), body, "embedding")
        if isinstance(instance, Response):
            return instance
        return self.embeddings_response(inputs, instance.model.id, instance.model.embedding_dims)
