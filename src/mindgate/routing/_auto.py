"""The ``auto`` chain: whatever answers, best first. A routing composition (a :class:`Router` over targets
built by the providers), so it lives here and providers never import routing.

Targets, in order:

0. each entry of the ``llm`` section's ``endpoints`` (``auto`` only): a name under ``providers:`` (that
   endpoint, with its model or an auto-detected one) or a server URL (what serves it -- LM Studio, Ollama or
   another OpenAI-compatible server -- is detected at first use, then its model);
1. LM Studio at ``lmstudio_base_url`` (default ``localhost:1234``) -- the configured ``model``, else the model
   :mod:`mindgate.providers.management._detect` picks (a loaded LLM, else the best downloaded one that fits);
2. Ollama at ``ollama_base_url`` (default ``localhost:11434`` or ``OLLAMA_HOST``) -- the configured ``model``
   when it has it pulled, else what the Ollama provider detects (a loaded chat model, else the largest pulled
   one that fits);
3. OpenAI, only when ``OPENAI_API_KEY`` is set;
4. the in-process llama.cpp engine (SmolLM2-135M-Instruct unless ``model_path`` says otherwise).

Servers' models are looked up lazily, at first use, not at construction. Local servers are reached with a
short connect timeout (0.4 s) and a breaker that opens on the first failure for 15 s, so a machine with
nothing running pays one refused connection per server and then answers from the in-process engine.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Literal

from mindgate.config import EndpointConfig, MindgateConfig, ProviderConfig
from mindgate.errors import ConfigurationError, MindgateError, ModelNotFoundError, NetworkError
from mindgate.providers import create_chat_model, lmstudio, ollama, provider_spec
from mindgate.providers._base import ChatModel
from mindgate.providers._lazy import LazyChatModel
from mindgate.providers.lmstudio._management import OPENAI, LMStudioDriver
from mindgate.providers.local import LlamaCppChatModel
from mindgate.providers.management._http import Unsupported, client_for, request_json
from mindgate.providers.management._records import Endpoint
from mindgate.providers.openai_compat import sampling_defaults
from mindgate.routing._placement import Placement, shared_placement
from mindgate.routing._retry import RetryPolicy
from mindgate.routing._router import Router, Target

LOCAL_CONNECT_TIMEOUT = 0.4
LOCAL_BREAKER_COOLDOWN = 15.0

def _is_embedding(model_id: str) -> bool:
    return "embed" in model_id.lower()


def _quick(config: ProviderConfig) -> ProviderConfig:
    return config.model_copy(update={"connect_timeout": min(config.connect_timeout, LOCAL_CONNECT_TIMEOUT)})


def _local_server(model: ChatModel, name: str) -> Target:
    return Target(model, name=name, breaker_failures=1, breaker_cooldown=LOCAL_BREAKER_COOLDOWN)


def lmstudio_target(config: ProviderConfig, url: str | None = None, *, name: str = "lmstudio") -> Target:
    """LM Studio at ``url`` (else the config's ``lmstudio_base_url``, else localhost:1234)."""
    url = url or config.get("lmstudio_base_url") or provider_spec("lmstudio").default_base_url
    settings = _quick(config).as_config(lmstudio.LMStudioConfig, strict=False, lmstudio_base_url=url, base_url=None)
    return _local_server(lmstudio.chat_model(settings), name)


def ollama_url() -> str:
    """``OLLAMA_HOST`` (Ollama's own variable; ``host:port`` or a URL) or ``http://localhost:11434``."""
    host = os.environ.get("OLLAMA_HOST", "").strip()
    if not host:
        return str(provider_spec("ollama").default_base_url)
    if "://" not in host:
        host = f"http://{host}"
    return host.rstrip("/").replace("://0.0.0.0", "://127.0.0.1")


def ollama_target(config: ProviderConfig, url: str | None = None, *, name: str = "ollama") -> Target:
    """Ollama at ``url`` (else the config's ``ollama_base_url``, else ``OLLAMA_HOST`` / localhost:11434), with
    the provider's own model detection: the configured ``model`` when it is pulled, else a loaded chat model,
    else the largest pulled one that fits."""
    root = (url or config.get("ollama_base_url") or ollama_url()).rstrip("/").removesuffix("/v1")
    settings = _quick(config).as_config(ollama.OllamaConfig, strict=False, model=None, ollama_base_url=root,
                                        base_url=None)
    return _local_server(ollama.chat_model(settings, prefer=config.model), name)


def url_target(config: ProviderConfig, url: str) -> Target:
    """A server at ``url`` whose kind is detected at first use (LM Studio, Ollama, or OpenAI-compatible)."""
    async def resolve() -> ChatModel:
        kind = await detect_provider(url, api_key=config.api_key, connect_timeout=config.connect_timeout)
        if kind == "lmstudio":
            target = lmstudio_target(config.model_copy(update={"model": None}), url, name=url)
        elif kind == "ollama":
            target = ollama_target(config.model_copy(update={"model": None}), url, name=url)
        else:
            return await _first_listed(config, url)
        inner = target.model
        if isinstance(inner, LazyChatModel):
            return await inner.resolved()
        return inner

    return Target(LazyChatModel("auto", url, resolve, defaults=sampling_defaults(config)), name=url)


async def detect_provider(url: str, *, api_key: str | None = None,
                          connect_timeout: float = 2.0) -> Literal["lmstudio", "ollama", "openai_compatible"]:
    """What serves ``url`` (a server root or an API base): Ollama when ``/api/tags`` lists models, LM Studio
    when its native ``/api/v1|v0/models`` answers, else an OpenAI-compatible server. Raises NetworkError when
    nothing answers."""
    root = url.rstrip("/").removesuffix("/v1")
    probe = Endpoint("probe", "ollama", root, api_key=api_key, timeout=5.0, connect_timeout=connect_timeout)
    async with client_for(probe) as client:
        try:
            tags = await request_json(client, probe, "GET", f"{root}/api/tags")
        except NetworkError:
            raise
        except (MindgateError, Unsupported):  # another server's answer: not Ollama
            tags = None
        if isinstance(tags, dict) and isinstance(tags.get("models"), list):
            return "ollama"
        lmstudio = Endpoint("probe", "lmstudio", root, api_key=api_key, timeout=5.0, connect_timeout=connect_timeout)
        try:
            _, api = await LMStudioDriver(lmstudio, client).list_models()
        except MindgateError:
            api = OPENAI
        return "lmstudio" if api != OPENAI else "openai_compatible"


async def _first_listed(config: ProviderConfig, url: str) -> ChatModel:
    from mindgate.providers import openai_compat

    base = url.rstrip("/") if url.rstrip("/").endswith("/v1") else f"{url.rstrip('/')}/v1"
    settings = config.as_config(openai_compat.OpenAICompatConfig, strict=False, base_url=base)
    client = openai_compat.client_from_config(settings, openai_compat.GENERIC, default_base_url=base)
    listed = [m for m in await client.list_models() if not _is_embedding(m)]
    if not listed:
        raise ModelNotFoundError(f"the server at {base} lists no chat model", available=[],
                                 hint="load a model on that server")
    return openai_compat.OpenAICompatChatModel(client, listed[0], defaults=sampling_defaults(config),
                                               extra_body=config.model_kwargs)


def endpoint_target(name: str, endpoint: EndpointConfig) -> Target:
    """A named endpoint (under ``providers:``); LM Studio and Ollama ones detect their model when none is set."""
    if endpoint.provider == "lmstudio":
        return lmstudio_target(endpoint.config, endpoint.config.base_url_for("lmstudio"), name=name)
    if endpoint.provider == "ollama" and not endpoint.config.model:
        return ollama_target(endpoint.config, endpoint.config.base_url_for("ollama"), name=name)
    if endpoint.provider == "auto":
        raise ConfigurationError(f"endpoint {name!r} is itself `auto`; auto's endpoints must be servers")
    return Target(create_chat_model(endpoint.provider, endpoint.config), name=name)


def openai_target(config: ProviderConfig) -> Target:
    from mindgate.providers import openai

    settings = openai.OpenAIConfig(temperature=config.temperature, max_tokens=config.max_tokens,
                                   top_p=config.top_p, timeout=config.timeout)
    return Target(openai.chat_model(settings), name="openai")


def local_target(config: ProviderConfig) -> Target:
    model = LlamaCppChatModel(config.get("model_path"), n_ctx=config.get("n_ctx") or 4096,
                              n_threads=config.get("n_threads"),
                              defaults={**sampling_defaults(config), **config.model_kwargs}, ttl=config.get("ttl"))
    return Target(model, name="local")


def auto_router(config: ProviderConfig | None = None, *, lmstudio_url: str | None = None,
                ollama_url: str | None = None, use_openai: bool | None = None, extra: Sequence[Target] = (),
                health_check_interval: float | None = None, placement: Placement | None = None,
                clock: Callable[[], float] = time.monotonic) -> Router:
    """The ``auto`` chain: ``extra`` targets first, then the defaults of the module docstring. ``use_openai``
    None means "when OPENAI_API_KEY is set"; the URLs override the config's (for tests and odd ports);
    ``placement`` admits the local engine by fit; ``clock`` is the breakers' (tests may pass their own)."""
    config = config or ProviderConfig()
    targets = [*extra, lmstudio_target(config, lmstudio_url), ollama_target(config, ollama_url)]
    if use_openai if use_openai is not None else bool(os.environ.get("OPENAI_API_KEY")):
        targets.append(openai_target(config))
    targets.append(local_target(config))
    return Router(targets, name="auto", retry=RetryPolicy(retries=1, backoff_base=0.25, backoff_max=4.0),
                  health_check_interval=health_check_interval, placement=placement, clock=clock)


def auto_from_config(config: MindgateConfig, settings: ProviderConfig | None = None) -> Router:
    """``auto`` for a whole config: ``settings`` (default: the ``llm`` section's when it is ``auto``) with its
    ``endpoints`` resolved against ``providers:``."""
    if settings is None:
        settings = config.llm.config if config.llm.provider == "auto" else ProviderConfig()
    extra = []
    for entry in settings.get("endpoints", []):
        if entry in config.providers:
            extra.append(endpoint_target(entry, config.providers[entry]))
        elif entry.startswith(("http://", "https://")):
            extra.append(url_target(settings, entry))
        else:
            raise ConfigurationError(f"auto endpoint {entry!r} is neither a name under `providers:` nor a URL",
                                     hint=f"endpoints defined: {', '.join(sorted(config.providers)) or 'none'}; "
                                          "or give a server URL such as http://100.64.1.2:1234/v1")
    return auto_router(settings, extra=extra, health_check_interval=config.routing.health_check_interval,
                       placement=shared_placement(config.resources))
