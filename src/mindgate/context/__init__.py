"""Context management: token counting (:mod:`~mindgate.context.tokens`), window geometry
(:mod:`~mindgate.context.window`), the fit stage and its policies (:mod:`~mindgate.context.fit`), rolling
summaries and their cache (:mod:`~mindgate.context.summary`), and per-request policy choice
(:mod:`~mindgate.context.policy`). See docs/context.md."""

from mindgate.context.fit import POLICIES, ContextFitter, FitReport, Policy
from mindgate.context.policy import CONTEXT_HEADER, ContextService, requested_policy
from mindgate.context.summary import StepCache, Summarizer
from mindgate.context.tokens import DEFAULT_ESTIMATOR, TokenCount, TokenCounter, TokenEstimator
from mindgate.context.window import sliding_window, token_budget, trim_memories

__all__ = ["CONTEXT_HEADER", "DEFAULT_ESTIMATOR", "POLICIES", "ContextFitter", "ContextService", "FitReport",
           "Policy", "StepCache", "Summarizer", "TokenCount", "TokenCounter", "TokenEstimator", "requested_policy",
           "sliding_window", "token_budget", "trim_memories"]
