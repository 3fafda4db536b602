"""CONTRACT FAKE of Ollama's HTTP server (Ollama cannot run here). Not Ollama: a small real HTTP server that
answers with the shapes Ollama documents in its API reference (docs/api.md), including its quirks.

Native API served: ``GET /api/version``, ``GET /api/tags`` (``models[{name, model, size, digest,
details{format, family, parameter_size, quantization_level}}]``), ``GET /api/ps`` (``size_vram``,
``expires_at``, ``context_length``), ``POST /api/show`` (``details``, ``model_info{"<arch>.context_length",
"<arch>.block_count", ...}``, ``capabilities[]``), ``POST /api/generate`` and ``POST /api/chat`` (load with an
empty prompt / empty messages, unload with ``keep_alive: 0``, ``done_reason: "load"|"unload"``; NDJSON
streaming), ``POST /api/embed``, ``POST /api/pull`` (NDJSON stream: ``{"status": "pulling manifest"}``, per layer
``{"status": "pulling <digest>", "digest", "total", "completed"}`` lines, ``verifying sha256 digest``,
``writing manifest``, ``success``; ``stream: false`` answers ``{"status": "success"}`` only; a model not in
the registry streams ``{"error": "pull model manifest: file does not exist"}``).
OpenAI-compatible: ``GET /v1/models``, ``POST /v1/chat/completions``
(JSON and SSE), ``POST /v1/embeddings``.

Quirks reproduced: an unknown model is HTTP 404 ``{"error": "model 'x' not found"}`` on the native API and
``{"error": {"message": "model \\"x\\" not found, try pulling it first", ...}}`` on ``/v1``; a name without a
tag means ``:latest``; ``keep_alive`` takes seconds or a Go duration (``"5m"``, ``"30s"``), a negative value
keeps the model loaded forever, ``0`` unloads; the default keep-alive is 5 minutes; asking for a different
``num_ctx`` reloads the runner (still one per model); expiry is applied lazily at the next request.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ._openai import OpenAISurface, count_tokens, hash_embedding, openai_error
from ._server import FakeServer, sleep

DEFAULT_KEEP_ALIVE = 300.0
DEFAULT_NUM_CTX = 4096
_DURATION = re.compile(r"(-?\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass
class OllamaModel:
    """A pulled model. ``capabilities`` as ``/api/show`` reports them (completion, tools, vision,
    thinking, embedding)."""

    name: str
    family: str = "llama"
    parameter_size: str = "3.2B"
    quantization_level: str = "Q4_K_M"
    size: int = 2_019_393_189
    context_length: int = 131072
    block_count: int = 28
    embedding_length: int = 3072
    head_count: int = 24
    head_count_kv: int = 8
    capabilities: tuple[str, ...] = ("completion", "tools")
    digest: str = "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72"

    @property
    def is_embedding(self) -> bool:
        return "embedding" in self.capabilities


@dataclass
class OllamaRunner:
    """A loaded model. ``expires`` is a ``time.monotonic()`` deadline, None for forever."""

    model: OllamaModel
    context_length: int
    expires: float | None
    size_vram: int = 0
    loaded_at: float = field(default_factory=time.monotonic)


def default_ollama_models() -> list[OllamaModel]:
    return [
        OllamaModel("llama3.2:latest"),
        OllamaModel("qwen2.5:7b", family="qwen2", parameter_size="7.6B", size=4_683_087_332,
                    context_length=32768, block_count=28, embedding_length=3584, head_count=28,
                    head_count_kv=4, capabilities=("completion", "tools")),
        OllamaModel("llava:7b", family="llama", parameter_size="7B", quantization_level="Q4_0",
                    size=4_733_363_377, context_length=32768, block_count=32, embedding_length=4096,
                    head_count=32, head_count_kv=32, capabilities=("completion", "vision")),
        OllamaModel("nomic-embed-text:latest", family="nomic-bert", parameter_size="137M",
                    quantization_level="F16", size=274_302_450, context_length=2048, block_count=12,
                    embedding_length=768, head_count=12, head_count_kv=12, capabilities=("embedding",)),
    ]


def parse_keep_alive(value: Any) -> float | None:
    """Seconds to stay loaded (None = forever), from Ollama's ``keep_alive`` forms."""
    if value is None:
        return DEFAULT_KEEP_ALIVE
    if isinstance(value, bool):
        raise ValueError("keep_alive must be a number or a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text.lstrip("+"):
                raise ValueError(f"time: invalid duration {text!r}") from None
            seconds = sum(float(n) * _UNIT[u] for n, u in parts)
    return None if seconds < 0 else seconds


class OllamaFake(OpenAISurface, FakeServer):
    """Ollama contract fake. Mutable state tests may read or change: ``models``, ``loaded`` (runners by
    model name), ``requests`` (log), ``load_delay``, ``reply`` / ``tool_calls``."""

    version = "0.6.5"

    def __init__(self, models: list[OllamaModel] | None = None, *, load_delay: float = 0.05) -> None:
        FakeServer.__init__(self)
        self._init_surface()
        self.models: list[OllamaModel] = list(default_ollama_models() if models is None else models)
        self.registry: list[OllamaModel] = [OllamaModel("qwen3:0.6b", family="qwen3", parameter_size="751M",
                                                        size=522_653_767, context_length=40960)]
        self.pull_chunks = 3
        self.loaded: dict[str, OllamaRunner] = {}
        self.load_delay = load_delay
        self._lock = threading.RLock()

    def find_model(self, name: str) -> OllamaModel | None:
        full = name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"
        return next((m for m in self.models if m.name == full), None)

    def _expire(self) -> None:
        now = time.monotonic()
        with self._lock:
            for name in [n for n, r in self.loaded.items() if r.expires is not None and r.expires <= now]:
                del self.loaded[name]

    async def _load(self, model: OllamaModel, body: dict[str, Any]) -> OllamaRunner | None:
        """Apply ``keep_alive`` and ``options.num_ctx``; None when the request unloaded the model."""
        keep = parse_keep_alive(body.get("keep_alive"))
        num_ctx = (body.get("options") or {}).get("num_ctx") or DEFAULT_NUM_CTX
        if keep == 0:
            with self._lock:
                self.loaded.pop(model.name, None)
            return None
        runner = self.loaded.get(model.name)
        if runner is None or runner.context_length != num_ctx:
            await sleep(self.load_delay)
            runner = OllamaRunner(model, num_ctx, None, size_vram=0)
            with self._lock:
                self.loaded[model.name] = runner
        runner.expires = None if keep is None else time.monotonic() + keep
        return runner

    def build_app(self) -> Starlette:
        return Starlette(routes=[
            Route("/", lambda r: Response("Ollama is running"), methods=["GET", "HEAD"]),
            Route("/api/version", lambda r: JSONResponse({"version": self.version}), methods=["GET"]),
            Route("/api/tags", self._tags, methods=["GET"]),
            Route("/api/ps", self._ps, methods=["GET"]),
            Route("/api/show", self._show, methods=["POST"]),
            Route("/api/generate", self._generate, methods=["POST"]),
            Route("/api/chat", self._generate, methods=["POST"]),
            Route("/api/embed", self._embed, methods=["POST"]),
            Route("/api/pull", self._pull, methods=["POST"]),
            Route("/v1/models", self._openai_models, methods=["GET"]),
            Route("/v1/chat/completions", self._openai_chat, methods=["POST"]),
            Route("/v1/embeddings", self._openai_embeddings, methods=["POST"]),
        ])

    @staticmethod
    def _not_found(name: str) -> JSONResponse:
        return JSONResponse({"error": f"model '{name}' not found"}, status_code=404)

    @staticmethod
    def _details(m: OllamaModel) -> dict[str, Any]:
        return {"parent_model": "", "format": "gguf", "family": m.family, "families": [m.family],
                "parameter_size": m.parameter_size, "quantization_level": m.quantization_level}

    @staticmethod
    def _timestamp(offset: float = 0.0) -> str:
        return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset)).isoformat()

    async def _body(self, request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            body = None
        return body if isinstance(body, dict) else {}

    async def _tags(self, request: Request) -> Response:
        return JSONResponse({"models": [
            {"name": m.name, "model": m.name, "modified_at": "2025-01-10T09:14:11.123456789Z", "size": m.size,
             "digest": m.digest, "details": self._details(m)} for m in self.models]})

    async def _ps(self, request: Request) -> Response:
        self._expire()
        now = time.monotonic()
        out = []
        for r in self.loaded.values():
            expires = self._timestamp(r.expires - now) if r.expires is not None else "2318-06-01T00:00:00Z"
            out.append({"name": r.model.name, "model": r.model.name, "size": r.model.size,
                        "digest": r.model.digest, "details": self._details(r.model), "expires_at": expires,
                        "size_vram": r.size_vram, "context_length": r.context_length})
        return JSONResponse({"models": out})

    async def _show(self, request: Request) -> Response:
        body = await self._body(request)
        name = str(body.get("model") or body.get("name") or "")
        m = self.find_model(name)
        if m is None:
            return self._not_found(name)
        arch = m.family
        info = {"general.architecture": arch, "general.parameter_count": 3_212_749_888,
                f"{arch}.context_length": m.context_length, f"{arch}.block_count": m.block_count,
                f"{arch}.embedding_length": m.embedding_length, f"{arch}.attention.head_count": m.head_count,
                f"{arch}.attention.head_count_kv": m.head_count_kv}
        return JSONResponse({"modelfile": f"FROM {m.name}\n", "parameters": "", "template": "{{ .Prompt }}",
                             "details": self._details(m), "model_info": info,
                             "capabilities": list(m.capabilities), "modified_at": "2025-01-10T09:14:11Z"})

    async def _generate(self, request: Request) -> Response:
        body = await self._body(request)
        name = str(body.get("model") or "")
        m = self.find_model(name)
        if m is None:
            return self._not_found(name)
        try:
            unloading = parse_keep_alive(body.get("keep_alive")) == 0
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        if m.is_embedding and not unloading:
            return JSONResponse({"error": f'"{m.name}" does not support generate'}, status_code=400)
        runner = await self._load(m, body)
        chat = request.url.path == "/api/chat"
        messages = body.get("messages") or []
        prompt = body.get("prompt") or ""
        base = {"model": m.name, "created_at": self._timestamp()}
        if (chat and not messages) or (not chat and not prompt):
            reason = "load" if runner is not None else "unload"
            empty = {"message": {"role": "assistant", "content": ""}} if chat else {"response": ""}
            return JSONResponse({**base, **empty, "done": True, "done_reason": reason})
        text = self.answer_for({"messages": messages if chat else [{"role": "user", "content": prompt}]})
        stats = {"total_duration": 1_000_000, "load_duration": 1_000, "prompt_eval_count": count_tokens(
            json.dumps(messages) if chat else prompt), "eval_count": count_tokens(text)}

        def piece(content: str) -> dict[str, Any]:
            return {"message": {"role": "assistant", "content": content}} if chat else {"response": content}

        if body.get("stream") is False:
            return JSONResponse({**base, **piece(text), "done": True, "done_reason": "stop", **stats})

        def lines() -> Iterator[str]:
            for i, word in enumerate(text.split(" ")):
                yield json.dumps({**base, **piece(word if i == 0 else " " + word), "done": False}) + "\n"
            yield json.dumps({**base, **piece(""), "done": True, "done_reason": "stop", **stats}) + "\n"

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    async def _embed(self, request: Request) -> Response:
        body = await self._body(request)
        name = str(body.get("model") or "")
        m = self.find_model(name)
        if m is None:
            return self._not_found(name)
        raw = body.get("input")
        inputs = [raw] if isinstance(raw, str) else raw
        if not isinstance(inputs, list) or not all(isinstance(t, str) for t in inputs):
            return JSONResponse({"error": "invalid input type"}, status_code=400)
        await self._load(m, body)
        return JSONResponse({"model": m.name, "embeddings": [hash_embedding(t, m.embedding_length)
                                                             for t in inputs],
                             "total_duration": 1_000_000, "load_duration": 1_000,
                             "prompt_eval_count": sum(count_tokens(t) for t in inputs)})

    async def _pull(self, request: Request) -> Response:
        body = await self._body(request)
        name = str(body.get("model") or body.get("name") or "")
        full = name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"
        source = next((m for m in self.registry if m.name == full), None) or self.find_model(name)
        if body.get("stream") is False:
            if source is None:
                return JSONResponse({"error": "pull model manifest: file does not exist"}, status_code=500)
            self._install(source)
            return JSONResponse({"status": "success"})

        def lines() -> Iterator[str]:
            yield json.dumps({"status": "pulling manifest"}) + "\n"
            if source is None:
                yield json.dumps({"error": "pull model manifest: file does not exist"}) + "\n"
                return
            layers = [(source.digest, source.size - 1_000), ("f4d24e9138dd", 1_000)]
            for digest, total in layers:
                for i in range(1, self.pull_chunks + 1):
                    yield json.dumps({"status": f"pulling {digest[:12]}", "digest": f"sha256:{digest}",
                                      "total": total, "completed": total * i // self.pull_chunks}) + "\n"
            yield json.dumps({"status": "verifying sha256 digest"}) + "\n"
            yield json.dumps({"status": "writing manifest"}) + "\n"
            self._install(source)
            yield json.dumps({"status": "success"}) + "\n"

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    def _install(self, model: OllamaModel) -> None:
        with self._lock:
            if self.find_model(model.name) is None:
                self.models.append(model)

    async def _openai_models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [
            {"id": m.name, "object": "model", "created": 1736500451, "owned_by": "library"}
            for m in self.models]})

    def _openai_not_found(self, name: str) -> JSONResponse:
        return openai_error(404, f'model "{name}" not found, try pulling it first', type_="api_error")

    async def _openai_chat(self, request: Request) -> Response:
        body = await self._body(request)
        name = str(body.get("model") or "")
        m = self.find_model(name)
        if m is None:
            return self._openai_not_found(name)
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return openai_error(400, "[] is too short - 'messages'")
        await self._load(m, body)
        return self.chat_response(body, name)

    async def _openai_embeddings(self, request: Request) -> Response:
        body = await self._body(request)
        name = str(body.get("model") or "")
        m = self.find_model(name)
        if m is None:
            return self._openai_not_found(name)
        raw = body.get("input")
        inputs = [raw] if isinstance(raw, str) else raw
        if not isinstance(inputs, list) or not inputs or not all(isinstance(t, str) for t in inputs):
            return openai_error(400, "invalid input type")
        await self._load(m, body)
        return self.embeddings_response(inputs, name, m.embedding_length)
