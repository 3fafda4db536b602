"""Which context policy a request gets, and the service that builds each request's fit stage.

Precedence, first that applies: the request (``X-Mindgate-Context`` header, or the body's
``"mindgate": {"context": ...}``, the body winning), then ``context.models[<requested model>]``, then
``context.routes[<chain or semantic route>]``, then ``context.policy``. ``context.models`` also applies per
target (by target name or model id) unless the request chose. ``auto`` means ``summarize`` when a summariser
is available, else ``truncate``.

The summariser is ``context.summarizer`` (a chain name or ``endpoint[:model]``) when set, else the cheapest
local target of the chain that serves the request: the in-process engine when the chain has it, else its
first target on this machine (a loopback URL). A chain with no local target has no default summariser.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, cast, get_args
from urllib.parse import urlsplit

from mindgate.config import ContextPolicyName, ContextSettings
from mindgate.context._fit import ContextFitter, Policy
from mindgate.context._summary import StepCache, Summarizer
from mindgate.context._tokens import TokenCounter
from mindgate.errors import InvalidRequestError
from mindgate.providers._base import ChatModel

if TYPE_CHECKING:
    from mindgate.memory._memory import AsyncMemory
    from mindgate.memory.stores._base import MemoryStore

CONTEXT_HEADER = "X-Mindgate-Context"
"""The request header that chooses the policy, and the response header that says what the fit did."""
_CHOICES = get_args(ContextPolicyName)
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def requested_policy(header: str | None, field: str | None) -> ContextPolicyName | None:
    """The policy a request asks for: the body's ``mindgate.context`` (``field``), else the header; None when
    it asks for none. An unknown name is a 400 naming the valid ones."""
    value = field if field is not None else (header.strip().lower() if header and header.strip() else None)
    if value is None:
        return None
    if value not in _CHOICES:
        raise InvalidRequestError(f"unknown context policy {value!r}", hint=f"use one of: {', '.join(_CHOICES)}")
    return cast(ContextPolicyName, value)


def _is_local(model: ChatModel) -> bool:
    if model.provider == "local":
        return True
    url = getattr(model, "url", None) or getattr(getattr(model, "client", None), "base_url", None)
    return isinstance(url, str) and urlsplit(url).hostname in _LOOPBACK


def cheapest_local(serving: ChatModel) -> tuple[ChatModel, int | None] | None:
    """The default summariser for a request served by ``serving`` (see the module docstring), with the
    context window its target is configured with (None: the model's own)."""
    targets = getattr(serving, "targets", None)
    candidates: list[tuple[ChatModel, int | None]] = (
        [(t.model, t.context_window) for t in targets] if targets else [(serving, serving.context_length)])
    in_process = [c for c in candidates if c[0].provider == "local"]
    if in_process:
        return in_process[0]
    return next((c for c in candidates if _is_local(c[0])), None)


class ContextService:
    """Builds the :class:`ContextFitter` of each request from ``settings`` and the request's choice.

    ``store`` keeps the step cache (summaries, memory cuts) across requests and restarts; ``memory`` serves
    the ``memory`` policy; ``summarizer``, when given, is the summariser model for every request (a callable
    is called once, at first use), else the default of the module docstring applies per serving chain."""

    def __init__(self, settings: ContextSettings | None = None, *, store: MemoryStore | None = None,
                 memory: AsyncMemory | None = None,
                 summarizer: ChatModel | Callable[[], ChatModel] | None = None,
                 counter: TokenCounter | None = None) -> None:
        self.settings = settings or ContextSettings()
        self.cache = StepCache(store)
        self.memory = memory
        self.counter = counter or TokenCounter()
        self._configured = summarizer
        self._summarizers: dict[int, Summarizer | None] = {}

    def summarizer_for(self, serving: ChatModel | None) -> Summarizer | None:
        """The summariser for requests served by ``serving`` (one per model, so its call count adds up)."""
        if self._configured is not None:
            key = 0
            if key not in self._summarizers:
                configured = self._configured
                model = configured if isinstance(configured, ChatModel) else configured()
                self._summarizers[key] = Summarizer(model, self.settings.summary_tokens)
            return self._summarizers[key]
        if serving is None:
            return None
        key = id(serving)
        if key not in self._summarizers:
            local = cheapest_local(serving)
            self._summarizers[key] = None if local is None else Summarizer(
                local[0], self.settings.summary_tokens, context_length=local[1])
        return self._summarizers[key]

    def summarizer_calls(self) -> int:
        """Summariser calls made so far, all models together."""
        return sum(s.calls for s in self._summarizers.values() if s is not None)

    def policy(self, *, requested: ContextPolicyName | None = None, route: str | None = None,
               model: str | None = None, summarizer: Summarizer | None = None) -> Policy:
        """The request-wide policy (see the module docstring): ``auto`` resolved, and ``summarize`` without a
        summariser is ``truncate``."""
        chosen: ContextPolicyName = (requested or (self.settings.models.get(model) if model else None)
                                     or (self.settings.routes.get(route) if route else None) or self.settings.policy)
        if chosen == "auto" or (chosen == "summarize" and summarizer is None):
            return "summarize" if summarizer is not None else "truncate"
        return chosen

    def fitter(self, *, requested: ContextPolicyName | None = None, route: str | None = None,
               model: str | None = None, serving: ChatModel | None = None, scope: Mapping[str, str] | None = None,
               partition: str | None = None) -> ContextFitter:
        """The fit stage of one request: ``requested`` from :func:`requested_policy`, ``route`` the chain or
        semantic route that serves it, ``model`` the request's model name, ``serving`` the chat model it
        resolved to, ``scope`` its memory scope (Memory API keyword arguments) when it has one, ``partition``
        whose conversation it is (default: the scope's owner, else ``anonymous``)."""
        summarizer = self.summarizer_for(serving)
        policy = self.policy(requested=requested, route=route, model=model, summarizer=summarizer)
        per_model: dict[str, Policy] = {}
        if requested is None:
            for name, value in self.settings.models.items():
                per_model[name] = self.policy(requested=value, summarizer=summarizer)
        if partition is None:
            owner = next(((k, v) for k, v in (scope or {}).items() if v), None)
            partition = f"{owner[0].removesuffix('_id')}:{owner[1]}" if owner else "anonymous"
        return ContextFitter(policy, per_model, reserve=self.settings.reserve, counter=self.counter,
                             summarizer=summarizer, cache=self.cache, memory=self.memory,
                             scope=dict(scope) if scope else None, partition=partition,
                             keep_ratio=self.settings.keep_ratio, block_tokens=self.settings.summary_tokens,
                             recall_limit=self.settings.recall_limit)
