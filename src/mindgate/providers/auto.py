"""The ``auto`` chat provider: whatever answers on this machine, best first.

A :class:`~mindgate.routing.router.Router` over:

1. LM Studio on ``localhost:1234`` -- the configured ``model``, else the first non-embedding id its
   ``/v1/models`` lists;
2. Ollama on ``localhost:11434`` (or ``OLLAMA_HOST``) -- the configured ``model`` when it has it, else the
   first non-embedding model ``/api/tags`` lists (chat through :mod:`mindgate.providers.ollama`);
3. OpenAI, only when ``OPENAI_API_KEY`` is set;
4. the in-process llama.cpp engine (SmolLM2-135M-Instruct unless ``model_path`` says otherwise).

The local servers' models are looked up lazily, at first use, not at construction. They are reached with
a short connect timeout (0.4 s) and a breaker that opens on the first failure for 15 s, so a machine with
nothing running pays one refused connection per server and then answers from the in-process engine.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from mindgate.config import ProviderConfig
from mindgate.errors import ModelNotFoundError
from mindgate.providers import lmstudio
from mindgate.providers.base import ChatChunk, ChatModel, ChatResponse, Message
from mindgate.providers.local import LlamaCppChatModel
from mindgate.providers.openai_compat import OpenAICompatClient, sampling_defaults
from mindgate.routing.placement import Placement
from mindgate.routing.retry import RetryPolicy
from mindgate.routing.router import Router, Target

LMSTUDIO_URL = "http://localhost:1234/v1"
OLLAMA_URL = "http://localhost:11434"
LOCAL_CONNECT_TIMEOUT = 0.4
LOCAL_BREAKER_COOLDOWN = 15.0

_EMBEDDING_FAMILIES = {"bert", "nomic-bert"}


class LazyChatModel(ChatModel):
    """A chat model found at first use by ``resolve`` (e.g. "the first model the server lists").

    A failed resolution raises (and is tried again at the next use), so a router counts it against the
    target like any failed call. Until resolved, ``model`` reads ``"(first listed)"``.
    """

    def __init__(self, provider: str, url: str, resolve: Callable[[], Awaitable[ChatModel]], *,
                 model: str | None = None, defaults: dict[str, Any] | None = None) -> None:
        super().__init__(model or "(first listed)", defaults=defaults)
        self.provider = provider
        self.url = url
        self._resolve = resolve
        self._resolved: ChatModel | None = None

    @property
    def endpoint_key(self) -> str:
        return self._resolved.endpoint_key if self._resolved else f"{self.provider}:{self.url}:{self.model}"

    @property
    def context_length(self) -> int | None:
        return self._resolved.context_length if self._resolved else None

    async def resolved(self) -> ChatModel:
        if self._resolved is None:
            self._resolved = await self._resolve()
            self.model = self._resolved.model
        return self._resolved

    async def acomplete(self, messages: Sequence[Message], **options: Any) -> ChatResponse:
        return await (await self.resolved()).acomplete(messages, **options)

    async def astream(self, messages: Sequence[Message], **options: Any) -> AsyncIterator[ChatChunk]:
        async for chunk in (await self.resolved()).astream(messages, **options):
            yield chunk

    async def acount_tokens(self, messages: Sequence[Message]) -> int | None:
        return await (await self.resolved()).acount_tokens(messages)

    async def ahealth_check(self) -> None:
        """Raises when the server is down: resolves the model, or lists the server's models again."""
        if self._resolved is None:
            await self.resolved()
            return
        client = getattr(self._resolved, "client", None)
        if client is not None and hasattr(client, "list_models"):
            await client.list_models()

    async def aclose(self) -> None:
        if self._resolved is not None:
            await self._resolved.aclose()


def _is_embedding(model_id: str) -> bool:
    return "embed" in model_id.lower()


