"""Context management: token counting (:mod:`~mindgate.context._tokens`), window geometry
(:mod:`~mindgate.context._window`), the fit stage and its policies (:mod:`~mindgate.context._fit`), rolling
summaries and their cache (:mod:`~mindgate.context._summary`), and per-request policy choice
(:mod:`~mindgate.context._policy`). See docs/context.md."""

from mindgate.context._fit import POLICIES, ContextFitter, FitReport, Policy
from mindgate.context._policy import CONTEXT_HEADER, ContextService, requested_policy
from mindgate.context._summary import StepCache, Summarizer
from mindgate.context._tokens import DEFAULT_ESTIMATOR, TokenCount, TokenCounter, TokenEstimator
from mindgate.context._window import sliding_window, token_budget, trim_memories

__all__ = ["CONTEXT_HEADER", "DEFAULT_ESTIMATOR", "POLICIES", "ContextFitter", "ContextService", "FitReport",
           "Policy", "StepCache", "Summarizer", "TokenCount", "TokenCounter", "TokenEstimator", "requested_policy",
           "sliding_window", "token_budget", "trim_memories"]
