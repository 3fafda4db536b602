"""Auto-detection: which model to use on a server when the config names none.

Choice (:func:`choose`): a loaded model of the wanted kind first (the first one listed); else the best
downloaded one that fits: on this machine the largest whose memory estimate (default 4096-token context)
fits free RAM+VRAM; on another machine, whose memory cannot be seen from here, the smallest (the likeliest
to load). With only an OpenAI ``/v1/models`` listing (no types), an id containing ``embed`` counts as an
embedding model. Nothing suitable is a :class:`~mindgate.errors.ModelNotFoundError` (or a
:class:`~mindgate.providers.management._fit.InsufficientMemoryError` naming the smallest candidate's need) that lists
what there is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from mindgate.errors import ModelNotFoundError
from mindgate.providers.management import _fit as fit
from mindgate.providers.management._driver import driver_for, matches
from mindgate.providers.management._http import client_for, display
from mindgate.providers.management._records import OPENAI_LISTING, Endpoint, ModelInfo, ModelType
from mindgate.providers.management._resources import Resources, snapshot

Kind = Literal["chat", "embedding"]
DETECT_CONTEXT = 4096


def _kind_of(model: ModelInfo) -> Kind:
    if model.type is ModelType.EMBEDDING or (model.source.endswith(OPENAI_LISTING) and "embed" in model.id.lower()):
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
                                 hint=_get_model_hint(endpoint.provider))
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


def _get_model_hint(provider: str) -> str:
    from mindgate.providers import provider_spec  # the package imports this module's users

    return provider_spec(provider).get_model_hint or "add one to the server"


async def pick(endpoint: Endpoint, kind: Kind, *, prefer: str | None = None,
               resources: Callable[[], Resources] = snapshot) -> ModelInfo:
    """List ``endpoint``'s models: the one ``prefer`` names when the server has it (in any form its driver
    accepts) and it is of ``kind``, else the one :func:`choose` picks."""
    async with client_for(endpoint) as client:
        models, _ = await driver_for(endpoint, client).list_models()
    named = next((m for m in models if prefer and matches(m, prefer) and _kind_of(m) == kind), None)
    return named or choose(models, kind, endpoint, resources=resources)
