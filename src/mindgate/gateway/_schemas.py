"""Request bodies of the HTTP API as pydantic models (they are also the OpenAPI schema).

Chat and embedding requests follow OpenAI's shapes. Unknown fields are rejected with a 400 that names
them, so a misspelt option never silently does nothing; OpenAI fields mindgate accepts but does not
forward are listed explicitly and documented as such.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from mindgate.config import ContextPolicyName

ScopeId = Field(default=None, min_length=1, max_length=256)
TokenId = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,9}$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(_Body):
    type: Literal["text"]
    text: str


class ImageURL(_Body):
    url: str = Field(min_length=1)
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Body):
    type: Literal["image_url"]
    image_url: ImageURL


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]
Content = str | Annotated[list[ContentPart], Field(min_length=1)]
TextContent = str | Annotated[list[TextPart], Field(min_length=1)]


class FunctionCall(_Body):
    name: str = Field(min_length=1, max_length=64)
    arguments: str


class ToolCall(_Body):
    id: str = Field(min_length=1)
    type: Literal["function"] = "function"
    function: FunctionCall


class SystemMessage(_Body):
    role: Literal["system", "developer"]
    content: TextContent
    name: str | None = None


class UserMessage(_Body):
    role: Literal["user"]
    content: Content
    name: str | None = None


class AssistantMessage(_Body):
    role: Literal["assistant"]
    content: TextContent | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    refusal: str | None = None

    @model_validator(mode="after")
    def _says_something(self) -> AssistantMessage:
        if self.content is None and not self.tool_calls:
            raise ValueError("an assistant message needs `content` or `tool_calls`")
        return self


class ToolMessage(_Body):
    role: Literal["tool"]
    content: TextContent
    tool_call_id: str = Field(min_length=1)


class FunctionMessage(_Body):
    """OpenAI's deprecated function-result message."""

    role: Literal["function"]
    content: str
    name: str = Field(min_length=1, max_length=64)


ChatMessage = Annotated[SystemMessage | UserMessage | AssistantMessage | ToolMessage | FunctionMessage,
                        Field(discriminator="role")]


class FunctionDefinition(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["function"] = "function"
    function: FunctionDefinition


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _schema_present(self) -> ResponseFormat:
        if self.type == "json_schema" and not isinstance(self.json_schema, dict):
            raise ValueError('response_format of type "json_schema" needs a `json_schema` object')
        return self


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool | None = None


class MindgateOptions(_Body):
    """``mindgate``: the gateway's own per-request options (other clients' fields never land here)."""

    mcp_servers: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")]] | None = Field(
        default=None, max_length=16, description="configured MCP tool servers whose tools the gateway runs")
    memory_mode: Literal["inject", "tool"] | None = None
    context: ContextPolicyName | None = Field(
        default=None, description="how a conversation longer than the model's window is fitted (docs/context.md)")


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``. ``memory`` (mindgate's extension) turns memory-augmented chat off
    with ``false``; ``mindgate`` holds the gateway's other per-request options (MCP tools, memory mode, the
    context policy).
    Accepted but not forwarded: ``store``, ``metadata``, ``service_tier``, ``logprobs: false``.
    ``stream_options.include_usage`` is honoured on every target (usage computed when the upstream reports
    none). Unknown top-level fields (``top_k``, ``min_p``, ``repeat_penalty``, ``ttl``, ``draft_model``,
    ...) are kept in ``model_extra`` and passed on (see :meth:`chat_options`); known fields stay validated."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=256)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, gt=0)
    max_completion_tokens: int | None = Field(default=None, gt=0)
    n: int | None = Field(default=None, ge=1, le=8)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=-(2**63), lt=2**63)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[TokenId, Annotated[float, Field(ge=-100, le=100)]] | None = None
    user: str | None = Field(default=None, max_length=256)
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: str | None = Field(default=None, min_length=1, max_length=32)
    stream_options: StreamOptions | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None
    service_tier: str | None = None
    logprobs: Literal[False] | None = None
    memory: bool | None = None
    mindgate: MindgateOptions | None = None

    @model_validator(mode="after")
    def _stop_size(self) -> ChatCompletionRequest:
        if isinstance(self.stop, list) and len(self.stop) > 4:
            raise ValueError("`stop` takes at most 4 sequences")
        return self

    def chat_options(self) -> dict[str, Any]:
        """The options every :class:`~mindgate.providers._base.ChatModel` takes, from this request."""
        opts: dict[str, Any] = {}
        for name in ("temperature", "top_p", "n", "stop", "seed", "presence_penalty", "frequency_penalty",
                     "logit_bias", "user", "tool_choice", "parallel_tool_calls", "reasoning_effort"):
            value = getattr(self, name)
            if value is not None:
                opts[name] = value
        max_tokens = self.max_completion_tokens or self.max_tokens
        if max_tokens is not None:
            opts["max_tokens"] = max_tokens
        if self.tools is not None:
            opts["tools"] = [t.model_dump(exclude_none=True) for t in self.tools]
        if self.response_format is not None:
            opts["response_format"] = self.response_format.model_dump(exclude_none=True)
        if self.model_extra:
            opts["extra_body"] = {k: v for k, v in self.model_extra.items() if v is not None}
        if self.stream and self.include_usage:
            opts["stream_options"] = {"include_usage": True}
        return opts

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options is not None and self.stream_options.include_usage)

    def message_dicts(self) -> list[dict[str, Any]]:
        """The messages as dicts; content made only of text parts becomes one string (lossless, and the
        form every server accepts: several reject part lists outside user messages)."""
        return [_flatten(m.model_dump(exclude_none=True)) for m in self.messages]