def lmstudio_target(config: ProviderConfig, url: str = LMSTUDIO_URL) -> Target:
    async def resolve() -> ChatModel:
        client = OpenAICompatClient(url, profile=lmstudio.PROFILE,
                                    api_key=config.api_key or os.environ.get("LM_API_TOKEN"),
                                    timeout=config.timeout,
                                    connect_timeout=min(config.connect_timeout, LOCAL_CONNECT_TIMEOUT))
        model = config.model
        if not model:
            # not client.list_models(): its per-request timeout would replace the short connect timeout
            data = await client.request_json("GET", "/models")
            items = data.get("data", []) if isinstance(data, dict) else []
            listed = [str(m["id"]) for m in items if isinstance(m, dict) and "id" in m]
            chat = [m for m in listed if not _is_embedding(m)]
            if not chat:
                raise ModelNotFoundError(f"LM Studio at {url} lists no chat model", available=listed,
                                         provider="lmstudio", hint="download or load one, e.g. `lms load MODEL`")
            model = chat[0]
        extra = {**({"ttl": config.ttl} if config.ttl else {}), **config.model_kwargs}
        return lmstudio.LMStudioChatModel(client, model, defaults=sampling_defaults(config), extra_body=extra)

    return Target(LazyChatModel("lmstudio", url, resolve, model=config.model, defaults=sampling_defaults(config)),
                  name="lmstudio", breaker_failures=1, breaker_cooldown=LOCAL_BREAKER_COOLDOWN)


def ollama_url() -> str:
    """``OLLAMA_HOST`` (Ollama's own variable; ``host:port`` or a URL) or ``http://localhost:11434``."""
    host = os.environ.get("OLLAMA_HOST", "").strip()
    if not host:
        return OLLAMA_URL
    if "://" not in host:
        host = f"http://{host}"
    return host.rstrip("/").replace("://0.0.0.0", "://127.0.0.1")


def ollama_target(config: ProviderConfig, url: str | None = None) -> Target:
    root = (url or ollama_url()).removesuffix("/v1")
    connect_timeout = min(config.connect_timeout, LOCAL_CONNECT_TIMEOUT)

    async def resolve() -> ChatModel:
        from mindgate.providers import ollama

        client = ollama.OllamaClient(root, profile=ollama.PROFILE, timeout=config.timeout,
                                     connect_timeout=connect_timeout)
        try:
            tags = await client.request_json("GET", "/api/tags")
        finally:
            await client.aclose()
        entries = tags.get("models", []) if isinstance(tags, dict) else []
        names = [str(m.get("name") or m.get("model")) for m in entries
                 if isinstance(m, dict) and not _is_embedding(str(m.get("name", "")))
                 and (m.get("details") or {}).get("family") not in _EMBEDDING_FAMILIES]
        if not names:
            raise ModelNotFoundError(f"Ollama at {root} has no chat model pulled", available=[], provider="ollama",
                                     hint="pull one with `ollama pull llama3.2`")
        wanted = config.model
        model = next((n for n in names if wanted and n in (wanted, f"{wanted}:latest")), names[0])
        settings = config.model_copy(update={"model": model, "ollama_base_url": root,
                                             "connect_timeout": connect_timeout})
        return ollama.chat_model(settings)

    return Target(LazyChatModel("ollama", root, resolve, defaults=sampling_defaults(config)), name="ollama",
                  breaker_failures=1, breaker_cooldown=LOCAL_BREAKER_COOLDOWN)


def openai_target(config: ProviderConfig) -> Target:
    from mindgate.providers import openai

    settings = ProviderConfig(temperature=config.temperature, max_tokens=config.max_tokens, top_p=config.top_p,
                              timeout=config.timeout)
    return Target(openai.chat_model(settings), name="openai")


def local_target(config: ProviderConfig) -> Target:
    model = LlamaCppChatModel(config.model_path, n_ctx=config.n_ctx or 4096, n_threads=config.n_threads,
                              defaults={**sampling_defaults(config), **config.model_kwargs}, ttl=config.ttl)
    return Target(model, name="local")


def auto_router(config: ProviderConfig | None = None, *, lmstudio_url: str = LMSTUDIO_URL,
                ollama_url: str | None = None, use_openai: bool | None = None,
                health_check_interval: float | None = None, placement: Placement | None = None) -> Router:
    """The ``auto`` chain. ``use_openai`` None means "when OPENAI_API_KEY is set"; the URLs exist for
    machines whose servers listen elsewhere (and for tests); ``placement`` admits the local engine by fit."""
    config = config or ProviderConfig()
    targets = [lmstudio_target(config, lmstudio_url), ollama_target(config, ollama_url)]
    if use_openai if use_openai is not None else bool(os.environ.get("OPENAI_API_KEY")):
        targets.append(openai_target(config))
    targets.append(local_target(config))
    return Router(targets, name="auto", retry=RetryPolicy(retries=1, backoff_base=0.25, backoff_max=4.0),
                  health_check_interval=health_check_interval, placement=placement)


def chat_model(config: ProviderConfig) -> Router:
    return auto_router(config)
