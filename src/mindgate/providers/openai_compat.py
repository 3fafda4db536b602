"""The shared HTTP client for every OpenAI-compatible server, and the chat/embedding models over it.

Most providers are a :class:`ServerProfile` (how to name the server, how to start it, which key variable
it uses, which quirks it has) plus, at most, a few overridden hooks. The client pools connections (the
lean transport of :mod:`._upstream`, one pool per event loop), applies connect and request timeouts,
streams SSE, and maps every failure to :mod:`mindgate.errors` with a message that says what to do.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from pydantic import Field

from mindgate._json import dumps, loads
from mindgate.config import RESPONSES_API_DESCRIPTION, BaseURLConfig, ProviderConfig, ResponsesAPI, base_url_keys
from mindgate.errors import ConfigurationError, MindgateError, NetworkError, ProviderError
from mindgate.providers._base import (
    ChatChunk,
    ChatModel,
    ChatResponse,
    Embedder,
    Message,
    Usage,
    Vector,
    chatml_prompt,
)
from mindgate.providers._http_errors import http_error, is_missing_model, json_or_none, server_message
from mindgate.providers._openai_management import OpenAICompatDriver
from mindgate.providers._responses_api import NativeResponses
from mindgate.providers._spec import ProviderSpec
from mindgate.providers._upstream import TRANSPORT_ERRORS, SSEParser, Streamed, Upstream, failure_kind, proxy_for
from mindgate.providers.management._driver import Driver

T = TypeVar("T")


class OpenAICompatConfig(BaseURLConfig):
    """``provider: openai_compatible``: the common keys, the server's URL (``base_url``, or mem0's
    ``openai_base_url``) and ``responses_api`` (vLLM and others serve ``/v1/responses`` themselves)."""

    openai_base_url: str | None = None
    responses_api: ResponsesAPI = Field(default="bridge", description=RESPONSES_API_DESCRIPTION)


@dataclass(frozen=True)
class ServerProfile:
    """What differs between OpenAI-compatible servers, as data."""

    provider: str
    display: str
    start_hint: str | None = None
    key_env: str | None = None
    model_hint: str = "pick one of the models the server lists"
    structured_modes: tuple[str, ...] = ("json_schema", "json_object", "text")
    passes_extras: bool = False
    """Unknown top-level request fields (``top_k``, ``min_p``, ``ttl``, ...) are sent on: the server ignores
    or uses them. False for APIs that reject unknown fields (OpenAI, Azure): they are dropped there."""
    text_completions: bool = False
    """The server has a raw ``POST /completions`` (llama.cpp server, LM Studio, vLLM)."""
    developer_role: bool = False
    """The server knows OpenAI's ``developer`` role (OpenAI, Azure). Elsewhere such messages are sent as
    ``system``, which every chat template has (the llama.cpp server rejects an unknown role)."""


GENERIC = ServerProfile("openai_compatible", "the OpenAI-compatible server",
                        start_hint="start the server or fix base_url", passes_extras=True, text_completions=True)


def proxy_routes(proxy: str | Mapping[str, str] | None) -> dict[str, str]:
    """mem0's ``http_client_proxies`` (one proxy URL, or ``{scheme: URL}`` in httpx's ``"https://"`` or requests'
    ``"https"`` spelling) as httpx mount patterns -> proxy URL."""
    if not proxy:
        return {}
    routes = {"all://": proxy} if isinstance(proxy, str) else dict(proxy)
    out = {}
    for pattern, url in routes.items():
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigurationError(f"http_client_proxies: {url!r} is not an HTTP proxy URL (SOCKS proxies "
                                     "are not supported)", hint="e.g. http://proxy.internal:3128")
        out[pattern if "://" in pattern else f"{pattern}://"] = url
    return out


class OpenAICompatClient:
    """Pooled HTTP access to one OpenAI-compatible server at ``base_url`` (ending in ``/v1`` or similar).

    Requests go to ``base_url + path``; ``params`` are added to every request (Azure's api-version).
    ``proxy`` is mem0's ``http_client_proxies`` (:func:`proxy_routes`); the route matching ``base_url`` is used.
    """

    def __init__(self, base_url: str, *, profile: ServerProfile = GENERIC, api_key: str | None = None,
                 headers: Mapping[str, str] | None = None, params: Mapping[str, str] | None = None,
                 timeout: float = 120.0, connect_timeout: float = 3.0, auth_header: str = "Authorization",
                 proxy: str | Mapping[str, str] | None = None) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigurationError(f"base URL {base_url!r} for {profile.display} must start with http:// "
                                     "or https://", hint="e.g. http://localhost:1234/v1")
        self.base_url = base_url.rstrip("/")
        self.profile = profile
        self.read_timeout = timeout
        self.connect_timeout = connect_timeout
        self.headers = {"Accept": "application/json", **(headers or {})}
        if api_key:
            self.headers[auth_header] = f"Bearer {api_key}" if auth_header == "Authorization" else api_key
        self.upstream = Upstream(self.base_url, headers=self.headers, params=params, timeout=timeout,
                                 connect_timeout=connect_timeout,
                                 proxy=proxy_for(self.base_url, proxy_routes(proxy)))

    async def aclose(self) -> None:
        await self.upstream.aclose()

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    async def request_headers(self) -> dict[str, str] | None:
        """Headers computed per request (e.g. a refreshed bearer token); None: the fixed ones suffice."""
        return None

    # -- requests ------------------------------------------------------------------------------------

    async def request_json(self, method: str, path: str, body: Any = None, *,
                           model: str | None = None, timeout: float | None = None) -> Any:
        """Send a request and return the decoded JSON body; failures raise mindgate errors."""
        try:
            answer = await self.upstream.request(method, path, body, headers=await self.request_headers(),
                                                 timeout=timeout)
        except TRANSPORT_ERRORS as exc:
            raise self.network_error(exc, path) from None
        if answer.status >= 400:
            await self.raise_for_status(answer.status, answer.text, answer.headers, model=model)
        try:
            return loads(answer.body)
        except (ValueError, RecursionError):
            raise ProviderError(f"{self.profile.display} at {self.url(path)} answered with invalid JSON: "
                                f"{answer.text[:200]!r}", provider=self.profile.provider,
                                status_code=answer.status, retryable=True) from None

    @asynccontextmanager
    async def open_stream(self, path: str, body: Any, *, model: str | None = None,
                          accept: str = "text/event-stream") -> AsyncIterator[Streamed]:
        """POST ``body`` and hold the response open once its status says success (an error status raises
        through :meth:`raise_for_status`). Transport failures while reading inside the block are the
        caller's to map (:meth:`network_error`), because they surface where the body is read."""
        headers = {"Accept": accept, **(await self.request_headers() or {})}
        async with self.upstream.stream("POST", path, body, headers=headers) as response:
            if response.status >= 400:
                text = (await response.read()).decode("utf-8", "replace")
                await self.raise_for_status(response.status, text, response.headers, model=model)
            yield response

    def stream_sse(self, path: str, body: Any, *, model: str | None = None
                   ) -> AsyncIterator[tuple[bytes, dict[str, Any]]]:
        """POST ``body`` and yield ``(data payload, decoded event)`` for each server-sent event until
        ``[DONE]``. Events are parsed as the SSE standard says (multi-line ``data:`` fields, comments, CR,
        LF or CRLF line ends); a payload that spanned several lines is re-serialised on one line so it can
        be forwarded as one SSE event. A connection cut before ``[DONE]`` raises :class:`NetworkError`
        (never a silent end)."""
        return self.stream_events(path, lambda: body, _pair, model=model)

    async def stream_events(self, path: str, body: Callable[[], Any], convert: Callable[[bytes, dict[str, Any]], T],
                            *, model: str | None = None) -> AsyncIterator[T]:
        """:meth:`stream_sse`, each ``(payload, event)`` turned into what the caller streams by ``convert``
        (which raises on an event it cannot take), the body built by ``body()`` when the stream is first
        read (so its errors surface where the stream's do). One generator from the socket to the caller:
        every chunk of every stream passes here."""
        try:
            async with self.open_stream(path, body(), model=model) as response:
                content_type = response.headers.get("content-type", "").partition(";")[0]
                if "text/event-stream" not in content_type:
                    raise ProviderError(f"{self.profile.display} at {self.url(path)} did not answer with an "
                                        f"event stream (content type {content_type or 'none'!r})",
                                        provider=self.profile.provider, retryable=True)
                done = False
                parser = SSEParser()
                reads = response.content.iter_any()
                while True:
                    chunk = await anext(reads, None)
                    for sse in parser.feed(chunk) if chunk is not None else parser.end():
                        if done or not sse.data:
                            continue  # after [DONE], read to the end so the connection goes back to the pool
                        if sse.data.strip() == "[DONE]":
                            done = True
                            continue
                        yield convert(*self._stream_event(sse.data))
                    if chunk is None:
                        break
                if not done:
                    raise NetworkError(f"{self.profile.display} at {self.url(path)} ended the stream "
                                       "before [DONE]", url=self.url(path),
                                       hint="the server may have crashed or restarted; retry the request")
        except TRANSPORT_ERRORS as exc:
            raise self.network_error(exc, path) from None

    def _stream_event(self, data: str) -> tuple[bytes, dict[str, Any]]:
        event = json_or_none(data)
        if not isinstance(event, dict):
            raise ProviderError(f"{self.profile.display} sent a malformed stream event: {data[:200]!r}",
                                provider=self.profile.provider, retryable=True)
        if "error" in event:
            raise ProviderError(f"{self.profile.display} reported an error mid-stream: "
                                f"{server_message(data)}", provider=self.profile.provider)
        return (dumps(event) if "\n" in data else data.strip().encode("utf-8")), event

    async def list_models(self) -> list[str]:
        data = await self.request_json("GET", "/models", timeout=10.0)
        items = data.get("data", []) if isinstance(data, dict) else []
        return [str(item["id"]) for item in items if isinstance(item, dict) and "id" in item]

    # -- error mapping -------------------------------------------------------------------------------

    def network_error(self, exc: BaseException, path: str) -> NetworkError:
        """A transport failure (:data:`._upstream.TRANSPORT_ERRORS`) as a NetworkError saying what to do."""
        url = self.url(path)
        display = self.profile.display
        kind = failure_kind(exc)
        if kind == "connect_timeout":
            return NetworkError(f"{display} is not reachable at {self.base_url} (connect timed out after "
                                f"{self.connect_timeout}s)", url=url, hint=self.profile.start_hint)
        if kind == "timeout":
            return NetworkError(f"{display} at {url} did not answer within {self.read_timeout}s", url=url,
                                hint="raise `timeout` in the provider config or use a smaller model")
        if kind == "unreachable":
            return NetworkError(f"{display} is not reachable at {self.base_url}", url=url,
                                hint=self.profile.start_hint)
        return NetworkError(f"{display} at {url} dropped the connection ({type(exc).__name__}: {exc})",
                            url=url, hint="the server may have crashed or restarted; retry the request")

    async def raise_for_status(self, status: int, body: str, headers: Mapping[str, str], *,
                               model: str | None) -> None:
        """Raise the error for a failed answer (:func:`mindgate.providers._http_errors.http_error`); for a missing
        model, with the models the server lists. Providers with their own error format override this."""
        available = await self._available_models() if model and is_missing_model(status, body) else None
        raise http_error(status, body, headers, provider=self.profile.provider,
                         where=f"{self.profile.display} at {self.base_url}", key_env=self.profile.key_env,
                         model=model, available=available, model_hint=self.profile.model_hint)

    async def _available_models(self) -> list[str]:
        try:
            return await self.list_models()
        except MindgateError:
            return []


def _pair(wire: bytes, event: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    return wire, event


def _usage(usage: Any) -> Usage:
    """OpenAI's ``usage`` object; a count that is not a non-negative integer reads as 0."""
    def count(key: str) -> int:
        value = usage.get(key) if isinstance(usage, dict) else None
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
    return Usage(count("prompt_tokens"), count("completion_tokens"))


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def parse_chat_response(data: dict[str, Any], fallback_model: str) -> ChatResponse:
    choice = (data.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    return ChatResponse(content=message.get("content"), model=str(data.get("model") or fallback_model),
                        finish_reason=choice.get("finish_reason"), tool_calls=_items(message.get("tool_calls")),
                        usage=_usage(data.get("usage")), raw=data)


def parse_chat_chunk(event: dict[str, Any], wire: bytes | None = None) -> ChatChunk:
    choices = event.get("choices") or []
    choice = choices[0] if choices else {}
    delta = choice.get("delta") or {}
    usage = event.get("usage")
    return ChatChunk(content=delta.get("content"), tool_calls=_items(delta.get("tool_calls")),
                     finish_reason=choice.get("finish_reason"), usage=_usage(usage) if usage else None,
                     raw=event, wire=wire)


def _chunk(event: dict[str, Any], wire: bytes) -> ChatChunk | None:
    """:func:`parse_chat_chunk` of a streamed event, or None when it is malformed (see :func:`_malformed`):
    both in one pass over the event, which every chunk of every stream goes through."""
    choices = event.get("choices") or []
    usage = event.get("usage")
    if not isinstance(choices, list) or not isinstance(usage or {}, dict):
        return None
    choice: dict[str, Any] = {}
    for index, item in enumerate(choices):
        if not isinstance(item, dict):
            return None
        inner = item.get("delta") or {}
        if not isinstance(inner, dict) or not isinstance(inner.get("content") or "", str) \
                or not isinstance(item.get("finish_reason") or "", str):
            return None
        if index == 0:
            choice = item
    delta = choice.get("delta") or {}
    return ChatChunk(content=delta.get("content"), tool_calls=_items(delta.get("tool_calls")),
                     finish_reason=choice.get("finish_reason"), usage=_usage(usage) if usage else None,
                     raw=event, wire=wire)


def _malformed(data: Any, part: str) -> bool:
    """Whether a completion (``part="message"``) or chunk (``"delta"``) is not OpenAI-shaped where the parsers
    look: ``choices`` a list of objects whose ``message``/``delta`` and ``usage`` are objects when present, and
    whose text (``content``) and ``finish_reason`` are strings when present."""
    if not isinstance(data, dict):
        return True
    choices = data.get("choices") or []
    if not isinstance(choices, list) or not isinstance(data.get("usage") or {}, dict):
        return True
    for choice in choices:  # a loop, not any(genexpr): this runs for every chunk of every stream
        if not isinstance(choice, dict):
            return True
        inner = choice.get(part) or {}
        if not isinstance(inner, dict) or not isinstance(inner.get("content") or "", str) \
                or not isinstance(choice.get("finish_reason") or "", str):
            return True
    return False


class OpenAICompatChatModel(ChatModel):
    """Chat over ``POST {base_url}/chat/completions``."""

    def __init__(self, client: OpenAICompatClient, model: str, *, defaults: dict[str, Any] | None = None,
                 extra_body: dict[str, Any] | None = None, context_length: int | None = None,
                 responses_api: ResponsesAPI = "bridge") -> None:
        """``responses_api``: the provider config's key (``native``/``auto``: Responses requests may be passed
        to the server's own ``/v1/responses``, see :mod:`._responses_api`)."""
        super().__init__(model, defaults=defaults)
        self.client = client
        self.provider = client.profile.provider
        self.accepts_extras = client.profile.passes_extras
        self.extra_body = dict(extra_body or {})
        self._context_length = context_length
        if responses_api != "bridge":
            self.native = NativeResponses(client, responses_api)

    @property
    def endpoint_key(self) -> str:
        return f"{self.provider}:{self.client.base_url}:{self.model}"

    @property
    def context_length(self) -> int | None:
        return self._context_length

    @property
    def structured_modes(self) -> tuple[str, ...]:
        return self.client.profile.structured_modes

    def _body(self, messages: Sequence[Message], options: dict[str, Any], *, stream: bool) -> dict[str, Any]:
        if not messages:
            raise ConfigurationError("messages is empty", hint="pass at least one message")
        extras = options.get("extra_body") if self.accepts_extras else None
        sent = list(messages) if self.client.profile.developer_role else [
            {**m, "role": "system"} if m.get("role") == "developer" else m for m in messages]
        body = {**self.extra_body, **(extras or {}), "model": self.model, "messages": sent,
                **self._options(options)}
        if stream:
            body["stream"] = True
            if options.get("stream_options"):
                body["stream_options"] = options["stream_options"]
        return body

    async def acomplete(self, messages: Sequence[Message], **options: Any) -> ChatResponse:
        body = self._body(messages, options, stream=False)
        data = await self.client.request_json("POST", "/chat/completions", body, model=self.model)
        if not isinstance(data, dict) or not data.get("choices"):
            raise ProviderError(f"{self.client.profile.display} returned a completion without choices: "
                                f"{str(data)[:200]}", provider=self.provider, retryable=True)
        if _malformed(data, "message"):
            raise ProviderError(f"{self.client.profile.display} returned a malformed completion: {str(data)[:200]}",
                                provider=self.provider, retryable=True)
        return parse_chat_response(data, self.model)

    def astream(self, messages: Sequence[Message], **options: Any) -> AsyncIterator[ChatChunk]:
        # the client's event generator itself, not a generator around it: one layer less for every chunk
        return self.client.stream_events("/chat/completions", lambda: self._body(messages, options, stream=True),
                                         self._chunk, model=self.model)

    def _chunk(self, wire: bytes, event: dict[str, Any]) -> ChatChunk:
        chunk = _chunk(event, wire)
        if chunk is None:
            raise ProviderError(f"{self.client.profile.display} sent a malformed stream event: {wire[:200]!r}",
                                provider=self.provider, retryable=True)
        return chunk

    @property
    def text_completions(self) -> bool:
        return self.client.profile.text_completions

    def _text_body(self, prompt: str, options: dict[str, Any], *, stream: bool) -> dict[str, Any]:
        if not self.text_completions:
            raise self.no_text_completion()
        extras = options.get("extra_body") if self.accepts_extras else None
        body = {**self.extra_body, **(extras or {}), "model": self.model, "prompt": prompt,
                **self._text_options(options)}
        if stream:
            body["stream"] = True
            if options.get("stream_options"):
                body["stream_options"] = options["stream_options"]
        return body

    async def atext_complete(self, prompt: str, **options: Any) -> dict[str, Any]:
        data = await self.client.request_json("POST", "/completions", self._text_body(prompt, options, stream=False),
                                              model=self.model)
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise ProviderError(f"{self.client.profile.display} returned a malformed text completion: "
                                f"{str(data)[:200]}", provider=self.provider, retryable=True)
        return data

    async def atext_stream(self, prompt: str, **options: Any) -> AsyncIterator[dict[str, Any]]:
        body = self._text_body(prompt, options, stream=True)
        async for _, event in self.client.stream_sse("/completions", body, model=self.model):
            yield event

    async def acount_tokens(self, messages: Sequence[Message]) -> int | None:
        """Prompt tokens from the llama.cpp server's ``POST /extras/tokenize`` (at the server root), over the
        messages in ChatML framing: exact for ChatML models, an overcount for others. None when the server
        has no such endpoint, remembered per server so it is asked once."""
        root = self.client.base_url.removesuffix("/v1")
        if root in _NO_TOKENIZE_ENDPOINT:
            return None
        try:
            data = await self.client.request_json("POST", f"{root}/extras/tokenize",
                                                  {"input": chatml_prompt(messages)}, timeout=10.0)
        except ProviderError as exc:
            if exc.status_code is None or exc.status_code >= 500 or exc.status_code == 429:
                raise
            data = None
        tokens = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(tokens, list):  # 4xx, or LM Studio's HTTP 200 "Unexpected endpoint" body
            _NO_TOKENIZE_ENDPOINT.add(root)
            return None
        return len(tokens)

    async def aclose(self) -> None:
        await self.client.aclose()


_NO_TOKENIZE_ENDPOINT: set[str] = set()


class OpenAICompatEmbedder(Embedder):
    """Embeddings over ``POST {base_url}/embeddings`` (string inputs only)."""

    def __init__(self, client: OpenAICompatClient, model: str, *, embedding_dims: int | None = None,
                 batch_size: int = 64, extra_body: dict[str, Any] | None = None) -> None:
        super().__init__(model, embedding_dims=embedding_dims, batch_size=batch_size)
        self.client = client
        self.provider = client.profile.provider
        self.extra_body = dict(extra_body or {})

    async def _embed_batch(self, texts: Sequence[str]) -> Vector:
        body = {**self.extra_body, "model": self.model, "input": list(texts)}
        data = await self.client.request_json("POST", "/embeddings", body, model=self.model)
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list) or len(items) != len(texts):
            count = len(items) if isinstance(items, list) else 0
            raise ProviderError(f"{self.client.profile.display} returned {count} embeddings for "
                                f"{len(texts)} inputs", provider=self.provider, retryable=True)
        try:
            items = sorted(items, key=lambda item: int(item.get("index", 0)))
            vectors = np.asarray([item["embedding"] for item in items], dtype=np.float32)
        except (AttributeError, KeyError, TypeError, ValueError, OverflowError):
            raise ProviderError(f"{self.client.profile.display} returned embeddings in an unexpected shape "
                                "(expected data[].embedding as a list of floats)",
                                provider=self.provider, retryable=False) from None
        if vectors.ndim != 2:
            raise ProviderError(f"{self.client.profile.display} returned per-token vectors, not one vector per "
                                "input: it is not serving an embedding model here",
                                provider=self.provider, retryable=False,
                                hint="point the embedder at an embedding model (e.g. LM Studio's "
                                     "text-embedding-nomic-embed-text-v1.5)")
        return vectors

    async def aclose(self) -> None:
        await self.client.aclose()


def client_from_config(config: ProviderConfig, profile: ServerProfile, *, default_base_url: str | None,
                       api_key_env: str | None = None, require_key: bool = False) -> OpenAICompatClient:
    """Build a client from a provider config: base URL from the provider's mem0 key (or the default),
    API key from the config or the profile's environment variable."""
    base_url = config.base_url_for(profile.provider) or default_base_url
    if not base_url:
        keys = " or ".join(f"`{k}`" for k in base_url_keys(profile.provider))
        raise ConfigurationError(f"provider {profile.provider!r} needs a base URL", hint=f"set {keys}")
    env_name = api_key_env or profile.key_env
    api_key = config.api_key or (os.environ.get(env_name) if env_name else None)
    if require_key and not api_key:
        raise ConfigurationError(f"provider {profile.provider!r} needs an API key",
                                 hint=f"set {env_name} or `api_key` in the provider config")
    return OpenAICompatClient(base_url, profile=profile, api_key=api_key, headers=config.headers,
                              timeout=config.timeout, connect_timeout=config.connect_timeout,
                              proxy=config.http_client_proxies)


def sampling_defaults(config: ProviderConfig) -> dict[str, Any]:
    """mem0's sampling keys (temperature, max_tokens, top_p) as chat-option defaults."""
    return {k: v for k, v in (("temperature", config.temperature), ("max_tokens", config.max_tokens),
                              ("top_p", config.top_p)) if v is not None}


def require_model(config: ProviderConfig, provider: str, example: str) -> str:
    if not config.model:
        raise ConfigurationError(f"provider {provider!r} needs a model", hint=f'set `model`, e.g. "{example}"')
    return config.model


def chat_model(config: OpenAICompatConfig) -> OpenAICompatChatModel:
    client = client_from_config(config, GENERIC, default_base_url=None, api_key_env="OPENAI_API_KEY")
    return OpenAICompatChatModel(client, require_model(config, "openai_compatible", "llama-3.1-8b"),
                                 defaults=sampling_defaults(config), extra_body=config.model_kwargs,
                                 responses_api=config.responses_api)


def embedder(config: OpenAICompatConfig) -> OpenAICompatEmbedder:
    client = client_from_config(config, GENERIC, default_base_url=None, api_key_env="OPENAI_API_KEY")
    return OpenAICompatEmbedder(client, require_model(config, "openai_compatible", "bge-small-en-v1.5"),
                                embedding_dims=config.embedding_dims, batch_size=config.batch_size,
                                extra_body=config.model_kwargs)



def openai_compatible_spec(name: str, display: str, *, default_base_url: str | None = None,
                           key_env: str | None = None, start_hint: str | None = None,
                           chat_model_default: str | None = None, embedding_model_default: str | None = None,
                           require_key: bool = False, takes_top_k: bool = False,
                           takes_reasoning_effort: bool = False,
                           config_model: type[BaseURLConfig] = BaseURLConfig,
                           driver: type[Driver] | None = None) -> ProviderSpec:
    """A provider that speaks OpenAI's chat-completions and embeddings API, served by mindgate's shared
    client (pooling, timeouts, SSE, Retry-After, OpenAI-shaped errors). A model is required in config
    unless a default is given. ``config_model`` adds the provider's own config keys (a subclass of
    :class:`~mindgate.config.BaseURLConfig`); ``driver`` lets ``mindgate models`` list the server's models
    (e.g. :class:`~mindgate.providers._openai_management.OpenAICompatDriver`, over ``/v1/models``)."""
    profile = ServerProfile(provider=name, display=display,
                            start_hint=start_hint or "check that the server is reachable, or fix base_url",
                            key_env=key_env)

    def chat_model(config: ProviderConfig) -> OpenAICompatChatModel:
        client = client_from_config(config, profile, default_base_url=default_base_url, require_key=require_key)
        model = config.model or chat_model_default or require_model(config, name, "a model id it serves")
        return OpenAICompatChatModel(client, model, defaults=sampling_defaults(config),
                                     extra_body=config.model_kwargs)

    def embedder(config: ProviderConfig) -> OpenAICompatEmbedder:
        client = client_from_config(config, profile, default_base_url=default_base_url, require_key=require_key)
        model = config.model or embedding_model_default or require_model(config, name, "an embedding model id")
        return OpenAICompatEmbedder(client, model, embedding_dims=config.embedding_dims,
                                    batch_size=config.batch_size, extra_body=config.model_kwargs)

    return ProviderSpec(name=name, display=display, chat_model=chat_model, embedder=embedder,
                        config_model=config_model, driver=driver, default_base_url=default_base_url,
                        start_hint=profile.start_hint, key_env=key_env,
                        takes_top_k=takes_top_k, takes_reasoning_effort=takes_reasoning_effort)

SPEC = ProviderSpec(name="openai_compatible", config_model=OpenAICompatConfig, display=GENERIC.display,
                    chat_model=chat_model, embedder=embedder, base_url_keys=("base_url", "openai_base_url"),
                    start_hint=GENERIC.start_hint,
                    key_env="OPENAI_API_KEY", takes_top_k=True, takes_reasoning_effort=True,
                    driver=OpenAICompatDriver)
