"""Ollama over its native API (``/api/chat``, ``/api/embed``, ``/api/tags``), mapped to OpenAI shapes.

Why native and not Ollama's ``/v1`` surface: only the native API takes ``keep_alive``, ``options.num_ctx``
and a JSON schema in ``format``. Contracts of the mapping (Ollama's documented API, docs/api.md):

* Requests: OpenAI messages become Ollama messages (text parts joined, ``data:`` image URLs become
  ``images``, assistant ``tool_calls`` arguments become objects, a ``tool`` message gets ``tool_name``).
  ``temperature``/``top_p``/``stop``/``seed``/penalties go into ``options``; ``max_tokens`` becomes
  ``options.num_predict``; ``n_ctx`` becomes ``options.num_ctx``; ``ttl`` becomes ``keep_alive`` (seconds).
  ``model_kwargs``: ``keep_alive``/``think`` (chat) and ``keep_alive``/``truncate``/``dimensions`` (embed)
  are sent as top-level fields, anything else as ``options``.
* Structured output: ``json_schema`` is sent as ``format: <schema>``, ``json_object`` as ``format: "json"``.
* Tools: sent as given. Ollama has no ``tool_choice``: ``"none"`` drops the tools, a named function sends
  only that tool, ``"auto"``/``"required"`` send them all. ``n`` > 1 and ``logit_bias`` are rejected.
* Responses and stream chunks are OpenAI-shaped (``raw`` is a ``chat.completion``/``chat.completion.chunk``
  dict); tool-call arguments come back as JSON strings. Streams are NDJSON (not SSE); a line with
  ``error`` raises, and a stream that ends before ``done: true`` is a :class:`NetworkError`.
* Errors: connection refused says to run ``ollama serve``; HTTP 404 ``model 'x' not found`` is a
  :class:`ModelNotFoundError` listing ``/api/tags`` and saying ``ollama pull x``.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from pydantic import Field

from mindgate.config import RESPONSES_API_DESCRIPTION, TTL_DESCRIPTION, BaseURLConfig, ProviderConfig, ResponsesAPI
from mindgate.errors import InvalidRequestError, NetworkError, ProviderError
from mindgate.providers._base import (
    ChatChunk,
    ChatModel,
    ChatResponse,
    Embedder,
    Message,
    Vector,
)
from mindgate.providers._http_errors import http_error, json_or_none, server_message
from mindgate.providers._lazy import LazyChatModel
from mindgate.providers._responses_api import NativeResponses
from mindgate.providers._spec import ProviderSpec
from mindgate.providers._upstream import TRANSPORT_ERRORS, lines
from mindgate.providers.management._records import Endpoint
from mindgate.providers.ollama._management import OllamaDriver
from mindgate.providers.openai_compat import (
    OpenAICompatClient,
    ServerProfile,
    parse_chat_chunk,
    parse_chat_response,
    proxy_routes,
    sampling_defaults,
)


class OllamaConfig(BaseURLConfig):
    """``provider: ollama``: the common keys, ``ollama_base_url`` (mem0's name) or ``base_url``, the context
    length (Ollama's ``num_ctx``) and the idle TTL (``keep_alive``)."""

    ollama_base_url: str | None = None
    n_ctx: int | None = Field(default=None, gt=0, description="context length (Ollama's num_ctx)")
    ttl: int | None = Field(default=None, gt=0, description=TTL_DESCRIPTION)
    responses_api: ResponsesAPI = Field(default="bridge", description=RESPONSES_API_DESCRIPTION
                                        + "; Ollama serves a stateless /v1/responses from 0.13.3")

DEFAULT_BASE_URL = "http://localhost:11434"

PROFILE = ServerProfile(
    provider="ollama",
    display="Ollama",
    start_hint="start it with `ollama serve`",
    key_env="OLLAMA_API_KEY",
    model_hint="pull it with `ollama pull MODEL`",
)

_OPTION_NAMES = {"temperature": "temperature", "top_p": "top_p", "max_tokens": "num_predict", "stop": "stop",
                 "seed": "seed", "presence_penalty": "presence_penalty", "frequency_penalty": "frequency_penalty"}
_CHAT_TOP_LEVEL = frozenset({"keep_alive", "think"})
# Request extras Ollama takes as model options (the rest are dropped with a debug log).
OLLAMA_SAMPLING = frozenset({"top_k", "min_p", "typical_p", "repeat_penalty", "repeat_last_n", "mirostat",
                             "mirostat_tau", "mirostat_eta", "num_ctx", "tfs_z"})
_EMBED_TOP_LEVEL = frozenset({"keep_alive", "truncate", "dimensions"})


def native_root(url: str) -> str:
    """``http://host:11434/v1`` or ``.../api`` -> ``http://host:11434`` (the native API lives at the root)."""
    root = url.rstrip("/")
    for suffix in ("/v1", "/api"):
        if root.endswith(suffix):
            root = root[: -len(suffix)]
    return root


class OllamaClient(OpenAICompatClient):
    """The shared client pointed at Ollama's root, plus NDJSON streaming and ``/api/tags`` listing."""

    async def list_models(self) -> list[str]:
        data = await self.request_json("GET", "/api/tags", timeout=10.0)
        items = data.get("models", []) if isinstance(data, dict) else []
        return [str(item.get("name") or item.get("model")) for item in items if isinstance(item, dict)]

    async def raise_for_status(self, status: int, body: str, headers: Mapping[str, str], *,
                               model: str | None) -> None:
        if model and status == 404 and "not found" in server_message(body).lower():
            raise http_error(status, body, headers, provider=PROFILE.provider, where=f"Ollama at {self.base_url}",
                             model=model, available=await self._available_models(),
                             model_hint=f"pull it with `ollama pull {model}`")
        await super().raise_for_status(status, body, headers, model=model)

    async def stream_ndjson(self, path: str, body: Any, *, model: str | None = None
                            ) -> AsyncIterator[dict[str, Any]]:
        """POST ``body`` and yield each JSON line until one has ``done: true``."""
        try:
            async with self.open_stream(path, body, model=model, accept="application/x-ndjson") as response:
                async for raw in lines(response):
                    if not raw.strip():
                        continue
                    event = json_or_none(raw)
                    if not isinstance(event, dict):
                        text = raw[:200].decode("utf-8", "replace")
                        raise ProviderError(f"Ollama sent a malformed stream line: {text!r}", provider="ollama",
                                            retryable=True) from None
                    if event.get("error"):
                        raise ProviderError(f"Ollama reported an error mid-stream: {event['error']}",
                                            provider="ollama")
                    yield event
                    if event.get("done"):
                        return
                raise NetworkError(f"Ollama at {self.url(path)} ended the stream before the final `done` line",
                                   url=self.url(path), hint="the server may have crashed or restarted; retry")
        except TRANSPORT_ERRORS as exc:
            raise self.network_error(exc, path) from None


# -- request translation ---------------------------------------------------------------------------


def _arguments(raw: Any, name: str) -> Any:
    if not isinstance(raw, str):
        return raw or {}
    try:
        return json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise InvalidRequestError(f"tool call {name!r} has arguments that are not JSON: {raw[:200]!r}",
                                  hint="tool-call arguments must be a JSON object") from None


def _content_and_images(content: Any) -> tuple[str, list[str]]:
    if not isinstance(content, list):
        return ("" if content is None else str(content)), []
    texts: list[str] = []
    images: list[str] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            texts.append(str(part.get("text", "")))
        elif kind == "image_url":
            image = part.get("image_url")
            url = str(image.get("url", "") if isinstance(image, dict) else image)
            if not url.startswith("data:") or "," not in url:
                raise InvalidRequestError("Ollama takes images as base64 data, not links",
                                          hint="pass the image as a data: URL (data:image/png;base64,...)")
            images.append(url.split(",", 1)[1])
        else:
            raise InvalidRequestError(f"message content part of type {kind!r} is not supported by Ollama",
                                      hint="use text and image_url parts")
    return "\n".join(texts), images


def ollama_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """OpenAI chat messages -> Ollama ``/api/chat`` messages."""
    tool_names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        content, images = _content_and_images(message.get("content"))
        item: dict[str, Any] = {"role": role, "content": content}
        if images:
            item["images"] = images
        calls = message.get("tool_calls") or []
        if role == "assistant" and calls:
            item["tool_calls"] = []
            for call in calls:
                fn = call.get("function") or {}
                name = str(fn.get("name", ""))
                if call.get("id"):
                    tool_names[str(call["id"])] = name
                item["tool_calls"].append({"function": {"name": name,
                                                        "arguments": _arguments(fn.get("arguments"), name)}})
        if role == "tool":
            tool_name = message.get("name") or tool_names.get(str(message.get("tool_call_id")))
            if tool_name:
                item["tool_name"] = tool_name
        out.append(item)
    return out


def _format(response_format: Any) -> Any:
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_schema":
        return (response_format.get("json_schema") or {}).get("schema") or "json"
    if kind == "json_object":
        return response_format.get("schema") or "json"
    if kind in (None, "text"):
        return None
    raise InvalidRequestError(f"response_format type {kind!r} is not supported",
                              hint="use json_schema, json_object or text")


def _tools(tools: list[dict[str, Any]] | None, tool_choice: Any) -> list[dict[str, Any]] | None:
    if not tools or tool_choice == "none":
        return None
    if isinstance(tool_choice, dict):
        name = (tool_choice.get("function") or {}).get("name")
        chosen = [t for t in tools if (t.get("function") or {}).get("name") == name]
        if not chosen:
            raise InvalidRequestError(f"tool_choice names {name!r}, which is not among the tools",
                                      hint="name one of the functions passed in `tools`")
        return chosen
    return tools


def ollama_options(options: dict[str, Any]) -> dict[str, Any]:
    """OpenAI sampling options -> Ollama ``options`` (rejects what Ollama cannot do)."""
    if options.get("n", 1) != 1:
        raise InvalidRequestError("Ollama returns one completion per request; n > 1 is not supported",
                                  hint="send several requests instead")
    if options.get("logit_bias"):
        raise InvalidRequestError("Ollama does not support logit_bias", hint="remove logit_bias")
    out: dict[str, Any] = {}
    for name, native in _OPTION_NAMES.items():
        if options.get(name) is not None:
            value = options[name]
            out[native] = [value] if name == "stop" and isinstance(value, str) else value
    return out


# -- response translation --------------------------------------------------------------------------


def _openai_tool_calls(calls: Any, *, indexed: bool, start: int = 0) -> list[dict[str, Any]]:
    out = []
    for i, call in enumerate(calls or []):
        fn = call.get("function") or {}
        args = fn.get("arguments")
        item: dict[str, Any] = {"id": call.get("id") or f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                                "function": {"name": fn.get("name"),
                                             "arguments": args if isinstance(args, str) else json.dumps(args or {})}}
        if indexed:
            item["index"] = start + i
        out.append(item)
    return out


def _finish_reason(done_reason: Any, has_tool_calls: bool) -> str:
    if has_tool_calls:
        return "tool_calls"
    return "length" if done_reason == "length" else "stop"


def _usage(data: dict[str, Any]) -> dict[str, int]:
    prompt, completion = int(data.get("prompt_eval_count") or 0), int(data.get("eval_count") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def openai_completion(data: dict[str, Any], model: str) -> dict[str, Any]:
    """A non-streamed ``/api/chat`` answer as an OpenAI ``chat.completion``."""
    message = data.get("message") or {}
    calls = _openai_tool_calls(message.get("tool_calls"), indexed=False)
    out_message: dict[str, Any] = {"role": "assistant", "content": (message.get("content") or None) if calls
                                   else message.get("content", "")}
    if calls:
        out_message["tool_calls"] = calls
    if message.get("thinking"):
        out_message["reasoning_content"] = message["thinking"]
    return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
            "model": data.get("model") or model,
            "choices": [{"index": 0, "message": out_message, "logprobs": None,
                         "finish_reason": _finish_reason(data.get("done_reason"), bool(calls))}],
            "usage": _usage(data)}


@contextmanager
def _shape_checked(data: Any) -> Iterator[None]:
    """Turn a KeyError/TypeError/... while translating an Ollama answer into a ProviderError: the answer was
    not in the documented shape (a field of another type)."""
    try:
        yield
    except (AttributeError, KeyError, TypeError, ValueError, IndexError) as exc:
        raise ProviderError(f"Ollama sent an answer in an unexpected shape ({type(exc).__name__}: {exc}): "
                            f"{str(data)[:200]}", provider="ollama", retryable=True) from None


class OllamaChatModel(ChatModel):
    """Chat over ``POST /api/chat``."""

    provider = "ollama"
    accepts_extras = True  # as model options (OLLAMA_SAMPLING); others dropped with a debug log
    structured_modes = ("json_schema", "json_object", "text")

    def __init__(self, client: OllamaClient, model: str, *, defaults: dict[str, Any] | None = None,
                 base_options: dict[str, Any] | None = None, top_level: dict[str, Any] | None = None,
                 context_length: int | None = None, responses_api: ResponsesAPI = "bridge") -> None:
        super().__init__(model, defaults=defaults)
        self.client = client
        self.base_options = dict(base_options or {})
        self.top_level = dict(top_level or {})
        self._context_length = context_length
        # Ollama's OpenAI-compatible routes live under /v1 of the same root as its native API
        if responses_api != "bridge":
            self.native = NativeResponses(client, responses_api, "/v1/responses")

    @property
    def endpoint_key(self) -> str:
        return f"ollama:{self.client.base_url}:{self.model}"

    @property
    def context_length(self) -> int | None:
        return self._context_length

    def _body(self, messages: Sequence[Message], options: dict[str, Any], *, stream: bool) -> dict[str, Any]:
        if not messages:
            raise InvalidRequestError("messages is empty", hint="pass at least one message")
        opts = self._options(options)
        body: dict[str, Any] = {**self.top_level, "model": self.model, "messages": ollama_messages(messages),
                                "stream": stream}
        merged = {**self.base_options, **self._extras(options, OLLAMA_SAMPLING), **ollama_options(opts)}
        if merged:
            body["options"] = merged
        fmt = _format(opts.get("response_format"))
        if fmt is not None:
            body["format"] = fmt
        tools = _tools(opts.get("tools"), opts.get("tool_choice"))
        if tools:
            body["tools"] = tools
        return body

    async def acomplete(self, messages: Sequence[Message], **options: Any) -> ChatResponse:
        body = self._body(messages, options, stream=False)
        data = await self.client.request_json("POST", "/api/chat", body, model=self.model)
        if not isinstance(data, dict) or "message" not in data:
            raise ProviderError(f"Ollama returned a chat answer without a message: {str(data)[:200]}",
                                provider="ollama", retryable=True)
        with _shape_checked(data):
            return parse_chat_response(openai_completion(data, self.model), self.model)

    async def astream(self, messages: Sequence[Message], **options: Any) -> AsyncIterator[ChatChunk]:
        body = self._body(messages, options, stream=True)
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        first, tool_index = True, 0
        async for event in self.client.stream_ndjson("/api/chat", body, model=self.model):
            with _shape_checked(event):
                chunk = self._chunk(event, completion_id, created, first, tool_index)
            first = False
            tool_index += len(chunk["choices"][0]["delta"].get("tool_calls", []))
            yield parse_chat_chunk(chunk)

    def _chunk(self, event: Any, completion_id: str, created: int, first: bool, tool_index: int) -> dict[str, Any]:
        """One ``/api/chat`` stream line as an OpenAI ``chat.completion.chunk``."""
        message = event.get("message") or {}
        delta: dict[str, Any] = {"role": "assistant"} if first else {}
        if message.get("content"):
            delta["content"] = message["content"]
        if message.get("thinking"):
            delta["reasoning_content"] = message["thinking"]
        calls = _openai_tool_calls(message.get("tool_calls"), indexed=True, start=tool_index)
        if calls:
            delta["tool_calls"] = calls
        done = bool(event.get("done"))
        chunk: dict[str, Any] = {
            "id": completion_id, "object": "chat.completion.chunk", "created": created,
            "model": event.get("model") or self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None,
                         "finish_reason": _finish_reason(event.get("done_reason"), tool_index + len(calls) > 0)
                         if done else None}]}
        if done:
            chunk["usage"] = _usage(event)
        return chunk

    # -- raw text completion: ``POST /api/generate`` with ``raw: true`` (no template) -------------------

    @property
    def text_completions(self) -> bool:
        return True

    def _generate_body(self, prompt: str, options: dict[str, Any], *, stream: bool) -> dict[str, Any]:
        opts = self._text_options(options)
        for name in ("echo", "logprobs"):
            if opts.get(name):
                raise InvalidRequestError(f"Ollama's generate API does not support `{name}`",
                                          hint=f"remove `{name}`, or use a llama.cpp server or LM Studio")
        if opts.pop("best_of", 1) != 1:
            raise InvalidRequestError("Ollama returns one completion per request; best_of must be 1")
        suffix = opts.pop("suffix", None)
        body: dict[str, Any] = {**self.top_level, "model": self.model, "prompt": prompt, "raw": True,
                                "stream": stream}
        if suffix:
            body["suffix"] = suffix
        merged = {**self.base_options, **self._extras(options, OLLAMA_SAMPLING), **ollama_options(opts)}
        if merged:
            body["options"] = merged
        return body

    def _text_chunk(self, data: dict[str, Any], completion_id: str, created: int, *, done: bool) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": completion_id, "object": "text_completion", "created": created,
            "model": data.get("model") or self.model,
            "choices": [{"index": 0, "text": data.get("response") or "", "logprobs": None,
                         "finish_reason": _finish_reason(data.get("done_reason"), False) if done else None}]}
        if done:
            chunk["usage"] = _usage(data)
        return chunk

    async def atext_complete(self, prompt: str, **options: Any) -> dict[str, Any]:
        data = await self.client.request_json("POST", "/api/generate",
                                              self._generate_body(prompt, options, stream=False), model=self.model)
        if not isinstance(data, dict) or "response" not in data:
            raise ProviderError(f"Ollama returned a generate answer without a response: {str(data)[:200]}",
                                provider="ollama", retryable=True)
        return self._text_chunk(data, f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time()), done=True)

    async def atext_stream(self, prompt: str, **options: Any) -> AsyncIterator[dict[str, Any]]:
        body = self._generate_body(prompt, options, stream=True)
        completion_id, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        async for event in self.client.stream_ndjson("/api/generate", body, model=self.model):
            yield self._text_chunk(event, completion_id, created, done=bool(event.get("done")))

    async def aclose(self) -> None:
        await self.client.aclose()


