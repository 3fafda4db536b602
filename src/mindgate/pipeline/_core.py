"""The request pipeline: the stages every conversational request goes through, whoever sent it.

    resolve scope -> route -> recall memories -> fit context -> call the model -> write the new turn
    -> usage / metrics / logs

1. **scope** (:meth:`Pipeline.scope`, :mod:`~mindgate.pipeline._scope`): whose memories, checked against
   the caller's credentials. Callers run it first, before admission control, so a forbidden user costs
   nothing; its result goes into :attr:`ChatRequest.scope`.
2. **route**: the request's model name picks a chat model (a chain, a catalog model, a semantic route;
   :class:`ModelResolver`, implemented by :class:`~mindgate.routing._targets.ChatTargets`). It runs before
   recall so an unknown model costs no memory search, and before fitting so the fit stage knows the
   chain's context windows; the chain picks its serving target at call time.
3. **recall** (:mod:`~mindgate.pipeline._recall`): memories join the prompt; a failed search degrades to
   an answer without memories (logged, counted), never a failed request.
4. **fit** (:class:`~mindgate.pipeline._stages.ContextFitter`; the pipeline's is
   :class:`~mindgate.pipeline._fitting.FitContext`): the conversation is fitted to the window of the target
   that serves it (truncate, summarize, memory, or a 400 under ``error``); for a chain this happens per
   target at call time, through the chain bound to the request's fit.
5. **call** (:class:`~mindgate.pipeline._stages.ModelCall`): the extension point for a server-side tool loop.
6. **remember** (:mod:`~mindgate.pipeline._remember`): the new turn goes to the background writer after
   the answer (non-streamed: :meth:`ChatResult.remember`, which the caller runs once the answer is out;
   streamed: when the stream ends normally; an interrupted stream is not remembered).
7. **usage**: the upstream's token counts, or the estimate of :mod:`mindgate.context._tokens` when it
   reports none, go to the request's ``on_usage`` callback (rate limits, metrics) exactly once.

:meth:`Pipeline.prepare` runs stages 2-4; :meth:`Pipeline.complete` and :meth:`Pipeline.stream` run 5-7.
The call records where the chain sent the request and why (:mod:`mindgate.routing._trace`) in
``ChatResult.route`` / ``ChatStream.route`` (the gateway's ``X-Mindgate-Route`` header), and what the fit
did in ``ChatResult.context`` / ``ChatStream.context`` (``X-Mindgate-Context``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from mindgate.config import MemorySettings
from mindgate.context._fit import FitReport
from mindgate.context._tokens import DEFAULT_ESTIMATOR, TokenEstimator
from mindgate.errors import MindgateError
from mindgate.pipeline._events import count_upstream_error
from mindgate.pipeline._recall import inject_memories
from mindgate.pipeline._remember import LLMFor, MemoryWriter, new_turn
from mindgate.pipeline._scope import Acting, ChatScope, RequestedScope, resolve_scope
from mindgate.pipeline._stages import ContextFitter, DirectCall, KeepContext, ModelCall, no_report
from mindgate.pipeline._text import TextRequest, TextStream, complete_text, stream_text
from mindgate.providers._base import ChatChunk, ChatModel, ChatResponse, Message, Usage
from mindgate.routing._trace import tracing

log = logging.getLogger("mindgate.pipeline")

UsageSink = Callable[[str, int, int], None]
"""``on_usage(label, prompt_tokens, completion_tokens)``; ``label`` is a bounded name for metrics."""


class ModelResolver(Protocol):
    """Stage 2: which chat model serves a model name."""

    async def resolve(self, name: str, messages: Sequence[Message]) -> ChatModel: ...

    def label(self, name: str) -> str:
        """A bounded metrics label for ``name``."""
        ...


@dataclass
class Counters:
    """The pipeline's counters (the gateway passes its Prometheus ``Metrics``, which has the same two)."""

    upstream_errors: Counter[str] = field(default_factory=Counter)
    memory_writes: Counter[str] = field(default_factory=Counter)


class CounterSink(Protocol):
    upstream_errors: Counter[str]
    memory_writes: Counter[str]


