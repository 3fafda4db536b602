"""The two model interfaces every provider implements: :class:`ChatModel` and :class:`Embedder`.

Contracts:

* Messages are OpenAI chat messages (``{"role", "content", ...}`` dicts); the OpenAI wire format is the
  lingua franca, so tools, ``tool_choice`` and ``response_format`` use OpenAI's shapes everywhere.
* Async first: subclasses implement the ``a*`` methods. The sync methods are a thin facade over them
  (:mod:`mindgate._sync`), so there is one implementation, not twins.
* Errors are :mod:`mindgate.errors` classes; a provider never returns an empty result for a failure.
* Embeddings are ``float32`` numpy arrays: ``(n, dims)`` for a batch, ``(dims,)`` for one text.
  ``dims`` is probed from the model (one embedding call, cached), never guessed, and checked against a
  configured ``embedding_dims``.
"""

from __future__ import annotations

import functools
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from mindgate._sync import iterate_sync, run_sync
from mindgate.errors import ConfigurationError, InvalidRequestError, NativeResponsesUnavailable, ProviderError

if TYPE_CHECKING:
    from mindgate.providers._responses_api import NativeResponses

log = logging.getLogger("mindgate.providers")

Message = dict[str, Any]
Vector = npt.NDArray[np.float32]


def content_text(content: Any) -> str:
    """The text of a message's ``content``: the string itself, or the text of its content parts joined by
    spaces (OpenAI's ``text``, the Responses API's ``input_text`` / ``output_text``; image and audio parts
    carry none); anything else has no text. The one place that reads text out of a message."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part["text"]) for part in content if isinstance(part, dict) and "text" in part)
    return ""


def message_text(message: Message) -> str:
    """Everything in a message that reaches the model as text: its content (:func:`content_text`), a tool
    call's name and arguments, and a ``name`` field."""
    text = content_text(message.get("content"))
    tool_calls = message.get("tool_calls")
    if tool_calls:
        text += json.dumps(tool_calls, ensure_ascii=False, separators=(",", ":"))
    name = message.get("name")
    if isinstance(name, str):
        text += " " + name
    return text


def chatml_prompt(messages: Sequence[Message]) -> str:
    """The messages in ChatML framing with the assistant's turn opened, as a template would render them:
    tokenized with special tokens, this is the exact prompt length for ChatML models (SmolLM2, Qwen) and an
    overcount for others (their tokenizers split the markers into several pieces)."""
    parts = [f"<|im_start|>{m.get('role', 'user')}\n{message_text(m)}<|im_end|>\n" for m in messages]
    parts.append("<|im_start|>assistant\n")
    return "".join(parts)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class ChatResponse:
    """A finished completion. ``raw`` is the OpenAI-shaped response body."""

    content: str | None
    model: str
    finish_reason: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class ChatChunk:
    """One streamed delta. ``raw`` is the OpenAI ``chat.completion.chunk`` object; ``wire`` holds the
    SSE ``data:`` payload exactly as the upstream sent it, when there was one (for pass-through)."""

    content: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    wire: bytes | None = None


CHAT_OPTIONS = frozenset({
    "tools", "tool_choice", "response_format", "temperature", "max_tokens", "top_p", "stop", "seed",
    "presence_penalty", "frequency_penalty", "parallel_tool_calls", "logit_bias", "user", "n",
    "reasoning_effort", "extra_body", "stream_options",
})
"""``extra_body`` holds a request's unknown top-level fields (``top_k``, ``min_p``, ``ttl``, ...): a provider
that can take them sends them on (:attr:`ChatModel.accepts_extras`), the others drop them with a debug log.
``stream_options`` (``include_usage``) is sent only by providers whose streams can report usage that way.
``reasoning_effort`` is sent only by models whose provider spec says it takes it
(:attr:`ChatModel.takes_reasoning_effort`); the others drop it with a debug log."""
_PASSED_APART = frozenset({"extra_body", "stream_options"})
TEXT_OPTIONS = frozenset({
    "temperature", "max_tokens", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty", "logit_bias",
    "user", "n", "echo", "suffix", "logprobs", "best_of", "extra_body", "stream_options",
})
"""Options of a raw text completion (``/v1/completions``)."""


