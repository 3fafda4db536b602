"""Stage 3, fit context: every conversational request is fitted to the window of the target that serves it.

:class:`FitContext` builds the request's :class:`~mindgate.context._fit.ContextFitter` from the
:class:`~mindgate.context._policy.ContextService` (policy from the request's ``stage_options["fit"]``, the
config per model and per route, and the default), then:

* for a chain (a :class:`~mindgate.routing._router.Router`), returns the chain bound to that fitter: the
  router fits the request to each target it considers, so a fallback target with a larger or smaller window
  gets the request fitted to its own window, and every call of a tool loop is fitted too;
* for a single model, fits once to the model's own window.

The messages come back unchanged in the first case; what was done is known after the call
(``Fitted.report``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mindgate.context._policy import ContextService
from mindgate.pipeline._stages import Fitted
from mindgate.providers._base import ChatModel, Message
from mindgate.routing._router import Router

if TYPE_CHECKING:
    from mindgate.pipeline._core import ChatRequest


class FitContext:
    """The pipeline's fit stage over ``service`` (see the module docstring)."""

    def __init__(self, service: ContextService) -> None:
        self.service = service

    async def fit(self, messages: list[Message], model: ChatModel, request: ChatRequest) -> Fitted:
        scope = request.scope
        ids = None if scope is None else {k: v for k, v in (("user_id", scope.user_id), ("agent_id", scope.agent_id),
                                                            ("run_id", scope.run_id)) if v}
        fitter = self.service.fitter(requested=request.stage_options.get("fit"), route=model.model,
                                     model=request.model, serving=model, scope=ids)
        if isinstance(model, Router):
            return Fitted(messages, model.bind(fitter), lambda: fitter.report)
        max_tokens = request.options.get("max_tokens") or model.defaults.get("max_tokens") or 1
        fitted = await fitter.fit(messages, window=model.context_length, max_tokens=int(max_tokens), model=model,
                                  target=model.model, model_id=model.model)
        return Fitted(fitted, model, lambda: fitter.report)