class OllamaEmbedder(Embedder):
    """Embeddings over ``POST /api/embed`` (``input`` list -> ``embeddings``)."""

    provider = "ollama"

    def __init__(self, client: OllamaClient, model: str, *, embedding_dims: int | None = None,
                 batch_size: int = 64, extra_body: dict[str, Any] | None = None) -> None:
        super().__init__(model, embedding_dims=embedding_dims, batch_size=batch_size)
        self.client = client
        self.extra_body = dict(extra_body or {})

    async def _embed_batch(self, texts: Sequence[str]) -> Vector:
        body = {**self.extra_body, "model": self.model, "input": list(texts)}
        data = await self.client.request_json("POST", "/api/embed", body, model=self.model)
        vectors = data.get("embeddings") if isinstance(data, dict) else None
        if not isinstance(vectors, list) or len(vectors) != len(texts):
            raise ProviderError(f"Ollama returned {len(vectors or [])} embeddings for {len(texts)} inputs",
                                provider="ollama", retryable=True)
        try:
            return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)
        except (TypeError, ValueError, OverflowError):
            raise ProviderError("Ollama returned embeddings of different lengths in one batch",
                                provider="ollama", retryable=False) from None

    async def aclose(self) -> None:
        await self.client.aclose()


def _client(config: ProviderConfig) -> OllamaClient:
    base_url = native_root(config.base_url_for("ollama") or DEFAULT_BASE_URL)
    api_key = config.api_key or os.environ.get("OLLAMA_API_KEY")
    return OllamaClient(base_url, profile=PROFILE, api_key=api_key, headers=config.headers,
                        timeout=config.timeout, connect_timeout=config.connect_timeout,
                        proxy=config.http_client_proxies)