class ChatModel(ABC):
    """A chat model on some provider.

    ``complete``/``acomplete`` take OpenAI options (``tools``, ``tool_choice``, ``response_format``,
    ``temperature``, ``max_tokens``, ...). Structured output goes through
    :func:`mindgate.providers._structured.complete_json`, which picks the strongest mode the endpoint takes.
    """

    provider: str = "base"
    accepts_extras: bool = False

    def __init__(self, model: str, *, defaults: dict[str, Any] | None = None) -> None:
        self.model = model
        self.defaults = dict(defaults or {})

    @property
    def endpoint_key(self) -> str:
        """Identifies the serving endpoint, for remembering what it accepts (e.g. structured-output mode)."""
        return f"{self.provider}:{self.model}"

    @property
    def context_length(self) -> int | None:
        """The model's context window in tokens, when known without a call."""
        return None

    @functools.cached_property
    def takes_reasoning_effort(self) -> bool:
        """Whether the provider's API takes ``reasoning_effort`` (its spec says so:
        :attr:`~mindgate.providers._spec.ProviderSpec.takes_reasoning_effort`); False for an unregistered one."""
        from mindgate.providers import provider_spec  # the registry imports this module

        try:
            return provider_spec(self.provider).takes_reasoning_effort
        except ConfigurationError:
            return False

    def _extras(self, options: dict[str, Any], known: frozenset[str]) -> dict[str, Any]:
        """The request's extra fields this provider maps natively (``known``); the rest dropped (debug log)."""
        extra = options.get("extra_body") or {}
        dropped = sorted(set(extra) - known)
        if dropped:
            log.debug("%r does not take %s; dropped", self, ", ".join(dropped))
        return {k: v for k, v in extra.items() if k in known and v is not None}

    def _options(self, options: dict[str, Any]) -> dict[str, Any]:
        unknown = set(options) - CHAT_OPTIONS
        if unknown:
            raise ConfigurationError(f"unknown chat option(s): {', '.join(sorted(unknown))}",
                                     hint=f"valid options: {', '.join(sorted(CHAT_OPTIONS))}")
        extra = options.get("extra_body")
        if extra and not self.accepts_extras:
            log.debug("%r takes no extra request fields; dropped %s", self, ", ".join(sorted(extra)))
        apart = _PASSED_APART
        if options.get("reasoning_effort") is not None and not self.takes_reasoning_effort:
            log.debug("%r has no reasoning-effort setting; dropped reasoning_effort", self)
            apart = _PASSED_APART | {"reasoning_effort"}
        return {**self.defaults, **{k: v for k, v in options.items() if v is not None and k not in apart}}

    @abstractmethod
    async def acomplete(self, messages: Sequence[Message], **options: Any) -> ChatResponse:
        """One completion."""

    @abstractmethod
    def astream(self, messages: Sequence[Message], **options: Any) -> AsyncIterator[ChatChunk]:
        """Stream a completion as chunks; errors before or during the stream raise."""

    async def acount_tokens(self, messages: Sequence[Message]) -> int | None:
        """Tokens the prompt takes with the model's own tokenizer, or None when it is not reachable."""
        return None

    # -- raw text completion (``/v1/completions``); optional ---------------------------------------

    @property
    def text_completions(self) -> bool:
        """Whether :meth:`atext_complete` / :meth:`atext_stream` work (the endpoint has raw completion)."""
        return False

    async def atext_complete(self, prompt: str, **options: Any) -> dict[str, Any]:
        """One raw completion of ``prompt`` (no chat template) as OpenAI's ``text_completion`` body;
        ``options`` from :data:`TEXT_OPTIONS`. Raises :class:`InvalidRequestError` where unsupported."""
        raise self.no_text_completion()

    def atext_stream(self, prompt: str, **options: Any) -> AsyncIterator[dict[str, Any]]:
        """The same, streamed: OpenAI ``text_completion`` chunk objects."""
        raise self.no_text_completion()

    def no_text_completion(self) -> InvalidRequestError:
        return InvalidRequestError(
            f"the target {self.provider}:{self.model} has no raw text completion (/v1/completions)",
            hint="use /v1/chat/completions, or a model on a llama.cpp server, LM Studio, Ollama or the local "
                 "engine")

    def _text_options(self, options: dict[str, Any]) -> dict[str, Any]:
        unknown = set(options) - TEXT_OPTIONS
        if unknown:
            raise ConfigurationError(f"unknown completion option(s): {', '.join(sorted(unknown))}",
                                     hint=f"valid options: {', '.join(sorted(TEXT_OPTIONS))}")
        return {**self.defaults, **{k: v for k, v in options.items() if v is not None and k not in _PASSED_APART}}

    # -- the server's own Responses API (``/v1/responses`` pass-through); optional ----------------------

    native: NativeResponses | None = None
    """The server's own Responses API, when the provider config's ``responses_api`` is ``native`` or ``auto``
    (set by providers whose servers have one: :mod:`mindgate.providers._responses_api`)."""

    @property
    def passes_responses(self) -> bool:
        """Whether a Responses API request may go to this model's own ``/v1/responses`` now: its provider
        config says ``responses_api: native`` (or ``auto`` and the server has not shown it lacks the route)."""
        return self.native is not None and self.native.usable

    def _responses_body(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` for this model, with the provider config's sampling defaults where it has none."""
        out = {**body, "model": self.model}
        for option, key in (("temperature", "temperature"), ("top_p", "top_p"), ("max_tokens", "max_output_tokens")):
            if self.defaults.get(option) is not None and out.get(key) is None:
                out[key] = self.defaults[option]
        return out

    async def aresponses(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` (a Responses API request; its ``model`` is replaced by this model's id) sent to the
        server's own ``/v1/responses``; the ``response`` object it answers. Raises
        :class:`NativeResponsesUnavailable` when there is no pass-through (the caller bridges the request onto
        chat completions instead), other :mod:`mindgate.errors` classes for failures."""
        if self.native is None:
            raise NativeResponsesUnavailable(f"{self!r} has no pass-through to a /v1/responses route")
        return await self.native.create(self._responses_body(body))

    async def aresponses_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The same, streamed: the server's events as dicts, in order, up to and including the terminal one
        (``response.completed`` / ``.incomplete`` / ``.failed`` or ``error``); a stream cut before it raises."""
        if self.native is None:
            raise NativeResponsesUnavailable(f"{self!r} has no pass-through to a /v1/responses route")
        async for event in self.native.stream(self._responses_body(body)):
            yield event

    async def aclose(self) -> None:  # noqa: B027 - optional hook, a no-op unless a provider holds resources
        """Release connections or in-process resources."""

    def complete(self, messages: Sequence[Message], **options: Any) -> ChatResponse:
        return run_sync(self.acomplete(messages, **options))

    def stream(self, messages: Sequence[Message], **options: Any) -> Iterator[ChatChunk]:
        return iterate_sync(self.astream(messages, **options))

    def count_tokens(self, messages: Sequence[Message]) -> int | None:
        return run_sync(self.acount_tokens(messages))

    def close(self) -> None:
        run_sync(self.aclose())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.provider}:{self.model}>"


@dataclass(frozen=True)
class EmbedderIdentity:
    """What a store records about the embedder that wrote its vectors."""

    provider: str
    model: str
    dims: int

    def describe(self) -> str:
        return f"{self.provider}:{self.model} ({self.dims} dims)"


class Embedder(ABC):
    """An embedding model. Subclasses implement :meth:`_embed_batch`; the rest is shared."""

    provider: str = "base"

    def __init__(self, model: str, *, embedding_dims: int | None = None, batch_size: int = 64) -> None:
        self.model = model
        self.configured_dims = embedding_dims
        self.batch_size = batch_size
        self._dims: int | None = None

    @abstractmethod
    async def _embed_batch(self, texts: Sequence[str]) -> Vector:
        """Embed at most ``batch_size`` texts; returns float32 ``(len(texts), dims)``."""

    def _validated(self, texts: Sequence[str]) -> list[str]:
        if isinstance(texts, str):
            raise TypeError("embed_batch takes a list of strings; use embed for one text")
        out = list(texts)
        for i, text in enumerate(out):
            if not isinstance(text, str):
                raise ConfigurationError(f"embedding input {i} is {type(text).__name__}, not a string",
                                         hint="pass text; token arrays are not accepted")
        return out

    def _empty(self) -> Vector:
        return np.zeros((0, self._dims or self.configured_dims or 0), dtype=np.float32)

    async def _embed_all(self, texts: list[str]) -> Vector:
        parts = [await self._embed_batch(texts[i:i + self.batch_size])
                 for i in range(0, len(texts), self.batch_size)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    async def aembed_batch(self, texts: Sequence[str]) -> Vector:
        """Embed any number of texts (in batches of ``batch_size``); order is kept."""
        valid = self._validated(texts)
        if not valid:
            return self._empty()
        vectors = await self._embed_all(valid)
        self._check_dims(int(vectors.shape[1]))
        if not np.isfinite(vectors).all():
            raise ProviderError(f"embedder {self.provider}:{self.model} returned vectors holding NaN or infinity",
                                provider=self.provider, retryable=False,
                                hint="the embedding model or server is faulty; nothing was stored")
        return vectors

    async def aembed(self, text: str) -> Vector:
        vectors = await self.aembed_batch([text])
        return vectors[0]

    async def adims(self) -> int:
        """The model's output dimension, probed with one embedding call and cached."""
        if self._dims is None:
            await self.aembed_batch(["dimension probe"])
        assert self._dims is not None
        return self._dims

    async def aidentity(self) -> EmbedderIdentity:
        return EmbedderIdentity(self.provider, self.model, await self.adims())

    def _check_dims(self, dims: int) -> None:
        if self._dims is None:
            if self.configured_dims is not None and self.configured_dims != dims:
                # mem0 configs often carry a copied 1536: the probed value wins; a store that already holds
                # vectors of another size still refuses to open (EmbedderMismatchError, naming reindex)
                log.warning("embedder %s:%s returns %d-dimensional vectors but embedding_dims is set to %d; "
                            "using %d (set embedding_dims to %d or remove it: mindgate probes the dimension)",
                            self.provider, self.model, dims, self.configured_dims, dims, dims)
            self._dims = dims
        elif dims != self._dims:
            raise ConfigurationError(f"embedder {self.provider}:{self.model} changed its output from "
                                     f"{self._dims} to {dims} dimensions between calls",
                                     hint="the server swapped the model; pin the model id")

    async def aclose(self) -> None:  # noqa: B027 - optional hook, a no-op unless a provider holds resources
        """Release connections or in-process resources."""

    def embed_batch(self, texts: Sequence[str]) -> Vector:
        return run_sync(self.aembed_batch(texts))

    def embed(self, text: str) -> Vector:
        return run_sync(self.aembed(text))

    def dims(self) -> int:
        return self._dims if self._dims is not None else run_sync(self.adims())

    def identity(self) -> EmbedderIdentity:
        return EmbedderIdentity(self.provider, self.model, self.dims())

    def close(self) -> None:
        run_sync(self.aclose())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.provider}:{self.model}>"