@dataclass
class ChatRequest:
    """One conversational request, whatever API it came in on.

    ``messages`` are OpenAI chat messages as the client sent them (memories are added to a copy);
    ``options`` are :class:`~mindgate.providers._base.ChatModel` options, validated by the caller;
    ``stage_options`` holds per-request options for pluggable stages, keyed by stage (``"fit"``,
    ``"tools"``), so an API route passes what its request asked for without the pipeline knowing routes;
    ``"recall": False`` skips memory injection (the model gets a ``search_memory`` tool instead).
    """

    model: str
    messages: list[Message]
    options: dict[str, Any] = field(default_factory=dict)
    scope: ChatScope | None = None
    request_id: str | None = None
    stage_options: dict[str, Any] = field(default_factory=dict)
    on_usage: UsageSink | None = None
    remember: bool = True  # False: the turn is not written to memory (the key may not use the memory model)
    memory_llm: LLMFor | None = None  # the model the memory write uses, wrapped for the calling key


@dataclass
class Prepared:
    """A request after routing, recall and fitting: what will be sent to which model; ``fit_report()`` says
    what the fit stage did (for a chain, known once the call has picked a target)."""

    request: ChatRequest
    model: ChatModel
    messages: list[Message]
    memories: list[str]
    label: str
    fit_report: Callable[[], FitReport | None] = no_report

    def context_header(self) -> str | None:
        """The ``X-Mindgate-Context`` header value (None when nothing was fitted)."""
        report = self.fit_report()
        return report.header() if report is not None else None


@dataclass
class ChatResult:
    """A finished answer. ``usage`` is the upstream's or, when it reported none, estimated; ``route`` says
    which target answered and why (None when no router was involved); ``context`` what the fit stage did
    (the ``X-Mindgate-Context`` header)."""

    response: ChatResponse
    usage: Usage
    memories: list[str]
    estimated: bool
    _remember: Callable[[], object] | None = None
    route: str | None = None
    context: str | None = None

    def remember(self) -> None:
        """Queue the new turn for the memory writer (run it once the answer has reached the client)."""
        if self._remember is not None:
            self._remember()
            self._remember = None


class Pipeline:
    """The stages above over one set of components; one instance serves every request concurrently.

    ``memory`` and ``writer`` are None when memory is off (then :meth:`scope` never returns a scope).
    """

    def __init__(self, targets: ModelResolver, *, memory: Any = None, settings: MemorySettings | None = None,
                 writer: MemoryWriter | None = None, fitter: ContextFitter | None = None,
                 caller: ModelCall | None = None, counters: CounterSink | None = None,
                 estimator: TokenEstimator = DEFAULT_ESTIMATOR) -> None:
        self.targets = targets
        self.memory = memory
        self.settings = settings or MemorySettings()
        self.writer = writer
        self.fitter: ContextFitter = fitter or KeepContext()
        self.caller: ModelCall = caller or DirectCall()
        self.counters: CounterSink = counters or Counters()
        self.estimator = estimator

    @property
    def remembers(self) -> bool:
        """Whether requests that name a user use memory."""
        return self.memory is not None and self.writer is not None

    def scope(self, requested: RequestedScope, acting: Acting | None) -> ChatScope | None:
        """Stage 1 (see :func:`~mindgate.pipeline._scope.resolve_scope`)."""
        return resolve_scope(requested, acting, enabled=self.remembers)

    async def prepare(self, request: ChatRequest) -> Prepared:
        """Stages 2-4: route, recall, fit."""
        model = await self.targets.resolve(request.model, request.messages)
        messages: list[Message] = request.messages
        memories: list[str] = []
        if request.scope is not None and self.remembers and request.stage_options.get("recall", True):
            messages, memories = await self._recall(messages, request.scope)
        fitted = await self.fitter.fit(messages, model, request)
        return Prepared(request, fitted.model, fitted.messages, memories, self.targets.label(request.model),
                        fitted.report)

    async def _recall(self, messages: list[Message], scope: ChatScope) -> tuple[list[Message], list[str]]:
        try:
            return await inject_memories(self.memory, messages, scope, self.settings)
        except MindgateError as exc:
            self.counters.memory_writes["search_failed"] += 1
            log.warning("memory search for user %s failed, answering without memories: %s", scope.user_id, exc)
            return messages, []

    async def complete(self, prepared: Prepared) -> ChatResult:
        """Stages 5-7 for one finished answer."""
        request = prepared.request
        try:
            with tracing() as trace:
                response = await self.caller.complete(prepared.model, prepared.messages, request.options, request)
        except MindgateError as exc:
            self.counters.upstream_errors[exc.code or type(exc).__name__] += 1
            raise
        usage, estimated = self.usage(prepared, response.usage, response.content or "")
        if request.on_usage is not None:
            request.on_usage(prepared.label, usage.prompt_tokens, usage.completion_tokens)
        remember = None
        if request.scope is not None and self.writer is not None and request.remember:
            writer, turn, scope = self.writer, new_turn(request.messages, response.content), request.scope

            def remember() -> None:
                writer.submit(turn, scope, request.request_id, llm_for=request.memory_llm)
        return ChatResult(response, usage, prepared.memories, estimated, remember, trace.header(),
                          prepared.context_header())

    async def stream(self, prepared: Prepared) -> ChatStream:
        """Stages 5-7 for a streamed answer. The first chunk is awaited here, so an upstream failure
        before any output raises from this call (an ordinary error response); later failures raise from
        the iteration."""
        stream = ChatStream(self, prepared)
        await stream.start()
        return stream

    async def complete_text(self, request: TextRequest) -> dict[str, Any]:
        """Raw text completion (route -> call -> usage; see :mod:`mindgate.pipeline._text`)."""
        return await complete_text(self, request)

    async def stream_text(self, request: TextRequest) -> TextStream:
        """Raw text completion, streamed (the first chunk awaited here, like :meth:`stream`)."""
        return await stream_text(self, request)

    def usage(self, prepared: Prepared, reported: Usage | None, text: str) -> tuple[Usage, bool]:
        """The upstream's usage, or (when it reported none) the estimate; and whether it is estimated."""
        if reported is not None and (reported.prompt_tokens or reported.completion_tokens):
            return reported, False
        report = prepared.fit_report()  # the fitted prompt's count, when the fit stage made one
        prompt = report.tokens if report is not None and report.tokens else \
            self.estimator.prompt_tokens(prepared.messages)
        return Usage(prompt, self.estimator.text_tokens(text) if text else 0), True


