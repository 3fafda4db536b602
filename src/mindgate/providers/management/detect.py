"""Auto-detection: which model to use on a server when the config names none, and what kind of server sits
at a URL.

Choice (:func:`choose`): a loaded model of the wanted kind first (the first one listed); else the best
downloaded one that fits: on this machine the largest whose memory estimate (default 4096-token context)
fits free RAM+VRAM; on another machine, whose memory cannot be seen from here, the smallest (the likeliest
to load). With only an OpenAI ``/v1/models`` listing (no types), an id containing ``embed`` counts as an
embedding model. Nothing suitable is a :class:`~mindgate.errors.ModelNotFoundError` (or a
:class:`~mindgate.providers.management.fit.InsufficientMemoryError` naming the smallest candidate's need) that lists
what there is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from mindgate.errors import MindgateError, ModelNotFoundError, NetworkError
from mindgate.providers.lmstudio._management import OPENAI, LMStudioDriver
from mindgate.providers.management import fit
from mindgate.providers.management.driver import driver_for
from mindgate.providers.management.http import Unsupported, client_for, display, request_json
from mindgate.providers.management.records import Endpoint, ModelInfo, ModelType
from mindgate.providers.management.resources import Resources, snapshot

Kind = Literal["chat", "embedding"]
DETECT_CONTEXT = 4096
START_HINT = {"lmstudio": "download one with `mindgate models get MODEL`, or load one with `lms load MODEL`",
              "ollama": "pull one with `mindgate models get MODEL` (or `ollama pull MODEL`)"}


def _kind_of(model: ModelInfo) -> Kind:
    if model.type is ModelType.EMBEDDING or (model.source.endswith(OPENAI) and "embed" in model.id.lower()):
        return "embedding"
    return "chat"


def choose(models: list[ModelInfo], kind: Kind, endpoint: Endpoint, *,
           resources: Callable[[], Resources] = snapshot) -> ModelInfo:
    """The model to use for ``kind`` on ``endpoint`` (see the module docstring)."""
    candidates = [m for m in models if _kind_of(m) == kind]
    where = f"{display(endpoint.provider)} at {endpoint.url}"
    if not candidates:
        raise ModelNotFoundError(f"{where} has no {'embedding' if kind == 'embedding' else 'chat'} model",
                                 available=[m.id for m in models], provider=endpoint.provider,
                                 hint=START_HINT.get(endpoint.provider, "add one to the server"))
    loaded = [m for m in candidates if m.loaded]
    if loaded:
        return loaded[0]
    sized = [m for m in candidates if m.size_bytes]
    if not sized:
        return candidates[0]
    estimates = [(m, fit.estimate(fit.ModelShape(m.size_bytes or 0, m.kv_elements_per_token, m.max_context_length),
                                  min(DETECT_CONTEXT, m.max_context_length or DETECT_CONTEXT))) for m in sized]
    if not endpoint.on_this_machine:
        return min(estimates, key=lambda pair: pair[1].total_bytes)[0]
    free = resources().free_bytes(gpu=endpoint.provider != "local")
    fitting = [(m, e) for m, e in estimates if e.total_bytes <= free]
    if fitting:
        return max(fitting, key=lambda pair: pair[1].total_bytes)[0]
    smallest, need = min(estimates, key=lambda pair: pair[1].total_bytes)
    raise fit.refusal(f"{endpoint.name}:{smallest.id} (the smallest {kind} model there)", need, free)


async def pick(endpoint: Endpoint, kind: Kind, *, resources: Callable[[], Resources] = snapshot) -> ModelInfo:
    """List ``endpoint``'s models and :func:`choose` one."""
    async with client_for(endpoint) as client:
        models, _ = await driver_for(endpoint, client).list_models()
    return choose(models, kind, endpoint, resources=resources)


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
