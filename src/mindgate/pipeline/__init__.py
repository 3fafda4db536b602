"""The request pipeline every conversational request goes through (gateway routes, ``mindgate chat``):
scope -> route -> recall memories -> fit context -> call the model -> remember -> usage.
See :mod:`mindgate.pipeline.core`."""

from mindgate.pipeline.core import ChatRequest, ChatResult, ChatStream, Counters, ModelResolver, Pipeline, Prepared
from mindgate.pipeline.fitting import FitContext
from mindgate.pipeline.recall import INJECT_HEADER
from mindgate.pipeline.remember import MemoryWriter, new_turn
from mindgate.pipeline.scope import Acting, ChatScope, RequestedScope, ScopeArgs, resolve_scope, scope_args
from mindgate.pipeline.stages import ContextFitter, DirectCall, Fitted, KeepContext, ModelCall

__all__ = ["INJECT_HEADER", "Acting", "ChatRequest", "ChatResult", "ChatScope", "ChatStream", "ContextFitter",
           "Counters", "DirectCall", "FitContext", "Fitted", "KeepContext", "MemoryWriter", "ModelCall",
           "ModelResolver", "Pipeline", "Prepared", "RequestedScope", "ScopeArgs", "new_turn", "resolve_scope",
           "scope_args"]