def _split_kwargs(config: OllamaConfig, top_level: frozenset[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(top-level fields, options)`` from ``ttl``, ``n_ctx`` and ``model_kwargs``."""
    top = {k: v for k, v in config.model_kwargs.items() if k in top_level}
    options = {k: v for k, v in config.model_kwargs.items() if k not in top_level}
    if config.ttl is not None:
        top.setdefault("keep_alive", config.ttl)
    if config.n_ctx is not None:
        options.setdefault("num_ctx", config.n_ctx)
    return top, options


def endpoint_of(client: OllamaClient, config: ProviderConfig) -> Endpoint:
    """The management endpoint of the Ollama server ``client`` talks to."""
    return Endpoint("ollama", "ollama", client.base_url, api_key=config.api_key or os.environ.get("OLLAMA_API_KEY"),
                    timeout=min(config.timeout, 10.0), connect_timeout=config.connect_timeout,
                    proxies=tuple(proxy_routes(config.http_client_proxies).items()))


def chat_model(config: OllamaConfig, *, prefer: str | None = None) -> ChatModel:
    """Ollama chat; without ``model``, the model is detected at first use: ``prefer`` when it is pulled (a
    model named for several servers, as ``auto``'s is), else a loaded chat model (``/api/ps``), else the
    largest pulled one that fits free memory (:mod:`mindgate.providers.management._detect`)."""
    top, options = _split_kwargs(config, _CHAT_TOP_LEVEL)
    client = _client(config)

    def build(model: str) -> OllamaChatModel:
        return OllamaChatModel(client, model, defaults=sampling_defaults(config), base_options=options,
                               top_level=top, context_length=config.n_ctx, responses_api=config.responses_api)

    if config.model:
        return build(config.model)

    async def detect() -> ChatModel:
        from mindgate.providers.management._detect import pick

        return build((await pick(endpoint_of(client, config), "chat", prefer=prefer)).id)

    return LazyChatModel("ollama", client.base_url, detect, defaults=sampling_defaults(config),
                         text_completions=True, responses_api=config.responses_api)


def embedder(config: OllamaConfig) -> OllamaEmbedder:
    top, options = _split_kwargs(config, _EMBED_TOP_LEVEL)
    extra = {**top, **({"options": options} if options else {})}
    return OllamaEmbedder(_client(config), config.model or "nomic-embed-text", embedding_dims=config.embedding_dims,
                          batch_size=config.batch_size, extra_body=extra)


SPEC = ProviderSpec(name="ollama", config_model=OllamaConfig,
                    display=PROFILE.display, chat_model=chat_model, embedder=embedder,
                    base_url_keys=("ollama_base_url", "base_url"), default_base_url=DEFAULT_BASE_URL,
                    start_hint=PROFILE.start_hint, key_env=PROFILE.key_env, takes_top_k=True,
                    takes_reasoning_effort=True, driver=OllamaDriver,
                    get_model_hint="pull one with `mindgate models get MODEL` (or `ollama pull MODEL`)")
