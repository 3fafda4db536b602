"""Context management: token counting (:mod:`mindgate.context.tokens`) and fitting conversations into a
model's window (:mod:`mindgate.context.window`). See docs/context.md."""

from mindgate.context.tokens import DEFAULT_ESTIMATOR, TokenCount, TokenCounter, TokenEstimator
from mindgate.context.window import ContextWindow, Summarizer, sliding_window, token_budget, trim_memories

__all__ = ["DEFAULT_ESTIMATOR", "ContextWindow", "Summarizer", "TokenCount", "TokenCounter", "TokenEstimator",
           "sliding_window", "token_budget", "trim_memories"]
