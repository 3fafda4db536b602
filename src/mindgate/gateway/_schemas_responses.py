"""Request bodies of ``POST /v1/responses`` (OpenAI's Responses API) and ``POST /v1/completions``. Known
fields are validated; unknown ones are accepted (a gateway is never stricter than the servers behind it):
ignored with a debug log on responses, passed on to the upstream on completions. Response items, tools
and ``text.format`` are checked field by field in :mod:`mindgate.gateway._openai_responses`, where a 400
can name exactly what is wrong."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mindgate.gateway._schemas import MindgateOptions


class ResponsesRequest(BaseModel):
    """``memory`` (mindgate's extension) turns memory-augmented answers off with ``false``; ``mindgate``
    holds the gateway's other per-request options (MCP tools, memory mode, ``context``: the context policy).
    OpenAI's ``truncation`` chooses the context policy when neither ``mindgate.context`` nor the
    ``X-Mindgate-Context`` header does: ``"auto"`` is ``truncate``, ``"disabled"`` is ``error``. Accepted
    and ignored: ``include``, ``service_tier``, ``prompt_cache_key``, ``safety_identifier``,
    ``top_logprobs``, ``stream_options``."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=256)
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    text: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None
    user: str | None = Field(default=None, max_length=256)
    store: bool = True
    previous_response_id: str | None = Field(default=None, min_length=1, max_length=256)
    stream: bool = False
    background: bool | None = None
    conversation: str | dict[str, Any] | None = None
    memory: bool | None = None
    mindgate: MindgateOptions | None = None
    include: list[str] | None = None
    truncation: Literal["auto", "disabled"] | None = None

    @model_validator(mode="after")
    def _served(self) -> ResponsesRequest:
        if self.background:
            raise ValueError("`background: true` is not supported by this gateway; send the request without it")
        if self.conversation is not None:
            raise ValueError("`conversation` (OpenAI's Conversations API) is not supported by this gateway; "
                             "continue with `previous_response_id`")
        if self.metadata is not None and len(self.metadata) > 16:
            raise ValueError("`metadata` takes at most 16 keys")
        return self

    def echo(self) -> dict[str, Any]:
        """The request's settings the response object repeats."""
        return self.model_dump(include={"instructions", "max_output_tokens", "parallel_tool_calls",
                                        "previous_response_id", "reasoning", "store", "temperature", "text",
                                        "tool_choice", "tools", "top_p", "truncation", "user", "metadata"},
                               exclude_none=True)


class CompletionRequest(BaseModel):
    """``POST /v1/completions`` (OpenAI's legacy text completion). Token-id prompts are a 400 (the
    targets take text). Unknown top-level fields are passed on like chat's (``model_extra``)."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=256)
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(default=16, gt=0)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: int | None = Field(default=None, ge=1, le=8)
    best_of: int | None = Field(default=None, ge=1, le=8)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=-(2**63), lt=2**63)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    logprobs: int | None = Field(default=None, ge=0, le=5)
    echo: bool | None = None
    suffix: str | None = None
    user: str | None = Field(default=None, max_length=256)

    @model_validator(mode="after")
    def _shape(self) -> CompletionRequest:
        if isinstance(self.stop, list) and len(self.stop) > 4:
            raise ValueError("`stop` takes at most 4 sequences")
        if isinstance(self.prompt, list) and not self.prompt:
            raise ValueError("`prompt` is an empty list")
        return self

    @property
    def include_usage(self) -> bool:
        return bool(self.stream and (self.stream_options or {}).get("include_usage"))

    def text_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {name: getattr(self, name) for name in (
            "max_tokens", "temperature", "top_p", "n", "best_of", "stop", "seed", "presence_penalty",
            "frequency_penalty", "logit_bias", "logprobs", "echo", "suffix", "user") if getattr(self, name) is not None}
        if self.model_extra:
            opts["extra_body"] = {k: v for k, v in self.model_extra.items() if v is not None}
        if self.include_usage:
            opts["stream_options"] = {"include_usage": True}
        return opts
