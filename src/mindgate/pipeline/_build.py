"""Building a :class:`~mindgate.pipeline._core.Pipeline` from the config (the gateway and ``mindgate chat``
share this, so both serve the same models with the same memory)."""

from __future__ import annotations

from mindgate.config import MindgateConfig
from mindgate.context._policy import ContextService
from mindgate.memory._memory import AsyncMemory
from mindgate.memory.stores import create_store
from mindgate.memory.stores._base import MemoryStore
from mindgate.pipeline._core import CounterSink, Pipeline
from mindgate.pipeline._fitting import FitContext
from mindgate.pipeline._remember import MemoryWriter
from mindgate.pipeline._stages import ModelCall
from mindgate.providers._base import ChatModel, Embedder
from mindgate.routing._chains import chat_model_for, resolve_route_target
from mindgate.routing._targets import ChatTargets


def _shares_llm(config: MindgateConfig) -> bool:
    """Whether the config's ``llm`` section is what the default chain serves."""
    return config.routing.default == "auto" and "auto" not in config.routing.chains


def memory_model_name(config: MindgateConfig, targets: ChatTargets) -> str:
    """The name memory extraction's model goes by for API-key bindings: the default chain's when memory
    shares it, else the ``llm`` section's model (or its provider's name when it names no model)."""
    if _shares_llm(config):
        return targets.default_name
    return config.llm.config.model or config.llm.provider


def memory_for(config: MindgateConfig, embedder: Embedder, targets: ChatTargets) -> AsyncMemory:
    """The configured memory over ``embedder``. Its LLM (for ``add(infer=True)``) is the default chat model
    when the config's ``llm`` section is what that chain serves, so the model is not loaded twice."""
    shares_llm = _shares_llm(config)
    default = targets.default

    def llm() -> ChatModel:
        return default if shares_llm else chat_model_for(config.llm, config)

    memory = AsyncMemory(embedder=embedder, store=create_store(config.vector_store), llm=llm,
                         settings=config.memory, expected_dims=config.vector_store.config.embedding_model_dims)
    memory.configure_reranker(config)
    return memory


def context_for(config: MindgateConfig, memory: AsyncMemory | None, store: MemoryStore | None) -> ContextService:
    """The context service of ``config.context``: its step cache in ``store`` (in process only when None),
    the ``memory`` policy over ``memory``, and the configured summariser (resolved at first use)."""
    spec = config.context.summarizer

    def summarizer() -> ChatModel:
        assert spec is not None
        return resolve_route_target(spec, config)

    return ContextService(config.context, store=store, memory=memory, summarizer=summarizer if spec else None)


def pipeline_for(config: MindgateConfig, targets: ChatTargets, memory: AsyncMemory | None, *,
                 counters: CounterSink | None = None, caller: ModelCall | None = None,
                 store: MemoryStore | None = None) -> Pipeline:
    """The pipeline over ``targets``; memory takes part when ``memory`` is given (a background
    :class:`MemoryWriter` counting into ``counters.memory_writes``); ``caller`` replaces the direct model
    call (the gateway's MCP tool loop); conversations are fitted by ``config.context``, with the summary cache
    in ``store`` (default: ``memory``'s store)."""
    writer = MemoryWriter(memory, counters.memory_writes if counters is not None else None) \
        if memory is not None else None
    context = context_for(config, memory, store or (memory.store if memory is not None else None))
    return Pipeline(targets, memory=memory, settings=config.memory, writer=writer, counters=counters,
                    caller=caller, fitter=FitContext(context))