class ChatStream:
    """An answer's chunks, with the usage, memory-write and close handling of stages 6-7.

    Iterate it for :class:`~mindgate.providers._base.ChatChunk`; :meth:`aclose` (always call it, e.g. in a
    ``finally``) closes the upstream and reports usage once. After a normal end ``finished`` is True,
    ``text`` is the answer and ``usage`` is set."""

    def __init__(self, pipeline: Pipeline, prepared: Prepared) -> None:
        self.pipeline = pipeline
        self.prepared = prepared
        request = prepared.request
        self._chunks = aiter(pipeline.caller.stream(prepared.model, prepared.messages, request.options, request))
        self._first: ChatChunk | None = None
        self._parts: list[str] = []
        self._reported: Usage | None = None
        self.last: ChatChunk | None = None
        self.usage: Usage | None = None
        self.estimated = False
        self.finished = False
        self._closed = False
        self.route: str | None = None
        self.context: str | None = None

    @property
    def memories(self) -> list[str]:
        return self.prepared.memories

    @property
    def text(self) -> str:
        return "".join(self._parts)

    async def start(self) -> None:
        try:
            with tracing() as trace:
                self._first = await anext(self._chunks)
            self.route = trace.header()
            self.context = self.prepared.context_header()
        except StopAsyncIteration:
            self._first = None
            self._end()
        except MindgateError as exc:
            count_upstream_error(self.pipeline, exc)
            await self.aclose()
            raise

    def __aiter__(self) -> AsyncIterator[ChatChunk]:
        return self

    async def __anext__(self) -> ChatChunk:
        chunk = self._first
        if chunk is not None:
            self._first = None
        elif self.finished or self._closed:
            raise StopAsyncIteration
        else:
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                self._end()
                raise
            except Exception as exc:
                count_upstream_error(self.pipeline, exc)
                raise
        if chunk.content:
            self._parts.append(chunk.content)
        if chunk.usage is not None:
            self._reported = chunk.usage
        self.last = chunk
        return chunk

    @property
    def upstream_usage(self) -> bool:
        """Whether the upstream reported usage in the stream (so far)."""
        return self._reported is not None

    def _end(self) -> None:
        self.finished = True
        request = self.prepared.request
        writer = self.pipeline.writer
        if request.scope is not None and writer is not None and request.remember:
            writer.submit(new_turn(request.messages, self.text), request.scope, request.request_id,
                          llm_for=request.memory_llm)

    async def aclose(self) -> None:
        """Close the upstream stream and report usage (idempotent)."""
        if self._closed:
            return
        self._closed = True
        aclose = getattr(self._chunks, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except Exception as exc:
                log.debug("closing an upstream stream failed: %s", exc)
        self.usage, self.estimated = self.pipeline.usage(self.prepared, self._reported, self.text)
        request = self.prepared.request
        if request.on_usage is not None:
            request.on_usage(self.prepared.label, self.usage.prompt_tokens, self.usage.completion_tokens)
