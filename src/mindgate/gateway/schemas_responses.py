"""``POST /v1/responses`` request body (OpenAI's Responses API). Known fields are validated; unknown ones
are accepted and ignored with a debug log (a gateway is never stricter than the servers behind it).
Items, tools and ``text.format`` are checked field by field in :mod:`mindgate.gateway.openai_responses`,
where a 400 can name exactly what is wrong."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ResponsesRequest(BaseModel):
    """``memory`` (mindgate's extension) turns memory-augmented answers off with ``false``. Accepted and
    ignored: ``include``, ``truncation``, ``service_tier``, ``prompt_cache_key``, ``safety_identifier``,
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