def _flatten(message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    if isinstance(content, list) and all(part.get("type") == "text" for part in content):
        message["content"] = "\n".join(part["text"] for part in content)
    return message


class EmbeddingRequest(_Body):
    """``POST /v1/embeddings``. Token arrays are part of OpenAI's schema but rejected with a 400 here
    (the embedders take text)."""

    model: str = Field(min_length=1, max_length=256)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, gt=0)
    user: str | None = Field(default=None, max_length=256)


class ScopeFields(_Body):
    user_id: str | None = ScopeId
    agent_id: str | None = ScopeId
    run_id: str | None = ScopeId

    def scope(self) -> dict[str, str]:
        return {k: v for k, v in (("user_id", self.user_id), ("agent_id", self.agent_id),
                                  ("run_id", self.run_id)) if v is not None}


class MemoryAddRequest(ScopeFields):
    """``POST /v1/memories`` (mem0's shape): a string or a list of chat messages."""

    messages: str | list[ChatMessage]
    metadata: dict[str, Any] | None = None
    infer: bool = True

    def message_payload(self) -> str | list[dict[str, Any]]:
        if isinstance(self.messages, str):
            return self.messages
        return [m.model_dump(exclude_none=True) for m in self.messages]


class MemorySearchRequest(ScopeFields):
    """``POST /v1/memories/search``."""

    query: str = Field(min_length=1, max_length=10_000)
    filters: dict[str, Any] | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    threshold: float | None = Field(default=None, ge=-1, le=1)
    explain: bool = Field(default=False, description="add each result's score breakdown")
    rerank: bool = Field(default=True, description="rerank with the configured reranker (false: fused order)")
    reference_time: str | None = Field(default=None, max_length=64, description="what time expressions in the "
                                       "query are relative to (ISO 8601; default now)")


class MemoryUpdateRequest(_Body):
    """``PUT /v1/memories/{id}``: the new text as ``text`` (mem0 platform) or ``data`` (mem0 OSS)."""

    text: str | None = Field(default=None, min_length=1, max_length=100_000)
    data: str | None = Field(default=None, min_length=1, max_length=100_000)
    metadata: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_text(self) -> MemoryUpdateRequest:
        if (self.text is None) == (self.data is None):
            raise ValueError("give the new memory text as exactly one of `text` or `data`")
        return self

    @property
    def new_text(self) -> str:
        return self.text if self.text is not None else str(self.data)
