"""Raw text completion through the pipeline (``/v1/completions``): route -> call -> usage. No memory and no
context fitting: a raw prompt is not a conversation. Served where the routed target has raw completion
(:attr:`~mindgate.providers._base.ChatModel.text_completions`), else a 400 naming the target."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mindgate.errors import MindgateError
from mindgate.pipeline._events import UpstreamEvents, count_upstream_error
from mindgate.providers._base import ChatModel, Usage

if TYPE_CHECKING:
    from mindgate.pipeline._core import Pipeline, UsageSink


@dataclass
class TextRequest:
    """Prompts to complete (several only without streaming; each gets its own choices)."""

    model: str
    prompts: list[str]
    options: dict[str, Any] = field(default_factory=dict)
    request_id: str | None = None
    on_usage: UsageSink | None = None


def _reported(body: dict[str, Any]) -> Usage | None:
    usage = body.get("usage")
    if isinstance(usage, dict) and (usage.get("prompt_tokens") or usage.get("completion_tokens")):
        return Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
    return None


def _texts(body: dict[str, Any]) -> str:
    return "".join(str(c.get("text") or "") for c in body.get("choices") or [] if isinstance(c, dict))


def usage_body(usage: Usage) -> dict[str, int]:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens}


async def resolve(pipeline: Pipeline, request: TextRequest) -> tuple[ChatModel, str]:
    """Stage 2 for a text request: the model (checked to have raw completion) and its metrics label."""
    model = await pipeline.targets.resolve(request.model, [{"role": "user", "content": request.prompts[0]}])
    if not model.text_completions:
        raise model.no_text_completion()
    return model, pipeline.targets.label(request.model)


async def complete_text(pipeline: Pipeline, request: TextRequest) -> dict[str, Any]:
    """The ``text_completion`` body for every prompt (choices re-indexed in prompt order), usage filled in."""
    model, label = await resolve(pipeline, request)
    merged: dict[str, Any] | None = None
    total = Usage()
    for prompt in request.prompts:
        try:
            body = await model.atext_complete(prompt, **request.options)
        except MindgateError as exc:
            count_upstream_error(pipeline, exc)
            raise
        usage = _reported(body) or Usage(pipeline.estimator.text_tokens(prompt),
                                         pipeline.estimator.text_tokens(_texts(body)))
        total = Usage(total.prompt_tokens + usage.prompt_tokens, total.completion_tokens + usage.completion_tokens)
        if merged is None:
            merged = dict(body)
            merged["choices"] = []
        for choice in body.get("choices") or []:
            merged["choices"].append({**choice, "index": len(merged["choices"])})
    assert merged is not None
    merged["usage"] = usage_body(total)
    if request.on_usage is not None:
        request.on_usage(label, total.prompt_tokens, total.completion_tokens)
    return merged


class TextStream(UpstreamEvents):
    """A streamed completion's ``text_completion`` chunks; :meth:`aclose` reports usage once."""

    def __init__(self, pipeline: Pipeline, request: TextRequest, model: ChatModel, label: str) -> None:
        super().__init__(pipeline, model.atext_stream(request.prompts[0], **request.options))
        self.request = request
        self.label = label
        self._parts: list[str] = []
        self.reported: Usage | None = None
        self.last: dict[str, Any] = {}
        self.usage: Usage | None = None

    def _seen(self, event: dict[str, Any]) -> None:
        self._parts.append(_texts(event))
        self.reported = _reported(event) or self.reported
        self.last = event

    def _settle(self) -> None:
        estimator = self.pipeline.estimator
        text = "".join(self._parts)
        self.usage = self.reported or Usage(estimator.text_tokens(self.request.prompts[0]),
                                            estimator.text_tokens(text) if text else 0)
        if self.request.on_usage is not None:
            self.request.on_usage(self.label, self.usage.prompt_tokens, self.usage.completion_tokens)


async def stream_text(pipeline: Pipeline, request: TextRequest) -> TextStream:
    model, label = await resolve(pipeline, request)
    stream = TextStream(pipeline, request, model, label)
    await stream.start()
    return stream
