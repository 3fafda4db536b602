"""The request pipeline every conversational request goes through (gateway routes, ``mindgate chat``):
scope -> route -> recall memories -> fit context -> call the model -> remember -> usage.
See :mod:`mindgate.pipeline._core`."""

from mindgate.pipeline._core import ChatRequest, ChatResult, ChatStream, Counters, ModelResolver, Pipeline, Prepared
from mindgate.pipeline._fitting import FitContext
from mindgate.pipeline._recall import INJECT_HEADER
from mindgate.pipeline._remember import MemoryWriter, new_turn
from mindgate.pipeline._scope import Acting, ChatScope, RequestedScope, ScopeArgs, resolve_scope, scope_args
from mindgate.pipeline._stages import ContextFitter, DirectCall, Fitted, KeepContext, ModelCall

__all__ = ["INJECT_HEADER", "Acting", "ChatRequest", "ChatResult", "ChatScope", "ChatStream", "ContextFitter",
           "Counters", "DirectCall", "FitContext", "Fitted", "KeepContext", "MemoryWriter", "ModelCall",
           "ModelResolver", "Pipeline", "Prepared", "RequestedScope", "ScopeArgs", "new_turn", "resolve_scope",
           "scope_args"]
